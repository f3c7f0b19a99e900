"""Profile fragments: frequency phrases, bilingual texts naming the service, one fragment per (service, category)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from recllm.catalog.product_catalog import SERVICE_DISPLAY, SERVICES
from recllm.profile.fragments import build_fragments, fragment_texts, frequency_phrase
from recllm.profile.events import Event
from recllm.profile.user_signals import DAY_S

T0 = 1_760_000_000


def every(days: float, count: int = 4) -> list[int]:
    return [T0 + round(i * days * DAY_S) for i in range(count)]


def purchase(item_id: int, service: str, timestamp: int, kind: str = "purchase") -> Event:
    return Event("u1", service, item_id, kind, timestamp, "b1", 100.0, 1, "moscow", "web")


@pytest.mark.parametrize("days, ru, en", [
    (1, "почти каждый день берёте", "you buy {} almost every day"),
    (2.5, "почти каждый день берёте", "you buy {} almost every day"),
    (7, "каждую неделю берёте", "you buy {} every week"),
    (9, "каждую неделю берёте", "you buy {} every week"),
    (14, "пару раз в месяц берёте", "you buy {} a couple of times a month"),
    (40, "время от времени берёте", "you buy {} from time to time"),
])
def test_frequency_phrase_from_the_median_gap(days, ru, en):
    assert frequency_phrase(every(days)) == (ru, en)


def test_frequency_phrase_uses_the_median_not_the_mean_and_ignores_order():
    weekly_with_one_long_pause = [T0, T0 + 7 * DAY_S, T0 + 14 * DAY_S, T0 + 114 * DAY_S, T0 + 21 * DAY_S]
    assert frequency_phrase(weekly_with_one_long_pause)[0] == "каждую неделю берёте"


@pytest.mark.parametrize("timestamps", [[], [T0]])
def test_a_single_purchase_is_not_a_habit(timestamps):
    assert frequency_phrase(timestamps) == ("покупали", "you bought")


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("timestamps", [[T0], every(7)])
def test_fragment_texts_name_the_category_and_the_service_in_both_languages(service, timestamps):
    ru, en = fragment_texts("овощи", "vegetables", service, timestamps)
    assert "овощи" in ru and SERVICE_DISPLAY[service]["ru_where"] in ru
    assert "vegetables" in en and f"on {SERVICE_DISPLAY[service]['en']}" in en
    assert "{" not in en and "}" not in en


def test_fragment_texts_exact_wording():
    assert fragment_texts("овощи", "vegetables", "kuper", every(7)) == (
        "каждую неделю берёте овощи в Купере", "you buy vegetables on Kuper every week")
    assert fragment_texts("кофе", "coffee", "megamarket", [T0]) == (
        "покупали кофе на Мегамаркете", "you bought coffee on Megamarket")


def test_one_fragment_per_service_and_category(ecosystem, catalog, random_item_vectors):
    user = next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)
    events = ecosystem.events_of(user)
    fragments = build_fragments(user, events, catalog, random_item_vectors)
    purchases = Counter((e.service, catalog.get(e.item_id).category_id) for e in events if e.kind == "purchase")
    assert len(fragments) == len(purchases) > 1
    assert {f.fragment_key: f.weight for f in fragments} == {f"{s}:{c}": float(n) for (s, c), n in purchases.items()}
    assert all(f.user_id == user and f.fragment_key == f"{f.service}:{f.category_id}" for f in fragments)
    assert [f.weight for f in fragments] == sorted((f.weight for f in fragments), reverse=True)


def test_fragment_vector_is_the_normalised_mean_of_its_purchases(catalog, random_item_vectors):
    item = catalog.in_service("kuper")[0]
    other = next(i for i in catalog.in_service("kuper") if i.category_id == item.category_id and i is not item)
    events = [purchase(item.item_id, "kuper", T0), purchase(other.item_id, "kuper", T0 + DAY_S),
              purchase(item.item_id, "kuper", T0 + 2 * DAY_S)]
    [fragment] = build_fragments("u1", events, catalog, random_item_vectors)
    expected = random_item_vectors[[item.item_id, other.item_id, item.item_id]].mean(axis=0)
    np.testing.assert_allclose(fragment.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert fragment.vector.dtype == np.float32


def test_fragment_vectors_are_unit_norm_for_every_user(ecosystem, catalog, random_item_vectors):
    by_user = defaultdict(list)
    for event in ecosystem.events:
        by_user[event.user_id].append(event)
    for user_id, events in by_user.items():
        for f in build_fragments(user_id, events, catalog, random_item_vectors):
            assert abs(float(np.linalg.norm(f.vector)) - 1.0) < 1e-5


def test_sensitive_flag_follows_the_category(catalog, random_item_vectors):
    vitamins = next(i for i in catalog.items if i.category_id == "pharmacy/vitamins")
    milk = next(i for i in catalog.in_service("kuper") if i.category_id == "grocery/dairy")
    fragments = build_fragments("u1", [purchase(vitamins.item_id, "kuper", T0), purchase(milk.item_id, "kuper", T0)],
                                catalog, random_item_vectors)
    assert {f.category_id: f.sensitive for f in fragments} == {"pharmacy/vitamins": True, "grocery/dairy": False}


def test_only_purchases_make_fragments(catalog, random_item_vectors):
    item = catalog.items[0]
    events = [purchase(item.item_id, item.service, T0 + i, kind) for i, kind in
              enumerate(["view", "search", "add_to_cart", "rating", "return"])]
    assert build_fragments("u1", events, catalog, random_item_vectors) == []


def test_same_category_in_two_services_gives_two_fragments(catalog, random_item_vectors):
    family = next(i.family_id for i in catalog.items if len(catalog.family_members(i.family_id)) >= 2)
    members = catalog.family_members(family)
    events = [purchase(m.item_id, m.service, T0 + k * 7 * DAY_S) for k, m in enumerate(members)]
    fragments = build_fragments("u1", events, catalog, random_item_vectors)
    assert sorted(f.service for f in fragments) == sorted(m.service for m in members)
    for f in fragments:
        assert SERVICE_DISPLAY[f.service]["ru_where"] in f.text_ru
        assert SERVICE_DISPLAY[f.service]["en"] in f.text_en


def test_fragment_texts_follow_the_habit(catalog, random_item_vectors):
    milk = next(i for i in catalog.in_service("samokat") if i.category_id == "grocery/dairy")
    events = [purchase(milk.item_id, "samokat", t) for t in every(1, count=6)]
    [fragment] = build_fragments("u1", events, catalog, random_item_vectors)
    dairy = catalog.categories["grocery/dairy"]
    assert fragment.text_ru == f"почти каждый день берёте {dairy.name_ru} в Самокате"
    assert fragment.text_en == f"you buy {dairy.name_en} on Samokat almost every day"
