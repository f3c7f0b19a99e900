"""The unified user profile, embedded default: SQLite (WAL) for events, demographics and profile fragments.

One user id spans samokat, megamarket and kuper, so a user's rows from all three services sit together.
Profile fragments are short facts derived from the event log ("каждую неделю берёте овощи в Купере") with a
vector in item space; ``UserFragmentIndex`` puts one user's fragments in a FAISS index so retrieval only ever
touches that user's data. The profile issue adds validated real-time ingest, retention, differential privacy
and a PostgreSQL backend behind the same methods.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import faiss
import numpy as np

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
    device TEXT NOT NULL
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
"""


class EventRow(NamedTuple):
    """One stored event (a NamedTuple: profiles are read per request and tuples build fastest)."""

    user_id: str
    service: str
    item_id: int
    kind: str
    timestamp: int
    basket_id: str | None
    price: float
    quantity: int
    region: str
    device: str


@dataclass(frozen=True)
class ProfileFragment:
    """One fact about a user, in both languages, with a unit vector in item space."""

    user_id: str
    fragment_key: str
    service: str
    category_id: str
    text_ru: str
    text_en: str
    sensitive: bool
    weight: float
    vector: np.ndarray  # [D]

    def text(self, language: str) -> str:
        return self.text_en if language == "en" else self.text_ru


class ProfileStore:
    """SQLite-backed profile store; one connection per thread (Triton runs requests on its own threads)."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        if not read_only:
            with self.connection() as conn:
                conn.executescript(SCHEMA)

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
        rows = [
            (e.user_id, e.service, e.item_id, e.kind, e.timestamp, e.basket_id, e.price, e.quantity, e.region, e.device)
            for e in events
        ]
        with self.connection() as conn:
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def events_of(self, user_id: str, kind: str | None = None) -> list[EventRow]:
        """The user's events in time order, optionally only one kind (e.g. "purchase")."""
        query = ("SELECT user_id, service, item_id, kind, ts, basket_id, price, quantity, region, device "
                 "FROM events WHERE user_id = ?")
        params: tuple = (user_id,)
        if kind is not None:
            query += " AND kind = ?"
            params += (kind,)
        cursor = self.connection().execute(query + " ORDER BY ts", params)
        return list(map(EventRow._make, cursor))

    def user_ids(self) -> list[str]:
        cursor = self.connection().execute("SELECT DISTINCT user_id FROM events ORDER BY user_id")
        return [row[0] for row in cursor]

    def latest_timestamp(self) -> int | None:
        """The newest event time: the profile's clock for recency features."""
        row = self.connection().execute("SELECT MAX(ts) FROM events").fetchone()
        return row[0]

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

    # --- forget(user) without a connection: the ``recllm.profile_storage.ProfileStorage`` method ------------------

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


class UserFragmentIndex:
    """A FAISS inner-product index over one user's fragments (built per request: a user has tens of them)."""

    def __init__(self, fragments: list[ProfileFragment]):
        self.fragments = fragments
        self.index = None
        if fragments:
            vectors = np.stack([f.vector for f in fragments]).astype(np.float32)  # [F, D]
            self.index = faiss.IndexFlatIP(vectors.shape[1])
            self.index.add(vectors)

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[ProfileFragment, float]]:
        if self.index is None or k <= 0:
            return []
        scores, rows = self.index.search(query_vector.reshape(1, -1).astype(np.float32), min(k, len(self.fragments)))
        return [(self.fragments[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
