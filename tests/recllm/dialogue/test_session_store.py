"""Chat sessions: turns and dialogue state persist per session, a session belongs to one user, only the last turns
are kept. (What a follow-up means is the dialogue state's business: tests/recllm/dialogue/test_dialogue_state.py.)"""

from __future__ import annotations

import sqlite3

import pytest

from recllm.dialogue.session_store import MAX_TURNS_KEPT, ChatTurn, SessionStore, TurnContext
from recllm.rag.rec_request import RequestError


def context(turn: int, query: str = "кофе", max_price: float | None = None) -> TurnContext:
    return TurnContext(query, "", frozenset(), max_price, turn)


# --- SessionStore --------------------------------------------------------------------------------------------------

@pytest.fixture()
def sessions(tmp_path) -> SessionStore:
    return SessionStore(tmp_path / "sessions.db")


def test_session_round_trip(sessions, tmp_path):
    assert sessions.history("s1", "u1") == []
    first = context(0, "что приготовить на ужин?")
    sessions.append("s1", "u1", "что приготовить на ужин?", first, "kuper", [11, 12, 13], [300.0, 100.0, 200.0])
    second = TurnContext("что приготовить на ужин? подешевле", "kuper", frozenset({11, 12, 13}), 160.0, 1)
    sessions.append("s1", "u1", "подешевле", second, "kuper", [21], [90.5])
    sessions.save_state("s1", "u1", '{"goal": "ужин"}')
    reopened = SessionStore(tmp_path / "sessions.db")
    assert reopened.history("s1", "u1") == [
        ChatTurn(0, "u1", "что приготовить на ужин?", "что приготовить на ужин?", "kuper", (11, 12, 13),
                 (300.0, 100.0, 200.0), None),
        ChatTurn(1, "u1", "подешевле", "что приготовить на ужин? подешевле", "kuper", (21,), (90.5,), 160.0),
    ]
    assert reopened.load_state("s1", "u1") == '{"goal": "ужин"}'


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
    store = SessionStore(tmp_path / "race.sqlite")
    same = context(0, "хочу что-нибудь вкусное")
    first = store.append("race", "u1", "хочу что-нибудь вкусное", same, "samokat", [1, 2], [10.0, 20.0])
    second = store.append("race", "u1", "хочу что-нибудь вкусное", same, "samokat", [3], [30.0])
    assert (first, second) == (0, 1)
    assert [t.item_ids for t in store.history("race", "u1")] == [(1, 2), (3,)]


def test_a_new_session_belongs_to_whoever_opened_it_first(tmp_path):
    """Claiming happens on the first read, before any turn is written: a second user racing in is refused."""
    store = SessionStore(tmp_path / "claims.sqlite")
    assert store.history("fresh", "u1") == []
    with pytest.raises(RequestError, match="another user"):
        store.history("fresh", "u2")


def test_a_turn_lands_with_its_state_or_not_at_all(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    assert store.record_turn("s1", "u1", "кофе", context(0), "samokat", [1], [100.0], '{"turns": 1}') == 0
    assert store.load_state("s1", "u1") == '{"turns": 1}' and len(store.history("s1", "u1")) == 1
    with pytest.raises(sqlite3.IntegrityError):  # the state write fails after the turn's insert ran
        store.record_turn("s1", "u1", "ещё", context(1), "samokat", [2], [90.0], None)
    assert [t.message for t in store.history("s1", "u1")] == ["кофе"]  # the turn went back with it
    assert store.load_state("s1", "u1") == '{"turns": 1}'
    assert store.record_turn("s1", "u1", "ещё", context(1), "samokat", [2], [90.0], '{"turns": 2}') == 1
