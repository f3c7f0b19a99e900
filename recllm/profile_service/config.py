"""Configuration of the profile service: where it listens and writes, how it commits, when it cleans up.

Kept free of heavy imports (no torch, no gRPC): ``recllm serve`` builds its command line from these defaults
before anything is started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recllm.profile.event_schema import EventValidationConfig
from recllm.serving.tls import TlsFiles
from recllm.serving.triton_server import REPO_ROOT

if TYPE_CHECKING:  # profile_retention pulls in the chat sessions and with them torch
    from recllm.profile.retention import RetentionConfig

PROFILE_URL_SCHEMES: tuple[str, ...] = ("postgresql://", "postgres://", "sqlite://")
SYNCHRONOUS_LEVELS: tuple[str, ...] = ("FULL", "EXTRA")  # levels that fsync the WAL at every commit
REFRESH_MODES: tuple[str, ...] = ("sync", "async")


def redacted_url(url: object) -> object:
    """``url`` without a password (``scheme://user:secret@host`` → ``scheme://user@host``), also when malformed."""
    if not isinstance(url, str) or "@" not in url:
        return url
    at = url.rfind("@")
    head = url[:at]
    start = head.find("//") + 2 if "//" in head else head.find(":") + 1
    colon = head.find(":", start)
    return url if colon < 0 else head[:colon] + url[at:]


def _check_positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class IngestPolicy:
    """How events are grouped into transactions and how much may wait in memory."""

    max_batch_events: int = 512        # events per transaction at most
    max_batch_wait_ms: float = 0.0     # after the first event, linger this long for more (0: commit what is queued)
    max_queued_events: int = 10_000    # submitters block when this many wait for the writer (backpressure)
    synchronous: str = "FULL"          # SQLite synchronous level of the ingest connection
    # "sync": ack after commit + profile refresh of the commit's users (derived data current at ack);
    # "async": ack right after the durable commit, a refresh thread catches the derived data up (raw events are
    # read live by the retriever, so they are visible at ack either way).
    refresh_mode: str = "async"
    max_dirty_users: int = 100_000     # users waiting for an async refresh; the writer blocks (backpressure) at this
    busy_timeout_ms: int = 30_000      # how long a write waits for SQLite's write lock held by the other thread

    def __post_init__(self) -> None:
        for name in ("max_batch_events", "max_queued_events", "max_dirty_users", "busy_timeout_ms"):
            _check_positive_int("IngestPolicy", name, getattr(self, name))
        wait = self.max_batch_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
            raise ValueError(f"IngestPolicy.max_batch_wait_ms must be a number in 0..1000, got {wait!r}")
        if self.synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"IngestPolicy.synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)} "
                             f"(levels that fsync every commit), got {self.synchronous!r}")
        if self.refresh_mode not in REFRESH_MODES:
            raise ValueError(f"IngestPolicy.refresh_mode must be one of {', '.join(REFRESH_MODES)}, "
                             f"got {self.refresh_mode!r}")


@dataclass
class ProfileServiceConfig:
    """Where the profile service listens, which artifact folder it writes, and its ingest/retention policy."""

    artifact_dir: Path = REPO_ROOT / "artifacts" / "default"
    # None: the artifact folder's SQLite profile (the embedded default); "postgresql://…": that PostgreSQL store
    # (filled by ``recllm build --profile-url``). Chat sessions stay in the artifact folder either way.
    profile_url: str | None = None
    bind_address: str = "127.0.0.1"
    port: int = 8003                        # 0: any free port (tests); ``ProfileServer.port`` tells which
    ingest: IngestPolicy = field(default_factory=IngestPolicy)
    # Off by default: the synthetic histories of the built artifacts end months before today's clock, so a
    # wall-clock TTL pass would erase them. Turn on for live data (``--profile-ttl-cleanup-interval-s``).
    ttl_cleanup_interval_s: float | None = None
    retention: RetentionConfig | None = None  # TTL per service; None: ``RetentionConfig()`` defaults
    validation: EventValidationConfig = field(default_factory=EventValidationConfig)
    max_workers: int = 16                   # gRPC handler threads; each open ingest stream holds one
    max_stream_in_flight: int = 1024        # events of one stream waiting for their ack
    max_message_bytes: int = 1 << 20        # a larger message ends its stream with RESOURCE_EXHAUSTED
    stop_grace_s: float = 5.0               # open streams get this long to finish on stop
    keyring_path: Path | None = None        # None: the build's ``ArtifactLayout.keyring`` (created if absent)
    tls: TlsFiles | None = None             # None: plaintext gRPC (loopback only); ``recllm serve --tls`` sets it

    def __post_init__(self) -> None:
        self.artifact_dir = Path(self.artifact_dir)
        if self.profile_url is not None and (not isinstance(self.profile_url, str) or not self.profile_url.startswith(
                PROFILE_URL_SCHEMES)):
            raise ValueError(f"ProfileServiceConfig.profile_url must be None (the artifact's SQLite file) or a "
                             f"postgresql:// or sqlite:// URL, got {redacted_url(self.profile_url)!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"ProfileServiceConfig.port must be 0..65535 (0: any free port), got {self.port!r}")
        interval = self.ttl_cleanup_interval_s
        if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                     or not interval > 0):
            raise ValueError(
                f"ProfileServiceConfig.ttl_cleanup_interval_s must be > 0 seconds or None (off), got {interval!r}")
        if self.retention is not None and not hasattr(self.retention, "ttl_days"):
            raise ValueError(f"ProfileServiceConfig.retention must be a RetentionConfig or None, got "
                             f"{type(self.retention).__name__}")
        for name in ("max_workers", "max_stream_in_flight", "max_message_bytes"):
            _check_positive_int("ProfileServiceConfig", name, getattr(self, name))
        if isinstance(self.stop_grace_s, bool) or not isinstance(self.stop_grace_s, (int, float)) \
                or not self.stop_grace_s >= 0:
            raise ValueError(f"ProfileServiceConfig.stop_grace_s must be >= 0, got {self.stop_grace_s!r}")

    def profile_location(self, layout_profile_db: Path) -> str | Path:
        """What the service opens: ``profile_url``, or the artifact folder's profile file."""
        return self.profile_url if self.profile_url is not None else layout_profile_db

    @property
    def address(self) -> str:
        return f"{self.bind_address}:{self.port}"
