"""recllm.catalog.russian_synonyms: a shopper's word names the catalog's kind («телефон» → the smartphones), a word
for a good nobody sells is one too («ноут»), and the catalog's own words are never rewritten."""

from __future__ import annotations

import pytest

from recllm.catalog.product_catalog import Catalog, Category, Item
from recllm.catalog.product_terms import Lemmatizer, ProductTerms
from recllm.catalog.russian_synonyms import RUSSIAN_SYNONYMS


@pytest.fixture(scope="module")
def default_catalog() -> Catalog:
    """A catalog of every product line the synthetic catalog sells (one item each)."""
    from recllm.synthetic.vocabulary import CATEGORY_SPECS, LEAF_ASSORTMENTS

    categories = [Category(cid, ru, en, cid.rsplit("/", 1)[0] if "/" in cid else None, sensitive)
                  for cid, ru, en, sensitive in CATEGORY_SPECS]
    products = [(leaf.category_id, t.product) for leaf in LEAF_ASSORTMENTS for t in leaf.templates]
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset())
             for i, (category, name) in enumerate(products)]
    return Catalog(categories, items)


@pytest.fixture(scope="module")
def default_terms(default_catalog) -> ProductTerms:
    return ProductTerms.of(default_catalog)


def test_every_target_is_a_kind_or_a_missing_good_and_no_key_is_a_catalog_word(default_terms):
    lemma = Lemmatizer().lemma
    for word, targets in RUSSIAN_SYNONYMS.items():
        assert lemma(word) == word, f"{word!r} is not a lemma (a request's word never reads as it)"
        assert word not in default_terms.vocabulary, f"{word!r} is the catalog's own word"
        assert all(t in default_terms.kind_items or t in default_terms.missing_goods for t in targets), (word, targets)


@pytest.mark.parametrize("request_text, heads", [
    ("хочу телефон", {"Смартфон"}), ("нужен мобильник", {"Смартфон"}), ("хочу айфон", {"Смартфон"}),
    ("памперсы для малыша", {"Подгузники", "Трусики-подгузники"}), ("кроссы для бега", {"Кроссовки"}),
    ("газировка", {"Кола", "Лимонад"}), ("шоколадка к чаю", {"Шоколад"}), ("минералка", {"Вода"}),
    ("макароны на ужин", {"Спагетти"}), ("зарядка от телефона мамы", {"Зарядное"}),
    ("нужна зарядка", {"Зарядное"}),
])
def test_a_shopper_s_word_names_the_catalog_s_kind(default_catalog, default_terms, request_text, heads):
    found = default_terms.named(request_text)
    assert found is not None
    assert {default_catalog.get(int(i)).name.split()[0] for i in found.item_ids} == heads


def test_a_word_for_a_good_nobody_sells_names_nothing_to_get(default_terms):
    found = default_terms.named("ноут для учёбы")
    assert found is not None and found.terms == ("ноут",) and found.item_ids.size == 0


@pytest.mark.parametrize("request_text, terms", [
    ("чехол для телефона", ("чехол",)), ("чехол на телефон", ("чехол",)),   # a purpose narrows, never names
    ("на ужин хочу спагетти", ("спагетти",)),                              # «на» marks one word only
    ("телефон или наушники", ("телефон", "наушник")),                       # a synonym is a known alternative
])
def test_a_synonym_in_a_purpose_names_nothing_and_is_known_beside_or(default_terms, request_text, terms):
    """Review: «чехол на телефон» named the smartphones too, and «телефон или наушники» named nothing (the
    synonym was not a word the catalog knows, so the «или» read as an alternative it lacks)."""
    assert default_terms.named(request_text).terms == terms
