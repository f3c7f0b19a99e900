"""gRPC profile service: streaming event ingest with per-event acknowledgement, profile read, forget."""
