"""gRPC profile service: streaming event ingest with per-event acknowledgement, profile read, forget.

``recllm serve`` runs it beside tritonserver on the same artifact folder (default port 8003, loopback).

- ``profile.proto`` — the API (package ``recllm.profile.v1``); ``profile_pb2*.py`` are generated from it by
  ``codegen`` and committed (a test fails when they drift);
- ``config`` — ``ProfileServiceConfig`` and the ``IngestPolicy`` (batching, fsync level, backpressure, refresh mode);
- ``server`` — the servicer and ``ProfileServer`` (start/stop, context manager; ``python -m`` runs it alone);
- ``ingest_stream`` — one ``IngestEvents`` stream: admit events as they arrive, ack them in send order;
- ``event_writer`` — the single writer thread: idempotent group commit (a stored ``event_id`` is not stored again)
  with ``synchronous=FULL``, then the profile refresh (before the ack in "sync" mode, handed to
  ``profile_refresher`` in "async" mode); forget and TTL cleanup run on it too, in queue order;
- ``profile_refresher`` — the async refresh: a coalescing, bounded dirty set of users and its refresh thread;
- ``ttl_cleanup`` — the periodic ``expire_stale_events`` thread;
- ``profile_view`` / ``messages`` — one user's data read for ``GetProfile``, and protobuf conversions.

The client is ``recllm_client.profile_client.ProfileClient``.
"""
