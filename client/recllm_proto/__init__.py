"""The profile service's gRPC API: ``profile.proto`` and the stubs protoc generates from it.

Imported by both sides — the client (``recllm_client.profile_client``) and the server
(``recllm.profile_service``) — so neither depends on the other. Regenerate with ``python -m recllm_proto.codegen``;
a test fails when the committed stubs drift from the .proto.
"""
