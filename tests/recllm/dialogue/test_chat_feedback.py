"""Feedback in a chat turn reaches the user's profile: «не то», «подешевле», «без сахара» are stored as events of
their own kinds (once, however often the turn is retried), and the next session of that user — only that user —
ranks with them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from recllm.dialogue.chat_engine import ChatEngine, InProcessChatStages, ItemsChunk
from recllm.dialogue.session_store import SessionStore
from recllm.pipeline import RecPipeline
from recllm.profile.events import FEEDBACK_CHEAPER, FEEDBACK_DIET_KINDS, FEEDBACK_KINDS, FEEDBACK_REJECT
from recllm.profile.feedback import StoreFeedbackSink
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.storage import PROFILE_URL_ENV


@pytest.fixture(scope="module")
def profile_copy(test_artifacts, tmp_path_factory):
    """The test build's profile copied, so the feedback these tests write stays out of the shared build."""
    path = tmp_path_factory.mktemp("feedback_profile") / "profile.sqlite"
    source = sqlite3.connect(test_artifacts.root / "profile.sqlite")
    with sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    return path


@pytest.fixture(scope="module")
def pipeline(test_artifacts, profile_copy):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PROFILE_URL_ENV, str(profile_copy))
        return RecPipeline.load(test_artifacts.root)


@pytest.fixture(scope="module")
def store(profile_copy):
    return ProfileStore(profile_copy)


class FlakySessions(SessionStore):
    """Fails the next ``record_turn`` once: a turn that broke after its feedback was written, as a retry meets it."""

    fail_next = False

    def record_turn(self, *args, **kwargs):
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full while recording the turn")
        return super().record_turn(*args, **kwargs)


@pytest.fixture(scope="module")
def engine(pipeline, store, tmp_path_factory):
    sessions = FlakySessions(tmp_path_factory.mktemp("feedback_sessions") / "sessions.sqlite")
    return ChatEngine(sessions, InProcessChatStages(pipeline), feedback=StoreFeedbackSink(store, pipeline.catalog))


@pytest.fixture(scope="module")
def users(store):
    """Users without feedback yet (the shared test build may hold some: live chat tests write it there)."""
    return [u for u in store.user_ids() if not store.events_of(u, kind=FEEDBACK_KINDS)]


def shown(engine, session, user, message, service=""):
    chunks = list(engine.turn(session, user, message, 5, service))
    items = chunks[0] if chunks and isinstance(chunks[0], ItemsChunk) else None
    return [] if items is None else items.arrays["item_ids"].tolist()


def feedback_rows(store, user, kind=FEEDBACK_KINDS):
    return store.events_of(user, kind=kind)


def test_a_rejected_list_is_stored_and_not_shown_first_in_the_next_session(engine, store, users):
    user, other = users[0], users[1]
    # a request that names no kind: a kind («йогурт») would hold the lists to the few yoghurts there are
    other_before = shown(engine, "fb-other-1", other, "что-нибудь на завтрак", "samokat")
    first = shown(engine, "fb-reject-1", user, "что-нибудь на завтрак", "samokat")
    assert first and feedback_rows(store, user, FEEDBACK_REJECT) == []
    shown(engine, "fb-reject-1", user, "не то")
    rejected = feedback_rows(store, user, FEEDBACK_REJECT)
    assert sorted(e.item_id for e in rejected) == sorted(first)
    assert {(e.device, e.region, e.service) for e in rejected} == {("chat", "unknown", "samokat")}

    again = shown(engine, "fb-reject-2", user, "что-нибудь на завтрак", "samokat")  # a new session, same request
    assert again and again[0] not in first
    assert set(again) != set(first)
    # another user's list is exactly what it was, and their profile holds no feedback
    assert shown(engine, "fb-other-2", other, "что-нибудь на завтрак", "samokat") == other_before
    assert feedback_rows(store, other) == []
    assert engine.stages.pipeline.ranking.read_context(other).feedback.is_empty


def test_cheaper_and_a_diet_become_profile_preferences(engine, store, users, pipeline):
    user = users[2]
    first = shown(engine, "fb-cheaper-1", user, "молоко на завтрак", "samokat")
    shown(engine, "fb-cheaper-1", user, "подешевле")
    shown(engine, "fb-cheaper-1", user, "без сахара")
    cheaper = feedback_rows(store, user, FEEDBACK_CHEAPER)
    assert sorted(e.item_id for e in cheaper) == sorted(first)
    assert [e.price for e in cheaper] == [pipeline.catalog.get(e.item_id).price for e in cheaper]
    assert len(feedback_rows(store, user, FEEDBACK_DIET_KINDS["sugar_free"])) == 1
    context = pipeline.ranking.read_context(user)
    categories = {pipeline.catalog.get(i).category_id for i in first}
    assert set(context.feedback.too_expensive) == categories
    assert context.feedback.diets["sugar_free"] == 1
    # the reranker's adjustment reads them: an item with the stated diet is raised, a pricey one lowered
    from recllm.rag.reranker import feedback_adjustment

    sugar_free = next(i.item_id for i in pipeline.catalog.items  # outside the categories found too expensive
                      if "sugar_free" in i.tags and i.category_id not in context.feedback.too_expensive)
    pricey = max(first, key=lambda i: pipeline.catalog.get(i).price)
    adjust = feedback_adjustment(np.array([sugar_free, pricey]), context.feedback, pipeline.catalog)
    assert adjust[0] > 0 and adjust[1] < 0


def test_a_retried_turn_writes_its_feedback_once(engine, store, users):
    user = users[3]
    shown(engine, "fb-retry", user, "сок для детей", "samokat")
    engine.sessions.fail_next = True
    with pytest.raises(OSError, match="disk full"):
        shown(engine, "fb-retry", user, "что-нибудь другое")
    written = feedback_rows(store, user)
    assert written and all(e.kind == FEEDBACK_REJECT for e in written)
    shown(engine, "fb-retry", user, "что-нибудь другое")  # the client retries the turn that failed
    assert feedback_rows(store, user) == written


def test_asking_why_often_makes_the_users_explanations_detailed(engine, store, users, pipeline):
    from recllm.explanation.causal_explanations import explanation_style

    user = users[4]
    config = pipeline.ranking.explanation
    assert explanation_style(pipeline.ranking.read_context(user), config) == "short"
    shown(engine, "fb-why", user, "йогурт на завтрак", "samokat")
    for _ in range(config.detailed_after_why):
        shown(engine, "fb-why", user, "почему это?")
    asked = feedback_rows(store, user, "feedback_explain")
    assert len(asked) == config.detailed_after_why
    context = pipeline.ranking.read_context(user)
    assert context.feedback.explain_requests == config.detailed_after_why
    assert explanation_style(context, config) == "detailed"


def test_asking_for_detailed_explanations_sets_the_style_in_the_profile(engine, store, users, pipeline):
    """«объясняй подробнее» is kept in the profile: the next request's explanations are detailed at once, without
    the «почему?» count the style is otherwise learned from; «покороче» takes it back."""
    from recllm.explanation.causal_explanations import explanation_style

    user = users[5]
    config = pipeline.ranking.explanation
    assert explanation_style(pipeline.ranking.read_context(user), config) == "short"
    shown(engine, "fb-style", user, "кефир на завтрак", "samokat")
    shown(engine, "fb-style", user, "объясняй подробнее")
    assert len(feedback_rows(store, user, "feedback_style_detailed")) == 1
    assert explanation_style(pipeline.ranking.read_context(user), config) == "detailed"
    shown(engine, "fb-style", user, "покороче")
    assert explanation_style(pipeline.ranking.read_context(user), config) == "short"


def test_a_meat_free_wish_becomes_a_profile_preference_the_reranker_reads(engine, store, users, pipeline):
    """«без мяса» is held by the catalog's derived mark (``diet_marks``), and the profile learns it like a tag."""
    from recllm.catalog.diet_marks import has_meat_or_fish
    from recllm.rag.reranker import feedback_adjustment

    user = users[4]
    shown(engine, "fb-vegetarian", user, "ужин без мяса", "samokat")
    assert len(feedback_rows(store, user, FEEDBACK_DIET_KINDS["vegetarian"])) == 1
    context = pipeline.ranking.read_context(user)
    assert context.feedback.diets["vegetarian"] == 1
    catalog = pipeline.catalog
    meat = next(i.item_id for i in catalog.items if has_meat_or_fish(i, catalog))
    greens = next(i.item_id for i in catalog.items if i.category_id == "grocery/vegetables")
    adjust = feedback_adjustment(np.array([greens, meat]), context.feedback, catalog)
    assert adjust[0] > adjust[1]
