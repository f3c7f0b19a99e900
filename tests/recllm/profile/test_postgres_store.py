"""What only the PostgreSQL backend has: hash partitions by user, partition pruning, the partition count guard,
forget leaving no tuple in any page, reconnecting, concurrent schema creation, config validation; and the drop-in
check: the builder fills PostgreSQL exactly as it fills SQLite, and retrieval over either returns the same.

The shared behaviour (round trips, isolation, forget by rows, read-only) is in ``test_profile_storage.py``.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import psycopg
import pytest

from builders.build_artifacts import fill_profile, store_fragments
from recllm.rag.catalog_index import CatalogIndex
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import ProfileFragment
from recllm.rag.rec_request import RecRequest
from recllm.rag.retriever import Retriever, RetrieverConfig
from recllm.profile.postgres_store import PostgresProfileConfig, PostgresProfileStore, partition_name, redacted
from recllm.profile.events import Event
from recllm.synthetic.records import UserProfileSeed
from tests.postgres_server import postgres_server  # noqa: F401 (session fixture)

PARTITIONS = 8


@pytest.fixture()
def url(postgres_server) -> str:  # noqa: F811
    return postgres_server.new_database("pg")


@pytest.fixture()
def store(url):
    with PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS)) as opened:
        yield opened


def event(user_id: str, ts: int, item_id: int = 1) -> Event:
    return Event(user_id, "samokat", item_id, "purchase", ts, f"b-{user_id}-{ts}", 120.0, 1, "spb", "android")


def fragment(user_id: str, key: str) -> ProfileFragment:
    return ProfileFragment(user_id, key, "kuper", "grocery/fish", "берёте рыбу", "you buy fish", False, 1.0,
                           np.ones(4, dtype=np.float32))


def fill(store: PostgresProfileStore, users: list[str]) -> None:
    store.add_users([UserProfileSeed(u, "25-34", "moscow", frozenset(), None) for u in users])
    store.add_events([event(u, 1_700_000_000 + i * 10 + j) for i, u in enumerate(users) for j in range(3)])
    for u in users:
        store.replace_fragments(u, [fragment(u, "kuper:grocery/fish")])


def partition_of_each_user(store: PostgresProfileStore, table: str) -> dict[str, set[str]]:
    rows = store.connection().execute(f"SELECT user_id, tableoid::regclass::text FROM {table}")  # noqa: S608
    placement: dict[str, set[str]] = {}
    for user_id, partition in rows:
        placement.setdefault(user_id, set()).add(partition)
    return placement


def test_each_per_user_table_has_the_configured_hash_partitions(store):
    for table in ("users", "events", "fragments", "history_summaries", "temporal_histograms", "privacy_ledger",
                  "privacy_mechanisms", "released_preferences"):
        rows = store.connection().execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            (table,)).fetchall()
        assert [name for name, _ in rows] == [partition_name(table, r) for r in range(PARTITIONS)]
        assert [bound for _, bound in rows] == [f"FOR VALUES WITH (modulus {PARTITIONS}, remainder {r})"
                                                for r in range(PARTITIONS)]
    strategy = store.connection().execute(
        "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'events'::regclass").fetchone()[0]
    assert strategy == "h"


def test_users_spread_over_all_partitions_and_each_user_stays_in_one(store):
    users = [f"u{i:06d}" for i in range(400)]
    fill(store, users)
    for table in ("users", "events", "fragments"):
        placement = partition_of_each_user(store, table)
        assert set(placement) == set(users)
        assert all(len(partitions) == 1 for partitions in placement.values()), table
        counts = {}
        for (partition,) in placement.values():
            counts[partition] = counts.get(partition, 0) + 1
        assert sorted(counts) == [partition_name(table, r) for r in range(PARTITIONS)]
        assert min(counts.values()) >= 400 / PARTITIONS / 3  # hash spreads users, no partition is nearly empty
    # The same key hashes to the same remainder in every table: a user's rows sit in partitions _pNNN alike.
    suffixes = {table: {u: next(iter(p))[-4:] for u, p in partition_of_each_user(store, table).items()}
                for table in ("users", "events", "fragments")}
    assert suffixes["users"] == suffixes["events"] == suffixes["fragments"]


def test_a_user_read_scans_only_that_users_partition(store):
    fill(store, [f"u{i:03d}" for i in range(50)])
    plan = store.connection().execute(
        "EXPLAIN (FORMAT JSON) SELECT * FROM events WHERE user_id = %s ORDER BY ts", ("u007",)).fetchone()[0]
    relations = set()

    def walk(node):
        if "Relation Name" in node:
            relations.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"])
    (expected,) = partition_of_each_user(store, "events")["u007"]
    assert relations == {expected}


def test_reopening_with_another_partition_count_is_refused(url, store):
    store.add_events([event("u1", 1_700_000_000)])
    with pytest.raises(ValueError, match=rf"partitions=4 but .* already holds events in {PARTITIONS} partitions"):
        PostgresProfileStore(PostgresProfileConfig(url=url, partitions=4))
    with PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS)) as again:
        assert len(again.events_of("u1")) == 1


def test_read_only_store_on_an_empty_database_says_so(url):
    with pytest.raises(LookupError, match="has no partitioned events table; open it once with read_only=False"):
        PostgresProfileStore(PostgresProfileConfig(url=url, read_only=True))


def test_concurrent_stores_create_the_schema_once(url):
    errors, stores = [], []

    def open_store():
        try:
            stores.append(PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS)))
        except Exception as error:  # noqa: BLE001 (collected and asserted below)
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    assert stores[0].partition_count("events") == PARTITIONS
    for opened in stores:
        opened.close()


def test_forget_leaves_no_tuple_of_the_user_in_any_heap_or_index_page(store):
    fill(store, [f"u{i:03d}" for i in range(60)])
    conn = store.connection()
    conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    target = "u017"
    assert pages_holding(store, target) != {}  # the scan sees the user before forget (it can fail)

    removed = store.forget_user(target)

    assert {table: n for table, n in removed.items() if n} == {"events": 3, "fragments": 1, "users": 1,
                                                                       "user_versions": 1}
    assert pages_holding(store, target) == {}
    assert pages_holding(store, "u018") != {}


def pages_holding(store: PostgresProfileStore, user_id: str) -> dict[str, int]:
    """Tuples (live or dead) in heap pages and items in B-tree pages, per relation, whose bytes contain user_id."""
    conn = store.connection()
    needle = user_id.encode().hex()
    found = {}
    relations = conn.execute(
        "SELECT c.relname, c.relkind, am.amname FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')").fetchall()
    for name, kind, method in relations:
        blocks = conn.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                              (name,)).fetchone()[0]
        if kind == "r":
            query = ("SELECT count(*) FROM generate_series(0, %s - 1) b, "
                     "heap_page_items(get_raw_page(%s, b::int)) WHERE encode(t_data, 'hex') LIKE %s")
        elif method == "btree":
            query = ("SELECT count(*) FROM generate_series(1, %s - 1) b, "  # block 0 is the metapage
                     "bt_page_items(%s, b::int) WHERE replace(data, ' ', '') LIKE %s")
        else:
            continue
        hits = conn.execute(query, (blocks, name, f"%{needle}%")).fetchone()[0]
        if hits:
            found[name] = hits
    return found


def test_a_dropped_connection_is_replaced_on_next_use(store, postgres_server):  # noqa: F811
    store.add_events([event("u1", 1_700_000_000)])
    first = store.connection()
    pid = first.info.backend_pid
    with PostgresProfileStore(PostgresProfileConfig(url=store.config.url, partitions=PARTITIONS)) as admin:
        admin.connection().execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):  # the one request that meets the dead connection fails
        store.events_of("u1")
    assert len(store.events_of("u1")) == 1
    assert store.connection() is not first


@pytest.mark.parametrize("options, message", [
    ({"url": "mysql://h/db"}, "url must start with postgresql://"),
    ({"url": "postgresql://h/db", "partitions": 0}, r"partitions must be an int in 1\.\.1024, got 0"),
    ({"url": "postgresql://h/db", "partitions": True}, "partitions must be an int"),
    ({"url": "postgresql://h/db", "partitions": 2000}, "got 2000"),
    ({"url": "postgresql://h/db", "connect_timeout_s": 0}, "connect_timeout_s must be an int >= 1, got 0"),
])
def test_config_rejects_bad_values_naming_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        PostgresProfileConfig(**options)


def test_messages_never_show_the_password():
    shown = redacted("postgresql://alice:s3cret@db.internal:5433/profile")
    assert "s3cret" not in shown and "alice@db.internal:5433/profile" in shown
    with pytest.raises(ValueError) as error:
        PostgresProfileConfig(url="mysql://alice:s3cret@h/db")
    assert "s3cret" not in str(error.value)


def test_read_only_store_refuses_writes_even_outside_its_methods(url, store):
    store.add_events([event("u1", 1_700_000_000)])
    with PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS, read_only=True)) as reader:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.connection().execute("DELETE FROM events")
        assert len(reader.events_of("u1")) == 1


# --- drop-in: the builder fills PostgreSQL exactly as it fills SQLite, and retrieval reads the same ---------------

@pytest.fixture(scope="module")
def built_both(ecosystem, random_item_vectors, tmp_path_factory, postgres_server):  # noqa: F811
    """The ecosystem stored the way ``builders`` stores it, once in SQLite and once in PostgreSQL."""
    stores = {"sqlite": ProfileStore(tmp_path_factory.mktemp("built") / "profile.db"),
              "postgres": PostgresProfileStore(PostgresProfileConfig(url=postgres_server.new_database("built"),
                                                                     partitions=PARTITIONS))}
    for store in stores.values():
        fill_profile(store, ecosystem)
        store_fragments(ecosystem, store, random_item_vectors)
    yield stores
    stores["postgres"].close()


def test_the_builder_stores_the_same_profile_in_both_backends(built_both, ecosystem):
    sqlite, postgres = built_both["sqlite"], built_both["postgres"]
    assert postgres.user_ids() == sqlite.user_ids() and postgres.latest_timestamp() == sqlite.latest_timestamp()
    assert postgres.item_popularity() == sqlite.item_popularity()
    with_fragments = 0
    for user in ecosystem.users:
        u = user.user_id
        assert postgres.events_of(u) == sqlite.events_of(u)
        assert postgres.events_of(u, kind="purchase") == sqlite.events_of(u, kind="purchase")
        pg_fragments, lite_fragments = postgres.fragments_of(u), sqlite.fragments_of(u)
        assert [(f.fragment_key, f.text_ru, f.weight, f.vector.tobytes()) for f in pg_fragments] == \
            [(f.fragment_key, f.text_ru, f.weight, f.vector.tobytes()) for f in lite_fragments]
        with_fragments += bool(pg_fragments)
        assert postgres.history_of(u) == sqlite.history_of(u)
        assert postgres.temporal_histograms_of(u) == sqlite.temporal_histograms_of(u)
        assert postgres.privacy_ledger_of(u) == sqlite.privacy_ledger_of(u)
        pg_release, lite_release = postgres.released_preferences_of(u), sqlite.released_preferences_of(u)
        # Same accounting; the noise differs because each database draws its own privacy secret.
        assert (pg_release is None) == (lite_release is None)
        if pg_release is not None:
            assert pg_release[:9] == lite_release[:9]
    assert with_fragments > len(ecosystem.users) / 2


def test_retrieval_on_postgres_matches_retrieval_on_sqlite(built_both, ecosystem, catalog, random_item_vectors):
    index = CatalogIndex(random_item_vectors, catalog)
    config = RetrieverConfig(preference_source="raw")  # released vectors carry each database's own noise
    retrievers = {name: Retriever(catalog, index, store, config) for name, store in built_both.items()}
    rng = np.random.default_rng(7)
    for user in ecosystem.users[:40]:
        query = rng.standard_normal(random_item_vectors.shape[1]).astype(np.float32)
        query /= np.linalg.norm(query)
        request = RecRequest(user.user_id, "что-нибудь", 10, "", "ru", None)
        got = {name: r.retrieve(request, query) for name, r in retrievers.items()}
        assert got["postgres"].service == got["sqlite"].service
        np.testing.assert_array_equal(got["postgres"].candidate_ids, got["sqlite"].candidate_ids)
        assert [(f.fragment_key, s) for f, s in got["postgres"].fragments] == \
            [(f.fragment_key, s) for f, s in got["sqlite"].fragments]


def test_a_database_created_before_event_ids_gets_the_column_and_unique_index(url):
    with PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS)) as store:
        store.add_events([event("u1", 100)])
        store.connection().execute("ALTER TABLE events DROP COLUMN event_id")  # the schema as it was before
    with PostgresProfileStore(PostgresProfileConfig(url=url, partitions=PARTITIONS)) as store:
        assert [r.timestamp for r in store.events_of("u1")] == [100]
        retry = Event("u1", "samokat", 2, "purchase", 200, "b", 1.0, 1, "spb", "ios", "e-2")
        assert store.add_events([retry]) == 1 and store.add_events([retry]) == 0
        unique = store.connection().execute(
            "SELECT indisunique FROM pg_index WHERE indexrelid = 'events_by_event_id'::regclass").fetchone()
        assert unique == (True,)
        assert [r.timestamp for r in store.events_of("u1")] == [100, 200]


def test_republishing_a_profile_moves_every_users_version(store, tmp_path):
    """``copy_sqlite_profile`` empties the tables with TRUNCATE, which fires no row trigger: a user of the replaced
    profile must not keep the version a running server's kept read is tagged with."""
    from recllm.profile.profile_copy import copy_sqlite_profile

    store.add_events([event("u_old", 1_700_000_000), event("u_both", 1_700_000_000)])
    before = {user: store.user_version(user) for user in ("u_old", "u_both")}
    assert None not in before.values()
    source = ProfileStore(tmp_path / "published.db")
    source.add_events([event("u_both", 1_700_000_100), event("u_new", 1_700_000_100)])
    copy_sqlite_profile(source, store)
    assert store.user_version("u_old") is None  # gone with the replaced profile: nothing of it may be served
    assert store.user_version("u_both") not in (None, before["u_both"]) and store.user_version("u_new") is not None
