"""Chat sessions for the streaming entry: turns persisted in SQLite, keyed by ``session_id``.

A session belongs to one user: a session id presented with another user id is refused, so one user's dialogue
can never leak into another's. Each finished turn is recorded with the dialogue state it led to in one
transaction (``record_turn``: the message, the query retrieval ran, the items shown and their prices, the price cap,
and the state JSON; ``append`` and ``save_state`` do one part each), and ``load_state`` reads the state back: ``recllm.dialogue.dialogue_state`` decides what a follow-up means from it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recllm.rag.rec_request import RequestError

MAX_TURNS_KEPT = 50

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_turns (
    session_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    message TEXT NOT NULL,
    effective_query TEXT NOT NULL,
    service TEXT NOT NULL,
    item_ids TEXT NOT NULL,
    item_prices TEXT NOT NULL,
    max_price REAL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, turn)
);
CREATE TABLE IF NOT EXISTS chat_state (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    state TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ChatTurn:
    turn: int
    user_id: str
    message: str
    effective_query: str
    service: str
    item_ids: tuple[int, ...]
    item_prices: tuple[float, ...]
    max_price: float | None


@dataclass(frozen=True)
class TurnContext:
    """What a finished turn ran: the query retrieval got, its service, the items it excluded, the price cap."""

    effective_query: str
    service: str  # "" = infer
    exclude_item_ids: frozenset[int]
    max_price: float | None
    turn: int


class SessionStore:
    USER_TABLES = ("chat_state", "chat_turns", "chat_sessions")  # rows keyed by user_id: what forgetting a user deletes here

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        with self.connection() as conn:
            conn.executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Two chat instances share the file: wait for the other's write lock instead of failing.
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def claim(self, session_id: str, user_id: str) -> None:
        """Bind the session to its first user atomically; any other user is refused from then on."""
        with self.connection() as conn:
            conn.execute("INSERT OR IGNORE INTO chat_sessions VALUES (?, ?)", (session_id, user_id))
            owner = conn.execute("SELECT user_id FROM chat_sessions WHERE session_id = ?", (session_id,)).fetchone()
        if owner[0] != user_id:
            raise RequestError("session_id belongs to another user: start a new session")

    def history(self, session_id: str, user_id: str) -> list[ChatTurn]:
        """The session's last turns, oldest first (claims the session for ``user_id`` if it is new)."""
        self.claim(session_id, user_id)
        rows = self.connection().execute(
            "SELECT turn, user_id, message, effective_query, service, item_ids, item_prices, max_price "
            "FROM chat_turns WHERE session_id = ? ORDER BY turn DESC LIMIT ?",
            (session_id, MAX_TURNS_KEPT),
        ).fetchall()
        turns = [
            ChatTurn(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), tuple(json.loads(r[6])), r[7])
            for r in reversed(rows)
        ]
        return turns

    def append(self, session_id: str, user_id: str, message: str, context: TurnContext, service: str,
               item_ids: list[int], item_prices: list[float]) -> int:
        """Record a finished turn; returns its number. The number is assigned inside the INSERT, so two turns of
        one session finishing at once (two chat instances) both land, one after the other."""
        self.claim(session_id, user_id)
        with self.connection() as conn:
            return _insert_turn(conn, session_id, user_id, message, context, service, item_ids, item_prices)

    def record_turn(self, session_id: str, user_id: str, message: str, context: TurnContext, service: str,
                    item_ids: list[int], item_prices: list[float], state_json: str) -> int:
        """``append`` and ``save_state`` in one transaction: a turn lands with the dialogue state it led to, or
        neither does (a failure in between cannot leave a turn whose state says it never happened)."""
        self.claim(session_id, user_id)
        with self.connection() as conn:
            turn = _insert_turn(conn, session_id, user_id, message, context, service, item_ids, item_prices)
            conn.execute("INSERT OR REPLACE INTO chat_state VALUES (?, ?, ?)", (session_id, user_id, state_json))
        return turn

    def load_state(self, session_id: str, user_id: str) -> str | None:
        """The session's dialogue state as saved (JSON), None for a new session."""
        self.claim(session_id, user_id)
        row = self.connection().execute("SELECT state FROM chat_state WHERE session_id = ?", (session_id,)).fetchone()
        return row[0] if row else None

    def save_state(self, session_id: str, user_id: str, state_json: str) -> None:
        self.claim(session_id, user_id)
        with self.connection() as conn:
            conn.execute("INSERT OR REPLACE INTO chat_state VALUES (?, ?, ?)", (session_id, user_id, state_json))


def _insert_turn(conn: sqlite3.Connection, session_id: str, user_id: str, message: str, context: TurnContext,
                 service: str, item_ids: list[int], item_prices: list[float]) -> int:
    """The turn's row with the next number of its session (assigned inside the INSERT), and the session trimmed to
    its last ``MAX_TURNS_KEPT`` turns; inside the caller's transaction."""
    cursor = conn.execute(
        "INSERT INTO chat_turns SELECT ?, COALESCE(MAX(turn), -1) + 1, ?, ?, ?, ?, ?, ?, ?, ? "
        "FROM chat_turns WHERE session_id = ? RETURNING turn",
        (session_id, user_id, message, context.effective_query, service,
         json.dumps([int(i) for i in item_ids]), json.dumps([float(p) for p in item_prices]),
         context.max_price, int(time.time()), session_id),
    )
    turn = cursor.fetchone()[0]
    conn.execute("DELETE FROM chat_turns WHERE session_id = ? AND turn <= ?", (session_id, turn - MAX_TURNS_KEPT))
    return turn
