"""Retention and deletion for the profile (either backend): TTL cleanup of stale events and ``forget(user)``.

``expire_stale_events`` drops events older than their service's time-to-live and refreshes every user it touched
(fragments, history, temporal histograms, the DP preference release: ``profile.refresh``), so no profile fact
outlives the events behind it. ``forget_user`` removes every trace of one
user from the profile database (events, demographics, fragments, history summaries, temporal histograms, the
privacy ledger with its recorded DP mechanisms and the released preference vectors) and the chat-session database
(session claims and turns); per-user FAISS indexes are built per request from fragments, so they go with them.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Protocol
from dataclasses import dataclass, field

import numpy as np

from recllm.catalog.product_catalog import SERVICES, Catalog
from recllm.profile.refresh import refresh_user_profile
from recllm.profile.storage import ProfileStorage

log = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass
class RetentionConfig:
    """Time-to-live of events per service, in days (quick-commerce habits go stale faster than marketplace ones)."""

    ttl_days: dict[str, float] = field(default_factory=lambda: {"samokat": 180.0, "kuper": 365.0, "megamarket": 730.0})

    def __post_init__(self) -> None:
        unknown = set(self.ttl_days) - set(SERVICES)
        if unknown:
            raise ValueError(f"RetentionConfig.ttl_days has unknown services {sorted(unknown)}")
        missing = set(SERVICES) - set(self.ttl_days)
        if missing:
            raise ValueError(f"RetentionConfig.ttl_days lacks services {sorted(missing)}")
        bad = {s: d for s, d in self.ttl_days.items() if not d > 0}
        if bad:
            raise ValueError(f"RetentionConfig.ttl_days must be > 0 days, got {bad}")


def expire_stale_events(store: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, now_ts: int,
                        config: RetentionConfig) -> int:
    """Delete events past their service's TTL; rebuild the derived profile of affected users. Returns events deleted."""
    cutoffs = {service: now_ts - int(days * DAY_S) for service, days in config.ttl_days.items()}
    deleted, affected = store.expire_events(cutoffs)
    for user_id in affected:
        # Everything derived from events (fragments, history, histograms, the DP preference release) is rebuilt.
        refresh_user_profile(store, catalog, item_vectors, user_id, now_ts)
    log.info("expired %d events of %d users", deleted, len(affected))
    return deleted


class SqliteUserData(Protocol):
    """Another SQLite database holding rows keyed by ``user_id`` (the chat sessions), forgotten together with the
    profile; typed here so the profile does not depend on the dialogue package."""

    USER_TABLES: tuple[str, ...]

    def connection(self) -> sqlite3.Connection: ...


def forget_user(store: ProfileStorage, sessions: SqliteUserData, user_id: str) -> dict[str, int]:
    """Remove every row about ``user_id`` from the profile (either backend: ``ProfileStorage.forget_user``) and the
    chat-session database; returns rows deleted per table."""
    removed = dict(store.forget_user(user_id))
    conn = sessions.connection()
    conn.execute("PRAGMA secure_delete = ON")  # overwrite deleted cells: no copy left in free pages
    with conn:
        for table in sessions.USER_TABLES:
            removed[table] = conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount  # noqa: S608
        for table in sessions.USER_TABLES:
            # Interior index pages keep copies of deleted keys as separators: rebuilding drops them.
            conn.execute(f"REINDEX {table}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and nothing lingers in the WAL file
    log.info("forgot user: %s", removed)
    return removed
