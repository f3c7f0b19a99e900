"""The streaming population generator: chunk-independent output, valid events, traits across services, hold-out of
each user's latest interactions, cold-start users, bounded memory (by structure) and the files it writes."""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import sqlite3
import tracemalloc
import weakref
from collections import Counter

import pytest

from recllm.profile.event_schema import validate_batch
from recllm.profile.sqlite_store import ProfileStore
from recllm.synthetic.catalog_scale import build_scale_catalog
from recllm.synthetic.scale import (
    HELD_OUT_FILE,
    MANIFEST_FILE,
    PROFILE_DB,
    PopulationConfig,
    StoreAssortments,
    iter_population,
    split_latest,
    write_population,
)

SMALL = dict(seed=5, n_users=240, n_items=3_000, chunk_users=64, store_assortment_fraction=0.2, stores_per_region=2)


@pytest.fixture(scope="module")
def config() -> PopulationConfig:
    return PopulationConfig(**SMALL)


@pytest.fixture(scope="module")
def catalog(config):
    return build_scale_catalog(config.catalog_config)


@pytest.fixture(scope="module")
def stores(catalog, config):
    return StoreAssortments(catalog, config)


@pytest.fixture(scope="module")
def users(config, stores):
    return [user for chunk in iter_population(config, stores=stores) for user in chunk.users]


def digest(users) -> str:
    canonical = [(u.profile.user_id, u.profile.age_band, u.profile.region, sorted(u.profile.traits),
                  u.profile.kid_age, u.store_id, u.cold, u.history, u.held_out) for u in users]
    return hashlib.sha256(repr(canonical).encode()).hexdigest()


def purchased(user, catalog, services):
    return [catalog.get(e.item_id) for e in user.history + user.held_out
            if e.kind == "purchase" and e.service in services]


# --- config -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("n_users", 0), ("chunk_users", 1.5), ("cold_start_fraction", 2.0),
                                          ("median_active_days", "3"), ("history_days", 20), ("seed", None)])
def test_config_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        PopulationConfig(**{field: value})
    assert f"PopulationConfig.{field}" in str(error.value) and repr(value) in str(error.value)


# --- determinism and streaming ------------------------------------------------------------------------------------


def test_chunk_size_does_not_change_the_output(config, stores, users):
    for chunk_users in (1, 7, 500):
        other = PopulationConfig(**{**SMALL, "chunk_users": chunk_users})
        again = [user for chunk in iter_population(other, stores=stores) for user in chunk.users]
        assert digest(again) == digest(users)


def test_a_slice_of_users_equals_the_same_users_of_the_full_run(config, stores, users):
    middle = [user for chunk in iter_population(config, stores=stores, first=100, stop=130) for user in chunk.users]
    assert digest(middle) == digest(users[100:130])


def test_other_seed_differs(stores, users):
    other = PopulationConfig(**{**SMALL, "seed": 6})
    assert digest([u for chunk in iter_population(other, stores=stores, stop=40) for u in chunk.users]) \
        != digest(users[:40])


def test_generator_is_lazy_and_releases_each_chunk(config, stores):
    chunks = iter_population(config, stores=stores)
    assert inspect.isgenerator(chunks)
    first = next(chunks)
    assert len(first.users) == config.chunk_users
    released = weakref.ref(first)
    del first
    next(chunks)
    gc.collect()
    assert released() is None   # the generator keeps no reference to chunks it has handed out


def test_writer_memory_does_not_grow_with_users(tmp_path):
    """Python-heap peak while writing 4x more users stays flat, and so does the heap after each chunk (SQLite's own
    page cache is a fixed size outside Python; RSS at 100K and 1M users is measured in benchmarks/profile_scale.py)."""
    peaks, growth = [], []
    for n_users in (60, 240):
        config = PopulationConfig(**{**SMALL, "n_users": n_users, "chunk_users": 20})
        after_chunk: list[int] = []
        tracemalloc.start()
        write_population(config, tmp_path / f"run{n_users}",
                         on_chunk=lambda chunk: after_chunk.append(tracemalloc.get_traced_memory()[0]))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        growth.append(after_chunk[-1] / after_chunk[0])
    assert peaks[1] < peaks[0] * 1.15
    assert growth[1] < 1.15


# --- content ------------------------------------------------------------------------------------------------------


def test_sampled_events_pass_schema_validation(config, catalog, users):
    sample = [event for user in users[::7] for event in user.history + user.held_out]
    assert len(sample) > 200
    assert validate_batch(sample, catalog, now_ts=config.history_end) == sample
    assert all(config.start_timestamp <= e.timestamp < config.history_end for e in sample)


def test_cold_start_users_exist_and_have_no_events(config, users):
    cold = [user for user in users if user.cold]
    assert 0.01 * len(users) < len(cold) < 0.12 * len(users)
    assert all(not user.history and not user.held_out for user in cold)


def test_held_out_rows_are_each_users_latest(users):
    held = [user for user in users if user.held_out]
    assert len(held) > 0.4 * len(users)
    for user in held:
        assert max(e.timestamp for e in user.history) < min(e.timestamp for e in user.held_out) == user.cutoff_ts
        assert any(e.kind == "purchase" for e in user.held_out)
        assert any(e.kind == "purchase" for e in user.history)
        last_purchase = max(e.timestamp for e in user.history + user.held_out if e.kind == "purchase")
        assert any(e.kind == "purchase" and e.timestamp == last_purchase for e in user.held_out)


def test_split_latest_keeps_single_order_users_whole(users):
    single = next(u for u in users if not u.cold and not u.held_out)
    assert split_latest(single.history, 1800) == (single.history, [])


def test_activity_is_heavy_tailed_with_tens_of_events(users):
    counts = sorted(len(u.history) + len(u.held_out) for u in users if not u.cold)
    mean = sum(counts) / len(counts)
    assert 12 <= mean <= 60
    assert counts[len(counts) // 2] < mean < counts[-1] / 3


def test_traits_act_across_services(users, catalog):
    def share(group, services, prefixes):
        bought = [item for user in group for item in purchased(user, catalog, services)]
        return sum(item.category_id.startswith(prefixes) for item in bought) / max(1, len(bought))

    active = [user for user in users if not user.cold]
    runners = [u for u in active if "runner" in u.profile.traits]
    others = [u for u in active if not u.profile.traits & {"runner", "healthy_eater"}]
    assert share(runners, {"megamarket"}, ("sport/running",)) > 2 * share(others, {"megamarket"}, ("sport/running",))
    grocery = {"samokat", "kuper"}
    assert share(runners, grocery, ("grocery/vegetables", "grocery/healthy_snacks")) > \
        1.3 * share(others, grocery, ("grocery/vegetables", "grocery/healthy_snacks"))
    young_parents = [u for u in active if u.profile.kid_age is not None and u.profile.kid_age <= 2]
    childless = [u for u in active if u.profile.kid_age is None]
    baby = ("grocery/baby_food", "kids/diapers")
    assert share(young_parents, grocery, baby) > 3 * share(childless, grocery, baby)
    assert share(young_parents, {"megamarket"}, ("kids/",)) > 3 * share(childless, {"megamarket"}, ("kids/",))


def test_users_shop_in_a_store_of_their_region_with_every_category(users, stores, catalog):
    for user in users[:50]:
        assert user.store_id.startswith(user.profile.region + "-")
    shelves = next(iter(stores.shelves.values())).shelves
    full = Counter((item.service, item.category_id) for item in catalog.items)
    assert set(shelves) == set(full)
    assert sum(len(items) for items in shelves.values()) < 0.5 * len(catalog)


# --- files --------------------------------------------------------------------------------------------------------


def test_write_population_stores_history_and_held_out_apart(tmp_path, config, users):
    small = PopulationConfig(**{**SMALL, "n_users": 60, "chunk_users": 25})
    summary = write_population(small, tmp_path / "out")
    out = tmp_path / "out"
    expected = users[:60]
    assert summary.users == 60 and summary.history_events == sum(len(u.history) for u in expected)
    store = ProfileStore(out / PROFILE_DB, read_only=True)
    for user in expected[::5]:
        stored = store.events_of(user.profile.user_id)
        assert [(e.item_id, e.kind, e.timestamp) for e in stored] == \
            [(e.item_id, e.kind, e.timestamp) for e in user.history]
    with sqlite3.connect(out / PROFILE_DB) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"events_by_user", "events_by_time"} <= indexes   # the by-time index is built after the load
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 60
        assert conn.execute("SELECT COUNT(*) FROM item_popularity").fetchone()[0] > 0
    lines = [json.loads(line) for line in (out / HELD_OUT_FILE).read_text(encoding="utf-8").splitlines()]
    held = {u.profile.user_id: u for u in expected if u.held_out}
    assert {line["user_id"] for line in lines} == set(held)
    for line in lines:
        user = held[line["user_id"]]
        assert line["cutoff_ts"] == user.cutoff_ts and len(line["events"]) == len(user.held_out)
        assert line["purchased_item_ids"] == sorted({e.item_id for e in user.held_out if e.kind == "purchase"})
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["summary"]["held_out_users"] == len(held) == summary.held_out_users
    wal = out / (PROFILE_DB + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_write_population_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_population(PopulationConfig(**{**SMALL, "n_users": 5}), tmp_path)
