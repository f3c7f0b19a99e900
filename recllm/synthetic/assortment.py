"""Builds the three synthetic service catalogs from ``synthetic.vocabulary``.

samokat sells small packs of everyday food and household basics; kuper sells groceries in all pack sizes plus
pharmacy and pet goods; megamarket sells durable goods, kids' goods and some baby food / diapers. About
``SHARED_GROCERY_FRACTION`` of samokat's grocery items are also on kuper (same family, same name, slightly different
price) and about half of megamarket's baby goods are also on kuper. Deterministic for a seed.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from recllm.catalog.product_catalog import TAGS, Catalog, Category, Item
from recllm.synthetic.vocabulary import CATEGORY_SPECS, ENGLISH_PRODUCT_NAMES, LEAF_ASSORTMENTS, LeafAssortment

logger = logging.getLogger(__name__)

SHARED_GROCERY_FRACTION = 0.13
SHARED_BABY_FRACTION = 0.5
OUT_OF_STOCK_FRACTION = 0.05
SHARED_BABY_LEAVES = ("kids/diapers", "grocery/baby_food")

# Relative share of each leaf in a service's assortment; leaves absent here are not sold in that service.
SERVICE_LEAF_WEIGHTS: dict[str, dict[str, float]] = {
    "samokat": {
        "grocery/vegetables": 8, "grocery/fruit": 6, "grocery/dairy": 9, "grocery/lactose_free": 5, "grocery/meat": 5,
        "grocery/fish": 3, "grocery/grains": 4, "grocery/bakery": 5, "grocery/breakfast": 4, "grocery/sweets": 8,
        "grocery/salty_snacks": 6, "grocery/healthy_snacks": 5, "grocery/drinks": 8, "grocery/coffee": 5,
        "grocery/ready_food": 7, "grocery/baby_food": 2, "household/cleaning": 3, "household/paper": 2,
        "pet/cat_food": 2, "pet/dog_food": 2,
    },
    "kuper": {
        "grocery/vegetables": 10, "grocery/fruit": 8, "grocery/dairy": 9, "grocery/lactose_free": 5, "grocery/meat": 7,
        "grocery/fish": 5, "grocery/grains": 5, "grocery/bakery": 4, "grocery/breakfast": 4, "grocery/sweets": 6,
        "grocery/salty_snacks": 4, "grocery/healthy_snacks": 4, "grocery/drinks": 6, "grocery/coffee": 4,
        "grocery/ready_food": 3, "grocery/baby_food": 3, "kids/diapers": 3, "household/cleaning": 5,
        "household/paper": 3, "pet/cat_food": 4, "pet/dog_food": 4, "pet/accessories": 2, "pharmacy/vitamins": 3,
        "pharmacy/cold_remedies": 3, "pharmacy/first_aid": 2,
    },
    "megamarket": {
        "electronics/headphones": 5, "electronics/smartphones": 4, "electronics/gaming": 6,
        "electronics/kitchen_appliances": 5, "home/kitchenware": 5, "home/textiles": 4, "kids/toys/toddler": 5,
        "kids/toys/preschool": 6, "kids/toys/school": 6, "kids/diapers": 4, "kids/books": 4, "grocery/baby_food": 3,
        "sport/running_shoes": 6, "sport/running_apparel": 6, "sport/fitness": 4, "sport/nutrition": 4,
        "beauty/skincare": 5, "beauty/haircare": 4, "books/fiction": 5, "books/cookbooks": 2,
        "pet/cat_food": 3, "pet/dog_food": 3, "pet/accessories": 4,
    },
}

# samokat sells the smallest pack of grocery lines; kuper's own lines lean to the larger packs.
SMALL_PACK_SERVICES = frozenset({"samokat"})


@dataclass(frozen=True)
class _Offer:
    """One (product line, brand, variant) combination before it becomes an Item in a service."""

    category_id: str
    name: str
    brand: str
    base_price: float
    tags: frozenset[str]
    variant_index: int
    name_en: str = ""


def build_categories() -> list[Category]:
    return [
        Category(category_id, name_ru, name_en, category_id.rpartition("/")[0] or None, sensitive)
        for category_id, name_ru, name_en, sensitive in CATEGORY_SPECS
    ]


def retail_price(raw: float) -> float:
    """Round like a shop shelf: 89.99 below 1000 rubles, 1290.0 above."""
    if raw < 1000:
        return math.floor(raw / 10) * 10 + 9.99
    return float(math.floor(raw / 100) * 100 + 90)


def _leaf_offers(leaf: LeafAssortment, rng: random.Random) -> list[_Offer]:
    """All combinations of a leaf, priced: premium brands cost more, larger variants cost more."""
    brand_factor = {brand: rng.uniform(0.8, 1.3) for brand in leaf.brands}
    for template in leaf.templates:
        stray = set(template.brands) - set(leaf.brands)
        if stray:
            raise ValueError(f"leaf {leaf.category_id!r}: template {template.product!r} "
                             f"uses brands {sorted(stray)} not in the leaf")
    offers = []
    for template in leaf.templates:
        low, high = template.price_range
        for brand in template.brands or leaf.brands:
            base = rng.uniform(low, high) * brand_factor[brand]
            for index, variant in enumerate(template.variants):
                tags = leaf.tags | template.tags
                unknown = tags - TAGS
                if unknown:
                    raise ValueError(f"leaf {leaf.category_id!r}: template {template.product!r} "
                                     f"has unknown tags {sorted(unknown)}")
                name = f"{template.product} {brand} {variant}"
                offers.append(_Offer(leaf.category_id, name, brand, base * (1 + 0.6 * index), tags, index,
                                     ENGLISH_PRODUCT_NAMES[template.product]))
    rng.shuffle(offers)
    return offers


def _allocate(total: int, weights: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Split ``total`` over leaves proportionally to weights, at least 2 per leaf, never above a leaf's capacity."""
    counts = {leaf: min(2, capacity[leaf]) for leaf in weights}
    weight_sum = sum(weights.values())
    for leaf, weight in weights.items():
        counts[leaf] = min(capacity[leaf], max(counts[leaf], int(total * weight / weight_sum)))
    leaves = sorted(weights, key=lambda leaf: -weights[leaf])
    while sum(counts.values()) < total:
        open_leaves = [leaf for leaf in leaves if counts[leaf] < capacity[leaf]]
        if not open_leaves:
            raise ValueError(f"cannot place {total} items: the vocabulary only has {sum(capacity.values())} offers")
        for leaf in open_leaves[: total - sum(counts.values())]:
            counts[leaf] += 1
    while sum(counts.values()) > total:
        leaf = max(leaves, key=lambda name: counts[name])
        counts[leaf] -= 1
    return counts


class _CatalogBuilder:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.items: list[Item] = []
        self.family_by_name: dict[str, int] = {}
        self.offers = {leaf.category_id: _leaf_offers(leaf, rng) for leaf in LEAF_ASSORTMENTS}

    def add(self, service: str, offer_name: str, brand: str, category_id: str, price: float,
            tags: frozenset[str], family_id: int | None = None, name_en: str = "") -> Item:
        item_id = len(self.items)
        if family_id is None:  # the same product name means the same product, whichever service sells it
            family_id = self.family_by_name.setdefault(offer_name, item_id)
        item = Item(item_id=item_id, service=service, family_id=family_id,
                    name=offer_name, brand=brand, category_id=category_id, price=retail_price(price),
                    in_stock=self.rng.random() >= OUT_OF_STOCK_FRACTION, tags=tags, name_en=name_en)
        self.items.append(item)
        return item

    def service_offers(self, service: str, category_id: str) -> list[_Offer]:
        offers = self.offers[category_id]
        if service in SMALL_PACK_SERVICES and category_id.startswith("grocery/"):
            return [offer for offer in offers if offer.variant_index == 0]
        if service == "kuper":
            return sorted(offers, key=lambda offer: -offer.variant_index)  # stable: larger packs first
        return offers

    def fill_service(self, service: str, total: int, copies: list[Item]) -> None:
        """Add ``copies`` (items of another service, same family) then fresh offers up to ``total`` items."""
        weights = SERVICE_LEAF_WEIGHTS[service]
        copies = list({item.name: item for item in reversed(copies)}.values())[::-1]  # one copy per product name
        copied_names = {item.name for item in copies}
        fresh = {leaf: [offer for offer in self.service_offers(service, leaf) if offer.name not in copied_names]
                 for leaf in weights}
        copies_per_leaf: dict[str, list[Item]] = {leaf: [] for leaf in weights}
        for item in copies:
            copies_per_leaf[item.category_id].append(item)
        capacity = {leaf: len(fresh[leaf]) + len(copies_per_leaf[leaf]) for leaf in weights}
        counts = _allocate(total, weights, capacity)
        for leaf in weights:
            for original in copies_per_leaf[leaf][: counts[leaf]]:
                price = original.price * self.rng.uniform(0.9, 1.1)
                self.add(service, original.name, original.brand, leaf, price, original.tags, original.family_id,
                         original.name_en)
            for offer in fresh[leaf][: max(0, counts[leaf] - len(copies_per_leaf[leaf]))]:
                self.add(service, offer.name, offer.brand, leaf, offer.base_price, offer.tags, name_en=offer.name_en)

    def pick_copies(self, service: str, leaves: tuple[str, ...] | None, fraction: float) -> list[Item]:
        candidates = [item for item in self.items if item.service == service
                      and (item.category_id in leaves if leaves else item.category_id.startswith("grocery/"))]
        return sorted(self.rng.sample(candidates, round(len(candidates) * fraction)), key=lambda item: item.item_id)


def build_synthetic_catalog(seed: int, samokat_items: int, megamarket_items: int, kuper_items: int) -> Catalog:
    """Three service catalogs in one Catalog; item ids are samokat first, then megamarket, then kuper."""
    builder = _CatalogBuilder(random.Random(f"{seed}:catalog"))
    builder.fill_service("samokat", samokat_items, copies=[])
    builder.fill_service("megamarket", megamarket_items, copies=[])
    shared = builder.pick_copies("samokat", None, SHARED_GROCERY_FRACTION)
    shared += builder.pick_copies("megamarket", SHARED_BABY_LEAVES, SHARED_BABY_FRACTION)
    kuper_leaves = SERVICE_LEAF_WEIGHTS["kuper"]
    builder.fill_service("kuper", kuper_items, copies=[item for item in shared if item.category_id in kuper_leaves])
    catalog = Catalog(build_categories(), builder.items)
    logger.info("built synthetic catalog: %d items (%s)", len(catalog),
                ", ".join(f"{service}={len(catalog.in_service(service))}" for service in SERVICE_LEAF_WEIGHTS))
    return catalog
