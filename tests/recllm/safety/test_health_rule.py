"""The sensitive-domain rule: health items for health queries only; sensitive facts never cited."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from recllm.safety.health_rule import (
    asks_about_health, citable_fragments, is_health_query, item_allowed, names_health_goods_only,
    retrievable_fragments, sensitive_item_mask,
)


@dataclass
class Fact:
    key: str
    sensitive: bool


def test_sensitive_mask_follows_the_category_tree(catalog):
    mask = sensitive_item_mask(catalog)
    assert mask.shape == (len(catalog.items),) and mask.any() and not mask.all()
    for item in catalog.items:
        assert mask[item.item_id] == catalog.is_sensitive(item)


def test_health_query_by_nearest_item_or_vote():
    sensitive = np.array([False, True, False, True, True])
    assert is_health_query([1, 0, 2], sensitive, 0.9)            # the nearest item is a health item
    assert not is_health_query([0, 1, 2, 2, 2], sensitive, 0.4)  # 1 of 5 < 0.4
    assert is_health_query([0, 1, 3, 2, 2], sensitive, 0.4)      # 2 of 5 >= 0.4
    assert not is_health_query([-1, -1], sensitive, 0.4)         # FAISS padding only
    assert is_health_query([-1, 3], sensitive, 0.9)              # padding is skipped


def test_item_allowed_routes_the_domain_on_its_own():
    assert item_allowed(True, True) and item_allowed(False, False)
    assert not item_allowed(True, False) and not item_allowed(False, True)


def test_fragments_by_domain_and_never_cited_when_sensitive():
    facts = [Fact("veg", False), Fact("pharmacy", True)]
    assert [f.key for f in retrievable_fragments(facts, health_query=False)] == ["veg"]
    assert [f.key for f in retrievable_fragments(facts, health_query=True)] == ["veg", "pharmacy"]
    assert [f.key for f in citable_fragments(facts)] == ["veg"]


@pytest.mark.parametrize("text, health", [
    ("есть что-то от давления?", True), ("что-нибудь от кашля ребёнку", True), ("нужны витамины", True),
    ("собери домашнюю аптечку", True), ("anything for a cough?", True), ("I need vitamins", True),
    ("таблетки для посудомойки", False), ("хочу мёд", False), ("сироп к блинам", False),
    ("шампунь от перхоти", False), ("средство от накипи", False), ("хочу полезный ужин", False),
    # symptoms said plainly (a child's age no longer lets the nearest-items vote decide, review of the change)
    ("ребёнку 3 года, температура", True), ("сопли у ребёнка 2 года", True), ("сыну 4 года, болит живот", True),
    ("my son is sick", True), ("she has a fever", True), ("игрушка сыну 3 года", False),
    ("сопло для кондитерского мешка", False), ("чайник с регулировкой температуры", False),
    ("термос, держит температуру воды", False),
    ("хлеб и витамины", True), ("витамины с цинком", True), ("vitamins for kids", True),
    ("посоветуй что-то с омега-3", True),
])
def test_asks_about_health_reads_the_domain_not_every_medical_word(text, health):
    assert asks_about_health(text) == health


def test_each_health_need_maps_to_the_shelf_that_answers_it_or_to_none():
    from recllm.safety.health_rule import HEALTH_NEEDS, health_need
    from recllm.synthetic.vocabulary import CATEGORY_SPECS

    shelves = {need.name: need.category_ids for _, need in HEALTH_NEEDS}
    assert {c for ids in shelves.values() for c in ids} <= {row[0] for row in CATEGORY_SPECS}  # the catalog's own ids
    cases = {"есть что-то от давления?": "blood pressure", "что-нибудь от изжоги": "heartburn",
             "у ребёнка температура, что дать?": "cold", "anything for a sore throat?": "cold",
             "something for a headache": "pain", "plasters please": "first aid", "витамины для иммунитета": "vitamins"}
    for message, name in cases.items():
        assert health_need(message).name == name, message
    assert health_need("лекарства") is None and health_need("аптечка в машину") is None
    assert shelves["heartburn"] == () and shelves["cold"] == ("pharmacy/cold_remedies",)


def test_every_health_need_is_asked_about_in_both_languages():
    """Review: "anything for heartburn?", «снотворное», "antihistamine please" matched a need but were never read as
    health requests, so the need was never looked up (heartburn was refused as off-topic)."""
    from recllm.safety.health_rule import asks_about_health, health_need

    asked = {"blood pressure": ("есть что-то от давления?", "blood pressure pills"),
             "heartburn": ("что-нибудь от изжоги", "anything for heartburn?"),
             "pain": ("от головной боли", "something for a headache"),
             "allergy": ("антигистаминное", "antihistamine please"),
             "stomach": ("болит живот", "something for nausea"),
             "sleep": ("снотворное", "pills for insomnia"),
             "thermometer": ("мне нужен градусник", "a thermometer for a child"),
             "cold": ("у ребёнка температура", "anything for a sore throat?"),
             "first aid": ("пластыри", "plasters please"),
             "vitamins": ("что-нибудь для иммунитета", "vitamins for kids")}
    for name, messages in asked.items():
        for message in messages:
            assert asks_about_health(message) and health_need(message).name == name, message
    # several needs: the one a shelf answers; words that only look like a need
    assert health_need("от боли в горле").name == "cold"
    assert health_need("корм для животных") is None  # «живот» is the stomach, «животных» animals
    assert health_need("meat thermometer") is None and not asks_about_health("термометр для мяса")


@pytest.mark.parametrize("text, named, health", [
    ("сок с витамином C", {"сок": (False,)}, False),            # juice named beside the vitamin: a juice
    ("каша, обогащённая витаминами", {"каша": (False,)}, False),
    ("чай с витамином C", {"чай": ()}, False),                   # a good the catalog lacks: still no pharmacy
    ("что-нибудь с витамином D для ребёнка", {}, True),          # no product: vitamins (review)
    ("что выпить с витамином C при простуде", {}, True),         # health words besides the supplement
    ("витамины и сок", {"сок": (False,), "витамин": (True,)}, True),  # both asked for
    ("сок апельсиновый", {"сок": (False,)}, False),
    ("часы Omega", {}, False), ("омега-3", {}, True),
])
def test_words_ask_for_health_unless_only_a_supplement_of_a_named_product(text, named, health):
    from recllm.safety.health_rule import words_ask_for_health

    flags = [flag for kind in named.values() for flag in kind]
    sensitive = np.array(flags, dtype=bool)

    def named_ids_of(rest):  # the kinds a text names: by word, as ids into ``sensitive``
        ids, start = [], 0
        for kind, kind_flags in named.items():
            if kind in rest.lower():
                ids += range(start, start + len(kind_flags))
            start += len(kind_flags)
        hit = [kind for kind in named if kind in rest.lower()]
        return None if not hit else np.array(ids, dtype=np.int64)

    assert words_ask_for_health(text, named_ids_of, sensitive) is health


def test_naming_only_health_goods_asks_in_that_domain():
    """«а пастилки есть?» says no health word, but this catalog's pastilles are throat lozenges: asking for them by
    name asks about health; a kind with other goods among it («спрей»: hair spray too), a missing one, or none named
    does not."""
    sensitive = np.array([True, True, False])
    kinds = {"пастилки": np.array([0, 1]), "спрей": np.array([1, 2]), "сироп": np.array([], dtype=np.int64)}
    def named(text):
        return next((ids for word, ids in kinds.items() if word in text), None)
    assert names_health_goods_only("а пастилки есть?", named, sensitive)
    for text in ("а спрей есть?", "а сироп есть?", "что-нибудь вкусное"):
        assert not names_health_goods_only(text, named, sensitive), text
    # live: «закончился стиральный порошок» named this catalog's cold powders and got them: a kind said with more
    # than asking words is not asked for by name alone
    assert not names_health_goods_only("закончились стиральные пастилки", named, sensitive)
    assert names_health_goods_only("нужны пастилки, есть?", named, sensitive)


@pytest.mark.parametrize("text", ["посоветуй омегу-3 за 15 минут до 500р", "cough syrup for kids", "cough drops"])
def test_health_words_in_other_forms(text):
    """Labeled health requests that got lemonade or nothing: «омегу-3» (accusative), "cough" before the remedy."""
    assert asks_about_health(text)


def test_a_health_good_asked_for_with_ordering_words_is_asked_for_by_name():
    """«Мне бы бинт», «закажи бинт до 300 рублей», «где у вас найти бинт?» got chocolate and juice."""
    sensitive = np.array([True])
    def named(text):
        return np.array([0]) if "бинт" in text else None
    for text in ("Мне бы бинт", "закажи бинт до 300 рублей", "где у вас найти бинт?"):
        assert names_health_goods_only(text, named, sensitive), text
