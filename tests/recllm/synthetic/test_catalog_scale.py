"""The expanded catalog: exact sizes, valid items, consistent prices, shared products, determinism."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

import pytest

from recllm.catalog.product_catalog import SERVICES
from recllm.synthetic.catalog_scale import (
    LeafOfferStream,
    ScaleCatalogConfig,
    allocate_leaves,
    build_scale_catalog,
    generated_brands,
)
from recllm.synthetic.vocabulary import LEAF_ASSORTMENTS


@pytest.fixture(scope="module")
def catalog():
    return build_scale_catalog(ScaleCatalogConfig(seed=3, n_items=6_000))


@pytest.mark.parametrize("field, value", [("n_items", 10), ("n_items", 2.5), ("seed", "7"), ("kuper_share", 0.0),
                                          ("samokat_share", True)])
def test_config_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        ScaleCatalogConfig(**{field: value})
    assert f"ScaleCatalogConfig.{field}" in str(error.value) and repr(value) in str(error.value)


def test_shares_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        ScaleCatalogConfig(samokat_share=0.5, megamarket_share=0.5, kuper_share=0.5)


def test_exact_sizes_per_service(catalog):
    sizes = ScaleCatalogConfig(seed=3, n_items=6_000).items_per_service
    assert sum(sizes.values()) == len(catalog) == 6_000
    assert {service: len(catalog.in_service(service)) for service in SERVICES} == sizes
    assert [item.item_id for item in catalog.items] == list(range(len(catalog)))


def test_same_seed_same_catalog_other_seed_differs(catalog):
    assert build_scale_catalog(ScaleCatalogConfig(seed=3, n_items=6_000)).items == catalog.items
    assert build_scale_catalog(ScaleCatalogConfig(seed=4, n_items=6_000)).items != catalog.items


def test_names_unique_within_a_service_and_brands_in_names(catalog):
    for service in SERVICES:
        names = [item.name for item in catalog.in_service(service)]
        assert len(names) == len(set(names)), service
    for item in catalog.items:
        assert f" {item.brand} " in f" {item.name} ", item.name
        assert item.price > 0 and item.tags


def test_many_more_brands_than_the_vocabulary(catalog):
    vocabulary_brands = {brand for leaf in LEAF_ASSORTMENTS for brand in leaf.brands}
    brands = {item.brand for item in catalog.items}
    assert len(brands - vocabulary_brands) > 100
    assert vocabulary_brands & brands


def test_level_zero_is_the_vocabulary():
    leaf = next(leaf for leaf in LEAF_ASSORTMENTS if leaf.category_id == "grocery/dairy")
    stream = LeafOfferStream(leaf, seed=7)
    vocabulary_size = sum(len(t.variants) * len(t.brands or leaf.brands) for t in leaf.templates)
    first = list(itertools.islice(stream, vocabulary_size))
    assert {offer.brand for offer in first} == set(leaf.brands)
    assert all(offer.pack_index == 0 for offer in first)


def test_prices_consistent_across_packs_and_series():
    leaf = next(leaf for leaf in LEAF_ASSORTMENTS if leaf.category_id == "grocery/coffee")
    offers = list(itertools.islice(LeafOfferStream(leaf, seed=7), 3_000))
    by_product = defaultdict(dict)
    for offer in offers:
        match = re.fullmatch(r"(.*?)(?: × (\d+))?", offer.name)
        by_product[match.group(1)][int(match.group(2) or 1)] = offer.raw_price
    compared = 0
    for packs in by_product.values():
        for count, price in packs.items():
            if count > 1 and 1 in packs:
                assert packs[1] < price < count * packs[1]   # a pack costs more in total, less per unit
                compared += 1
    assert compared > 50
    plain = {o.name: o.raw_price for o in offers if o.pack_index == 0}
    premium = [(name, price) for name, price in plain.items() if " Премиум " in name]
    assert premium
    for name, price in premium:
        assert price > plain[name.replace(" Премиум", "")]


def test_samokat_sells_small_grocery_packs(catalog):
    for item in catalog.in_service("samokat"):
        if item.category_id.startswith("grocery/"):
            assert not re.search(r" × [36]$", item.name), item.name


def test_some_products_sold_in_two_services_at_close_prices(catalog):
    shared = [catalog.family_members(family) for family in {item.family_id for item in catalog.items}]
    shared = [members for members in shared if len(members) > 1]
    assert len(shared) > 50
    for members in shared:
        assert len({item.service for item in members}) == len(members)
        assert len({item.name for item in members}) == 1
        prices = [item.price for item in members]
        assert max(prices) / min(prices) < 1.2
    pairs = {tuple(sorted(item.service for item in members)) for members in shared}
    assert ("kuper", "samokat") in pairs and ("kuper", "megamarket") in pairs


def test_generated_brands_are_trade_names_not_first_names():
    for category in ("grocery/dairy", "electronics/gaming"):
        brands = generated_brands(category, seed=7)
        assert len(brands) == len(set(brands)) > 500
        for brand in brands:
            name = brand.split()[0]
            assert not name.endswith(("ана", "ия", "ек", "ia")), brand
            assert not name.endswith("o") or name.endswith("eo"), brand


def test_allocate_leaves_is_exact_and_proportional():
    counts = allocate_leaves(1_000, {"a": 1.0, "b": 3.0, "c": 0.001})
    assert sum(counts.values()) == 1_000
    assert counts["c"] == 2 and counts["b"] > 2.9 * counts["a"]
