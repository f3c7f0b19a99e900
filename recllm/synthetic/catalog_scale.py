"""Expands the synthetic vocabulary into a large catalog (~100K items) for scale runs of the profile stack.

The hand-written vocabulary (``synthetic.vocabulary``) holds ~1,500 offers — enough for the "test" and "default"
ecosystems, far too few for 100K items. This module grows each leaf category along three axes, in the order real
shelves grow: more brands (generated trade names, Cyrillic for food and household goods, Latin for gadgets and
gear), product series of a brand («Премиум», «Эко», "Pro", "Lite") and pack sizes («, 6 шт») or colours / editions
for durable goods. Offers of a leaf are enumerated level by level (level 0 is exactly the vocabulary's own offers),
so a small expanded catalog looks like the hand-written one and a large one adds breadth before depth.

Prices stay consistent: a product line's base price comes from its template's range and a per-brand factor, larger
variants and premium series cost more, a pack of n costs more than one item but less per unit. Like
``synthetic.assortment``, some kuper items are copies of samokat groceries and megamarket baby goods (same family,
price within ±10%); otherwise a product name is sold in one service only. Deterministic for a seed; the existing
"test"/"default" catalogs are untouched (they come from ``synthetic.assortment``).
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from typing import Iterator

from recllm.catalog.product_catalog import SERVICES, Catalog, Item
from recllm.synthetic.assortment import (
    OUT_OF_STOCK_FRACTION,
    SERVICE_LEAF_WEIGHTS,
    SHARED_BABY_FRACTION,
    SHARED_BABY_LEAVES,
    SHARED_GROCERY_FRACTION,
    build_categories,
    retail_price,
)
from recllm.synthetic.behaviour import CONSUMABLE_PREFIXES
from recllm.synthetic.vocabulary import ENGLISH_PRODUCT_NAMES, LEAF_ASSORTMENTS, LeafAssortment, ProductTemplate

logger = logging.getLogger(__name__)

# Generated trade names: stem + ending (+ optional word). No personal names: endings that make first names
# («-ана», «-ия», «-ек», "-ia", "-o") are left out.
_RU_STEMS = ("Вол", "Зар", "Лад", "Мил", "Сев", "Бел", "Дар", "Яр", "Благ", "Свет", "Луч", "Рос", "Крас", "Добр",
             "Прост", "Слав", "Тих", "Вкус", "Нив", "Полес", "Бор", "Лес", "Степ", "Руч")
_RU_ENDINGS = ("ово", "овье", "ушка", "ель", "инка", "ор", "ота", "ень")
_RU_WORDS = ("", " Фуд", " Агро", " Продукт", " Маркет")
_LATIN_STEMS = ("Nor", "Vel", "Kar", "Ast", "Zen", "Lum", "Tor", "Vix", "Sol", "Qor", "Aero", "Quan", "Bran", "Cor",
                "Dex", "Hel", "Ion", "Pix", "Rav", "Tek", "Ulm", "Fyn")
_LATIN_ENDINGS = ("on", "ix", "ara", "eo", "us", "ex", "ora", "tec", "lab", "ar", "yx")
_LATIN_WORDS = ("", " Home", " Go", " Lab", " Studio")
_RU_NAMED_PREFIXES = ("grocery/", "household/", "pet/", "pharmacy/", "books/", "kids/books", "kids/diapers")

# (suffix in the name, price factor). The first entry of each axis is the plain product.
_RU_SERIES = (("", 1.0), ("Премиум", 1.4), ("Эко", 1.25), ("Лайт", 0.95), ("Эконом", 0.8), ("Традиция", 1.05),
              ("Био", 1.3))
_LATIN_SERIES = (("", 1.0), ("Pro", 1.5), ("Lite", 0.8), ("Plus", 1.2), ("Max", 1.6), ("Air", 1.1), ("Neo", 1.0))
_BOOK_SERIES = (("", 1.0), ("серия «Классика»", 1.1), ("серия «Бестселлер»", 1.2), ("серия «Карманная»", 0.7))
# A pack of n: «Молоко … 930 мл × 6», n times the price less 4% per extra unit.
_PACKS = tuple((f" × {count}" if count > 1 else "", count * (1 - 0.04 * (count - 1))) for count in (1, 2, 3, 6))
_PACKED_PREFIXES = CONSUMABLE_PREFIXES + ("beauty/", "sport/nutrition")
_COLOURS = (("", 1.0), (", цвет чёрный", 1.0), (", цвет белый", 1.0), (", цвет серый", 0.98), (", цвет синий", 1.02),
            (", цвет красный", 1.03))
_EDITIONS = (("", 1.0), (", издание 2-е", 1.05), (", подарочная упаковка", 1.3))
SAMOKAT_MAX_PACK = 2   # quick commerce sells the small variant, alone or as a pair


@dataclass(frozen=True)
class ScaleCatalogConfig:
    """Size of the expanded catalog and how it splits over the services (item ids: samokat, megamarket, kuper)."""

    seed: int = 7
    n_items: int = 100_000
    samokat_share: float = 0.2
    megamarket_share: float = 0.5
    kuper_share: float = 0.3

    def __post_init__(self) -> None:
        for name in ("seed", "n_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"ScaleCatalogConfig.{name} must be an int, got {value!r}")
        if self.n_items < 300:
            raise ValueError(f"ScaleCatalogConfig.n_items must be >= 300 (a few items per leaf), got {self.n_items!r}")
        shares = (self.samokat_share, self.megamarket_share, self.kuper_share)
        for name, share in zip(("samokat_share", "megamarket_share", "kuper_share"), shares):
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
                raise ValueError(f"ScaleCatalogConfig.{name} must be a number in (0, 1), got {share!r}")
        if abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"ScaleCatalogConfig shares must sum to 1, got {sum(shares)!r}")

    @property
    def items_per_service(self) -> dict[str, int]:
        samokat = round(self.n_items * self.samokat_share)
        megamarket = round(self.n_items * self.megamarket_share)
        return {"samokat": samokat, "megamarket": megamarket, "kuper": self.n_items - samokat - megamarket}


@dataclass(frozen=True)
class ScaleOffer:
    """One sellable product before it becomes an Item: a template of a brand in a series, variant and pack."""

    category_id: str
    name: str
    brand: str
    raw_price: float
    tags: frozenset[str]
    variant_index: int
    pack_index: int
    name_en: str = ""


def generated_brands(category_id: str, seed: int) -> list[str]:
    """All generated trade names for a leaf, in a seeded order (the leaf's own brands come before these)."""
    russian = category_id.startswith(_RU_NAMED_PREFIXES)
    stems, endings, words = (_RU_STEMS, _RU_ENDINGS, _RU_WORDS) if russian else (_LATIN_STEMS, _LATIN_ENDINGS,
                                                                                  _LATIN_WORDS)
    names = list(dict.fromkeys(stem + ending + word for word in words for stem in stems for ending in endings))
    random.Random(f"{seed}:brands:{category_id}").shuffle(names)
    return names


def _series_axis(category_id: str) -> tuple[tuple[str, float], ...]:
    if category_id.startswith(("books/", "kids/books")):
        return _BOOK_SERIES
    return _RU_SERIES if category_id.startswith(_RU_NAMED_PREFIXES) else _LATIN_SERIES


def _pack_axis(category_id: str) -> tuple[tuple[str, float], ...]:
    if category_id.startswith(_PACKED_PREFIXES):
        return _PACKS
    return _EDITIONS if category_id.startswith(("books/", "kids/books")) else _COLOURS


def _open_templates(leaf: LeafAssortment, brand: str) -> list[ProductTemplate]:
    """Templates a brand makes: the vocabulary's own rules for its brands; generated brands make every template
    except single-brand lines (a trademark such as LEGO Technic or Garmin watches)."""
    if brand in leaf.brands:
        return [template for template in leaf.templates if not template.brands or brand in template.brands]
    return [template for template in leaf.templates if len(template.brands) != 1]


class LeafOfferStream:
    """The offers of one leaf category, level by level: level = brand block + series index + pack index.

    Level 0 is the vocabulary (its brands, plain series, single pack); each further level adds one more block of
    generated brands, one series step and one pack step, so breadth and depth grow together.
    """

    def __init__(self, leaf: LeafAssortment, seed: int):
        self.leaf = leaf
        self.seed = seed
        self.brands = list(leaf.brands) + generated_brands(leaf.category_id, seed)
        self.block = len(leaf.brands)
        self.series = _series_axis(leaf.category_id)
        self.packs = _pack_axis(leaf.category_id)
        self._base_prices: dict[tuple[str, str], float] = {}

    def __iter__(self) -> Iterator[ScaleOffer]:
        blocks = -(-len(self.brands) // self.block)
        for level in itertools.count():
            if level > blocks + len(self.series) + len(self.packs):
                return
            for block, series, pack in self._level_lines(level, blocks):
                for brand in self.brands[block * self.block:(block + 1) * self.block]:
                    yield from self._line_offers(brand, series, pack)

    def _level_lines(self, level: int, blocks: int) -> Iterator[tuple[int, int, int]]:
        for block in range(min(level, blocks - 1) + 1):
            for series in range(min(level - block, len(self.series) - 1) + 1):
                pack = level - block - series
                if pack < len(self.packs):
                    yield block, series, pack

    def _line_offers(self, brand: str, series: int, pack: int) -> Iterator[ScaleOffer]:
        series_name, series_factor = self.series[series]
        pack_name, pack_factor = self.packs[pack]
        for template in _open_templates(self.leaf, brand):
            base = self._base_price(brand, template)
            for index, variant in enumerate(template.variants):
                words = [template.product, brand] + ([series_name] if series_name else []) + [variant]
                yield ScaleOffer(self.leaf.category_id, " ".join(words) + pack_name, brand,
                                 base * (1 + 0.6 * index) * series_factor * pack_factor,
                                 self.leaf.tags | template.tags, index, pack, ENGLISH_PRODUCT_NAMES[template.product])

    def _base_price(self, brand: str, template: ProductTemplate) -> float:
        key = (brand, template.product)
        if key not in self._base_prices:
            rng = random.Random(f"{self.seed}:price:{self.leaf.category_id}:{brand}:{template.product}")
            brand_factor = random.Random(f"{self.seed}:brand_factor:{self.leaf.category_id}:{brand}").uniform(0.8, 1.3)
            low, high = template.price_range
            self._base_prices[key] = rng.uniform(low, high) * brand_factor
        return self._base_prices[key]


def sold_in(service: str, offer: ScaleOffer) -> bool:
    """samokat sells groceries only in the smallest variant, alone or as a pair; the others sell everything."""
    if service == "samokat" and offer.category_id.startswith("grocery/"):
        return offer.variant_index == 0 and offer.pack_index < SAMOKAT_MAX_PACK
    return True


def allocate_leaves(total: int, weights: dict[str, float]) -> dict[str, int]:
    """``total`` items over leaves proportionally to ``weights`` (at least 2 each), largest remainders first."""
    weight_sum = sum(weights.values())
    exact = {leaf: total * weight / weight_sum for leaf, weight in weights.items()}
    counts = {leaf: max(2, int(share)) for leaf, share in exact.items()}
    by_remainder = sorted(weights, key=lambda leaf: (-(exact[leaf] - int(exact[leaf])), leaf))
    for leaf in itertools.islice(itertools.cycle(by_remainder), max(0, total - sum(counts.values()))):
        counts[leaf] += 1
    while sum(counts.values()) > total:
        counts[max(counts, key=lambda leaf: (counts[leaf], leaf))] -= 1
    return counts


class _ScaleCatalogBuilder:
    def __init__(self, seed: int):
        self.rng = random.Random(f"{seed}:scale_catalog")
        self.streams = {leaf.category_id: iter(LeafOfferStream(leaf, seed)) for leaf in LEAF_ASSORTMENTS}
        self.pending: dict[str, list[ScaleOffer]] = {leaf.category_id: [] for leaf in LEAF_ASSORTMENTS}
        self.used_names: set[str] = set()
        self.items: list[Item] = []

    def add(self, service: str, name: str, brand: str, category_id: str, raw_price: float, tags: frozenset[str],
            family_id: int | None = None, name_en: str = "") -> None:
        item_id = len(self.items)
        self.used_names.add(name)
        self.items.append(Item(item_id=item_id, service=service, family_id=item_id if family_id is None else family_id,
                               name=name, brand=brand, category_id=category_id, price=retail_price(raw_price),
                               in_stock=self.rng.random() >= OUT_OF_STOCK_FRACTION, tags=tags, name_en=name_en))

    def next_offers(self, service: str, category_id: str, count: int) -> list[ScaleOffer]:
        """``count`` unused offers of the leaf sold in ``service``; skipped ones wait in ``pending`` for later
        services (samokat skips the large packs that kuper and megamarket then take first)."""
        pending, stream = self.pending[category_id], self.streams[category_id]
        taken: list[ScaleOffer] = []
        skipped: list[ScaleOffer] = []
        position = 0
        while len(taken) < count:
            if position < len(pending):
                offer, position = pending[position], position + 1
            else:
                offer = next(stream, None)
                if offer is None:
                    raise ValueError(f"leaf {category_id!r}: only {len(taken)} offers for {service}, {count} needed")
            if offer.name not in self.used_names:
                (taken if sold_in(service, offer) else skipped).append(offer)
        self.pending[category_id] = skipped + pending[position:]
        return taken

    def fill_service(self, service: str, total: int, copies: list[Item]) -> None:
        counts = allocate_leaves(total, SERVICE_LEAF_WEIGHTS[service])
        copies_per_leaf: dict[str, list[Item]] = {leaf: [] for leaf in counts}
        for item in copies:
            copies_per_leaf[item.category_id].append(item)
        for leaf, count in counts.items():
            for original in copies_per_leaf[leaf][:count]:
                self.add(service, original.name, original.brand, leaf, original.price * self.rng.uniform(0.9, 1.1),
                         original.tags, original.family_id, original.name_en)
            for offer in self.next_offers(service, leaf, max(0, count - len(copies_per_leaf[leaf]))):
                self.add(service, offer.name, offer.brand, leaf, offer.raw_price, offer.tags, name_en=offer.name_en)

    def pick_copies(self, service: str, leaves: tuple[str, ...] | None, fraction: float) -> list[Item]:
        candidates = [item for item in self.items if item.service == service
                      and (item.category_id in leaves if leaves else item.category_id.startswith("grocery/"))]
        return sorted(self.rng.sample(candidates, round(len(candidates) * fraction)), key=lambda item: item.item_id)


def build_scale_catalog(config: ScaleCatalogConfig) -> Catalog:
    """The expanded catalog: ``config.n_items`` items, samokat first, then megamarket, then kuper."""
    sizes = config.items_per_service
    builder = _ScaleCatalogBuilder(config.seed)
    builder.fill_service("samokat", sizes["samokat"], copies=[])
    builder.fill_service("megamarket", sizes["megamarket"], copies=[])
    shared = builder.pick_copies("samokat", None, SHARED_GROCERY_FRACTION)
    shared += builder.pick_copies("megamarket", SHARED_BABY_LEAVES, SHARED_BABY_FRACTION)
    kuper_leaves = SERVICE_LEAF_WEIGHTS["kuper"]
    kuper_counts = allocate_leaves(sizes["kuper"], kuper_leaves)
    # Copies take at most half of a kuper leaf, so kuper keeps assortment of its own.
    per_leaf: dict[str, list[Item]] = {}
    for item in shared:
        if item.category_id in kuper_leaves and len(per_leaf.setdefault(item.category_id, [])) < \
                kuper_counts[item.category_id] // 2:
            per_leaf[item.category_id].append(item)
    builder.fill_service("kuper", sizes["kuper"], copies=[item for items in per_leaf.values() for item in items])
    catalog = Catalog(build_categories(), builder.items)
    logger.info("built scale catalog: %d items (%s)", len(catalog),
                ", ".join(f"{service}={len(catalog.in_service(service))}" for service in SERVICES))
    return catalog
