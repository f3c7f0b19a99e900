"""The ProfileStorage contract, run against both backends: embedded SQLite and PostgreSQL on a loopback cluster.

Every test takes a fresh, empty store of each kind (a new SQLite file, a new PostgreSQL database) and checks what
the rest of the code relies on: events in time order, fragments with exact vectors, per-user isolation, forget
leaving no row of the user anywhere, popularity, read-only mode, one connection per thread. Also the factory.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import pytest

from recllm.profile.storage import ProfileStorage, open_profile_storage
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.differential_privacy import compose_epsilon, rdp_noise_multiplier
from recllm.profile.records import EventRow, MechanismRun, PreferenceRelease, ProfileFragment
from recllm.profile.postgres_store import PostgresProfileStore
from recllm.profile.events import Event
from recllm.synthetic.records import UserProfileSeed
from tests.postgres_server import postgres_server  # noqa: F401 (session fixture)

BACKENDS = ("sqlite", "postgres")
TEST_PARTITIONS = 4
NOT_NULL_ERRORS = {"sqlite": sqlite3.IntegrityError, "postgres": psycopg.errors.NotNullViolation}
READ_ONLY_ERRORS = {"sqlite": sqlite3.OperationalError, "postgres": psycopg.errors.ReadOnlySqlTransaction}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture()
def location(backend, tmp_path, request) -> str | Path:
    """Where a fresh store of this backend lives: a new SQLite file or a new PostgreSQL database."""
    if backend == "sqlite":
        return tmp_path / "profile.db"
    return request.getfixturevalue("postgres_server").new_database("contract")


@pytest.fixture()
def storage(backend, location):
    store = open_profile_storage(location, partitions=TEST_PARTITIONS if backend == "postgres" else None)
    yield store
    if isinstance(store, PostgresProfileStore):
        store.close()


def event(user_id: str, ts: int, item_id: int = 1, kind: str = "purchase", service: str = "kuper") -> Event:
    return Event(user_id, service, item_id, kind, ts, f"b{user_id}-{ts}" if kind == "purchase" else None,
                 99.9, 2, "moscow", "web")


def as_row(e) -> tuple:
    return (e.user_id, e.service, e.item_id, e.kind, e.timestamp, e.basket_id, e.price, e.quantity, e.region, e.device)


def fragment(user_id: str, key: str, weight: float, vector, sensitive: bool = False) -> ProfileFragment:
    service, category_id = key.split(":")
    return ProfileFragment(user_id, key, service, category_id, f"берёте {category_id}", f"you buy {category_id}",
                           sensitive, weight, np.asarray(vector, dtype=np.float32))


def all_rows_text(store) -> dict[str, list[str]]:
    """Every row of every table (every partition for PostgreSQL) as text, keyed by table."""
    if isinstance(store, ProfileStore):
        conn = store.connection()
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [repr(row) for row in conn.execute(f'SELECT * FROM "{t}"')] for t in tables}  # noqa: S608
    conn = store.connection()
    tables = [name for (name,) in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'")]
    return {t: [row[0] for row in conn.execute(f'SELECT t::text FROM "{t}" t')] for t in tables}  # noqa: S608


def test_both_backends_implement_the_protocol(storage):
    assert isinstance(storage, ProfileStorage)


def test_events_round_trip_in_time_order(storage, ecosystem):
    events = list(ecosystem.events)
    random.Random(5).shuffle(events)
    half = len(events) // 2
    assert storage.add_events(events[:half]) + storage.add_events(events[half:]) == len(events)
    for user in ecosystem.users:
        stored = storage.events_of(user.user_id)
        assert all(isinstance(row, EventRow) for row in stored)
        assert [r.timestamp for r in stored] == sorted(r.timestamp for r in stored)
        assert Counter(as_row(r) for r in stored) == Counter(as_row(e) for e in ecosystem.events_of(user.user_id))
    assert storage.user_ids() == sorted({e.user_id for e in ecosystem.events})


def test_events_with_equal_timestamps_come_back_in_insertion_order(storage):
    rng = random.Random(11)
    batches = [[event("u1", rng.choice((100, 200, 300)), item_id=rng.randrange(10**6)) for _ in range(150)]
               for _ in range(2)]
    storage.add_events(batches[0])
    storage.add_events([event("u2", 200)])
    storage.add_events(batches[1])
    inserted = batches[0] + batches[1]
    expected = sorted(inserted, key=lambda e: e.timestamp)  # sorted() is stable: ties keep insertion order
    assert [r.item_id for r in storage.events_of("u1")] == [e.item_id for e in expected]
    assert [r.item_id for r in storage.events_of("u1", kind="purchase")] == [e.item_id for e in expected]


def test_a_batch_with_one_bad_event_writes_nothing(storage, backend):
    storage.add_events([event("u1", 10)])
    bad = Event("u2", "kuper", 1, "view", 20, None, None, 1, "moscow", "web")  # price is NOT NULL
    with pytest.raises(NOT_NULL_ERRORS[backend]):
        storage.add_events([event("u2", 15), event("u3", 16), bad, event("u2", 25)])
    assert storage.user_ids() == ["u1"] and storage.latest_timestamp() == 10


def test_events_of_one_kind(storage):
    storage.add_events([event("u1", 10, kind="view"), event("u1", 20), event("u1", 30, kind="view"),
                        event("u2", 15)])
    assert [r.timestamp for r in storage.events_of("u1", kind="view")] == [10, 30]
    assert [r.timestamp for r in storage.events_of("u1", kind="purchase")] == [20]
    assert storage.events_of("u1", kind="return") == []


def test_events_of_limit_keeps_the_newest_in_time_order(storage):
    storage.add_events([event("u1", 10, item_id=1), event("u1", 30, item_id=2), event("u1", 30, item_id=3),
                        event("u1", 20, item_id=4, kind="view"), event("u1", 5, item_id=6), event("u2", 99, item_id=5)])
    assert [r.item_id for r in storage.events_of("u1", limit=3)] == [4, 2, 3]
    assert [r.item_id for r in storage.events_of("u1", kind="purchase", limit=2)] == [2, 3]
    assert [r.item_id for r in storage.events_of("u1", kind=("purchase", "view"), limit=100)] == [6, 1, 4, 2, 3]
    assert storage.events_of("u1", limit=0) == [] and storage.events_of("nobody", limit=5) == []


def test_values_round_trip_exactly(storage):
    odd = Event("u1", "megamarket", 2**40, "rating", 1_700_000_123, None, 0.1 + 0.2, 5, "nizhny_novgorod", "ios")
    storage.add_events([odd])
    (row,) = storage.events_of("u1")
    assert as_row(row) == as_row(odd)
    assert type(row.item_id) is int and type(row.price) is float and row.basket_id is None


def test_unknown_users_have_no_events_or_fragments(storage):
    storage.add_events([event("u1", 10)])
    for user_id in ("u2", "U1", "u1 ", "' OR 1=1 --", ""):
        assert storage.events_of(user_id) == []
        assert storage.fragments_of(user_id) == []


def test_user_ids_in_code_point_order(storage):
    ids = ["u10", "u2", "U1", "юзер", "u1", "Ü", "_x"]
    storage.add_events([event(user_id, 10 + i) for i, user_id in enumerate(ids)] + [event("u2", 99)])
    assert storage.user_ids() == sorted(ids)


def test_latest_timestamp(storage):
    assert storage.latest_timestamp() is None
    storage.add_events([event("u1", 50), event("u2", 70), event("u3", 60)])
    assert storage.latest_timestamp() == 70


def test_fragments_round_trip_with_exact_vectors(storage):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3, 64)).astype(np.float32)
    vectors[0, :3] = [np.float32(1e-38), np.float32(-0.0), np.finfo(np.float32).max]
    fragments = [fragment("u1", "kuper:grocery/vegetables", 3.0, vectors[0]),
                 fragment("u1", "samokat:grocery/coffee", 7.25, vectors[1]),
                 fragment("u1", "kuper:pharmacy/vitamins", 3.0, vectors[2], sensitive=True)]
    storage.replace_fragments("u1", fragments)
    stored = storage.fragments_of("u1")
    assert [f.fragment_key for f in stored] == ["samokat:grocery/coffee", "kuper:grocery/vegetables",
                                                "kuper:pharmacy/vitamins"]
    by_key = {f.fragment_key: f for f in fragments}
    for got in stored:
        want = by_key[got.fragment_key]
        assert (got.user_id, got.service, got.category_id, got.text_ru, got.text_en, got.sensitive, got.weight) == (
            want.user_id, want.service, want.category_id, want.text_ru, want.text_en, want.sensitive, want.weight)
        assert type(got.sensitive) is bool and got.vector.dtype == np.float32
        assert got.vector.tobytes() == want.vector.tobytes()  # bit-exact, including -0.0 and denormals


def test_replace_fragments_replaces_only_that_user(storage):
    storage.replace_fragments("u1", [fragment("u1", "kuper:grocery/vegetables", 1.0, [1, 0])])
    storage.replace_fragments("u2", [fragment("u2", "kuper:grocery/fish", 1.0, [0, 1])])
    storage.replace_fragments("u1", [fragment("u1", "samokat:grocery/coffee", 2.0, [1, 1])])
    assert [f.fragment_key for f in storage.fragments_of("u1")] == ["samokat:grocery/coffee"]
    assert [f.fragment_key for f in storage.fragments_of("u2")] == ["kuper:grocery/fish"]
    storage.replace_fragments("u1", [])
    assert storage.fragments_of("u1") == []


def test_replace_fragments_refuses_another_users_fragments_and_writes_nothing(storage):
    storage.replace_fragments("u1", [fragment("u1", "kuper:grocery/fish", 1.0, [1, 0])])
    with pytest.raises(ValueError, match=r"for user 'u1' got fragments of other users: \['u2'\]"):
        storage.replace_fragments("u1", [fragment("u1", "kuper:grocery/tea", 1.0, [1, 0]),
                                         fragment("u2", "kuper:grocery/tea", 1.0, [0, 1])])
    assert [f.fragment_key for f in storage.fragments_of("u1")] == ["kuper:grocery/fish"]


def test_each_user_sees_only_their_own_rows(storage):
    users = [f"u{i:03d}" for i in range(40)]
    storage.add_events([event(u, 1000 + 10 * i + j, item_id=i) for i, u in enumerate(users) for j in range(i % 5)])
    for i, u in enumerate(users):
        storage.replace_fragments(u, [fragment(u, f"kuper:c{i}", float(i), [i, 1])])
    for i, u in enumerate(users):
        assert {r.user_id for r in storage.events_of(u)} <= {u}
        assert [r.item_id for r in storage.events_of(u)] == [i] * (i % 5)
        assert [(f.user_id, f.fragment_key) for f in storage.fragments_of(u)] == [(u, f"kuper:c{i}")]


def test_item_popularity_round_trip_and_replacement(storage):
    assert storage.item_popularity() == {}
    storage.set_item_popularity({3: 10, 1: 2, 2**40: 7})
    assert storage.item_popularity() == {1: 2, 3: 10, 2**40: 7}
    storage.set_item_popularity(Counter({7: 1}))
    assert storage.item_popularity() == {7: 1}
    storage.set_item_popularity({})
    assert storage.item_popularity() == {}


def test_add_users_replaces_demographics(storage):
    storage.add_users([UserProfileSeed("u1", "25-34", "moscow", frozenset(), None)])
    storage.add_users([UserProfileSeed("u1", "35-44", "spb", frozenset(), None),
                       UserProfileSeed("u2", "18-24", "kazan", frozenset(), None)])
    rows = [row for rows in all_rows_text(storage).values() for row in rows if "35-44" in row or "25-34" in row]
    assert len(rows) == 1 and "spb" in rows[0]
    assert storage.forget_user("u1")["users"] == 1


def test_forget_removes_every_row_of_the_user_and_only_theirs(storage):
    for user_id in ("u1", "u2"):
        storage.add_users([UserProfileSeed(user_id, "25-34", "moscow", frozenset(), None)])
        storage.add_events([event(user_id, ts, item_id=ts) for ts in range(100, 130)])
        storage.replace_fragments(user_id, [fragment(user_id, "kuper:grocery/fish", 1.0, [1, 0]),
                                            fragment(user_id, "kuper:grocery/tea", 2.0, [0, 1])])
        storage.replace_history(user_id, HISTORY_ROWS)
        storage.replace_temporal_histograms(user_id, HISTOGRAM_ROWS)
        assert commit(storage, release(user_id, 0))
        assert charge(storage, adapter_update(user_id)) is not None
    storage.set_item_popularity({100: 2})
    storage.privacy_secret()
    before = all_rows_text(storage)

    removed = storage.forget_user("u1")

    assert {t: n for t, n in removed.items() if n} == {"events": 30, "fragments": 2, "users": 1, "history_summaries": 2,
                                                       "temporal_histograms": 2, "privacy_ledger": 1,
                                                       "privacy_mechanisms": 2, "released_preferences": 1,
                                                       "user_versions": 1}
    after = all_rows_text(storage)
    leftovers = {t: [r for r in rows if "u1" in r] for t, rows in after.items()}
    assert not any(leftovers.values()), leftovers
    assert storage.user_version("u1") is None and storage.user_version("u2") is not None
    # SQLite's version counter moved with the deletes (PostgreSQL's is a sequence, not a table): not a user's row
    before.pop("profile_version_seq", None), after.pop("profile_version_seq", None)
    kept = {t: [r for r in rows if "u1" not in r] for t, rows in before.items()}
    assert {t: sorted(rows) for t, rows in after.items()} == {t: sorted(rows) for t, rows in kept.items()}
    assert len(storage.events_of("u2")) == 30 and len(storage.fragments_of("u2")) == 2
    assert storage.item_popularity() == {100: 2}
    assert storage.forget_user("u1") == {t: 0 for t in removed}


def test_read_only_store_reads_but_cannot_write(storage, location, backend):
    storage.add_events([event("u1", 10)])
    reader = open_profile_storage(location, read_only=True)
    try:
        assert reader.events_of("u1") == storage.events_of("u1")
        with pytest.raises(READ_ONLY_ERRORS[backend]):
            reader.add_events([event("u1", 11)])
        with pytest.raises(READ_ONLY_ERRORS[backend]):
            reader.forget_user("u1")
    finally:
        if isinstance(reader, PostgresProfileStore):
            reader.close()
    assert len(storage.events_of("u1")) == 1


def test_each_thread_gets_its_own_connection_to_the_same_data(storage):
    storage.add_events([event("u1", ts) for ts in range(30)])
    results = {}

    def read():
        results["rows"] = storage.events_of("u1")
        results["conn"] = storage.connection()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert results["rows"] == storage.events_of("u1")
    assert results["conn"] is not storage.connection()


# --- rows derived from events: history, histograms, privacy ledger and releases ---------------------------------

HISTORY_ROWS = [("long_term", 100, 900, '{"n": 3}'), ("day", 100, 200, '{"n": 1}')]
HISTOGRAM_ROWS = [("samokat", [0] * 23 + [4], [1, 0, 0, 0, 0, 0, 2]), ("kuper", [1] * 24, [0] * 7)]
WINDOW_START, WINDOW_END = 1_700_000_000, 1_700_604_800
BUDGET, DELTA = 1.0, 1e-5
Z_OF_4 = rdp_noise_multiplier(BUDGET, DELTA, 4)  # four releases at this noise multiplier fit the budget


def release(user_id: str, index: int, noise_multiplier: float = Z_OF_4, seed: int = 0) -> PreferenceRelease:
    rng = np.random.default_rng(seed)
    return PreferenceRelease(user_id, WINDOW_START, index, WINDOW_START + 60 * index,
                             compose_epsilon([(noise_multiplier, 1.0, 1)], DELTA), DELTA, noise_multiplier, 1.0,
                             f"digest-{index}", rng.standard_normal(16).astype(np.float32),
                             rng.standard_normal(16).astype(np.float32))


def release_run(r: PreferenceRelease) -> MechanismRun:
    return MechanismRun(r.user_id, r.window_start, "preference_release", r.sigma, 1.0, 1, r.released_ts)  # Δ = 1


def adapter_update(user_id: str, noise_multiplier: float = 40.0, steps: int = 3) -> MechanismRun:
    return MechanismRun(user_id, WINDOW_START, "adapter_update", noise_multiplier, 0.25, steps, WINDOW_START + 5)


def charge(storage, run: MechanismRun, r: PreferenceRelease | None = None):
    return storage.charge_mechanism(run, WINDOW_END, BUDGET, DELTA, compose_epsilon, r)


def commit(storage, r: PreferenceRelease) -> bool:
    return charge(storage, release_run(r), r) is not None


def test_history_round_trip_in_time_order_and_by_level(storage):
    storage.replace_history("u1", HISTORY_ROWS + [("session", 100, 150, "{}")])
    storage.replace_history("u2", [("day", 5, 6, "{}")])
    assert storage.history_of("u1") == [("day", 100, 200, '{"n": 1}'), ("long_term", 100, 900, '{"n": 3}'),
                                        ("session", 100, 150, "{}")]
    assert storage.history_of("u1", level="day") == [("day", 100, 200, '{"n": 1}')]
    storage.replace_history("u1", [])
    assert storage.history_of("u1") == [] and storage.history_of("u2") == [("day", 5, 6, "{}")]


def test_temporal_histograms_round_trip_ordered_by_service(storage):
    storage.replace_temporal_histograms("u1", HISTOGRAM_ROWS)
    assert storage.temporal_histograms_of("u1") == sorted(HISTOGRAM_ROWS)
    storage.replace_temporal_histograms("u1", HISTOGRAM_ROWS[:1])
    assert storage.temporal_histograms_of("u1") == HISTOGRAM_ROWS[:1]
    assert storage.temporal_histograms_of("u2") == []


def test_privacy_secret_is_created_once_and_shared(storage, location):
    secret = storage.privacy_secret()
    assert isinstance(secret, bytes) and len(secret) == 32
    assert storage.privacy_secret() == secret
    reader = open_profile_storage(location, read_only=True)
    try:
        assert reader.privacy_secret() == secret
    finally:
        if isinstance(reader, PostgresProfileStore):
            reader.close()


def test_read_only_store_without_a_secret_says_so(storage, location):
    reader = open_profile_storage(location, read_only=True)
    try:
        with pytest.raises(LookupError, match="no privacy secret"):
            reader.privacy_secret()
    finally:
        if isinstance(reader, PostgresProfileStore):
            reader.close()


def test_charging_a_release_composes_the_ledger_and_stores_exact_vectors(storage):
    assert storage.released_preferences_of("u1") is None and storage.privacy_ledger_of("u1") == []
    first = release("u1", 0)
    assert commit(storage, first)
    stored = storage.released_preferences_of("u1")
    assert stored[:9] == first[:9]
    assert stored.pref_long.tobytes() == first.pref_long.tobytes()
    assert stored.pref_short.tobytes() == first.pref_short.tobytes()
    for index in (1, 2, 3):  # 4 releases at Z_OF_4 fit the budget
        assert commit(storage, release("u1", index, seed=index))
    (entry,) = storage.privacy_ledger_of("u1")
    assert (entry.window_start, entry.window_end, entry.releases) == (WINDOW_START, WINDOW_END, 4)
    assert entry.epsilon_spent == compose_epsilon([(Z_OF_4, 1.0, 1)] * 4, DELTA) and entry.delta_spent == DELTA
    assert BUDGET - 1e-3 <= entry.epsilon_spent <= BUDGET < 4 * first.epsilon
    assert storage.released_preferences_of("u1")[2] == 3
    assert storage.privacy_ledger_of("u1", WINDOW_START) == [entry] and storage.privacy_ledger_of("u1", 5) == []
    assert storage.privacy_ledger_of("u2") == [] and storage.mechanisms_of("u2") == []
    assert storage.mechanisms_of("u1") == [release_run(release("u1", k)) for k in range(4)]
    assert not commit(storage, release("u1", 4))  # a fifth does not fit


def test_charging_refuses_a_spent_budget_or_a_stale_index(storage):
    big = release("u1", 0, noise_multiplier=5.0)
    assert commit(storage, big)
    ledger, mechanisms = storage.privacy_ledger_of("u1"), storage.mechanisms_of("u1")
    assert not commit(storage, release("u1", 1, noise_multiplier=5.0))  # over budget
    assert not commit(storage, release("u1", 0, noise_multiplier=100.0, seed=9))  # stale index
    assert storage.privacy_ledger_of("u1") == ledger and storage.mechanisms_of("u1") == mechanisms
    assert storage.released_preferences_of("u1")[4] == big.epsilon == ledger[0].epsilon_spent


def test_an_adapter_update_is_composed_with_the_releases_of_its_window(storage):
    assert commit(storage, release("u1", 0))
    entry = charge(storage, adapter_update("u1"))
    assert entry.releases == 1 and storage.released_preferences_of("u1").release_index == 0
    assert entry.epsilon_spent == compose_epsilon([(Z_OF_4, 1.0, 1), (40.0, 0.25, 3)], DELTA)
    assert storage.privacy_ledger_of("u1") == [entry]
    assert [m.kind for m in storage.mechanisms_of("u1")] == ["preference_release", "adapter_update"]
    assert commit(storage, release("u1", 1))  # the next release index counts releases only
    assert charge(storage, adapter_update("u1", noise_multiplier=0.5, steps=100)) is None  # over budget
    assert len(storage.mechanisms_of("u1", WINDOW_START)) == 3 and storage.mechanisms_of("u1", 5) == []
    with pytest.raises(ValueError, match="charged with a release"):
        charge(storage, adapter_update("u1"), release("u1", 2))
    with pytest.raises(ValueError, match="kind must be one of"):
        charge(storage, adapter_update("u1")._replace(kind="laplace"))
    assert len(storage.mechanisms_of("u1")) == 3


def test_concurrent_releases_spend_the_budget_once(storage):
    outcomes = []

    def attempt(seed):
        outcomes.append(commit(storage, release("u1", 0, seed=seed)))

    threads = [threading.Thread(target=attempt, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 5 + [True]
    assert storage.privacy_ledger_of("u1")[0].releases == 1 and len(storage.mechanisms_of("u1")) == 1


def test_concurrent_adapter_updates_compose_every_accepted_one(storage):
    outcomes = []

    def attempt():
        outcomes.append(charge(storage, adapter_update("u1", noise_multiplier=3.0, steps=2)) is not None)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sum(outcomes)
    assert 1 <= accepted < 6  # the budget pays for some, not all
    assert len(storage.mechanisms_of("u1")) == accepted
    assert storage.privacy_ledger_of("u1")[0].epsilon_spent == compose_epsilon([(3.0, 0.25, 2)] * accepted, DELTA)
    assert compose_epsilon([(3.0, 0.25, 2)] * (accepted + 1), DELTA) > BUDGET


def test_delete_released_preferences(storage):
    for user_id in ("u1", "u2"):
        commit(storage, release(user_id, 0))
    storage.delete_released_preferences("u1")
    assert storage.released_preferences_of("u1") is None
    assert storage.released_preferences_of("u2") is not None
    assert storage.privacy_ledger_of("u1")[0].releases == 1  # spent budget stays spent
    assert len(storage.mechanisms_of("u1")) == 1


# --- the factory ---------------------------------------------------------------------------------------------------

def test_factory_opens_sqlite_from_a_path_or_sqlite_url(tmp_path):
    by_path = open_profile_storage(tmp_path / "a.db")
    by_str = open_profile_storage(str(tmp_path / "b.db"))
    by_url = open_profile_storage(f"sqlite://{tmp_path / 'c.db'}")
    for store, name in ((by_path, "a.db"), (by_str, "b.db"), (by_url, "c.db")):
        assert type(store) is ProfileStore and store.path == tmp_path / name
        store.add_events([event("u1", 1)])
        assert (tmp_path / name).exists()


def test_factory_opens_postgres_with_the_given_partitions(postgres_server):  # noqa: F811
    with open_profile_storage(postgres_server.new_database("factory"), partitions=3) as store:
        assert isinstance(store, PostgresProfileStore)
        assert store.config.partitions == 3 and store.partition_count("events") == 3


@pytest.mark.parametrize("value, message", [
    ("mysql://h/db", "unsupported URL scheme 'mysql'"),
    ("sqlite://", "names no file"),
    ("", "non-empty path or URL"),
    (None, "non-empty path or URL"),
])
def test_factory_rejects_what_it_cannot_open(value, message):
    with pytest.raises(ValueError, match=message):
        open_profile_storage(value)


def test_factory_refuses_partitions_for_sqlite(tmp_path):
    with pytest.raises(ValueError, match="partitions=4 applies to PostgreSQL only"):
        open_profile_storage(tmp_path / "p.db", partitions=4)


# --- client event ids: a retried event is stored once -----------------------------------------------------------

def with_id(e: Event, event_id: str | None) -> Event:
    return dataclasses.replace(e, event_id=event_id)


def event_ids_of(store, user_id: str) -> list[str | None]:
    """The stored client ids of the user's events (not part of ``EventRow``: read straight from the table)."""
    conn = store.connection()
    placeholder = "?" if isinstance(store, ProfileStore) else "%s"
    query = f"SELECT event_id FROM events WHERE user_id = {placeholder}"  # noqa: S608
    rows = conn.execute(query, (user_id,)).fetchall()
    return sorted((row[0] for row in rows), key=lambda v: (v is None, v or ""))


def test_add_events_skips_events_whose_id_the_user_already_has(storage):
    first = [with_id(event("u1", 10 + i, item_id=i), f"e{i}") for i in range(5)]
    assert storage.add_events(first) == 5
    retry = first[2:] + [with_id(event("u1", 30, item_id=9), "e9")]
    assert storage.add_events(retry) == 1  # only e9 is new
    assert [r.item_id for r in storage.events_of("u1")] == [0, 1, 2, 3, 4, 9]
    assert event_ids_of(storage, "u1") == ["e0", "e1", "e2", "e3", "e4", "e9"]


def test_event_ids_are_per_user_and_events_without_an_id_are_never_merged(storage):
    assert storage.add_events([with_id(event("u1", 10), "same"), with_id(event("u2", 10), "same")]) == 2
    plain = [event("u1", 20), event("u1", 20)]  # identical, no id: two deliveries of two real events
    assert storage.add_events(plain) == 2 and storage.add_events(plain) == 2
    assert len(storage.events_of("u1")) == 5 and len(storage.events_of("u2")) == 1
    assert event_ids_of(storage, "u1") == ["same", None, None, None, None]


def test_ingest_events_reports_duplicates_and_marks_only_users_with_new_events(storage):
    batch = [with_id(event("u1", 10), "a"), with_id(event("u2", 11), "b"), event("u3", 12)]
    assert storage.ingest_events(batch, commit_seq=1) == [True, True, True]
    assert storage.pending_refreshes() == [("u1", 1), ("u2", 1), ("u3", 1)]
    for user_id in ("u1", "u2", "u3"):
        storage.clear_pending_refresh(user_id, up_to_seq=1)
    retry = [with_id(event("u1", 10), "a"), with_id(event("u2", 11), "b"), with_id(event("u2", 13), "c"),
             with_id(event("u2", 14), "c")]  # "c" twice in one batch: the second copy is the duplicate
    assert storage.ingest_events(retry, commit_seq=2) == [False, False, True, False]
    assert storage.pending_refreshes() == [("u2", 2)]  # u1 got nothing new: no refresh owed
    assert [len(storage.events_of(u)) for u in ("u1", "u2", "u3")] == [1, 2, 1]


def test_a_failed_ingest_writes_neither_events_nor_marks(storage, backend):
    bad = Event("u2", "kuper", 1, "view", 20, None, None, 1, "moscow", "web", "bad")  # price is NOT NULL
    with pytest.raises(NOT_NULL_ERRORS[backend]):
        storage.ingest_events([with_id(event("u1", 10), "ok"), bad], commit_seq=1)
    assert storage.user_ids() == [] and storage.pending_refreshes() == []
    assert storage.ingest_events([with_id(event("u1", 10), "ok")], commit_seq=2) == [True]  # the id is still free


def test_pending_marks_clear_only_up_to_the_commit_the_refresh_covered(storage):
    storage.ingest_events([event("u1", 10)], commit_seq=3)
    storage.ingest_events([event("u1", 11), event("u2", 11)], commit_seq=4)
    storage.clear_pending_refresh("u1", up_to_seq=3)  # a refresh that read the log before commit 4
    assert storage.pending_refreshes() == [("u1", 4), ("u2", 4)]
    storage.clear_pending_refresh("u1", up_to_seq=4)
    storage.clear_pending_refresh("u2")
    assert storage.pending_refreshes() == []


def test_forget_removes_the_users_pending_mark(storage):
    storage.ingest_events([event("u1", 10), event("u2", 10)], commit_seq=1)
    assert storage.forget_user("u1")["pending_refresh"] == 1
    assert storage.pending_refreshes() == [("u2", 1)]


# --- what retention and the profile service's read view call --------------------------------------------------------

def test_recent_events_newest_first_with_ties_latest_inserted_first(storage):
    storage.add_events([event("u1", 10, item_id=1), event("u1", 30, item_id=2), event("u1", 30, item_id=3),
                        event("u1", 20, item_id=4), event("u2", 99, item_id=5)])
    assert [r.item_id for r in storage.recent_events("u1", 3)] == [3, 2, 4]
    assert [r.item_id for r in storage.recent_events("u1", 100)] == [3, 2, 4, 1]
    assert storage.recent_events("u1", 0) == [] and storage.recent_events("nobody", 5) == []
    assert all(isinstance(r, EventRow) for r in storage.recent_events("u1", 2))


def test_activity_of_counts_per_service_and_kind(storage):
    storage.add_events([event("u1", 10, service="kuper"), event("u1", 40, service="kuper"),
                        event("u1", 20, kind="view", service="kuper"), event("u1", 5, service="samokat"),
                        event("u2", 1, service="kuper")])
    spend = 99.9 * 2
    assert storage.activity_of("u1") == [("kuper", "purchase", 2, 10, 40, pytest.approx(2 * spend)),
                                         ("kuper", "view", 1, 20, 20, pytest.approx(spend)),
                                         ("samokat", "purchase", 1, 5, 5, pytest.approx(spend))]
    assert all(type(v) is int for row in storage.activity_of("u1") for v in row[2:5])
    assert storage.activity_of("nobody") == []


def test_demographics_of(storage):
    storage.add_users([UserProfileSeed("u1", "25-34", "moscow", frozenset(), None)])
    assert storage.demographics_of("u1") == ("25-34", "moscow") and storage.demographics_of("u2") is None


def test_read_snapshot_sees_one_commit_while_another_connection_writes(storage, location, backend):
    storage.add_events([event("u1", 10)])
    writer = open_profile_storage(location, partitions=TEST_PARTITIONS if backend == "postgres" else None)
    try:
        with storage.read_snapshot():
            assert len(storage.events_of("u1")) == 1
            writer.add_events([event("u1", 20)])  # commits on another connection meanwhile
            assert len(storage.events_of("u1")) == 1 and len(storage.recent_events("u1", 9)) == 1
        assert len(storage.events_of("u1")) == 2
    finally:
        if isinstance(writer, PostgresProfileStore):
            writer.close()


def test_expire_events_deletes_per_service_cutoff_and_names_the_users(storage):
    storage.add_events([event("u1", 10, service="samokat"), event("u1", 50, service="samokat"),
                        event("u2", 10, service="kuper"), event("u3", 10, service="megamarket"),
                        event("u3", 60, service="kuper")])
    deleted, users = storage.expire_events({"samokat": 20, "kuper": 11, "megamarket": 5})
    assert (deleted, users) == (2, ["u1", "u2"])
    assert [r.timestamp for r in storage.events_of("u1")] == [50] and storage.events_of("u2") == []
    assert [r.service for r in storage.events_of("u3")] == ["megamarket", "kuper"]
    assert storage.expire_events({"samokat": 20}) == (0, [])


def test_user_version_changes_with_every_write_to_what_a_request_reads_and_never_repeats(storage):
    """What ``UserContextCache`` relies on: the user's version moves with each write to their events, fragments or
    DP release, whoever writes; another user's writes leave it alone; a forgotten user has none."""
    assert storage.user_version("u1") is None
    seen = []

    def moved(user_id: str = "u1") -> bool:
        version = storage.user_version(user_id)
        new = version is not None and version not in seen
        seen.append(version)
        return new

    storage.add_events([event("u1", 10)])
    assert moved()
    storage.ingest_events([event("u1", 20)], commit_seq=1)
    assert moved()
    storage.add_events([event("u2", 30)])
    assert storage.user_version("u1") == seen[-1]  # another user's write
    storage.replace_fragments("u1", [fragment("u1", "kuper:grocery/fish", 1.0, [1, 0])])
    assert moved()
    assert commit(storage, release("u1", 0))
    assert moved()
    storage.delete_released_preferences("u1")
    assert moved()
    storage.expire_events({"kuper": 15})
    assert moved()
    storage.replace_history("u1", HISTORY_ROWS)  # not read per request: no new version
    assert storage.user_version("u1") == seen[-1]
    storage.forget_user("u1")
    assert storage.user_version("u1") is None
    storage.add_events([event("u1", 40)])  # the same id again starts from a value never seen before
    assert moved()


def test_a_store_written_before_the_versions_gives_its_users_one_when_opened(storage, location, backend):
    storage.add_events([event("u1", 10)])
    storage.replace_fragments("u2", [fragment("u2", "kuper:grocery/fish", 1.0, [1, 0])])
    conn = storage.connection()
    if backend == "sqlite":
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.executescript("DROP TABLE user_versions; DROP TABLE profile_version_seq;")
    else:
        conn.execute("DROP FUNCTION stamp_user_version() CASCADE; DROP TABLE user_versions; "
                     "DROP SEQUENCE profile_version_seq")
        storage.close()
    assert storage.user_version("u1") is None  # an old file: nothing can be cached
    reopened = open_profile_storage(location, partitions=TEST_PARTITIONS if backend == "postgres" else None)
    first = {user: reopened.user_version(user) for user in ("u1", "u2")}
    assert None not in first.values() and reopened.user_version("u3") is None
    reopened.add_events([event("u1", 20)])
    assert reopened.user_version("u1") not in (None, *first.values()) and reopened.user_version("u2") == first["u2"]
    if isinstance(reopened, PostgresProfileStore):
        reopened.close()
