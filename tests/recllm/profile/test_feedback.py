"""Feedback events: validated and stored once per (user, event id), dated by the profile's clock, summarized into
the signals the ranking reads, and carried in the serialized user context."""

from __future__ import annotations

import pytest

from builders.build_artifacts import fill_profile
from recllm.profile.event_schema import EventValidationError
from recllm.profile.events import (EVENT_KINDS, FEEDBACK_CHEAPER, FEEDBACK_DIET_KINDS, FEEDBACK_EXPLAIN,
                                   FEEDBACK_KINDS, FEEDBACK_REJECT, FEEDBACK_STYLE_KINDS)
from recllm.profile.feedback import StoreFeedbackSink, feedback_event, feedback_event_id, feedback_signals
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.user_context import UserContext, read_user_context


@pytest.fixture
def store(tmp_path, ecosystem):
    return fill_profile(ProfileStore(tmp_path / "profile.sqlite"), ecosystem)


@pytest.fixture
def sink(store, catalog):
    return StoreFeedbackSink(store, catalog, clock=lambda: 2_000_000_000.0)


def test_feedback_kinds_are_event_kinds_and_every_diet_tag_is_a_catalog_filter():
    from recllm.rag.rec_request import REQUIRED_TAG_PATTERNS

    assert set(FEEDBACK_KINDS) < set(EVENT_KINDS)
    assert set(FEEDBACK_DIET_KINDS) == set(REQUIRED_TAG_PATTERNS)


def test_event_ids_are_stable_per_session_turn_kind_and_item():
    same = feedback_event_id("s1", 3, FEEDBACK_REJECT, 7)
    assert same == feedback_event_id("s1", 3, FEEDBACK_REJECT, 7) and len(same) <= 128
    others = {feedback_event_id(*key) for key in [("s2", 3, FEEDBACK_REJECT, 7), ("s1", 4, FEEDBACK_REJECT, 7),
                                                 ("s1", 3, FEEDBACK_CHEAPER, 7), ("s1", 3, FEEDBACK_REJECT, 8)]}
    assert same not in others and len(others) == 4


def test_the_sink_stores_once_and_dates_by_the_profile_clock(store, sink, catalog):
    user = store.user_ids()[0]
    latest = store.latest_timestamp()
    assert sink.now() == latest < 2_000_000_000  # not the wall clock: a reaction never moves the profile clock
    item = catalog.items[0]
    events = [feedback_event(catalog, user, "s1", 0, kind, item.item_id, sink.now())
              for kind in (FEEDBACK_REJECT, FEEDBACK_CHEAPER)]
    assert sink.write(events) == 2
    assert sink.write(events) == 0  # the retry
    stored = store.events_of(user, kind=FEEDBACK_KINDS)
    assert [(e.kind, e.item_id, e.service, e.price, e.device) for e in stored] == [
        (FEEDBACK_REJECT, item.item_id, item.service, item.price, "chat"),
        (FEEDBACK_CHEAPER, item.item_id, item.service, item.price, "chat")]
    assert store.latest_timestamp() == latest


def test_a_bad_feedback_batch_writes_nothing(store, sink, catalog):
    user = store.user_ids()[0]
    good = feedback_event(catalog, user, "s1", 0, FEEDBACK_REJECT, 1, sink.now())
    bad = good.__class__(**{**good.__dict__, "user_id": "bad user!", "event_id": "x"})
    with pytest.raises(EventValidationError, match="user_id"):
        sink.write([good, bad])
    assert store.events_of(user, kind=FEEDBACK_KINDS) == []
    with pytest.raises(ValueError, match="kind must be one of"):
        feedback_event(catalog, user, "s1", 0, "purchase", 1, sink.now())


def test_signals_summarize_the_feedback_and_travel_in_the_context(store, sink, catalog, item_vectors):
    user, other = store.user_ids()[:2]
    cheap, dear = sorted((i for i in catalog.items if i.category_id == catalog.items[0].category_id),
                         key=lambda i: i.price)[:2]
    now = sink.now()
    sink.write([feedback_event(catalog, user, "s1", 0, FEEDBACK_REJECT, cheap.item_id, now),
                feedback_event(catalog, user, "s1", 1, FEEDBACK_CHEAPER, dear.item_id, now),
                feedback_event(catalog, user, "s1", 1, FEEDBACK_CHEAPER, cheap.item_id, now),
                feedback_event(catalog, user, "s1", 2, FEEDBACK_DIET_KINDS["vegan"], cheap.item_id, now),
                feedback_event(catalog, user, "s1", 3, FEEDBACK_EXPLAIN, cheap.item_id, now)])
    signals = feedback_signals(store.events_of(user), catalog)
    assert signals.rejected == {cheap.item_id: now}
    assert signals.too_expensive == {cheap.category_id: cheap.price}  # the lowest price called too high
    assert signals.diets == {"vegan": 1} and signals.explain_requests == 1
    context = read_user_context(store, catalog, item_vectors, user)
    assert context.feedback == signals
    assert [e.kind for e in context.purchases] == ["purchase"] * len(context.purchases)
    assert UserContext.from_bytes(context.to_bytes(), user).feedback == signals
    assert read_user_context(store, catalog, item_vectors, other).feedback.is_empty


def test_the_latest_style_request_wins_and_travels_in_the_context(store, sink, catalog, item_vectors):
    """«объясняй подробнее», later «покороче»: the user's explanations are short again; the style crosses the
    ensemble inside USER_CONTEXT, and a context carrying an unknown style is refused."""
    user = store.user_ids()[2]
    item, now = catalog.items[0].item_id, sink.now()
    sink.write([feedback_event(catalog, user, "s2", 0, FEEDBACK_STYLE_KINDS["detailed"], item, now - 60)])
    assert read_user_context(store, catalog, item_vectors, user).feedback.style == "detailed"
    sink.write([feedback_event(catalog, user, "s2", 1, FEEDBACK_STYLE_KINDS["short"], item, now)])
    context = read_user_context(store, catalog, item_vectors, user)
    assert context.feedback.style == "short" and context.feedback.is_empty   # style changes no ranking
    assert UserContext.from_bytes(context.to_bytes(), user).feedback == context.feedback
    forged = context.to_bytes().replace(b'"style":"short"', b'"style":"loud"')
    with pytest.raises(ValueError, match="feedback style must be one of"):
        UserContext.from_bytes(forged, user)


def test_events_of_reads_a_few_kinds_at_once(store):
    user = store.user_ids()[0]
    both = store.events_of(user, kind=("purchase", "view"))
    assert both == [e for e in store.events_of(user) if e.kind in ("purchase", "view")]
    assert store.events_of(user, kind="purchase") == store.events_of(user, kind=("purchase",))
