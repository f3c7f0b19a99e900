"""A streamed chat turn in-process: items first, then text deltas; the session shapes the next turn."""

from __future__ import annotations

import pytest

from recllm.dialogue.chat_engine import ChatEngine, InProcessChatStages, ItemsChunk, TextChunk
from recllm.dialogue.session_store import SessionStore
from recllm.pipeline import RecPipeline
from recllm.rag.rec_request import RequestError


@pytest.fixture(scope="module")
def engine(test_artifacts, tmp_path_factory):
    pipeline = RecPipeline.load(test_artifacts.root)
    sessions = SessionStore(tmp_path_factory.mktemp("sessions") / "sessions.sqlite")
    return ChatEngine(sessions, InProcessChatStages(pipeline))


@pytest.fixture(scope="module")
def warm_user(engine):
    return engine.stages.pipeline.retriever.profile.user_ids()[0]


def run_turn(engine, session, user, message, service="samokat"):
    chunks = list(engine.turn(session, user, message, 5, service))
    items = chunks[0]
    assert isinstance(items, ItemsChunk) and all(isinstance(c, TextChunk) for c in chunks[1:])
    return items, "".join(c.text for c in chunks[1:])


def test_turn_yields_items_then_text(engine, warm_user):
    items, text = run_turn(engine, "engine-1", warm_user, "что приготовить на ужин, чтобы было полезно?")
    assert items.service == "samokat" and len(items.arrays["item_ids"]) == 5
    assert text.strip()


def test_follow_up_refines_and_never_repeats_items(engine, warm_user):
    first, _ = run_turn(engine, "engine-2", warm_user, "хочу что-нибудь вкусное")
    second, _ = run_turn(engine, "engine-2", warm_user, "без сахара", service="")
    assert second.service == "samokat"
    assert not set(first.arrays["item_ids"].tolist()) & set(second.arrays["item_ids"].tolist())
    catalog = engine.stages.pipeline.catalog
    assert all("sugar_free" in catalog.get(int(i)).tags for i in second.arrays["item_ids"])


def test_a_failed_turn_is_not_recorded(engine, warm_user):
    with pytest.raises(RequestError):
        list(engine.turn("engine-3", warm_user, "   ", 5, "samokat"))
    assert engine.sessions.history("engine-3", warm_user) == []
