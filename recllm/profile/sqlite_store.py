"""The unified user profile, embedded default: SQLite (WAL) for events, demographics and profile fragments.

One user id spans samokat, megamarket and kuper, so a user's rows from all three services sit together.
Profile fragments are short facts derived from the event log ("каждую неделю берёте овощи в Купере") with a
vector in item space; ``UserFragmentIndex`` puts one user's fragments in a FAISS index so retrieval only ever
touches that user's data. The profile issue adds validated real-time ingest, retention, differential privacy
and a PostgreSQL backend behind the same methods.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from recllm.profile.privacy_ledger import ComposeEpsilon, next_ledger_entry
from recllm.profile.records import EventRow, LedgerEntry, MechanismRun, PreferenceRelease, ProfileFragment, event_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    age_band TEXT NOT NULL,
    region TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    user_id TEXT NOT NULL,
    service TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    basket_id TEXT,
    price REAL NOT NULL,
    quantity INTEGER NOT NULL,
    region TEXT NOT NULL,
    device TEXT NOT NULL,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts);
CREATE TABLE IF NOT EXISTS fragments (
    user_id TEXT NOT NULL,
    fragment_key TEXT NOT NULL,
    service TEXT NOT NULL,
    category_id TEXT NOT NULL,
    text_ru TEXT NOT NULL,
    text_en TEXT NOT NULL,
    sensitive INTEGER NOT NULL,
    weight REAL NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (user_id, fragment_key)
);
CREATE TABLE IF NOT EXISTS item_popularity (
    item_id INTEGER PRIMARY KEY,
    purchases INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history_summaries (
    user_id TEXT NOT NULL,
    level TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (user_id, level, start_ts)
);
CREATE TABLE IF NOT EXISTS temporal_histograms (
    user_id TEXT NOT NULL,
    service TEXT NOT NULL,
    hours TEXT NOT NULL,
    weekdays TEXT NOT NULL,
    PRIMARY KEY (user_id, service)
);
CREATE TABLE IF NOT EXISTS privacy_ledger (
    user_id TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    epsilon_spent REAL NOT NULL,
    delta_spent REAL NOT NULL,
    releases INTEGER NOT NULL,
    PRIMARY KEY (user_id, window_start)
);
CREATE TABLE IF NOT EXISTS privacy_mechanisms (
    user_id TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    mechanism_index INTEGER NOT NULL,
    kind TEXT NOT NULL,
    noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, window_start, mechanism_index)
);
CREATE TABLE IF NOT EXISTS released_preferences (
    user_id TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    release_index INTEGER NOT NULL,
    released_ts INTEGER NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    sigma REAL NOT NULL,
    clip_norm REAL NOT NULL,
    history_digest TEXT NOT NULL,
    pref_long BLOB NOT NULL,
    pref_short BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS privacy_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_refresh (
    user_id TEXT PRIMARY KEY,
    commit_seq INTEGER NOT NULL
);
"""

# After SCHEMA, and after ``migrate_events_table`` gave a file written before client event ids the column:
# one stored event per (user, client event id); NULL ids (build-time events) are all distinct, as in PostgreSQL.
EVENT_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS events_by_event_id ON events (user_id, event_id)"
EVENT_COLUMNS = ("user_id", "service", "item_id", "kind", "ts", "basket_id", "price", "quantity", "region", "device",
                 "event_id")
INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) "
                "ON CONFLICT (user_id, event_id) DO NOTHING")

# A per-user version for readers that cache what they read about a user (``UserContextCache``): every row written to
# or deleted from what ``read_user_context`` reads (events, fragments, the DP release) stamps its user with the next
# value of one global counter, in the writing transaction itself (triggers: every writer is covered, the profile
# service's ingest, the refresh, retention and forget alike). Values never repeat, so a reader's cached copy is
# current exactly while the user's version equals the one it read first. ``profile_version_seq`` has no user_id
# column (forget leaves the counter alone); forget deletes the user's version row, which reads as "no version".
VERSIONED_TABLES = ("events", "fragments", "released_preferences")
_VERSION_STAMP = """
    UPDATE profile_version_seq SET seq = seq + 1 WHERE id = 1;
    INSERT INTO user_versions VALUES ({row}.user_id, (SELECT seq FROM profile_version_seq WHERE id = 1))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;"""
USER_VERSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_version_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO profile_version_seq VALUES (1, 0);
CREATE TABLE IF NOT EXISTS user_versions (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_{op.lower()}_stamps_version AFTER {op} ON {table} BEGIN"
    f"{''.join(_VERSION_STAMP.format(row=row) for row in rows)}\nEND;\n"
    for table in VERSIONED_TABLES
    for op, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))))

# Tables holding rows about one user (keyed by user_id): what forget(user) must empty.
USER_TABLES = ("events", "fragments", "users", "history_summaries", "temporal_histograms", "privacy_ledger",
               "privacy_mechanisms", "released_preferences", "pending_refresh")


def migrate_events_table(conn: sqlite3.Connection) -> None:
    """Give an events table written before client event ids its ``event_id`` column, then the unique index."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "event_id" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN event_id TEXT")
    conn.execute(EVENT_ID_INDEX)


def add_user_versions(conn: sqlite3.Connection) -> None:
    """The version tables and triggers; a file written before them gives every user it holds a first version, so
    their reads can be cached before their next write."""
    existed = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user_versions'").fetchone()
    conn.executescript(USER_VERSION_SCHEMA)
    if not existed:
        conn.execute("INSERT INTO user_versions SELECT user_id, 1 FROM ("
                     + " UNION ".join(f"SELECT user_id FROM {table}" for table in VERSIONED_TABLES) + ")")
        conn.execute("UPDATE profile_version_seq SET seq = max(seq, 1) WHERE id = 1")


class ProfileStore:
    """SQLite-backed profile store; one connection per thread (Triton runs requests on its own threads)."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        if not read_only:
            with self.connection() as conn:
                conn.executescript(SCHEMA)
                migrate_events_table(conn)
                add_user_versions(conn)
                conn.commit()

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.read_only:
                if not self.path.exists():
                    raise FileNotFoundError(f"profile database {self.path} does not exist")
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def add_users(self, users: Iterable) -> None:
        rows = [(u.user_id, u.age_band, u.region) for u in users]
        with self.connection() as conn:
            conn.executemany("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", rows)

    def add_events(self, events: Iterable) -> int:
        """Append events in one transaction; an event whose (user, ``event_id``) is already stored is skipped.
        Returns how many were stored."""
        rows = [event_row(e) for e in events]
        with self.connection() as conn:
            return conn.executemany(INSERT_EVENT, rows).rowcount

    def ingest_events(self, events: Iterable, commit_seq: int) -> list[bool]:
        """Store events and mark their users pending a refresh (``commit_seq``) in one transaction, durable at
        commit under the connection's ``synchronous`` level. Returns per event whether it was stored (False: its
        (user, ``event_id``) was stored before — a client's retry — and nothing was written for it)."""
        events = list(events)
        conn = self.connection()
        with conn:
            stored = [conn.execute(INSERT_EVENT, event_row(e)).rowcount == 1 for e in events]
            users = sorted({e.user_id for e, new in zip(events, stored) if new})
            conn.executemany("INSERT INTO pending_refresh VALUES (?, ?) ON CONFLICT (user_id) "
                             "DO UPDATE SET commit_seq = excluded.commit_seq", [(u, commit_seq) for u in users])
        return stored

    def pending_refreshes(self) -> list[tuple[str, int]]:
        """(user, latest commit seq) of users whose derived profile may lag their events, oldest commit first."""
        return list(self.connection().execute("SELECT user_id, commit_seq FROM pending_refresh ORDER BY commit_seq"))

    def clear_pending_refresh(self, user_id: str, up_to_seq: int | None = None) -> None:
        """The user's refresh covered every commit up to ``up_to_seq`` (None: drop the mark whatever it covers)."""
        query, params = "DELETE FROM pending_refresh WHERE user_id = ?", (user_id,)
        if up_to_seq is not None:
            query, params = query + " AND commit_seq <= ?", params + (up_to_seq,)
        with self.connection() as conn:
            conn.execute(query, params)

    def tune_connection(self, synchronous: str, busy_timeout_ms: int) -> None:
        """This thread's connection: ``synchronous`` FULL/EXTRA fsync the WAL at every commit (NORMAL does not);
        a write waits up to ``busy_timeout_ms`` for another connection's write lock."""
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        conn = self.connection()
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def events_of(self, user_id: str, kind: str | tuple[str, ...] | None = None,
                  limit: int | None = None) -> list[EventRow]:
        """The user's events in time order, optionally only one kind (e.g. "purchase") or a few kinds; ``limit``:
        only the newest ``limit`` of them (still in time order)."""
        query = ("SELECT rowid, user_id, service, item_id, kind, ts, basket_id, price, quantity, region, device "
                 "FROM events WHERE user_id = ?")
        params: tuple = (user_id,)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else tuple(kind)
            query += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += kinds
        if limit is not None:
            query = f"SELECT * FROM ({query} ORDER BY ts DESC, rowid DESC LIMIT ?)"
            params += (max(int(limit), 0),)
        cursor = self.connection().execute(query + " ORDER BY ts, rowid", params)
        return [EventRow._make(row[1:]) for row in cursor]

    def recent_events(self, user_id: str, limit: int) -> list[EventRow]:
        """The user's newest ``limit`` events, newest first (ties: the later inserted first)."""
        cursor = self.connection().execute(
            "SELECT user_id, service, item_id, kind, ts, basket_id, price, quantity, region, device FROM events "
            "WHERE user_id = ? ORDER BY ts DESC, rowid DESC LIMIT ?", (user_id, max(int(limit), 0)))
        return list(map(EventRow._make, cursor))

    def activity_of(self, user_id: str) -> list[tuple[str, str, int, int, int, float]]:
        """(service, kind, events, first ts, last ts, sum of price × quantity) per service and kind, ordered."""
        return [(service, kind, count, first, last, float(spend)) for service, kind, count, first, last, spend in
                self.connection().execute(
                    "SELECT service, kind, COUNT(*), MIN(ts), MAX(ts), SUM(price * quantity) FROM events "
                    "WHERE user_id = ? GROUP BY service, kind ORDER BY service, kind", (user_id,))]

    def demographics_of(self, user_id: str) -> tuple[str, str] | None:
        """The user's (age band, region), or None."""
        row = self.connection().execute("SELECT age_band, region FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return tuple(row) if row else None

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Reads on this thread inside the block see one commit (a WAL read transaction), however many writers
        commit meanwhile."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.rollback()  # read-only: ends the snapshot

    def expire_events(self, cutoffs: dict[str, int]) -> tuple[int, list[str]]:
        """Delete every event of service ``s`` older than ``cutoffs[s]`` (unix seconds), in one transaction;
        returns (events deleted, the users who had some, sorted)."""
        conn = self.connection()
        affected: set[str] = set()
        deleted = 0
        with conn:
            for service, cutoff in sorted(cutoffs.items()):
                params = (service, int(cutoff))
                affected.update(row[0] for row in conn.execute(
                    "SELECT DISTINCT user_id FROM events WHERE service = ? AND ts < ?", params))
                deleted += conn.execute("DELETE FROM events WHERE service = ? AND ts < ?", params).rowcount
        return deleted, sorted(affected)

    def user_ids(self) -> list[str]:
        cursor = self.connection().execute("SELECT DISTINCT user_id FROM events ORDER BY user_id")
        return [row[0] for row in cursor]

    def latest_timestamp(self) -> int | None:
        """The newest event time: the profile's clock for recency features."""
        row = self.connection().execute("SELECT MAX(ts) FROM events").fetchone()
        return row[0]

    def user_version(self, user_id: str) -> int | None:
        """The user's profile version (see ``USER_VERSION_SCHEMA``): it changes with every write to the user's
        events, fragments or DP release; None when the store cannot tell (the user has no version row since the
        versions were added, or was forgotten, or a read-only file predates them) — then nothing may be cached."""
        try:
            row = self.connection().execute("SELECT version FROM user_versions WHERE user_id = ?",
                                            (user_id,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else int(row[0])

    def replace_fragments(self, user_id: str, fragments: Iterable[ProfileFragment]) -> None:
        fragments = list(fragments)
        strangers = {f.user_id for f in fragments} - {user_id}
        if strangers:
            raise ValueError(f"replace_fragments for user {user_id!r} got fragments of other users: {sorted(strangers)}")
        rows = [
            (f.user_id, f.fragment_key, f.service, f.category_id, f.text_ru, f.text_en, int(f.sensitive), f.weight,
             np.asarray(f.vector, dtype=np.float32).tobytes())
            for f in fragments
        ]
        with self.connection() as conn:
            conn.execute("DELETE FROM fragments WHERE user_id = ?", (user_id,))
            conn.executemany("INSERT INTO fragments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def fragments_of(self, user_id: str) -> list[ProfileFragment]:
        cursor = self.connection().execute(
            "SELECT user_id, fragment_key, service, category_id, text_ru, text_en, sensitive, weight, vector "
            "FROM fragments WHERE user_id = ? ORDER BY weight DESC, fragment_key",
            (user_id,),
        )
        return [
            ProfileFragment(*row[:6], bool(row[6]), row[7], np.frombuffer(row[8], dtype=np.float32))
            for row in cursor
        ]

    def set_item_popularity(self, purchases_by_item: dict[int, int]) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM item_popularity")
            conn.executemany("INSERT INTO item_popularity VALUES (?, ?)", sorted(purchases_by_item.items()))

    def item_popularity(self) -> dict[int, int]:
        return dict(self.connection().execute("SELECT item_id, purchases FROM item_popularity"))

    # --- hierarchical history and temporal histograms (recllm.profile.history) ----------------------------------

    def replace_history(self, user_id: str, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Replace the user's (level, start_ts, end_ts, summary JSON) history rows."""
        with self.connection() as conn:
            conn.execute("DELETE FROM history_summaries WHERE user_id = ?", (user_id,))
            conn.executemany("INSERT INTO history_summaries VALUES (?, ?, ?, ?, ?)",
                             [(user_id, *row) for row in rows])

    def history_of(self, user_id: str, level: str | None = None) -> list[tuple[str, int, int, str]]:
        """(level, start_ts, end_ts, summary JSON) rows in time order, optionally of one level."""
        query = "SELECT level, start_ts, end_ts, summary FROM history_summaries WHERE user_id = ?"
        params: tuple = (user_id,)
        if level is not None:
            query += " AND level = ?"
            params += (level,)
        return list(self.connection().execute(query + " ORDER BY start_ts, level", params))

    def replace_temporal_histograms(self, user_id: str, rows: Iterable[tuple[str, list[int], list[int]]]) -> None:
        """Replace the user's (service, [24] hour counts, [7] weekday counts) rows."""
        with self.connection() as conn:
            conn.execute("DELETE FROM temporal_histograms WHERE user_id = ?", (user_id,))
            conn.executemany("INSERT INTO temporal_histograms VALUES (?, ?, ?, ?)",
                             [(user_id, service, json.dumps(hours), json.dumps(days)) for service, hours, days in rows])

    def temporal_histograms_of(self, user_id: str) -> list[tuple[str, list[int], list[int]]]:
        cursor = self.connection().execute(
            "SELECT service, hours, weekdays FROM temporal_histograms WHERE user_id = ? ORDER BY service", (user_id,))
        return [(service, json.loads(hours), json.loads(days)) for service, hours, days in cursor]

    # --- differential privacy: ledger and released preference vectors (recllm.profile.differential_privacy) -------------

    def privacy_secret(self) -> bytes:
        """The server secret that seeds release noise; created (32 random bytes) on first use by a writer."""
        conn = self.connection()
        if not self.read_only:
            with conn:
                conn.execute("INSERT OR IGNORE INTO privacy_secret VALUES (1, ?)", (secrets.token_bytes(32),))
        row = conn.execute("SELECT secret FROM privacy_secret WHERE id = 1").fetchone()
        if row is None:
            raise LookupError(f"profile database {self.path} has no privacy secret (it was never written)")
        return bytes(row[0])

    def privacy_ledger_of(self, user_id: str, window_start: int | None = None) -> list[LedgerEntry]:
        """The user's spent budget per window, oldest window first (optionally only one window)."""
        query = ("SELECT user_id, window_start, window_end, epsilon_spent, delta_spent, releases "
                 "FROM privacy_ledger WHERE user_id = ?")
        params: tuple = (user_id,)
        if window_start is not None:
            query += " AND window_start = ?"
            params += (window_start,)
        return [LedgerEntry(*row) for row in self.connection().execute(query + " ORDER BY window_start", params)]

    def released_preferences_of(self, user_id: str) -> PreferenceRelease | None:
        """The user's latest release, or None (never released, or a database built before releases existed)."""
        try:
            row = self.connection().execute(
                "SELECT user_id, window_start, release_index, released_ts, epsilon, delta, sigma, clip_norm, "
                "history_digest, pref_long, pref_short FROM released_preferences WHERE user_id = ?", (user_id,)
            ).fetchone()
        except sqlite3.OperationalError as error:
            if self.read_only and "no such table" in str(error):
                return None
            raise
        if row is None:
            return None
        return PreferenceRelease(*row[:9], np.frombuffer(row[9], dtype=np.float32),
                                 np.frombuffer(row[10], dtype=np.float32))

    def delete_released_preferences(self, user_id: str) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM released_preferences WHERE user_id = ?", (user_id,))

    def mechanisms_of(self, user_id: str, window_start: int | None = None) -> list[MechanismRun]:
        """The DP mechanisms run on the user's data, oldest window first, each window's in charge order."""
        query = ("SELECT user_id, window_start, kind, noise_multiplier, sample_rate, steps, ts "
                 "FROM privacy_mechanisms WHERE user_id = ?")
        params: tuple = (user_id,)
        if window_start is not None:
            query += " AND window_start = ?"
            params += (window_start,)
        try:
            rows = self.connection().execute(query + " ORDER BY window_start, mechanism_index", params).fetchall()
        except sqlite3.OperationalError as error:
            if self.read_only and "no such table" in str(error):  # a file written before mechanisms were recorded
                return []
            raise
        return [MechanismRun(*row) for row in rows]

    def charge_mechanism(self, run: MechanismRun, window_end: int, epsilon_budget: float, delta: float,
                         compose: ComposeEpsilon, release: PreferenceRelease | None = None) -> LedgerEntry | None:
        """Record ``run`` in its window, set the window's ledger to the composition of its mechanisms (``compose``
        at ``delta``) and store ``release`` when given, atomically; returns the new ledger entry. Writes nothing and
        returns None when the composed ε exceeds ``epsilon_budget`` or another writer released first
        (``privacy_ledger.next_ledger_entry`` decides)."""
        conn = self.connection()
        key = (run.user_id, run.window_start)
        conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading the ledger: no lost update
        try:
            row = conn.execute("SELECT releases FROM privacy_ledger WHERE user_id = ? AND window_start = ?",
                               key).fetchone()
            history = conn.execute(
                "SELECT kind, noise_multiplier, sample_rate, steps FROM privacy_mechanisms "
                "WHERE user_id = ? AND window_start = ? ORDER BY mechanism_index", key).fetchall()
            entry = next_ledger_entry(run, window_end, row[0] if row else 0, history, epsilon_budget, delta, compose,
                                      release)
            if entry is None:
                conn.rollback()
                return None
            conn.execute("INSERT INTO privacy_mechanisms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (*key, len(history), run.kind, float(run.noise_multiplier), float(run.sample_rate),
                          int(run.steps), int(run.ts)))
            conn.execute(
                "INSERT INTO privacy_ledger VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, window_start) DO UPDATE "
                "SET epsilon_spent = excluded.epsilon_spent, delta_spent = excluded.delta_spent, "
                "releases = excluded.releases", tuple(entry))
            if release is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO released_preferences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*release[:9], np.asarray(release.pref_long, np.float32).tobytes(),
                     np.asarray(release.pref_short, np.float32).tobytes()))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return entry

    # --- forget(user) without a connection: the ``recllm.profile.storage.ProfileStorage`` method ------------------

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete the user's rows from every table with a ``user_id`` column (secure delete, index rebuild, WAL
        truncate, so no copy lingers in free pages, index separators or the WAL); returns rows deleted per table."""
        conn = self.connection()
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                  if any(column[1] == "user_id" for column in conn.execute(f'PRAGMA table_info("{name}")'))]
        secure_delete = conn.execute("PRAGMA secure_delete").fetchone()[0]
        conn.execute("PRAGMA secure_delete = ON")
        try:
            with conn:
                removed = {table: conn.execute(f'DELETE FROM "{table}" WHERE user_id = ?', (user_id,)).rowcount
                           for table in tables}  # noqa: S608 (names come from sqlite_master)
                for table in tables:
                    conn.execute(f'REINDEX "{table}"')
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(secure_delete)}")
        return removed
