"""The profile service: a gRPC server beside Triton that takes behaviour events in real time.

``recllm serve`` starts it next to tritonserver on the same artifact folder. Events stream in over
``IngestEvents``; each is validated with ``recllm.profile.event_schema`` against the catalog, committed durably to the
profile store by the single writer (``event_writer``) and acknowledged (a retried event with a stored ``event_id``
is acknowledged as a duplicate and not stored again); the Triton retriever reads the same store per request
(read-only), so an acknowledged event is visible to the very next recommendation. The store is the artifact's
SQLite file, or the PostgreSQL store named by ``ProfileServiceConfig.profile_url`` (``--profile-url``). The derived
profile (fragments, history, DP release) is refreshed before the ack (``refresh_mode="sync"``) or right after it
on a refresh thread (``"async"``, default; ``ProfileServer.wait_refreshed`` waits for it).
``GetProfile`` reads one user's data; ``Forget`` erases one user (``recllm.profile.retention.forget_user``); an
optional thread expires events past their TTL. Every call carries a token (``access``: the user's own or an admin
token to read or forget, a service token or the user's own to ingest); TLS when ``ProfileServiceConfig.tls`` is set.

    python -m recllm.profile_service.server --artifact-dir artifacts/default --port 8003
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Callable

import grpc

from recllm.artifacts import ArtifactLayout, ArtifactsNotBuiltError
from recllm.catalog.product_catalog import Catalog
from recllm.rag.catalog_index import CatalogIndex
from recllm.dialogue.session_store import SessionStore
from recllm.profile.event_schema import EventValidationError, validate_event
from recllm.profile.retention import RetentionConfig, forget_user
from recllm.profile.sqlite_store import ProfileStore
from recllm_proto import profile_pb2 as pb
from recllm_proto import profile_pb2_grpc as pb_grpc
from recllm.profile_service.access import INGESTERS, ProfileAccess, covers
from recllm.profile_service.config import REFRESH_MODES, IngestPolicy, ProfileServiceConfig, redacted_url
from recllm.profile_service.event_writer import EventWriter, WriterStoppedError
from recllm.profile_service.ingest_stream import Admission, IngestStream
from recllm.profile_service.messages import (
    event_from_message, forget_message, profile_message, rejected_ack, user_id_problem,
)
from recllm.profile_service.profile_view import read_user_profile
from recllm.profile_service.ttl_cleanup import PeriodicTtlCleanup
from recllm.profile.storage import ProfileStorage, open_profile_storage
from recllm.serving.triton_server import port_is_free
from recllm_proto.user_token import KeyringFile, ensure_keyring

log = logging.getLogger(__name__)
STOP_EXTRA_WAIT_S = 10.0  # after the grace period, how long stop() waits for handlers gRPC has cancelled


def _database_unavailable_errors() -> tuple[type[BaseException], ...]:
    """Errors of a store that is there but cannot write right now (SQLite: locked, full; PostgreSQL: gone)."""
    errors: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg  # noqa: PLC0415 - only with the PostgreSQL extra
    except ImportError:
        pass
    else:
        errors.append(psycopg.OperationalError)
    return tuple(errors)


DATABASE_UNAVAILABLE = _database_unavailable_errors()


class ProfileServiceError(RuntimeError):
    """The profile service could not start (port taken, artifacts missing)."""


class ProfileServicer(pb_grpc.ProfileServiceServicer):
    """The three RPCs over a writer (all writes) and a read-only store (profile reads)."""

    def __init__(self, writer: EventWriter, reader: ProfileStorage, sessions: SessionStore, catalog: Catalog,
                 config: ProfileServiceConfig, clock: Callable[[], float], access: ProfileAccess,
                 build_copy: Path | None = None):
        """``build_copy``: the build's SQLite profile when the service writes to PostgreSQL (what ``recllm build
        --profile-url`` published from): a forgotten user is erased there too, not left on the serving disk."""
        self.writer, self.reader, self.sessions = writer, reader, sessions
        self.catalog, self.config, self.clock, self.access = catalog, config, clock, access
        self.build_copy = build_copy

    def admit(self, message: pb.Event, caller=None) -> Admission:
        """Validate one event and queue it for the writer, or reject it with the reason."""
        if caller is not None and not covers(caller, message.user_id):
            return rejected_ack(message, "the token does not cover this event's user", "user_id")
        try:
            event = event_from_message(message)
            validate_event(event, self.catalog, int(self.clock()), self.config.validation)
        except EventValidationError as error:
            log.debug("rejected event %s of the stream: %s", message.sequence, error)
            return rejected_ack(message, str(error), error.field)
        try:
            return self.writer.submit(event)
        except WriterStoppedError as error:
            return rejected_ack(message, f"event was not stored: {error}")

    def IngestEvents(self, request_iterator, context):  # noqa: N802 - generated interface
        caller = self.access.caller(context, INGESTERS)
        admit = lambda message: self.admit(message, caller)  # noqa: E731
        yield from IngestStream(request_iterator, admit, self.config.max_stream_in_flight).acks()

    def _require_user_id(self, user_id: str, context: grpc.ServicerContext) -> None:
        problem = user_id_problem(user_id, self.config.validation)
        if problem is not None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    def GetProfile(self, request: pb.ProfileRequest, context) -> pb.Profile:  # noqa: N802
        self._require_user_id(request.user_id, context)
        self.access.require_owner_or_admin(context, request.user_id)
        return profile_message(read_user_profile(self.reader, request.user_id, request.recent_events))

    def Forget(self, request: pb.ForgetRequest, context) -> pb.ForgetResponse:  # noqa: N802
        self._require_user_id(request.user_id, context)
        self.access.require_owner_or_admin(context, request.user_id)
        user_id = request.user_id
        try:
            # On the writer thread: events of this user queued before the forget are erased with the rest, and a
            # refresh still queued for them is dropped, so it cannot write their rows again afterwards.
            removed = self.writer.forget(user_id, lambda store: self._forget(store, user_id)).result()
        except WriterStoppedError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except DATABASE_UNAVAILABLE as error:  # locked by another process, disk full, connection lost: retryable
            log.warning("forget could not run: %s", error)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the profile database is unavailable ({error}); the forget "
                                                       "did not complete: retry it (forgetting is idempotent)")
        return forget_message(user_id, removed)


    def _forget(self, store: ProfileStorage, user_id: str) -> dict[str, int]:
        removed = forget_user(store, self.sessions, user_id)
        if self.build_copy is not None and self.build_copy.exists():
            for table, rows in ProfileStore(self.build_copy).forget_user(user_id).items():
                removed[f"build_copy.{table}"] = rows
        return removed


def load_catalog_and_vectors(layout: ArtifactLayout, needs_profile_file: bool = True
                             ) -> tuple[Catalog, CatalogIndex]:
    needed = (layout.catalog, layout.catalog_index_dir) + ((layout.profile_db,) if needs_profile_file else ())
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ArtifactsNotBuiltError(
            f"the profile service needs a built artifact folder; missing {', '.join(missing)}: run `recllm build`")
    catalog = Catalog.load_jsonl(layout.catalog)
    return catalog, CatalogIndex.load(layout.catalog_index_dir, catalog)


class ProfileServer:
    """The running service: ``with ProfileServer(config) as server: ...`` (``server.port`` is the bound port)."""

    def __init__(self, config: ProfileServiceConfig, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.port: int | None = None
        self.keyring_path: Path | None = None  # the keyring tokens are checked against (set by start)
        self.writer: EventWriter | None = None
        self.cleanup: PeriodicTtlCleanup | None = None
        self.reader: ProfileStorage | None = None
        self._grpc: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.config.bind_address}:{self.port}"

    def start(self) -> ProfileServer:
        config = self.config
        if config.port and not port_is_free(config.bind_address, config.port):
            raise ProfileServiceError(f"profile service port {config.port} on {config.bind_address} is already in "
                                      "use; stop whatever holds it or choose another port (--profile-port)")
        layout = ArtifactLayout(config.artifact_dir)
        catalog, index = load_catalog_and_vectors(layout, needs_profile_file=config.profile_url is None)
        self.keyring_path = Path(config.keyring_path or layout.keyring)
        ensure_keyring(self.keyring_path)
        access = ProfileAccess(KeyringFile(self.keyring_path))
        profile = config.profile_location(layout.profile_db)
        self.writer = EventWriter(profile, catalog, index.item_vectors, config.ingest, self.clock).start()
        try:
            self.reader = open_profile_storage(profile, read_only=True)
            servicer = ProfileServicer(self.writer, self.reader, SessionStore(layout.sessions_db), catalog, config,
                                       self.clock, access, build_copy=layout.profile_db if config.profile_url else None)
            self._start_grpc(servicer)
            if config.ttl_cleanup_interval_s is not None:
                retention = config.retention or RetentionConfig()
                self.cleanup = PeriodicTtlCleanup(self.writer, retention, config.ttl_cleanup_interval_s,
                                                  self.clock).start()
        except BaseException:
            self.stop()
            raise
        log.info("profile service listening on %s (writing %s)", self.address, redacted_url(str(profile)))
        return self

    def _start_grpc(self, servicer: ProfileServicer) -> None:
        config = self.config
        options = [
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ]
        server = grpc.server(futures.ThreadPoolExecutor(config.max_workers, thread_name_prefix="profile-rpc"),
                             options=options)
        pb_grpc.add_ProfileServiceServicer_to_server(servicer, server)
        try:
            if config.tls is not None:
                self.port = server.add_secure_port(config.address, grpc.ssl_server_credentials(
                    [(config.tls.key.read_bytes(), config.tls.cert.read_bytes())]))
            else:
                self.port = server.add_insecure_port(config.address)
        except RuntimeError as error:
            raise ProfileServiceError(f"profile service cannot listen on {config.address}: {error}") from None
        if not self.port:
            raise ProfileServiceError(f"profile service cannot listen on {config.address}")
        server.start()
        self._grpc = server

    def wait_refreshed(self, timeout_s: float | None = None) -> bool:
        """Block until the derived profile of every acknowledged event is rebuilt; False if ``timeout_s`` passed."""
        if self.writer is None:
            raise ProfileServiceError("the profile service is not started")
        return self.writer.wait_refreshed(timeout_s)

    def is_healthy(self) -> bool:
        return (self._grpc is not None and self.writer is not None and self.writer.is_alive()
                and self.writer.refresher.is_alive())

    def stop(self) -> None:
        """Stop TTL cleanup, let open RPCs finish within the grace period, then drain and stop the writer."""
        if self.cleanup is not None:
            self.cleanup.stop()
            self.cleanup = None
        if self._grpc is not None:
            # gRPC cancels the RPCs still open after the grace period; a handler that ignores the cancellation must
            # not hold the shutdown forever (seen after mixed malformed streams in benchmarks/fuzz.py).
            if not self._grpc.stop(self.config.stop_grace_s).wait(self.config.stop_grace_s + STOP_EXTRA_WAIT_S):
                log.warning("profile service: RPC handlers still running %.0f s after the grace period; stopping "
                            "anyway", STOP_EXTRA_WAIT_S)
            self._grpc = None
        if self.writer is not None:
            self.writer.stop()
        for store in (self.reader, self.writer.store if self.writer is not None else None):
            close = getattr(store, "close", None)  # PostgreSQL connections; SQLite's close with their threads
            if close is not None:
                close()

    def __enter__(self) -> ProfileServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    defaults = ProfileServiceConfig()
    parser = argparse.ArgumentParser(prog="python -m recllm.profile_service.server",
                                     description="Run the Rec-LLM profile service alone (recllm serve runs it too)")
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    parser.add_argument("--profile-url", default=defaults.profile_url,
                        help="postgresql://… profile store (default: the artifact folder's SQLite file)")
    parser.add_argument("--bind-address", default=defaults.bind_address)
    parser.add_argument("--port", type=int, default=defaults.port, help="0: any free port (printed)")
    parser.add_argument("--ttl-cleanup-interval-s", type=float, default=defaults.ttl_cleanup_interval_s)
    parser.add_argument("--refresh-mode", choices=REFRESH_MODES, default=defaults.ingest.refresh_mode,
                        help="sync: ack after the profile refresh; async: ack after the commit, refresh behind")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    stopped = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: stopped.set())
    try:
        config = ProfileServiceConfig(artifact_dir=args.artifact_dir, profile_url=args.profile_url,
                                      bind_address=args.bind_address, port=args.port,
                                      ttl_cleanup_interval_s=args.ttl_cleanup_interval_s,
                                      ingest=IngestPolicy(refresh_mode=args.refresh_mode))
        with ProfileServer(config) as server:
            print(f"profile service listening on {server.address}", flush=True)
            while not stopped.wait(0.5) and server.is_healthy():
                pass
    except (ProfileServiceError, FileNotFoundError, ValueError) as error:
        print(f"profile service: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
