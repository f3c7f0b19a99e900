"""PostgreSQL tables and methods for what is derived from the event log: history summaries, temporal histograms,
the differential-privacy ledger and its mechanisms, released preference vectors and the server's privacy secret.

Mirrors the SQLite ``ProfileStore`` methods of the same names (``recllm.profile.history``, ``profile.refresh`` and
``profile.differential_privacy`` call them) with the same tables and return types; split from
``profile.postgres_store`` by role. The per-user tables are hash-partitioned by ``user_id`` like events, so a
user's derived rows share the partition number of their events. ``charge_mechanism`` serializes one user's
charges (preference releases, adapter updates) with a transaction-scoped advisory lock on the user, the PostgreSQL
counterpart of SQLite's ``BEGIN IMMEDIATE``: two writers can never both spend the same budget.
"""

from __future__ import annotations

import json
import secrets
from typing import Callable, Iterable

import numpy as np
import psycopg

from recllm.profile.privacy_ledger import ComposeEpsilon, next_ledger_entry
from recllm.profile.records import LedgerEntry, MechanismRun, PreferenceRelease

DERIVED_PARTITIONED_TABLES = ("history_summaries", "temporal_histograms", "privacy_ledger", "privacy_mechanisms",
                              "released_preferences")
RELEASE_LOCK_CLASS = 0x7270  # first key of pg_advisory_xact_lock(int, int); the second is hashtext(user_id)

DERIVED_TABLES = """
CREATE TABLE IF NOT EXISTS history_summaries (
    user_id TEXT COLLATE "C" NOT NULL,
    level TEXT COLLATE "C" NOT NULL,
    start_ts BIGINT NOT NULL,
    end_ts BIGINT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (user_id, level, start_ts)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS temporal_histograms (
    user_id TEXT COLLATE "C" NOT NULL,
    service TEXT COLLATE "C" NOT NULL,
    hours TEXT NOT NULL,
    weekdays TEXT NOT NULL,
    PRIMARY KEY (user_id, service)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS privacy_ledger (
    user_id TEXT COLLATE "C" NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    epsilon_spent DOUBLE PRECISION NOT NULL,
    delta_spent DOUBLE PRECISION NOT NULL,
    releases BIGINT NOT NULL,
    PRIMARY KEY (user_id, window_start)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS privacy_mechanisms (
    user_id TEXT COLLATE "C" NOT NULL,
    window_start BIGINT NOT NULL,
    mechanism_index BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    noise_multiplier DOUBLE PRECISION NOT NULL,
    sample_rate DOUBLE PRECISION NOT NULL,
    steps BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, window_start, mechanism_index)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS released_preferences (
    user_id TEXT COLLATE "C" NOT NULL,
    window_start BIGINT NOT NULL,
    release_index BIGINT NOT NULL,
    released_ts BIGINT NOT NULL,
    epsilon DOUBLE PRECISION NOT NULL,
    delta DOUBLE PRECISION NOT NULL,
    sigma DOUBLE PRECISION NOT NULL,
    clip_norm DOUBLE PRECISION NOT NULL,
    history_digest TEXT NOT NULL,
    pref_long BYTEA NOT NULL,
    pref_short BYTEA NOT NULL,
    PRIMARY KEY (user_id)
) PARTITION BY HASH (user_id);
CREATE TABLE IF NOT EXISTS privacy_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BYTEA NOT NULL
);
"""

RELEASE_COLUMNS = ("user_id, window_start, release_index, released_ts, epsilon, delta, sigma, clip_norm, "
                   "history_digest, pref_long, pref_short")
LEDGER_COLUMNS = "user_id, window_start, window_end, epsilon_spent, delta_spent, releases"
MECHANISM_COLUMNS = "user_id, window_start, kind, noise_multiplier, sample_rate, steps, ts"


class DerivedProfileMethods:
    """Methods over the derived tables, mixed into ``PostgresProfileStore``, whose ``connection()`` (this thread's
    autocommit connection) and ``config`` (for ``read_only``) they use."""

    config: object
    connection: Callable[[], psycopg.Connection]

    # --- hierarchical history and temporal histograms (recllm.profile.history) ------------------------------------

    def replace_history(self, user_id: str, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Replace the user's (level, start_ts, end_ts, summary JSON) history rows."""
        rows = [(user_id, *row) for row in rows]
        with self.connection().transaction() as tx:
            tx.connection.execute("DELETE FROM history_summaries WHERE user_id = %s", (user_id,))
            tx.connection.cursor().executemany(
                "INSERT INTO history_summaries (user_id, level, start_ts, end_ts, summary) "
                "VALUES (%s, %s, %s, %s, %s)", rows)

    def history_of(self, user_id: str, level: str | None = None) -> list[tuple[str, int, int, str]]:
        """(level, start_ts, end_ts, summary JSON) rows in time order, optionally of one level."""
        query = "SELECT level, start_ts, end_ts, summary FROM history_summaries WHERE user_id = %s"
        params: tuple = (user_id,)
        if level is not None:
            query += " AND level = %s"
            params += (level,)
        return list(self.connection().execute(query + " ORDER BY start_ts, level", params))

    def replace_temporal_histograms(self, user_id: str, rows: Iterable[tuple[str, list[int], list[int]]]) -> None:
        """Replace the user's (service, [24] hour counts, [7] weekday counts) rows."""
        rows = [(user_id, service, json.dumps(hours), json.dumps(days)) for service, hours, days in rows]
        with self.connection().transaction() as tx:
            tx.connection.execute("DELETE FROM temporal_histograms WHERE user_id = %s", (user_id,))
            tx.connection.cursor().executemany(
                "INSERT INTO temporal_histograms (user_id, service, hours, weekdays) VALUES (%s, %s, %s, %s)", rows)

    def temporal_histograms_of(self, user_id: str) -> list[tuple[str, list[int], list[int]]]:
        cursor = self.connection().execute(
            "SELECT service, hours, weekdays FROM temporal_histograms WHERE user_id = %s ORDER BY service", (user_id,))
        return [(service, json.loads(hours), json.loads(days)) for service, hours, days in cursor]

    # --- differential privacy: ledger and released preference vectors (recllm.profile.differential_privacy) ---------------

    def privacy_secret(self) -> bytes:
        """The server secret that seeds release noise; created (32 random bytes) on first use by a writer."""
        conn = self.connection()
        if not self.config.read_only:
            conn.execute("INSERT INTO privacy_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                         (secrets.token_bytes(32),))
        row = conn.execute("SELECT secret FROM privacy_secret WHERE id = 1").fetchone()
        if row is None:
            raise LookupError("profile database has no privacy secret (it was never written)")
        return bytes(row[0])

    def privacy_ledger_of(self, user_id: str, window_start: int | None = None) -> list[LedgerEntry]:
        """The user's spent budget per window, oldest window first (optionally only one window)."""
        query = f"SELECT {LEDGER_COLUMNS} FROM privacy_ledger WHERE user_id = %s"  # noqa: S608
        params: tuple = (user_id,)
        if window_start is not None:
            query += " AND window_start = %s"
            params += (window_start,)
        return [LedgerEntry(*row) for row in self.connection().execute(query + " ORDER BY window_start", params)]

    def released_preferences_of(self, user_id: str) -> PreferenceRelease | None:
        """The user's latest release, or None when none was released."""
        query = f"SELECT {RELEASE_COLUMNS} FROM released_preferences WHERE user_id = %s"  # noqa: S608
        row = self.connection().execute(query, (user_id,)).fetchone()
        if row is None:
            return None
        return PreferenceRelease(*row[:9], np.frombuffer(row[9], dtype=np.float32),
                                 np.frombuffer(row[10], dtype=np.float32))

    def delete_released_preferences(self, user_id: str) -> None:
        self.connection().execute("DELETE FROM released_preferences WHERE user_id = %s", (user_id,))

    def mechanisms_of(self, user_id: str, window_start: int | None = None) -> list[MechanismRun]:
        """The DP mechanisms run on the user's data, oldest window first, each window's in charge order."""
        query = f"SELECT {MECHANISM_COLUMNS} FROM privacy_mechanisms WHERE user_id = %s"  # noqa: S608
        params: tuple = (user_id,)
        if window_start is not None:
            query += " AND window_start = %s"
            params += (window_start,)
        cursor = self.connection().execute(query + " ORDER BY window_start, mechanism_index", params)
        return [MechanismRun(*row) for row in cursor]

    def charge_mechanism(self, run: MechanismRun, window_end: int, epsilon_budget: float, delta: float,
                         compose: ComposeEpsilon, release: PreferenceRelease | None = None) -> LedgerEntry | None:
        """Record ``run`` in its window, set the window's ledger to the composition of its mechanisms (``compose``
        at ``delta``) and store ``release`` when given, atomically; returns the new ledger entry. Writes nothing and
        returns None when the composed ε exceeds ``epsilon_budget`` or another writer released first
        (``privacy_ledger.next_ledger_entry`` decides)."""
        key = (run.user_id, run.window_start)
        with self.connection().transaction() as tx:
            conn = tx.connection
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (RELEASE_LOCK_CLASS, run.user_id))
            row = conn.execute("SELECT releases FROM privacy_ledger WHERE user_id = %s AND window_start = %s",
                               key).fetchone()
            history = conn.execute(
                "SELECT kind, noise_multiplier, sample_rate, steps FROM privacy_mechanisms "
                "WHERE user_id = %s AND window_start = %s ORDER BY mechanism_index", key).fetchall()
            entry = next_ledger_entry(run, window_end, row[0] if row else 0, history, epsilon_budget, delta, compose,
                                      release)
            if entry is None:
                return None  # nothing written; the lock goes with the (empty) transaction
            conn.execute(
                "INSERT INTO privacy_mechanisms (user_id, window_start, mechanism_index, kind, noise_multiplier, "
                "sample_rate, steps, ts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (*key, len(history), run.kind, float(run.noise_multiplier), float(run.sample_rate), int(run.steps),
                 int(run.ts)))
            conn.execute(
                f"INSERT INTO privacy_ledger ({LEDGER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
                "ON CONFLICT (user_id, window_start) DO UPDATE SET epsilon_spent = EXCLUDED.epsilon_spent, "
                "delta_spent = EXCLUDED.delta_spent, releases = EXCLUDED.releases", tuple(entry))
            if release is not None:
                conn.execute(
                    f"INSERT INTO released_preferences ({RELEASE_COLUMNS}) "  # noqa: S608
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET "
                    + ", ".join(f"{c} = EXCLUDED.{c}" for c in RELEASE_COLUMNS.split(", ")[1:]),
                    (*release[:9], np.asarray(release.pref_long, np.float32).tobytes(),
                     np.asarray(release.pref_short, np.float32).tobytes()))
        return entry
