"""The profile storage interface and the factory that opens a backend from a path or URL.

The builders, retrieval, ranking, profile refresh, differential privacy, retention and the profile service (ingest,
read view, forget) need only the methods of ``ProfileStorage``. Two backends implement them with the same tables and
return types:

* ``recllm.profile.sqlite_store.ProfileStore`` — SQLite in WAL mode, one file, the embedded default and the
  out-of-the-box path (``recllm build`` / ``recllm serve`` use it unless given ``--profile-url``);
* ``recllm.profile.postgres_store.PostgresProfileStore`` — PostgreSQL with the per-user tables hash-partitioned by
  ``user_id``, for deployments whose profile outgrows one file or one machine's writer.

``open_profile_storage`` picks the backend from its argument: a plain path or ``sqlite://<path>`` opens SQLite,
``postgresql://...`` (or ``postgres://...``) opens PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterable, Protocol, runtime_checkable

from recllm.profile.privacy_ledger import ComposeEpsilon
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import EventRow, LedgerEntry, MechanismRun, PreferenceRelease, ProfileFragment

if TYPE_CHECKING:  # the PostgreSQL backend (and psycopg) is imported only when a postgresql:// URL is opened
    from recllm.profile.postgres_store import PostgresProfileStore

SQLITE_SCHEME = "sqlite://"
# Set by ``recllm serve --profile-url`` for the Triton model processes it starts: where they read the profile.
PROFILE_URL_ENV = "RECLLM_PROFILE_URL"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@runtime_checkable
class ProfileStorage(Protocol):
    """What the rest of the code may call on a profile store (both backends implement exactly these)."""

    def add_users(self, users: Iterable) -> None:
        """Insert or replace demographics (objects with ``user_id, age_band, region``)."""

    def add_events(self, events: Iterable) -> int:
        """Append events (objects with ``recllm.profile.event_schema.EVENT_FIELDS``, optionally ``event_id``) in one
        transaction, skipping any whose (user_id, event_id) is already stored; returns how many were stored."""

    def ingest_events(self, events: Iterable, commit_seq: int) -> list[bool]:
        """The profile service's durable commit: store events and mark the users of newly stored ones pending a
        refresh at ``commit_seq``, in one transaction; per event, True if stored now, False if it was a duplicate."""

    def pending_refreshes(self) -> list[tuple[str, int]]:
        """(user_id, commit_seq) of users whose derived profile may lag their events, oldest first."""

    def clear_pending_refresh(self, user_id: str, up_to_seq: int | None = None) -> None:
        """Drop the user's pending mark if it covers no commit after ``up_to_seq`` (None: whatever it covers)."""

    def tune_connection(self, synchronous: str, busy_timeout_ms: int) -> None:
        """This thread's connection: durability of commits (NORMAL, FULL, EXTRA) and how long to wait for locks."""

    def events_of(self, user_id: str, kind: str | tuple[str, ...] | None = None,
                  limit: int | None = None) -> list[EventRow]:
        """The user's events in time order (ties in insertion order), optionally only one kind or a few kinds;
        ``limit``: only the newest ``limit`` of them (still in time order)."""

    def recent_events(self, user_id: str, limit: int) -> list[EventRow]:
        """The user's newest ``limit`` events, newest first."""

    def activity_of(self, user_id: str) -> list[tuple[str, str, int, int, int, float]]:
        """(service, kind, events, first_ts, last_ts, purchase-style spend = sum of price × quantity), ordered."""

    def demographics_of(self, user_id: str) -> tuple[str, str] | None:
        """The user's (age_band, region), or None."""

    def read_snapshot(self) -> ContextManager[None]:
        """A block whose reads on this thread all see the same commit."""

    def expire_events(self, cutoffs: dict[str, int]) -> tuple[int, list[str]]:
        """Delete events of each service older than its cutoff, atomically; (events deleted, affected users)."""

    def user_ids(self) -> list[str]:
        """Distinct users with at least one event, in code-point order."""

    def latest_timestamp(self) -> int | None:
        """The newest event time, ``None`` when there are no events."""

    def user_version(self, user_id: str) -> int | None:
        """A value that changes with every write to the user's events, fragments or DP release and never repeats;
        ``None`` when the store cannot tell (then a reader must not cache what it reads about the user)."""

    def replace_fragments(self, user_id: str, fragments: Iterable[ProfileFragment]) -> None:
        """Replace all of the user's fragments at once; fragments of another user are a ``ValueError``."""

    def fragments_of(self, user_id: str) -> list[ProfileFragment]:
        """The user's fragments, heaviest first, ties by key; vectors are float32 as written."""

    def set_item_popularity(self, purchases_by_item: dict[int, int]) -> None:
        """Replace the whole item → purchase-count table."""

    def item_popularity(self) -> dict[int, int]:
        """The item → purchase-count table."""

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete every row about the user from every table holding a ``user_id``; returns rows deleted per table."""

    # Derived from events by recllm.profile.refresh / recllm.profile.differential_privacy:

    def replace_history(self, user_id: str, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Replace the user's (level, start_ts, end_ts, summary JSON) history rows."""

    def history_of(self, user_id: str, level: str | None = None) -> list[tuple[str, int, int, str]]:
        """History rows ordered by (start_ts, level), optionally of one level."""

    def replace_temporal_histograms(self, user_id: str, rows: Iterable[tuple[str, list[int], list[int]]]) -> None:
        """Replace the user's (service, [24] hour counts, [7] weekday counts) rows."""

    def temporal_histograms_of(self, user_id: str) -> list[tuple[str, list[int], list[int]]]:
        """Histogram rows ordered by service."""

    def privacy_secret(self) -> bytes:
        """The 32-byte server secret seeding release noise (created on first use by a writer)."""

    def privacy_ledger_of(self, user_id: str, window_start: int | None = None) -> list[LedgerEntry]:
        """The user's spent privacy budget per window, oldest first."""

    def released_preferences_of(self, user_id: str) -> PreferenceRelease | None:
        """The user's latest differentially private release, or None."""

    def delete_released_preferences(self, user_id: str) -> None:
        """Drop the user's release (nothing behind it any more)."""

    def mechanisms_of(self, user_id: str, window_start: int | None = None) -> list[MechanismRun]:
        """The DP mechanisms (preference releases, adapter updates) charged to the user, per window in order."""

    def charge_mechanism(self, run: MechanismRun, window_end: int, epsilon_budget: float, delta: float,
                         compose: ComposeEpsilon, release: PreferenceRelease | None = None) -> LedgerEntry | None:
        """Record the mechanism, set its window's ledger to the composed ε at ``delta`` (and store the release of a
        preference-release mechanism) atomically, returning the entry; or write nothing and return None when the
        budget would be exceeded or another writer released first."""


def open_profile_storage(url_or_path: str | Path, read_only: bool = False,
                         partitions: int | None = None) -> ProfileStore | PostgresProfileStore:
    """Open the profile backend named by ``url_or_path``.

    ``"/data/profile.db"``, ``Path(...)`` or ``"sqlite:///data/profile.db"`` → SQLite (``sqlite://`` followed by the
    file path); ``"postgresql://user@host:5432/db"`` → PostgreSQL with ``partitions`` hash partitions (its config's
    default when ``None``). ``partitions`` means nothing to SQLite and is refused there.
    """
    if isinstance(url_or_path, Path):
        return _open_sqlite(url_or_path, read_only, partitions)
    if not isinstance(url_or_path, str) or not url_or_path.strip():
        raise ValueError(f"profile storage: url_or_path must be a non-empty path or URL, got {url_or_path!r}")
    if url_or_path.startswith(POSTGRES_SCHEMES):
        from recllm.profile.postgres_store import PostgresProfileConfig, PostgresProfileStore  # noqa: PLC0415

        options = {} if partitions is None else {"partitions": partitions}
        return PostgresProfileStore(PostgresProfileConfig(url=url_or_path, read_only=read_only, **options))
    if url_or_path.startswith(SQLITE_SCHEME):
        path = url_or_path[len(SQLITE_SCHEME):]
        if not path:
            raise ValueError(f"profile storage: {url_or_path!r} names no file; use sqlite:///absolute/path.db")
        return _open_sqlite(Path(path), read_only, partitions)
    if "://" in url_or_path:
        scheme = url_or_path.split("://", 1)[0]
        raise ValueError(f"profile storage: unsupported URL scheme {scheme!r} in url_or_path; "
                         "use a file path, sqlite://<path> or postgresql://...")
    return _open_sqlite(Path(url_or_path), read_only, partitions)


def _open_sqlite(path: Path, read_only: bool, partitions: int | None) -> ProfileStore:
    if partitions is not None:
        raise ValueError(f"profile storage: partitions={partitions!r} applies to PostgreSQL only, not to SQLite {path}")
    return ProfileStore(path, read_only=read_only)


def profile_location(default: Path, environ: dict[str, str] | None = None) -> str | Path:
    """Where a served model reads the profile: ``$RECLLM_PROFILE_URL`` when set, else ``default`` (the artifact's
    SQLite file)."""
    value = (os.environ if environ is None else environ).get(PROFILE_URL_ENV, "").strip()
    return value or default
