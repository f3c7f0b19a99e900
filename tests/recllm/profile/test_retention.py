"""TTL cleanup and forget(user), checked by scanning every table and the database files themselves; the chats to
forget are written by the chat engine itself."""

from __future__ import annotations

import sqlite3

import pytest

from builders.build_artifacts import fill_profile, store_fragments
from recllm.dialogue.chat_engine import ChatEngine, InProcessChatStages
from recllm.dialogue.session_store import SessionStore
from recllm.pipeline import RecPipeline
from recllm.profile.events import FEEDBACK_KINDS
from recllm.profile.feedback import StoreFeedbackSink
from recllm.profile.retention import DAY_S, RetentionConfig, expire_stale_events, forget_user
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.storage import PROFILE_URL_ENV


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


@pytest.fixture
def chat(test_artifacts, tmp_path):
    """A chat engine on a copy of the test build's profile, writing sessions and feedback as served."""
    profile = tmp_path / "profile.sqlite"
    source = sqlite3.connect(test_artifacts.root / "profile.sqlite")
    with sqlite3.connect(profile) as target:
        source.backup(target)
    source.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PROFILE_URL_ENV, str(profile))
        pipeline = RecPipeline.load(test_artifacts.root)
    store = ProfileStore(profile)
    engine = ChatEngine(SessionStore(tmp_path / "sessions.sqlite"), InProcessChatStages(pipeline),
                        feedback=StoreFeedbackSink(store, pipeline.catalog))
    return engine, store


def test_forget_removes_every_trace_of_the_users_chats_and_nothing_else(chat):
    """Sessions, their dialogue state and the feedback the chat wrote to the profile go with the user."""
    engine, store = chat
    user, other = store.user_ids()[:2]
    for session, who in (("chat-1", user), ("chat-2", user), ("chat-3", other)):
        for message in ("молоко на завтрак", "не то"):
            list(engine.turn(session, who, message, 5, "samokat"))
    assert store.events_of(user, kind=FEEDBACK_KINDS) and store.events_of(other, kind=FEEDBACK_KINDS)
    other_events = store.events_of(other)
    other_state = engine.sessions.load_state("chat-3", other)

    removed = forget_user(store, engine.sessions, user)

    assert removed["events"] > 0 and removed["chat_turns"] == 4 and removed["chat_sessions"] == 2
    assert removed["chat_state"] == 2
    for path in (store.path, engine.sessions.path):
        assert rows_mentioning(path, user) == []
        for suffix in ("", "-wal"):
            file = path.parent / (path.name + suffix)
            assert not file.exists() or user.encode() not in file.read_bytes()
    assert store.events_of(other) == other_events
    assert engine.sessions.load_state("chat-3", other) == other_state
    assert len(engine.sessions.history("chat-3", other)) == 2


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
