"""Explanations: cite the user's own non-sensitive fragment for the item, in the request language; fallbacks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.catalog.product_catalog import SERVICE_DISPLAY, SERVICES
from recllm.explanation.item_explanations import SAME_CATEGORY_BONUS, ExplanationConfig, best_fragment, explain_item
from recllm.profile.records import ProfileFragment
from recllm.profile.user_signals import UserSignals

CONFIG = ExplanationConfig()


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def fragment_for(catalog, service: str, category_id: str, vector, sensitive: bool = False) -> ProfileFragment:
    category = catalog.categories[category_id]
    where, name_en = SERVICE_DISPLAY[service]["ru_where"], SERVICE_DISPLAY[service]["en"]
    return ProfileFragment("u1", f"{service}:{category_id}", service, category_id,
                           f"каждую неделю берёте {category.name_ru} {where}",
                           f"you buy {category.name_en} on {name_en} every week", sensitive, 3.0, unit(vector))


def warm_signals(**counts) -> UserSignals:
    """A user with purchases (not cold) who has not bought the item's family unless told."""
    return UserSignals("u1", num_purchases=5, family_counts=Counter(counts.get("families", {})))


@pytest.fixture(scope="module")
def milk(catalog):
    return next(i for i in catalog.in_service("kuper") if i.category_id == "grocery/dairy")


def test_config_validation():
    assert ExplanationConfig(-1).min_fragment_similarity == -1
    for bad in (-1.01, 1.5):
        expected = rf"ExplanationConfig\.min_fragment_similarity must be in \[-1, 1\], got {bad!r}"
        with pytest.raises(ValueError, match=expected):
            ExplanationConfig(bad)


@pytest.mark.parametrize("language, expected", [
    ("ru", "Вы каждую неделю берёте молочные продукты в Купере"),
    ("en", "Because you buy dairy products on Kuper every week"),
])
def test_cites_the_fragment_of_the_items_category_in_the_request_language(catalog, milk, language, expected):
    assert catalog.categories["grocery/dairy"].name_ru == "молочные продукты"  # the wording below depends on it
    item_vector = unit([1.0, 0.2, 0.0])
    fragments = [fragment_for(catalog, "samokat", "grocery/coffee", [0.0, 1.0, 0.0]),
                 fragment_for(catalog, "kuper", "grocery/dairy", [0.9, 0.3, 0.1]),
                 fragment_for(catalog, "kuper", "grocery/vegetables", [0.0, 0.0, 1.0])]
    assert explain_item(milk, item_vector, fragments, warm_signals(), language, CONFIG) == expected


def test_same_category_bonus_beats_a_slightly_closer_other_category(catalog, milk):
    item_vector = unit([1.0, 0.0])
    closer_other = fragment_for(catalog, "kuper", "grocery/vegetables", [1.0, 0.05])
    same_category = fragment_for(catalog, "kuper", "grocery/dairy", [0.8, 0.6])
    chosen, score = best_fragment(milk, item_vector, [closer_other, same_category])
    assert chosen is same_category
    assert score == pytest.approx(float(same_category.vector @ item_vector) + SAME_CATEGORY_BONUS, rel=1e-6)


def test_a_fragment_below_the_threshold_is_not_cited(catalog, milk):
    far = fragment_for(catalog, "kuper", "grocery/vegetables", [0.0, 1.0])
    text = explain_item(milk, unit([1.0, 0.0]), [far], warm_signals(), "ru", CONFIG)
    assert text == "Подходит под ваш запрос"
    assert explain_item(milk, unit([1.0, 0.0]), [far], warm_signals(), "en", CONFIG) == "Matches your request"


@pytest.mark.parametrize("service", SERVICES)
def test_cold_user_gets_popularity_in_the_items_service(catalog, random_item_vectors, service):
    item = catalog.in_service(service)[0]
    cold = UserSignals("u_cold")
    ru = explain_item(item, random_item_vectors[item.item_id], [], cold, "ru", CONFIG)
    en = explain_item(item, random_item_vectors[item.item_id], [], cold, "en", CONFIG)
    assert ru == f"Популярно {SERVICE_DISPLAY[service]['ru_where']}"
    assert en == f"Popular on {SERVICE_DISPLAY[service]['en']}"


def test_cold_wording_for_megamarket(catalog, random_item_vectors):
    item = catalog.in_service("megamarket")[0]
    text = explain_item(item, random_item_vectors[item.item_id], [], UserSignals("u_cold"), "ru", CONFIG)
    assert text == "Популярно на Мегамаркете"


def test_repeat_purchase_without_a_close_fragment(catalog, milk):
    signals = warm_signals(families={milk.family_id: 2})
    assert explain_item(milk, unit([1.0, 0.0]), [], signals, "ru", CONFIG) == "Вы уже брали этот товар"
    assert explain_item(milk, unit([1.0, 0.0]), [], signals, "en", CONFIG) == "You have bought this before"


def test_a_sensitive_fragment_is_never_cited_even_when_it_matches_best(catalog, milk):
    item_vector = unit([1.0, 0.0, 0.0])
    sensitive = fragment_for(catalog, "kuper", "pharmacy/vitamins", [1.0, 0.0, 0.0], sensitive=True)
    ordinary = fragment_for(catalog, "kuper", "grocery/vegetables", [0.8, 0.6, 0.0])
    assert explain_item(milk, item_vector, [sensitive, ordinary], warm_signals(), "ru", CONFIG) == (
        "Вы " + ordinary.text_ru)
    assert explain_item(milk, item_vector, [sensitive], warm_signals(), "en", CONFIG) == "Matches your request"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 6), sensitive_flags=st.lists(st.booleans(), min_size=6,
                                                                                        max_size=6),
       language=st.sampled_from(["ru", "en"]), cold=st.booleans())
def test_no_sensitive_fragment_text_ever_appears(catalog, seed, count, sensitive_flags, language, cold):
    rng = np.random.default_rng(seed)
    categories = sorted(catalog.categories)
    item = catalog.items[int(rng.integers(len(catalog.items)))]
    fragments = []
    for k in range(count):
        category = item.category_id if rng.random() < 0.4 else categories[int(rng.integers(len(categories)))]
        f = fragment_for(catalog, "kuper", category, rng.standard_normal(4), sensitive=sensitive_flags[k])
        if f.sensitive:  # a marker no non-sensitive text can contain
            f = ProfileFragment(f.user_id, f.fragment_key, f.service, f.category_id, f"СЕКРЕТ{k}", f"SECRET{k}",
                                True, f.weight, f.vector)
        fragments.append(f)
    signals = UserSignals("u1") if cold else warm_signals()
    text = explain_item(item, unit(rng.standard_normal(4)), fragments, signals, language, ExplanationConfig(-1.0))
    assert "СЕКРЕТ" not in text and "SECRET" not in text
    if any(not f.sensitive for f in fragments):  # threshold -1: some non-sensitive fragment is always cited
        assert text.startswith("Вы " if language == "ru" else "Because ")


def test_best_fragment_of_nothing():
    assert best_fragment(None, unit([1.0]), []) == (None, -np.inf)


def test_built_fragments_explain_items_of_categories_the_user_buys(ecosystem, catalog, item_vectors, profile_store):
    user_id = "u000000"
    fragments = profile_store.fragments_of(user_id)
    signals = UserSignals(user_id, num_purchases=len(fragments))
    bought = {catalog.get(e.item_id).item_id for e in ecosystem.events_of(user_id) if e.kind == "purchase"}
    cited = 0
    for item_id in sorted(bought):
        item = catalog.get(item_id)
        own = [f for f in fragments if f.category_id == item.category_id and not f.sensitive]
        if not own:
            continue
        for language, prefix in (("ru", "Вы "), ("en", "Because ")):
            text = explain_item(item, item_vectors[item_id], fragments, signals, language, CONFIG)
            assert text in {prefix + f.text(language) for f in own}, (item.name, text)
        cited += 1
    assert cited >= 5
