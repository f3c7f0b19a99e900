"""Behaviour of the synthetic ecosystem: determinism, ground-truth validity, cross-service traits, personalization."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from recllm.catalog.product_catalog import SERVICES
from recllm.synthetic.ecosystem import Ecosystem, SyntheticConfig, generate_ecosystem
from recllm.synthetic.intents import INTENTS, relevant_items, toy_band_for_age

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny() -> Ecosystem:
    return generate_ecosystem(SyntheticConfig.from_name("test"))


@pytest.fixture(scope="module")
def larger() -> Ecosystem:
    """Enough users and queries for the statistical checks, still about a second."""
    return generate_ecosystem(SyntheticConfig.from_name("test", n_users=150, history_days=60, queries_per_user=6))


def purchases(ecosystem: Ecosystem, user_id: str):
    return [ecosystem.catalog.get(e.item_id) for e in ecosystem.events_of(user_id) if e.kind == "purchase"]


# Canonical form (frozensets sorted) so digests do not depend on the process's hash seed.
DIGEST_CODE = """
import dataclasses, hashlib

def canonical(value):
    if isinstance(value, frozenset):
        return tuple(sorted(value))
    if dataclasses.is_dataclass(value):
        return tuple(canonical(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return tuple(canonical(v) for v in value)
    return value

def digest(ecosystem):
    parts = (ecosystem.catalog.items, ecosystem.users, ecosystem.events, ecosystem.queries)
    return hashlib.sha256(repr(canonical(parts)).encode()).hexdigest()
"""
exec(DIGEST_CODE)


# --- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("n_users", 0), ("n_users", 2.5), ("samokat_items", 5), ("kuper_items", True), ("history_days", 3),
    ("queries_per_user", -1), ("cold_start_fraction", 1.5), ("cold_start_fraction", "0.1"), ("start_timestamp", -5),
])
def test_config_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        SyntheticConfig(**{field: value})
    assert f"SyntheticConfig.{field}" in str(error.value)
    assert repr(value) in str(error.value)


def test_presets():
    default = SyntheticConfig.from_name("default")
    assert default == SyntheticConfig()
    assert default.items_per_service == {"samokat": 300, "megamarket": 400, "kuper": 400}
    test = SyntheticConfig.from_name("test")
    assert test.n_users <= 50 and all(60 <= n <= 80 for n in test.items_per_service.values())
    assert SyntheticConfig.from_name("test", seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown SyntheticConfig preset 'huge'"):
        SyntheticConfig.from_name("huge")
    with pytest.raises(ValueError, match="n_user"):
        SyntheticConfig.from_name("test", n_user=3)


def test_test_preset_is_small():
    ecosystem = generate_ecosystem(SyntheticConfig.from_name("test"))
    assert len(ecosystem.users) == 40
    assert {service: len(ecosystem.catalog.in_service(service)) for service in SERVICES} == {
        "samokat": 60, "megamarket": 80, "kuper": 80}
    assert len(ecosystem.queries) == 40 * 4


# --- determinism --------------------------------------------------------------------------------------------------


def test_same_seed_same_ecosystem_and_different_seed_differs(tiny):
    again = generate_ecosystem(SyntheticConfig.from_name("test"))
    assert digest(again) == digest(tiny)
    other = generate_ecosystem(SyntheticConfig.from_name("test", seed=8))
    assert other.catalog.items != tiny.catalog.items
    assert other.events != tiny.events
    assert other.queries != tiny.queries


def test_deterministic_across_processes_with_different_hash_seeds(tiny):
    """Set iteration order changes with PYTHONHASHSEED; the output must not."""
    code = DIGEST_CODE + (
        "from recllm.synthetic.ecosystem import generate_ecosystem, SyntheticConfig\n"
        "print(digest(generate_ecosystem(SyntheticConfig.from_name('test'))))\n")
    digests = {digest(tiny)}  # noqa: F821 (defined by exec above)
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(result.stdout.strip())
    assert len(digests) == 1


# --- catalog ----------------------------------------------------------------------------------------------------


def test_catalog_shape(tiny):
    catalog = tiny.catalog
    for category_id, category in catalog.categories.items():
        assert category.name_ru and category.name_en
        assert catalog.category_path(category_id)[-1] is category
    assert all(item.price > 0 for item in catalog.items)
    out_of_stock = sum(not item.in_stock for item in catalog.items) / len(catalog.items)
    assert 0.01 <= out_of_stock <= 0.12
    kuper_sensitive = [item for item in catalog.in_service("kuper") if catalog.is_sensitive(item)]
    assert kuper_sensitive
    assert not [item for item in catalog.in_service("samokat") if catalog.is_sensitive(item)]
    samokat_prices = [item.price for item in catalog.in_service("samokat")]
    megamarket_prices = [item.price for item in catalog.in_service("megamarket")]
    assert sum(megamarket_prices) / len(megamarket_prices) > 3 * sum(samokat_prices) / len(samokat_prices)


def test_shared_families_link_the_right_services():
    ecosystem = generate_ecosystem(SyntheticConfig.from_name("default", n_users=1, queries_per_user=0))
    catalog = ecosystem.catalog
    families = Counter(item.family_id for item in catalog.items)
    shared = [catalog.family_members(family) for family, count in families.items() if count > 1]
    pairs = Counter(frozenset(item.service for item in members) for members in shared)
    grocery_on_both = sum(1 for members in shared if {"samokat", "kuper"} <= {m.service for m in members}
                          and members[0].category_id.startswith("grocery/"))
    kuper_grocery = [item for item in catalog.in_service("kuper") if item.category_id.startswith("grocery/")]
    assert 0.08 <= grocery_on_both / len(kuper_grocery) <= 0.25
    baby_on_both = [members for members in shared if {"kuper", "megamarket"} <= {m.service for m in members}]
    assert {members[0].category_id for members in baby_on_both} >= {"kids/diapers"}
    assert pairs[frozenset({"samokat", "megamarket"})] + pairs[frozenset({"kuper", "megamarket"})] > 0
    for members in shared:
        assert len({m.name for m in members}) == 1 and len({m.category_id for m in members}) == 1
        assert len({m.service for m in members}) == len(members)
        prices = [m.price for m in members]
        assert max(prices) <= 1.35 * min(prices)


# --- users and events -------------------------------------------------------------------------------------------


def test_cold_users_have_no_events_but_may_have_queries(tiny):
    active = {event.user_id for event in tiny.events}
    cold = [user for user in tiny.users if user.user_id not in active]
    assert len(cold) == round(40 * 0.1)
    for user in cold:
        assert tiny.events_of(user.user_id) == []
    assert {q.user_id for q in tiny.queries} >= {user.user_id for user in cold}
    with pytest.raises(KeyError):
        tiny.events_of("u999999")


def test_events_sorted_valid_and_before_every_query(tiny):
    timestamps = [event.timestamp for event in tiny.events]
    assert timestamps == sorted(timestamps)
    config = tiny.config
    assert config.start_timestamp <= timestamps[0] and timestamps[-1] < config.history_end
    last_event = {event.user_id: event.timestamp for event in tiny.events}
    for query in tiny.queries:
        assert query.timestamp > last_event.get(query.user_id, 0)
    keys = [(query.user_id, query.timestamp) for query in tiny.queries]
    assert keys == sorted(keys)
    styles = {"feedback_style_detailed", "feedback_style_short"}
    for event in tiny.events:
        assert tiny.catalog.get(event.item_id).service == event.service
        assert event.kind in ("view", "search", "add_to_cart", "purchase", "rating", "return", *styles)
        # past chat reactions come from the assistant (device "chat"), the rest from the apps
        assert event.device == "chat" if event.kind in styles else event.device in ("ios", "android", "web")
        assert event.price > 0 and event.quantity >= 1
        assert re.fullmatch(r"u\d{6}", event.user_id)
        assert (event.basket_id is not None) == (event.kind in ("add_to_cart", "purchase", "rating", "return"))


def test_some_users_once_asked_for_an_explanation_style(tiny):
    """Past chat reactions: at most one style event per user, after a purchase of the same item."""
    styles = [e for e in tiny.events if e.kind.startswith("feedback_style_")]
    assert styles and len({e.user_id for e in styles}) == len(styles)
    purchases = {(e.user_id, e.item_id, e.timestamp + 3600) for e in tiny.events if e.kind == "purchase"}
    assert all((e.user_id, e.item_id, e.timestamp) in purchases for e in styles)
    assert {e.kind for e in styles} == {"feedback_style_detailed", "feedback_style_short"}


def test_event_mix_and_baskets(larger):
    kinds = Counter(event.kind for event in larger.events)
    assert kinds["view"] > kinds["purchase"] > kinds["rating"] > kinds["return"] > 0
    basket_sizes = {service: Counter() for service in SERVICES}
    for event in larger.events:
        if event.kind == "purchase":
            basket_sizes[event.service][event.basket_id] += 1
    mean = {s: sum(sizes.values()) / len(sizes) for s, sizes in basket_sizes.items()}
    assert mean["kuper"] > 2 * mean["samokat"]          # weekly big baskets vs quick small ones
    assert len(basket_sizes["megamarket"]) < len(basket_sizes["samokat"])   # rarer orders


def test_samokat_time_of_day_patterns(larger):
    catalog = larger.catalog
    hours = {"grocery/coffee": [], "grocery/salty_snacks": []}
    for event in larger.events:
        category = catalog.get(event.item_id).category_id
        if event.kind == "purchase" and event.service == "samokat" and category in hours:
            hours[category].append((event.timestamp + 3 * 3600) // 3600 % 24)
    morning = lambda hs: sum(7 <= h <= 10 for h in hs) / len(hs)  # noqa: E731
    assert morning(hours["grocery/coffee"]) > morning(hours["grocery/salty_snacks"]) + 0.15


def test_cross_service_traits(larger):
    def share(users, predicate):
        return sum(predicate(purchases(larger, u.user_id)) for u in users) / len(users)

    active = [u for u in larger.users if larger.events_of(u.user_id)]
    runners = [u for u in active if "runner" in u.traits]
    others = [u for u in active if "runner" not in u.traits]
    runs_and_eats_well = lambda items: (  # noqa: E731
        any(i.service == "megamarket" and i.category_id.startswith("sport/running") for i in items)
        and any(i.service in ("kuper", "samokat") and "healthy" in i.tags for i in items))
    assert len(runners) >= 10
    assert share(runners, runs_and_eats_well) >= 0.8
    assert share(others, runs_and_eats_well) <= 0.3

    lactose = [u for u in active if "lactose_intolerant" in u.traits]
    def lf_share(items):
        return sum("lactose_free" in i.tags for i in items) / max(1, sum("dairy" in i.tags for i in items))

    assert sum(map(lf_share, (purchases(larger, u.user_id) for u in lactose))) / len(lactose) > 0.6
    assert sum(map(lf_share, (purchases(larger, u.user_id) for u in others if u not in lactose))) / len(others) < 0.15

    for parent in (u for u in active if u.kid_age is not None):
        toys = {i.category_id for i in purchases(larger, parent.user_id) if i.category_id.startswith("kids/toys")}
        assert toys <= {toy_band_for_age(parent.kid_age)}   # age-appropriate only
    non_parents_with_toys = [u for u in active if u.kid_age is None
                             and any(i.category_id.startswith("kids/") for i in purchases(larger, u.user_id))]
    assert not non_parents_with_toys


def test_brand_loyalty(larger):
    """Within a (user, category), the top two brands cover most purchases."""
    covered = total = 0
    for user in larger.users:
        by_category: dict[str, Counter] = {}
        for item in purchases(larger, user.user_id):
            by_category.setdefault(item.category_id, Counter())[item.brand] += 1
        for brands in by_category.values():
            if sum(brands.values()) >= 5:
                covered += sum(count for _, count in brands.most_common(2))
                total += sum(brands.values())
    assert covered / total > 0.8


# --- queries ----------------------------------------------------------------------------------------------------


def test_every_query_has_valid_ground_truth(larger):
    catalog = larger.catalog
    for query in larger.queries:
        assert query.intent in INTENTS and query.service in INTENTS[query.intent].services
        assert query.language in ("ru", "en") and query.text
        assert query.target_item_id in query.relevant_item_ids
        for item_id in query.relevant_item_ids:
            item = catalog.get(item_id)
            assert item.service == query.service and item.in_stock
            assert query.max_price is None or item.price <= query.max_price
        expected = relevant_items(catalog, query.intent, query.service, query.max_price)
        assert set(query.relevant_item_ids) <= {item.item_id for item in expected}
        if query.intent != "kid_gift":
            assert set(query.relevant_item_ids) == {item.item_id for item in expected}


def test_sensitive_items_only_target_health_intents(larger):
    catalog = larger.catalog
    for query in larger.queries:
        sensitive = [i for i in query.relevant_item_ids if catalog.is_sensitive(catalog.get(i))]
        if query.intent == "health":
            assert len(sensitive) == len(query.relevant_item_ids)
        else:
            assert not sensitive, query
    for intent in INTENTS:
        if not INTENTS[intent].allows_sensitive:
            for service in INTENTS[intent].services:
                assert not [i for i in relevant_items(catalog, intent, service) if catalog.is_sensitive(i)]


def test_query_texts_languages_and_budgets(larger):
    queries = larger.queries
    english = sum(q.language == "en" for q in queries) / len(queries)
    assert 0.1 <= english <= 0.3
    for query in queries:
        cyrillic = bool(re.search("[а-яё]", query.text, re.IGNORECASE))
        assert cyrillic == (query.language == "ru"), query.text
        if query.max_price is not None:
            assert str(int(query.max_price)) in query.text
            currency = ("rubles",) if query.language == "en" else ("рублей", "₽")
            assert any(word in query.text for word in currency), query.text
    kid_gifts = [q for q in queries if q.intent == "kid_gift"]
    assert kid_gifts
    for query in kid_gifts:
        user = next(u for u in larger.users if u.user_id == query.user_id)
        assert re.search(r"\d+", query.text) and str(max(1, user.kid_age)) in query.text
        assert re.search(r"сыну|дочке|son|daughter", query.text)
    assert {q.intent for q in queries} >= {"healthy_dinner", "kid_gift", "reorder_lactose_free", "vague"}
    assert any(q.max_price is not None for q in queries)


def test_no_personal_data_anywhere(tiny):
    text = repr((tiny.catalog.items, tiny.users, tiny.events, tiny.queries))
    assert not re.search(r"\+7\s?\(?\d{3}|\b8\s?\(?9\d{2}\)?\s?\d{3}", text)      # phone numbers
    assert not re.search(r"\b(?:\d{4}[ -]?){3}\d{4}\b", text)                        # card numbers
    assert not re.search(r"@|улица|ул\.|проспект|квартира|street", text, re.IGNORECASE)
    assert all(set(vars(user)) == {"user_id", "age_band", "region", "traits", "kid_age"} for user in tiny.users)


def test_targets_are_personalized(larger):
    """The picked item's brand / category is in the user's history far more often than a random relevant item's."""
    catalog = larger.catalog
    target_brand = random_brand = target_category = random_category = 0.0
    count = 0
    for query in larger.queries:
        bought = purchases(larger, query.user_id)
        if not bought:
            continue
        brands, categories = {i.brand for i in bought}, {i.category_id for i in bought}
        relevant = [catalog.get(i) for i in query.relevant_item_ids]
        target = catalog.get(query.target_item_id)
        target_brand += target.brand in brands
        random_brand += sum(i.brand in brands for i in relevant) / len(relevant)
        target_category += target.category_id in categories
        random_category += sum(i.category_id in categories for i in relevant) / len(relevant)
        count += 1
    assert count > 500
    assert target_brand / count > random_brand / count + 0.25
    assert target_category / count > random_category / count + 0.04


def test_profile_beats_text_only_at_top1(larger):
    """A trivial profile model (most-bought brand/family) picks the target more often than text-only popularity."""
    catalog = larger.catalog
    popularity = Counter(e.item_id for e in larger.events if e.kind == "purchase")
    profile_hits = text_hits = count = 0
    for query in larger.queries:
        bought = purchases(larger, query.user_id)
        if not bought:
            continue
        brands, families = Counter(i.brand for i in bought), Counter(i.family_id for i in bought)
        relevant = [catalog.get(i) for i in query.relevant_item_ids]
        profile_pick = max(relevant, key=lambda i: (families[i.family_id], brands[i.brand], -i.item_id))
        text_pick = max(relevant, key=lambda i: (popularity[i.item_id], -i.item_id))
        profile_hits += profile_pick.item_id == query.target_item_id
        text_hits += text_pick.item_id == query.target_item_id
        count += 1
    assert profile_hits > 1.5 * text_hits


def test_relevant_items_contract(tiny):
    catalog = tiny.catalog
    with pytest.raises(ValueError, match="unknown service"):
        relevant_items(catalog, "coffee", "ozon")
    with pytest.raises(ValueError, match="unknown intent 'teleport'"):
        relevant_items(catalog, "teleport", "samokat")
    coffee = relevant_items(catalog, "coffee", "samokat")
    assert coffee and all("coffee" in i.tags and i.in_stock and i.service == "samokat" for i in coffee)
    cheap = relevant_items(catalog, "coffee", "samokat", max_price=400)
    assert all(i.price <= 400 for i in cheap) and len(cheap) < len(coffee)
    gifts_for_7 = relevant_items(catalog, "kid_gift", "megamarket", kid_age=7)
    assert gifts_for_7 and {i.category_id for i in gifts_for_7} == {"kids/toys/school"}
    lactose_free = relevant_items(catalog, "reorder_lactose_free", "kuper")
    assert lactose_free and all("lactose_free" in i.tags for i in lactose_free)
    assert all(i.category_id.startswith("pharmacy/") for i in relevant_items(catalog, "health", "kuper"))


def test_every_product_line_has_an_english_name_and_every_item_carries_it(tiny):
    from recllm.synthetic.vocabulary import ENGLISH_PRODUCT_NAMES, LEAF_ASSORTMENTS

    products = {t.product for leaf in LEAF_ASSORTMENTS for t in leaf.templates}
    assert products == set(ENGLISH_PRODUCT_NAMES)
    for item in tiny.catalog.items:
        product = max((p for p in products if item.name.startswith(p + " ")), key=len)  # «Настольная игра детская»
        assert item.name_en == ENGLISH_PRODUCT_NAMES[product], item
