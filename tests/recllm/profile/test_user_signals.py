"""User signals: decayed preference vectors, per-category/service/family counts, cold users."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.profile.events import Event
from recllm.profile.user_signals import DAY_S, compute_user_signals, decayed_preference

T0 = 1_760_000_000


def event(item_id: int, service: str, timestamp: int, kind: str = "purchase", price: float = 100.0) -> Event:
    return Event("u1", service, item_id, kind, timestamp, "b1", price, 1, "moscow", "web")


# --- decayed_preference --------------------------------------------------------------------------------------------

def test_decayed_preference_weights_by_half_life():
    vectors = np.eye(2, dtype=np.float32)  # item 0 bought today, item 1 bought 14 days ago
    preference = decayed_preference(vectors, np.array([0.0, 14.0]), half_life_days=7.0)
    expected = np.array([1.0, 0.25]) / np.linalg.norm([1.0, 0.25])
    np.testing.assert_allclose(preference, expected, rtol=1e-6)
    assert preference.dtype == np.float32


def test_recent_items_count_more_than_old_ones():
    vectors = np.eye(2, dtype=np.float32)
    ages = np.array([60.0, 1.0])
    short = decayed_preference(vectors, ages, 7.0)
    long = decayed_preference(vectors, ages, 60.0)
    assert short[1] > short[0] and long[1] > long[0]
    assert short[1] / short[0] > long[1] / long[0]  # a shorter half-life leans further to the recent item


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 6), seed=st.integers(0, 10_000), half_life=st.floats(0.5, 120.0))
def test_decayed_preference_is_unit_norm(count, seed, half_life):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, 8)).astype(np.float32)
    preference = decayed_preference(vectors, rng.uniform(0, 200, count), half_life)
    assert preference is not None and abs(float(np.linalg.norm(preference)) - 1.0) < 1e-5


def test_decayed_preference_of_nothing_is_none():
    assert decayed_preference(np.zeros((0, 4), dtype=np.float32), np.zeros(0), 7.0) is None
    assert decayed_preference(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([3.0, 3.0]), 7.0) is None


# --- compute_user_signals ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_family(catalog):
    """A product family sold in at least two services."""
    return next(members for members in (catalog.family_members(i.family_id) for i in catalog.items)
                if len(members) >= 2)


def test_counts_per_category_service_parent_family_tag_and_brand(catalog, random_item_vectors, shared_family):
    first, second = shared_family[:2]
    other = next(i for i in catalog.in_service("megamarket") if i.category_id != first.category_id)
    events = [
        event(first.item_id, first.service, T0, price=100.0),
        event(second.item_id, second.service, T0 + 2 * DAY_S, price=300.0),
        event(other.item_id, "megamarket", T0 + 5 * DAY_S, price=200.0),
        event(other.item_id, "megamarket", T0 + 9 * DAY_S, kind="view", price=200.0),
    ]
    signals = compute_user_signals("u1", events, catalog, random_item_vectors)
    assert signals.num_purchases == 3 and not signals.is_cold
    assert signals.category_counts == Counter({first.category_id: 1}) + Counter({second.category_id: 1}) + Counter(
        {other.category_id: 1})
    assert signals.service_category_counts[(first.service, first.category_id)] == 1
    assert signals.service_category_counts[(second.service, second.category_id)] == 1
    assert signals.family_counts[first.family_id] == 2  # one product, bought in two services
    assert signals.family_last_ts[first.family_id] == T0 + 2 * DAY_S
    parents = Counter(catalog.categories[i.category_id].parent_id for i in (first, second, other))
    assert signals.parent_category_counts == parents
    assert signals.tag_counts == Counter(first.tags) + Counter(second.tags) + Counter(other.tags)
    assert signals.brand_counts[(other.category_id, other.brand)] == 1
    assert signals.median_price == 200.0
    assert signals.last_ts == T0 + 9 * DAY_S  # any event counts for recency, not only purchases


def test_counts_match_the_ecosystem_history(ecosystem, catalog, random_item_vectors):
    user = next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)
    events = ecosystem.events_of(user)
    signals = compute_user_signals(user, events, catalog, random_item_vectors)
    purchases = [catalog.get(e.item_id) for e in events if e.kind == "purchase"]
    assert signals.num_purchases == len(purchases)
    assert signals.category_counts == Counter(i.category_id for i in purchases)
    assert signals.family_counts == Counter(i.family_id for i in purchases)
    assert sum(signals.service_category_counts.values()) == len(purchases)
    assert set(signals.service_category_counts) == {(e.service, catalog.get(e.item_id).category_id)
                                                    for e in events if e.kind == "purchase"}


def test_counts_equal_adding_one_purchase_at_a_time(ecosystem, catalog, random_item_vectors):
    """The counters are built from whole lists: the same counts (and key order) as the one-at-a-time definition."""
    user = next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)
    purchases = [e for e in ecosystem.events_of(user) if e.kind == "purchase"]
    signals = compute_user_signals(user, purchases, catalog, random_item_vectors)
    expected = {name: Counter() for name in ("category", "service_category", "parent", "family", "tag", "brand")}
    last_ts: dict = {}
    for event in purchases:
        item = catalog.get(event.item_id)
        parent = catalog.categories[item.category_id].parent_id
        expected["category"][item.category_id] += 1
        expected["service_category"][(event.service, item.category_id)] += 1
        if parent:
            expected["parent"][parent] += 1
        expected["family"][item.family_id] += 1
        last_ts[item.family_id] = max(event.timestamp, last_ts.get(item.family_id, 0))
        expected["tag"].update(item.tags)
        expected["brand"][(item.category_id, item.brand)] += 1
    for name, counter in (("category", signals.category_counts), ("service_category", signals.service_category_counts),
                          ("parent", signals.parent_category_counts), ("family", signals.family_counts),
                          ("tag", signals.tag_counts), ("brand", signals.brand_counts)):
        assert list(counter.items()) == list(expected[name].items()), name
    assert signals.family_last_ts == last_ts


def test_without_preferences_only_the_vectors_are_left_out(ecosystem, catalog, random_item_vectors):
    user = next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)
    events = ecosystem.events_of(user)
    full = compute_user_signals(user, events, catalog, random_item_vectors)
    lean = compute_user_signals(user, events, catalog, random_item_vectors, preferences=False)
    assert full.pref_long is not None and lean.pref_long is None and lean.pref_short is None
    assert dataclasses.replace(lean, pref_long=full.pref_long, pref_short=full.pref_short) == full


def test_short_preference_leans_to_recent_purchases(catalog, random_item_vectors):
    old, recent = catalog.items[10], catalog.items[120]
    events = [event(old.item_id, old.service, T0 + d * DAY_S) for d in range(0, 30, 3)]  # 10 old purchases
    events.append(event(recent.item_id, recent.service, T0 + 90 * DAY_S))
    signals = compute_user_signals("u1", events, catalog, random_item_vectors)
    recent_vector, old_vector = random_item_vectors[recent.item_id], random_item_vectors[old.item_id]
    assert signals.pref_short @ recent_vector > signals.pref_long @ recent_vector
    assert signals.pref_long @ old_vector > signals.pref_short @ old_vector
    for preference in (signals.pref_long, signals.pref_short):
        assert abs(float(np.linalg.norm(preference)) - 1.0) < 1e-5


def test_now_ts_sets_the_age_of_purchases(catalog, random_item_vectors):
    a, b = catalog.items[0], catalog.items[1]
    events = [event(a.item_id, a.service, T0), event(b.item_id, b.service, T0 + 7 * DAY_S)]
    at_last_event = compute_user_signals("u1", events, catalog, random_item_vectors)
    much_later = compute_user_signals("u1", events, catalog, random_item_vectors, now_ts=T0 + 700 * DAY_S)
    expected = decayed_preference(random_item_vectors[[a.item_id, b.item_id]], np.array([7.0, 0.0]), 7.0)
    np.testing.assert_allclose(at_last_event.pref_short, expected, rtol=1e-5)
    # Far in the future both purchases are old; their relative weight is still one half-life apart.
    np.testing.assert_allclose(much_later.pref_short, expected, rtol=1e-4)


@pytest.mark.parametrize("kinds", [[], ["view", "search", "add_to_cart"]])
def test_cold_user_has_no_vectors(catalog, random_item_vectors, kinds):
    events = [event(3, catalog.get(3).service, T0 + i, kind) for i, kind in enumerate(kinds)]
    signals = compute_user_signals("u1", events, catalog, random_item_vectors)
    assert signals.is_cold and signals.num_purchases == 0
    assert signals.pref_long is None and signals.pref_short is None
    assert signals.median_price is None and not signals.category_counts and not signals.family_counts


def test_cold_users_of_the_ecosystem(ecosystem, catalog, random_item_vectors):
    cold = [u.user_id for u in ecosystem.users if not ecosystem.events_of(u.user_id)]
    assert cold
    for user_id in cold:
        signals = compute_user_signals(user_id, [], catalog, random_item_vectors)
        assert signals.user_id == user_id and signals.is_cold and signals.pref_long is None
