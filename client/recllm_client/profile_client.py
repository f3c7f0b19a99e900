"""Client of the Rec-LLM profile service (``recllm serve`` runs it on :8003 beside Triton).

    with ProfileClient("127.0.0.1:8003") as client:
        for ack in client.ingest(events):          # Event records or ``profile_pb2.Event`` messages
            if not ack.accepted: print(ack.sequence, ack.error)
        profile = client.get_profile("u000001", recent_events=10)
        removed = client.forget("u000001")           # {"events": 812, "fragments": 9, ...}

``ingest`` streams the events over one ``IngestEvents`` call and yields one ack per event, in send order; an
accepted ack means the event is durably stored and visible to the next recommendation request. Give events an
``event_id`` (unique per user) and resend whatever was not acknowledged when a stream breaks: events already stored
come back accepted with ``ack.duplicate`` set and are not stored twice.

Every call carries a token (``authorization: Bearer …`` metadata). With ``keyring`` the client is the trusted backend:
it signs a service token for ingest and the user's own token for ``get_profile`` / ``forget``; ``token=`` on a call
sends that credential instead (a user's own token, or an admin token: ``keyring.sign(name, scope="admin")``).
``root_cert`` (PEM) connects over TLS to a service started with ``recllm serve --tls``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import grpc

from recllm_proto import profile_pb2 as pb
from recllm_proto import profile_pb2_grpc as pb_grpc
from recllm_proto.user_token import Keyring, bearer_metadata, load_keyring

TOKEN_TTL_S = 300.0
SERVICE_SUBJECT = "recllm-client"


def event_message(event, sequence: int = 0, event_id: str | None = None) -> pb.Event:
    """The message for an event record (any object with the event record's attributes); ``event_id`` defaults to
    the record's own ``event_id`` (none: the event cannot be recognised when retried)."""
    if event_id is None:
        event_id = getattr(event, "event_id", None) or ""
    message = pb.Event(sequence=sequence, event_id=event_id, user_id=event.user_id, service=event.service,
                       item_id=event.item_id, kind=event.kind, timestamp=event.timestamp, price=event.price,
                       quantity=event.quantity, region=event.region, device=event.device)
    if event.basket_id is not None:
        message.basket_id = event.basket_id
    return message


class ProfileClientError(RuntimeError):
    """The profile service refused or failed a call; the message is the server's."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code = code
        super().__init__(f"{code.name}: {details}")


def _as_message(event: Any, sequence: int) -> pb.Event:
    """Messages pass through; records (``Event``-like) become messages numbered by their stream position."""
    if isinstance(event, pb.Event):
        return event
    return event_message(event, sequence=sequence)


class ProfileClient:
    """One gRPC channel to the profile service; usable from several threads (one stream per ``ingest`` call)."""

    def __init__(self, url: str = "127.0.0.1:8003", timeout_s: float = 30.0,
                 keyring: Keyring | str | Path | None = None, root_cert: str | Path | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self._keys = keyring if isinstance(keyring, Keyring) or keyring is None else load_keyring(keyring)
        if root_cert:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(root_cert).read_bytes())
            self._channel = grpc.secure_channel(url, credentials)
        else:
            self._channel = grpc.insecure_channel(url)
        self._stub = pb_grpc.ProfileServiceStub(self._channel)

    def _credential(self, token: str | None, subject: str, scope: str) -> tuple:
        """Metadata with ``token``, else one signed here for ``subject``; none without a keyring (then refused)."""
        if token is None and self._keys is not None and subject:
            try:
                token = self._keys.sign(subject, ttl_s=TOKEN_TTL_S, scope=scope)
            except ValueError:  # a subject no token can carry: the server refuses the request on its own terms
                token = None
        return bearer_metadata(token) if token else ()

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the channel connects (the server is listening); raises ProfileClientError on timeout."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s or self.timeout_s)
        except grpc.FutureTimeoutError:
            raise ProfileClientError(grpc.StatusCode.UNAVAILABLE, f"no profile service at {self.url}") from None

    def ingest(self, events: Iterable[Any], timeout_s: float | None = None,
               token: str | None = None) -> Iterator[pb.EventAck]:
        """Stream ``events`` and yield their acks in order. Records without a sequence get their position."""
        messages = (_as_message(event, sequence) for sequence, event in enumerate(events))
        metadata = self._credential(token, SERVICE_SUBJECT, "service")
        try:
            yield from self._stub.IngestEvents(messages, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            raise ProfileClientError(error.code(), error.details()) from None

    def get_profile(self, user_id: str, recent_events: int = 0, token: str | None = None) -> pb.Profile:
        return self._unary(self._stub.GetProfile, pb.ProfileRequest(user_id=user_id, recent_events=recent_events),
                           self._credential(token, user_id, "user"))

    def forget(self, user_id: str, token: str | None = None) -> dict[str, int]:
        """Erase every trace of ``user_id``; returns rows removed per table."""
        response = self._unary(self._stub.Forget, pb.ForgetRequest(user_id=user_id),
                               self._credential(token, user_id, "user"))
        return {row.table: row.rows for row in response.removed}

    def _unary(self, method, request, metadata=()):
        try:
            return method(request, timeout=self.timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            raise ProfileClientError(error.code(), error.details()) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ProfileClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
