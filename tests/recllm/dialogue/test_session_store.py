"""Chat sessions: follow-ups refine the running query, shown items are excluded, "cheaper" caps the price;
sessions persist per user and keep only the last turns."""

from __future__ import annotations

import sqlite3
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.dialogue.session_store import (
    CHEAPER_FACTOR,
    MAX_TURNS_KEPT,
    ChatTurn,
    SessionStore,
    TurnContext,
    asks_cheaper,
    is_follow_up,
    next_turn_context,
)
from recllm.rag.rec_request import RequestError

DINNER = ChatTurn(turn=0, user_id="u1", message="что приготовить на ужин?", effective_query="что приготовить на ужин?",
                  service="kuper", item_ids=(11, 12, 13), item_prices=(300.0, 100.0, 200.0), max_price=None)


def context(turn: int, query: str = "кофе", max_price: float | None = None) -> TurnContext:
    return TurnContext(query, "", frozenset(), max_price, turn)


# --- next_turn_context ---------------------------------------------------------------------------------------------

def test_first_turn_passes_the_message_through():
    assert next_turn_context([], "хочу полезный ужин", "", None) == TurnContext(
        "хочу полезный ужин", "", frozenset(), None, 0)
    assert next_turn_context([], "кофе", "samokat", 500.0) == TurnContext("кофе", "samokat", frozenset(), 500.0, 0)


def test_cheaper_follow_up_refines_the_previous_query():
    new = next_turn_context([DINNER], "подешевле", "", None)
    assert new.effective_query == "что приготовить на ужин? подешевле"
    assert new.service == "kuper"
    assert new.exclude_item_ids == frozenset({11, 12, 13})
    assert new.turn == 1
    assert new.max_price == pytest.approx(200.0 * CHEAPER_FACTOR)
    assert new.max_price < statistics.median(DINNER.item_prices)


@pytest.mark.parametrize("message", ["подешевле", "Дешевле!", "a bit cheaper please", "что-то дешёвое"])
def test_every_cheaper_wording_caps_the_price(message):
    assert next_turn_context([DINNER], message, "", None).max_price == pytest.approx(160.0)


def test_cheaper_keeps_a_lower_earlier_cap():
    earlier = ChatTurn(0, "u1", "кофе под 100 рублей", "кофе под 100 рублей", "samokat", (1, 2, 3),
                       (90.0, 95.0, 99.0), 100.0)
    assert next_turn_context([earlier], "подешевле", "", None).max_price == pytest.approx(95.0 * CHEAPER_FACTOR)
    cheap_cap = ChatTurn(0, "u1", "кофе", "кофе", "samokat", (1, 2, 3), (500.0, 600.0, 700.0), 50.0)
    assert next_turn_context([cheap_cap], "подешевле", "", None).max_price == 50.0


@settings(max_examples=100, deadline=None)
@given(prices=st.lists(st.floats(1.0, 1e5), min_size=1, max_size=15).filter(lambda p: len(p) % 2 == 1))
def test_cheaper_cap_is_below_the_shown_median_for_odd_counts(prices):
    last = ChatTurn(0, "u1", "кофе", "кофе", "samokat", tuple(range(len(prices))), tuple(prices), None)
    cap = next_turn_context([last], "подешевле", "", None).max_price
    assert 0 < cap < statistics.median(prices)


def test_cheaper_cap_is_below_the_shown_median_for_even_counts():
    last = ChatTurn(0, "u1", "кофе", "кофе", "samokat", (1, 2), (100.0, 1000.0), None)
    assert next_turn_context([last], "подешевле", "", None).max_price < statistics.median([100.0, 1000.0])


def test_follow_up_without_cheaper_keeps_the_previous_budget_and_service():
    budgeted = ChatTurn(0, "u1", "ужин до 500 рублей", "ужин до 500 рублей", "samokat", (1,), (250.0,), 500.0)
    new = next_turn_context([budgeted], "без сахара", "", None)
    assert (new.effective_query, new.service, new.max_price) == ("ужин до 500 рублей без сахара", "samokat", 500.0)


def test_a_stated_budget_replaces_the_previous_one():
    budgeted = ChatTurn(0, "u1", "ужин до 500 рублей", "ужин до 500 рублей", "samokat", (1,), (250.0,), 500.0)
    assert next_turn_context([budgeted], "до 900 рублей", "", 900.0).max_price == 900.0


def test_a_service_hint_overrides_the_sessions_service():
    assert next_turn_context([DINNER], "а в самокате?", "samokat", None).service == "samokat"


def test_a_long_new_message_starts_a_new_topic():
    message = "теперь нужен подарок коллеге на день рождения"
    new = next_turn_context([DINNER], message, "", None)
    assert new.effective_query == message
    assert new.service == ""  # inferred afresh, not carried over from the dinner topic
    assert new.max_price is None
    assert new.turn == 1


def test_items_shown_in_any_earlier_turn_are_excluded():
    second = ChatTurn(1, "u1", "подешевле", "что приготовить на ужин? подешевле", "kuper", (21, 22), (90.0, 80.0),
                      160.0)
    new = next_turn_context([DINNER, second], "ещё", "", None)
    assert new.exclude_item_ids == frozenset({11, 12, 13, 21, 22})
    assert new.effective_query == "что приготовить на ужин? подешевле ещё"
    assert new.turn == 2


@pytest.mark.parametrize("message, follow_up", [
    ("подешевле", True), ("а без сахара?", True), ("something else please now", True),  # 4 words: the limit
    ("теперь нужен подарок для коллеги", False), ("what should I cook for dinner?", False),
])
def test_is_follow_up_counts_words(message, follow_up):
    assert is_follow_up(message) is follow_up


@pytest.mark.parametrize("message, cheaper", [
    ("подешевле", True), ("CHEAPER", True), ("on a budget", True), ("дешёвое", True),
    ("дорогое", False), ("дешевизна", False), ("без сахара", False),
])
def test_asks_cheaper(message, cheaper):
    assert asks_cheaper(message) is cheaper


# --- SessionStore --------------------------------------------------------------------------------------------------

@pytest.fixture()
def sessions(tmp_path) -> SessionStore:
    return SessionStore(tmp_path / "sessions.db")


def test_session_round_trip(sessions, tmp_path):
    assert sessions.history("s1", "u1") == []
    first = next_turn_context([], "что приготовить на ужин?", "", None)
    sessions.append("s1", "u1", "что приготовить на ужин?", first, "kuper", [11, 12, 13], [300.0, 100.0, 200.0])
    second = next_turn_context(sessions.history("s1", "u1"), "подешевле", "", None)
    sessions.append("s1", "u1", "подешевле", second, "kuper", [21], [90.5])
    reopened = SessionStore(tmp_path / "sessions.db")
    assert reopened.history("s1", "u1") == [
        ChatTurn(0, "u1", "что приготовить на ужин?", "что приготовить на ужин?", "kuper", (11, 12, 13),
                 (300.0, 100.0, 200.0), None),
        ChatTurn(1, "u1", "подешевле", "что приготовить на ужин? подешевле", "kuper", (21,), (90.5,),
                 pytest.approx(160.0)),
    ]


def test_sessions_are_separate(sessions):
    sessions.append("s1", "u1", "кофе", context(0), "samokat", [1], [100.0])
    sessions.append("s2", "u1", "чай", context(0, "чай"), "kuper", [2], [50.0])
    assert [t.message for t in sessions.history("s1", "u1")] == ["кофе"]
    assert [t.message for t in sessions.history("s2", "u1")] == ["чай"]


def test_a_session_id_of_another_user_is_refused(sessions):
    sessions.append("s1", "u1", "кофе", context(0), "samokat", [1], [100.0])
    with pytest.raises(RequestError, match="session_id belongs to another user: start a new session"):
        sessions.history("s1", "u2")
    assert len(sessions.history("s1", "u1")) == 1


def test_only_the_last_turns_are_kept(sessions, tmp_path):
    for turn in range(MAX_TURNS_KEPT + 10):
        sessions.append("s1", "u1", f"m{turn}", context(turn, f"q{turn}"), "samokat", [turn], [10.0])
    history = sessions.history("s1", "u1")
    assert [t.turn for t in history] == list(range(10, MAX_TURNS_KEPT + 10))
    stored = sqlite3.connect(tmp_path / "sessions.db").execute(
        "SELECT COUNT(*), MIN(turn) FROM chat_turns WHERE session_id = 's1'").fetchone()
    assert stored == (MAX_TURNS_KEPT, 10)  # older rows are deleted, not only hidden


def test_two_turns_computed_from_the_same_history_both_land(tmp_path):
    """Two chat instances may finish turns of one session from the same history: neither may be lost."""
    from recllm.dialogue.session_store import SessionStore, next_turn_context

    store = SessionStore(tmp_path / "race.sqlite")
    context = next_turn_context([], "хочу что-нибудь вкусное", "samokat", None)
    first = store.append("race", "u1", "хочу что-нибудь вкусное", context, "samokat", [1, 2], [10.0, 20.0])
    second = store.append("race", "u1", "хочу что-нибудь вкусное", context, "samokat", [3], [30.0])
    assert (first, second) == (0, 1)
    assert [t.item_ids for t in store.history("race", "u1")] == [(1, 2), (3,)]


def test_follow_ups_exclude_only_items_of_the_current_topic():
    from recllm.dialogue.session_store import ChatTurn, next_turn_context

    history = [
        ChatTurn(0, "u1", "хочу кофе домой", "хочу кофе домой", "samokat", (1, 2), (100.0, 200.0), None),
        ChatTurn(1, "u1", "что приготовить на ужин?", "что приготовить на ужин?", "samokat", (3, 4), (50.0, 60.0),
                 None),
        ChatTurn(2, "u1", "другое", "что приготовить на ужин? другое", "samokat", (5,), (70.0,), None),
    ]
    follow_up = next_turn_context(history, "не то", "", None)
    assert follow_up.exclude_item_ids == frozenset({3, 4, 5})
    fresh = next_turn_context(history, "нужен подарок коллеге на день рождения", "", None)
    assert fresh.exclude_item_ids == frozenset() and fresh.service == ""


def test_short_new_requests_start_a_topic_and_refinements_continue_it():
    from recllm.dialogue.session_store import ChatTurn, is_follow_up, next_turn_context

    assert is_follow_up("подешевле") and is_follow_up("не то") and is_follow_up("без сахара")
    assert is_follow_up("something else") and is_follow_up("до 300 рублей")
    assert not is_follow_up("хочу купить шампунь") and not is_follow_up("🙂🙂")
    history = [ChatTurn(0, "u1", "ужин под 500 рублей", "ужин под 500 рублей", "samokat", (1,), (400.0,), 500.0)]
    fresh = next_turn_context(history, "хочу купить шампунь", "", None)
    assert fresh.effective_query == "хочу купить шампунь" and fresh.max_price is None and fresh.service == ""


def test_a_long_chain_of_refinements_keeps_the_topic_and_the_newest_message():
    from recllm.dialogue.session_store import MAX_EFFECTIVE_QUERY_CHARS, ChatTurn, next_turn_context

    topic = "что приготовить на ужин?"
    history = [ChatTurn(0, "u1", topic, topic, "samokat", (1,), (100.0,), None)]
    chained = topic + " ещё" * (MAX_EFFECTIVE_QUERY_CHARS // 4)
    history.append(ChatTurn(1, "u1", "ещё", chained, "samokat", (2,), (90.0,), None))
    context = next_turn_context(history, "другое", "", None)
    assert context.effective_query == f"{topic} другое"


def test_a_new_session_belongs_to_whoever_opened_it_first(tmp_path):
    """Claiming happens on the first read, before any turn is written: a second user racing in is refused."""
    from recllm.dialogue.session_store import SessionStore

    store = SessionStore(tmp_path / "claims.sqlite")
    assert store.history("fresh", "u1") == []
    with pytest.raises(RequestError, match="another user"):
        store.history("fresh", "u2")
