"""Profile store: event round trip, per-user isolation of fragments, read-only mode."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import Counter

import numpy as np
import pytest

from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.events import Event
from recllm.profile.records import EventRow, ProfileFragment


def as_row(event) -> tuple:
    return (event.user_id, event.service, event.item_id, event.kind, event.timestamp, event.basket_id, event.price,
            event.quantity, event.region, event.device)


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def fragment(user_id: str, key: str, weight: float, vector, sensitive: bool = False) -> ProfileFragment:
    service, category_id = key.split(":")
    return ProfileFragment(user_id, key, service, category_id, f"берёте {category_id}", f"you buy {category_id}",
                           sensitive, weight, unit(vector))


@pytest.fixture()
def store(tmp_path) -> ProfileStore:
    return ProfileStore(tmp_path / "profile.db")


@pytest.fixture(scope="module")
def filled(tmp_path_factory, ecosystem) -> ProfileStore:
    """All ecosystem events, inserted in shuffled order."""
    store = ProfileStore(tmp_path_factory.mktemp("filled") / "profile.db")
    events = list(ecosystem.events)
    random.Random(3).shuffle(events)
    assert store.add_events(events) == len(events)
    store.add_users(ecosystem.users)
    return store


def test_events_round_trip_ordered_by_time(filled, ecosystem):
    for user in ecosystem.users:
        stored = filled.events_of(user.user_id)
        assert all(isinstance(row, EventRow) for row in stored)
        timestamps = [row.timestamp for row in stored]
        assert timestamps == sorted(timestamps)
        assert Counter(as_row(row) for row in stored) == Counter(as_row(e) for e in ecosystem.events_of(user.user_id))


def test_unknown_and_cold_users_have_no_events(filled, ecosystem):
    cold = [u.user_id for u in ecosystem.users if not ecosystem.events_of(u.user_id)]
    assert cold
    for user_id in cold + ["u999999", "' OR 1=1 --"]:
        assert filled.events_of(user_id) == []


def test_user_ids_are_the_distinct_users_with_events(filled, ecosystem):
    assert filled.user_ids() == sorted({e.user_id for e in ecosystem.events})


def test_latest_timestamp(store, ecosystem):
    assert store.latest_timestamp() is None
    store.add_events(ecosystem.events[:100])
    assert store.latest_timestamp() == max(e.timestamp for e in ecosystem.events[:100])
    store.add_events(ecosystem.events)
    assert store.latest_timestamp() == max(e.timestamp for e in ecosystem.events)


def test_fragments_round_trip_ordered_by_weight(store):
    fragments = [fragment("u1", "kuper:grocery/vegetables", 3.0, [1, 0, 0]),
                 fragment("u1", "samokat:grocery/coffee", 7.0, [0, 1, 0]),
                 fragment("u1", "kuper:pharmacy/vitamins", 3.0, [0, 0, 1], sensitive=True)]
    store.replace_fragments("u1", fragments)
    stored = store.fragments_of("u1")
    assert [f.fragment_key for f in stored] == ["samokat:grocery/coffee", "kuper:grocery/vegetables",
                                                "kuper:pharmacy/vitamins"]
    by_key = {f.fragment_key: f for f in fragments}
    for got in stored:
        want = by_key[got.fragment_key]
        assert (got.user_id, got.service, got.category_id, got.text_ru, got.text_en, got.sensitive, got.weight) == (
            want.user_id, want.service, want.category_id, want.text_ru, want.text_en, want.sensitive, want.weight)
        assert isinstance(got.sensitive, bool)
        np.testing.assert_array_equal(got.vector, want.vector)


def test_fragments_of_one_user_never_include_another_users(store):
    store.replace_fragments("u1", [fragment("u1", "kuper:grocery/vegetables", 1.0, [1, 0])])
    store.replace_fragments("u2", [fragment("u2", "kuper:grocery/vegetables", 5.0, [0, 1]),
                                   fragment("u2", "samokat:grocery/dairy", 2.0, [1, 1])])
    assert [(f.user_id, f.weight) for f in store.fragments_of("u1")] == [("u1", 1.0)]
    assert {f.user_id for f in store.fragments_of("u2")} == {"u2"}
    assert store.fragments_of("u3") == []


def test_replace_fragments_replaces_only_that_user(store):
    store.replace_fragments("u1", [fragment("u1", "kuper:grocery/vegetables", 1.0, [1, 0])])
    store.replace_fragments("u2", [fragment("u2", "kuper:grocery/fish", 1.0, [0, 1])])
    store.replace_fragments("u1", [fragment("u1", "samokat:grocery/coffee", 2.0, [1, 1])])
    assert [f.fragment_key for f in store.fragments_of("u1")] == ["samokat:grocery/coffee"]
    assert [f.fragment_key for f in store.fragments_of("u2")] == ["kuper:grocery/fish"]
    store.replace_fragments("u1", [])
    assert store.fragments_of("u1") == []


def test_fragment_text_by_language():
    f = fragment("u1", "kuper:grocery/vegetables", 1.0, [1, 0])
    assert f.text("ru") == f.text_ru and f.text("en") == f.text_en


def test_item_popularity_round_trip_and_replacement(store):
    assert store.item_popularity() == {}
    store.set_item_popularity({3: 10, 1: 2})
    assert store.item_popularity() == {1: 2, 3: 10}
    store.set_item_popularity(Counter({7: 1}))
    assert store.item_popularity() == {7: 1}


def test_read_only_store_raises_on_a_missing_file(tmp_path):
    store = ProfileStore(tmp_path / "missing.db", read_only=True)
    with pytest.raises(FileNotFoundError, match="missing.db does not exist"):
        store.events_of("u1")
    assert not (tmp_path / "missing.db").exists()


def test_read_only_store_reads_but_cannot_write(tmp_path, ecosystem):
    writer = ProfileStore(tmp_path / "profile.db")
    writer.add_events(ecosystem.events[:50])
    reader = ProfileStore(tmp_path / "profile.db", read_only=True)
    user_id = ecosystem.events[0].user_id
    assert reader.events_of(user_id) == writer.events_of(user_id)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.add_events(ecosystem.events[50:51])


def test_each_thread_gets_its_own_connection_to_the_same_data(store, ecosystem):
    store.add_events(ecosystem.events[:30])
    user_id = ecosystem.events[0].user_id
    results = {}

    def read():
        results["rows"] = store.events_of(user_id)
        results["conn"] = store.connection()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert results["rows"] == store.events_of(user_id)
    assert results["conn"] is not store.connection()


OLD_EVENTS_TABLE = """CREATE TABLE events (user_id TEXT NOT NULL, service TEXT NOT NULL, item_id INTEGER NOT NULL,
    kind TEXT NOT NULL, ts INTEGER NOT NULL, basket_id TEXT, price REAL NOT NULL, quantity INTEGER NOT NULL,
    region TEXT NOT NULL, device TEXT NOT NULL)"""


def test_a_file_written_before_event_ids_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(OLD_EVENTS_TABLE)
    conn.execute("INSERT INTO events VALUES ('u1', 'kuper', 7, 'purchase', 100, 'b1', 10.0, 1, 'moscow', 'web')")
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.OperationalError):  # what the old file lacks
        sqlite3.connect(path).execute("SELECT event_id FROM events")

    store = ProfileStore(path)

    assert [(r.item_id, r.basket_id) for r in store.events_of("u1")] == [(7, "b1")]  # the old row is kept
    assert store.connection().execute("SELECT event_id FROM events").fetchall() == [(None,)]
    retry = Event("u1", "kuper", 8, "purchase", 200, "b2", 10.0, 1, "moscow", "web", "e-8")
    assert store.add_events([retry]) == 1 and store.add_events([retry]) == 0
    assert [r.item_id for r in store.events_of("u1")] == [7, 8]
    ProfileStore(path)  # opening again changes nothing
    indexes = {row[1]: row[2] for row in store.connection().execute("PRAGMA index_list(events)")}
    assert indexes["events_by_event_id"] == 1  # unique
