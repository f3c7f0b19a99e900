"""The unified user profile in PostgreSQL: the second ``ProfileStorage`` backend, for deployments beyond one file.

Same tables, columns and return types as the embedded SQLite ``ProfileStore`` (``EventRow``, ``ProfileFragment``
with float32 vectors stored as raw bytes), so the builders, retrieval and ranking run unchanged on either. What
differs is layout: the per-user tables (``users``, ``events``, ``fragments`` and the derived ones of
``profile.postgres_derived``: history, histograms, privacy ledger, releases) are ``PARTITION BY HASH (user_id)``
into ``partitions`` partitions, so one user's rows live in one partition of each table, a per-user read touches one
partition's index, and partitions can later move to their own tablespaces or, with a sharding extension, machines.
``events.event_seq`` (an identity column) plays the role of SQLite's rowid: it orders events with equal timestamps
by insertion, as SQLite returns them.

Each thread gets its own connection (Triton and the gRPC profile service run requests on fixed pools of threads),
in autocommit mode so a read never holds a snapshot open; writes that must be atomic run in explicit transactions;
a connection the server dropped fails the one call that meets it and is replaced on the next. Connections live
until ``close()``. Bulk writes use ``COPY``.

``forget_user`` deletes the user's rows from every table with a ``user_id`` column in one transaction, then runs
``VACUUM`` on the partitions that held them, so no dead tuple or index entry still points at the user's data.
PostgreSQL does not zero freed space inside pages, and the WAL keeps the inserts until its segments are recycled;
erasure on disk beyond that is a matter of encrypted storage, not of this class.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from recllm.profile.records import EventRow, ProfileFragment, event_row
from recllm.profile.postgres_derived import DERIVED_PARTITIONED_TABLES, DERIVED_TABLES, DerivedProfileMethods

log = logging.getLogger(__name__)

PARTITIONED_TABLES = ("users", "events", "fragments", *DERIVED_PARTITIONED_TABLES)
MAX_PARTITIONS = 1024
SCHEMA_LOCK_KEY = 0x7265636C6C6D  # pg_advisory_xact_lock key: "recllm"; serializes concurrent schema creation

PARENT_TABLES = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT COLLATE "C" NOT NULL,
    age_band TEXT NOT NULL,
    region TEXT NOT NULL,
    PRIMARY KEY (user_id)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS events (
    user_id TEXT COLLATE "C" NOT NULL,
    service TEXT NOT NULL,
    item_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    ts BIGINT NOT NULL,
    basket_id TEXT,
    price DOUBLE PRECISION NOT NULL,
    quantity BIGINT NOT NULL,
    region TEXT NOT NULL,
    device TEXT NOT NULL,
    event_seq BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id TEXT COLLATE "C"
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS fragments (
    user_id TEXT COLLATE "C" NOT NULL,
    fragment_key TEXT COLLATE "C" NOT NULL,
    service TEXT NOT NULL,
    category_id TEXT NOT NULL,
    text_ru TEXT NOT NULL,
    text_en TEXT NOT NULL,
    sensitive BOOLEAN NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    vector BYTEA NOT NULL,
    PRIMARY KEY (user_id, fragment_key)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS item_popularity (
    item_id BIGINT PRIMARY KEY,
    purchases BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_refresh (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    commit_seq BIGINT NOT NULL
);
ALTER TABLE events ADD COLUMN IF NOT EXISTS event_id TEXT COLLATE "C";
"""

# Indexes on a partitioned table are created on every partition, present and future.
INDEXES = """
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts, event_seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_event_id ON events (user_id, event_id);
"""

# The per-user profile version (see ``recllm.profile.sqlite_store.USER_VERSION_SCHEMA``): every row written to or
# deleted from events, fragments or the DP release stamps its user with a fresh value of one sequence, in the writing
# transaction (row triggers on the partitioned parents reach every partition, COPY included).
USER_VERSION_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS profile_version_seq;
CREATE TABLE IF NOT EXISTS user_versions (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION stamp_user_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO user_versions VALUES (OLD.user_id, nextval('profile_version_seq'))
            ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO user_versions VALUES (NEW.user_id, nextval('profile_version_seq'))
            ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version;
    END IF;
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE OR REPLACE TRIGGER {table}_stamps_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION stamp_user_version();\n"
    for table in ("events", "fragments", "released_preferences"))

EVENT_COLUMNS = ("user_id", "service", "item_id", "kind", "ts", "basket_id", "price", "quantity", "region", "device")
FRAGMENT_COLUMNS = ("user_id", "fragment_key", "service", "category_id", "text_ru", "text_en", "sensitive", "weight",
                    "vector")
INSERT_EVENT = ("INSERT INTO events (" + ", ".join(EVENT_COLUMNS) + ", event_id) VALUES ("
                + ", ".join(["%s"] * (len(EVENT_COLUMNS) + 1)) + ") ON CONFLICT (user_id, event_id) DO NOTHING")
SYNCHRONOUS_COMMIT = {"NORMAL": "off", "FULL": "on", "EXTRA": "on"}  # SQLite's levels → synchronous_commit
SELECT_EVENTS = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM events WHERE user_id = %s"
SELECT_FRAGMENTS = ("SELECT " + ", ".join(FRAGMENT_COLUMNS) + " FROM fragments WHERE user_id = %s "
                    "ORDER BY weight DESC, fragment_key")


@dataclass(frozen=True)
class PostgresProfileConfig:
    """Where the profile lives and how its per-user tables are partitioned.

    ``partitions`` is fixed when the tables are created; opening an existing database with another count is an
    error rather than a silent re-layout. ``vacuum_after_forget`` runs VACUUM on the partitions a forgotten user's
    rows were in (seconds on large partitions; turn off only if a scheduled VACUUM follows every forget).
    """

    url: str
    partitions: int = 16
    read_only: bool = False
    connect_timeout_s: int = 10
    vacuum_after_forget: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgresProfileConfig.url must start with postgresql:// or postgres://, "
                             f"got {redacted(self.url)!r}")
        if not isinstance(self.partitions, int) or isinstance(self.partitions, bool) or \
                not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"PostgresProfileConfig.partitions must be an int in 1..{MAX_PARTITIONS}, "
                             f"got {self.partitions!r}")
        if not isinstance(self.connect_timeout_s, int) or self.connect_timeout_s < 1:
            raise ValueError(f"PostgresProfileConfig.connect_timeout_s must be an int >= 1, "
                             f"got {self.connect_timeout_s!r}")


def redacted(url: object) -> str:
    """The URL without its password, for messages and logs."""
    if not isinstance(url, str):
        return repr(url)
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url.split("@", 1)[-1] if "@" in url else url
    user, host, port, dbname = (parts.get(key, "") for key in ("user", "host", "port", "dbname"))
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def partition_name(table: str, remainder: int) -> str:
    return f"{table}_p{remainder:03d}"


def partition_statements(table: str, partitions: int) -> list[sql.Composed]:
    return [sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
        sql.Identifier(partition_name(table, r)), sql.Identifier(table), sql.Literal(partitions), sql.Literal(r))
        for r in range(partitions)]


class PostgresProfileStore(DerivedProfileMethods):
    """PostgreSQL-backed profile store with the methods of ``recllm.profile.storage.ProfileStorage``."""

    def __init__(self, config: PostgresProfileConfig):
        self.config = config
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._connections_lock = threading.Lock()
        if config.read_only:
            self._check_schema_exists()
        else:
            self._create_schema()

    # --- connections -----------------------------------------------------------------------------------------------

    def connection(self) -> psycopg.Connection:
        """This thread's connection (autocommit; reopened if the server dropped it)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self.config.url, autocommit=True, connect_timeout=self.config.connect_timeout_s)
            if self.config.read_only:  # the session default covers single statements outside explicit transactions
                conn.execute("SET default_transaction_read_only = on")
            self._local.conn = conn
            with self._connections_lock:
                self._connections = [c for c in self._connections if not c.closed] + [conn]
        return conn

    def close(self) -> None:
        """Close every thread's connection (the store reconnects if used again)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> "PostgresProfileStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        conn = self.connection()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            existing = self.partition_count("events")
            if existing and existing != self.config.partitions:
                raise ValueError(f"PostgresProfileConfig.partitions={self.config.partitions} but "
                                 f"{redacted(self.config.url)} already holds events in {existing} partitions")
            conn.execute(PARENT_TABLES)
            conn.execute(DERIVED_TABLES)
            for table in PARTITIONED_TABLES:
                for statement in partition_statements(table, self.config.partitions):
                    conn.execute(statement)
            conn.execute(INDEXES)
            versions_existed = self.relation_exists("user_versions")
            conn.execute(USER_VERSION_SCHEMA)
            if not versions_existed:  # a database written before the versions: every user it holds gets a first one
                conn.execute("INSERT INTO user_versions SELECT user_id, nextval('profile_version_seq') FROM ("
                             "SELECT user_id FROM events UNION SELECT user_id FROM fragments "
                             "UNION SELECT user_id FROM released_preferences) AS users_with_rows")

    def _check_schema_exists(self) -> None:
        if self.partition_count("events") == 0:
            raise LookupError(f"profile database {redacted(self.config.url)} has no partitioned events table; "
                              "open it once with read_only=False to create the schema")

    def relation_exists(self, name: str) -> bool:
        return self.connection().execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]

    def partition_count(self, table: str) -> int:
        """How many partitions ``table`` has (0 when it does not exist or is not partitioned)."""
        row = self.connection().execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %s AND p.relnamespace = current_schema()::regnamespace", (table,)).fetchone()
        return row[0]

    # --- ProfileStorage ------------------------------------------------------------------------------------------

    def add_users(self, users: Iterable) -> None:
        rows = [(u.user_id, u.age_band, u.region) for u in users]
        with self.connection().transaction() as tx:
            tx.connection.cursor().executemany(
                "INSERT INTO users (user_id, age_band, region) VALUES (%s, %s, %s) ON CONFLICT (user_id) "
                "DO UPDATE SET age_band = EXCLUDED.age_band, region = EXCLUDED.region", rows)

    def add_events(self, events: Iterable) -> int:
        """Append events in one transaction; an event whose (user, ``event_id``) is already stored is skipped.
        Returns how many were stored. Events without client ids (builds, imports) go in by ``COPY``."""
        rows = [event_row(e) for e in events]
        if all(row[-1] is None for row in rows):
            self._copy("events", EVENT_COLUMNS, [row[:-1] for row in rows])
            return len(rows)
        with self.connection().transaction() as tx:
            return sum(tx.connection.execute(INSERT_EVENT, row).rowcount for row in rows)

    def ingest_events(self, events: Iterable, commit_seq: int) -> list[bool]:
        """Store events and mark their users pending a refresh (``commit_seq``) in one transaction, durable at
        commit when ``synchronous_commit`` is on (``tune_connection``). Returns per event whether it was stored
        (False: its (user, ``event_id``) was stored before — a client's retry — and nothing was written for it)."""
        events = list(events)
        with self.connection().transaction() as tx:
            conn = tx.connection
            stored = [conn.execute(INSERT_EVENT, event_row(e)).rowcount == 1 for e in events]
            users = sorted({e.user_id for e, new in zip(events, stored) if new})
            conn.cursor().executemany(
                "INSERT INTO pending_refresh (user_id, commit_seq) VALUES (%s, %s) ON CONFLICT (user_id) "
                "DO UPDATE SET commit_seq = EXCLUDED.commit_seq", [(u, commit_seq) for u in users])
        return stored

    def user_version(self, user_id: str) -> int | None:
        """The user's profile version (``USER_VERSION_SCHEMA``); None: no version row (never written since the
        versions were added, or forgotten; or a database from before the versions, opened read-only) — then nothing
        may be cached."""
        try:
            row = self.connection().execute("SELECT version FROM user_versions WHERE user_id = %s",
                                            (user_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return None if row is None else int(row[0])

    def pending_refreshes(self) -> list[tuple[str, int]]:
        """(user, latest commit seq) of users whose derived profile may lag their events, oldest commit first."""
        return list(self.connection().execute(
            "SELECT user_id, commit_seq FROM pending_refresh ORDER BY commit_seq, user_id"))

    def clear_pending_refresh(self, user_id: str, up_to_seq: int | None = None) -> None:
        """The user's refresh covered every commit up to ``up_to_seq`` (None: drop the mark whatever it covers)."""
        if up_to_seq is None:
            self.connection().execute("DELETE FROM pending_refresh WHERE user_id = %s", (user_id,))
        else:
            self.connection().execute("DELETE FROM pending_refresh WHERE user_id = %s AND commit_seq <= %s",
                                      (user_id, up_to_seq))

    def tune_connection(self, synchronous: str, busy_timeout_ms: int) -> None:
        """This thread's connection: ``synchronous`` FULL/EXTRA wait for the WAL flush at commit (NORMAL does
        not: ``synchronous_commit = off``); a statement waits up to ``busy_timeout_ms`` for a lock."""
        if synchronous not in SYNCHRONOUS_COMMIT:
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        conn = self.connection()
        conn.execute(sql.SQL("SET synchronous_commit = {}").format(sql.Literal(SYNCHRONOUS_COMMIT[synchronous])))
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(int(busy_timeout_ms))))

    def events_of(self, user_id: str, kind: str | tuple[str, ...] | None = None,
                  limit: int | None = None) -> list[EventRow]:
        """The user's events in time order (ties in insertion order), optionally only one kind (e.g. "purchase")
        or a few kinds; ``limit``: only the newest ``limit`` of them (still in time order)."""
        query, params = SELECT_EVENTS, [user_id]
        if kind is not None:
            query += " AND kind = ANY(%s)"
            params.append([kind] if isinstance(kind, str) else list(kind))
        if limit is None:
            cursor = self.connection().execute(query + " ORDER BY ts, event_seq", params)
            return list(map(EventRow._make, cursor))
        cursor = self.connection().execute(query + " ORDER BY ts DESC, event_seq DESC LIMIT %s",
                                           (*params, max(int(limit), 0)))
        return list(map(EventRow._make, cursor))[::-1]

    def recent_events(self, user_id: str, limit: int) -> list[EventRow]:
        """The user's newest ``limit`` events, newest first (ties: the later inserted first)."""
        cursor = self.connection().execute(SELECT_EVENTS + " ORDER BY ts DESC, event_seq DESC LIMIT %s",
                                           (user_id, max(int(limit), 0)))
        return list(map(EventRow._make, cursor))

    def activity_of(self, user_id: str) -> list[tuple[str, str, int, int, int, float]]:
        """(service, kind, events, first ts, last ts, sum of price × quantity) per service and kind, ordered."""
        return [(service, kind, count, first, last, float(spend)) for service, kind, count, first, last, spend in
                self.connection().execute(
                    'SELECT service, kind, count(*), min(ts), max(ts), sum(price * quantity) FROM events '
                    'WHERE user_id = %s GROUP BY service, kind ORDER BY service COLLATE "C", kind COLLATE "C"',
                    (user_id,))]

    def demographics_of(self, user_id: str) -> tuple[str, str] | None:
        """The user's (age band, region), or None."""
        row = self.connection().execute("SELECT age_band, region FROM users WHERE user_id = %s",
                                        (user_id,)).fetchone()
        return tuple(row) if row else None

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Reads on this thread inside the block see one snapshot (a REPEATABLE READ, READ ONLY transaction)."""
        conn = self.connection()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def expire_events(self, cutoffs: dict[str, int]) -> tuple[int, list[str]]:
        """Delete every event of service ``s`` older than ``cutoffs[s]`` (unix seconds), in one transaction;
        returns (events deleted, the users who had some, sorted)."""
        affected: set[str] = set()
        deleted = 0
        with self.connection().transaction() as tx:
            for service, cutoff in sorted(cutoffs.items()):
                per_user = tx.connection.execute(  # grouped on the server: one row per user, not per event
                    "WITH gone AS (DELETE FROM events WHERE service = %s AND ts < %s RETURNING user_id) "
                    "SELECT user_id, count(*) FROM gone GROUP BY user_id", (service, int(cutoff))).fetchall()
                deleted += sum(count for _, count in per_user)
                affected.update(user_id for user_id, _ in per_user)
        return deleted, sorted(affected)

    def user_ids(self) -> list[str]:
        cursor = self.connection().execute("SELECT DISTINCT user_id FROM events ORDER BY user_id")
        return [row[0] for row in cursor]

    def latest_timestamp(self) -> int | None:
        """The newest event time: the profile's clock for recency features."""
        return self.connection().execute("SELECT max(ts) FROM events").fetchone()[0]

    def replace_fragments(self, user_id: str, fragments: Iterable[ProfileFragment]) -> None:
        fragments = list(fragments)
        strangers = {f.user_id for f in fragments} - {user_id}
        if strangers:
            raise ValueError(f"replace_fragments for user {user_id!r} got fragments of other users: "
                             f"{sorted(strangers)}")
        rows = [
            (f.user_id, f.fragment_key, f.service, f.category_id, f.text_ru, f.text_en, bool(f.sensitive),
             float(f.weight), np.asarray(f.vector, dtype=np.float32).tobytes())
            for f in fragments
        ]
        with self.connection().transaction() as tx:
            tx.connection.execute("DELETE FROM fragments WHERE user_id = %s", (user_id,))
            self._copy_in(tx.connection, "fragments", FRAGMENT_COLUMNS, rows)

    def fragments_of(self, user_id: str) -> list[ProfileFragment]:
        cursor = self.connection().execute(SELECT_FRAGMENTS, (user_id,))
        return [ProfileFragment(*row[:8], np.frombuffer(row[8], dtype=np.float32)) for row in cursor]

    def set_item_popularity(self, purchases_by_item: dict[int, int]) -> None:
        with self.connection().transaction() as tx:
            tx.connection.execute("DELETE FROM item_popularity")
            self._copy_in(tx.connection, "item_popularity", ("item_id", "purchases"),
                          sorted(purchases_by_item.items()))

    def item_popularity(self) -> dict[int, int]:
        return dict(self.connection().execute("SELECT item_id, purchases FROM item_popularity"))

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete the user's rows from every table with a ``user_id`` column, atomically, then VACUUM the partitions
        they were in (see the module docstring for what that does and does not erase); returns rows per table."""
        conn = self.connection()
        removed: dict[str, int] = {}
        touched: set[str] = set()
        with conn.transaction():
            for table in self.user_tables():
                cursor = conn.execute(sql.SQL(
                    "WITH deleted AS (DELETE FROM {} WHERE user_id = %s RETURNING tableoid) "
                    "SELECT tableoid::regclass::text, count(*) FROM deleted GROUP BY 1").format(sql.Identifier(table)),
                    (user_id,))
                counts = dict(cursor.fetchall())
                removed[table] = sum(counts.values())
                touched.update(counts)
        if self.config.vacuum_after_forget:
            for relation in sorted(touched):  # autocommit connection: VACUUM may not run inside a transaction
                conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(relation)))
        log.info("forgot user: %s (vacuumed %d partitions)", removed, len(touched))
        return removed

    # --- helpers ---------------------------------------------------------------------------------------------------

    def user_tables(self) -> list[str]:
        """Top-level tables of the current schema with a ``user_id`` column (partitions are reached via parents)."""
        cursor = self.connection().execute(
            "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition AND a.attname = 'user_id' AND NOT a.attisdropped ORDER BY c.relname")
        return [row[0] for row in cursor]

    def _copy(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        with self.connection().transaction() as tx:
            self._copy_in(tx.connection, table, columns, rows)

    @staticmethod
    def _copy_in(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with conn.cursor().copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
