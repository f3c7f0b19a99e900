"""TTL cleanup and forget(user), checked by scanning every table and the database files themselves."""

from __future__ import annotations

import sqlite3

import pytest

from builders.build_artifacts import fill_profile, store_fragments
from recllm.dialogue.session_store import SessionStore, next_turn_context
from recllm.profile.retention import DAY_S, RetentionConfig, expire_stale_events, forget_user
from recllm.profile.sqlite_store import ProfileStore


@pytest.fixture
def stores(tmp_path, ecosystem, item_vectors):
    store = fill_profile(ProfileStore(tmp_path / "profile.sqlite"), ecosystem)
    store_fragments(ecosystem, store, item_vectors)
    return store, SessionStore(tmp_path / "sessions.sqlite")


def rows_mentioning(path, needle: str) -> list[tuple[str, tuple]]:
    conn = sqlite3.connect(path)
    found = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608
            if any(isinstance(v, str) and needle in v for v in row):
                found.append((table, row))
    return found


def test_forget_removes_every_trace_of_the_user_and_nothing_else(stores, ecosystem):
    store, sessions = stores
    user, other = store.user_ids()[:2]
    context = next_turn_context([], "хочу кофе", "samokat", None)
    sessions.history("chat-1", user)
    sessions.append("chat-1", user, "хочу кофе", context, "samokat", [1], [100.0])
    sessions.history("chat-2", other)
    sessions.append("chat-2", other, "хочу кофе", context, "samokat", [2], [100.0])
    other_events = len(store.events_of(other))

    removed = forget_user(store, sessions, user)

    assert removed["events"] > 0 and removed["chat_turns"] == 1 and removed["chat_sessions"] == 1
    for path in (store.path, sessions.path):
        assert rows_mentioning(path, user) == []
        for suffix in ("", "-wal"):
            file = path.parent / (path.name + suffix)
            assert not file.exists() or user.encode() not in file.read_bytes()
    assert len(store.events_of(other)) == other_events
    assert sessions.history("chat-2", other)


def test_expiry_drops_old_events_and_the_facts_built_on_them(stores, ecosystem, item_vectors):
    store, _ = stores
    user = store.user_ids()[0]
    now = max(e.timestamp for e in ecosystem.events)
    short = RetentionConfig(ttl_days={"samokat": 7, "kuper": 7, "megamarket": 7})
    deleted = expire_stale_events(store, ecosystem.catalog, item_vectors, now, short)
    assert deleted > 0
    assert all(e.timestamp >= now - 7 * DAY_S for e in store.events_of(user))
    services_left = {e.service for e in store.events_of(user, kind="purchase")}
    assert {f.service for f in store.fragments_of(user)} <= services_left


def test_retention_config_names_the_bad_service():
    with pytest.raises(ValueError, match="ozon"):
        RetentionConfig(ttl_days={"samokat": 1, "kuper": 1, "megamarket": 1, "ozon": 1})
    with pytest.raises(ValueError, match="> 0"):
        RetentionConfig(ttl_days={"samokat": 0, "kuper": 1, "megamarket": 1})
