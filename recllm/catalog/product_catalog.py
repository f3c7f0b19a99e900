"""The product catalog shared by the three services: categories, items and their on-disk JSONL form.

Everything downstream (indexes, encoders, the generator's item tokens, the serving filters) addresses items by the
global ``item_id`` defined here, so the catalog is validated once at construction and is immutable afterwards.
A product sold in two services appears as two items sharing a ``family_id``.
"""

from __future__ import annotations

import json
import logging
import math
import operator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SERVICES: tuple[str, ...] = ("samokat", "megamarket", "kuper")

SERVICE_DISPLAY: dict[str, dict[str, str]] = {
    "samokat": {"ru": "Самокат", "ru_where": "в Самокате", "en": "Samokat"},
    "megamarket": {"ru": "Мегамаркет", "ru_where": "на Мегамаркете", "en": "Megamarket"},
    "kuper": {"ru": "Купер", "ru_where": "в Купере", "en": "Kuper"},
}

TAGS: frozenset[str] = frozenset({
    "healthy", "vegetables", "fruit", "protein", "dairy", "lactose_free", "sugar_free", "sweet", "salty",
    "snack", "breakfast", "dinner", "drink", "coffee", "kids", "baby", "gift", "sport", "running", "pet", "household",
    "beauty", "electronics", "home", "books", "health", "vegan", "alcohol_free", "party", "gaming",
})

# Toy leaves of the category tree by the child's age they are made for, inclusive bounds in years (the catalog's
# age marking: the generator stocks them, the retriever holds a request for a child of a stated age to them).
TOY_AGE_BANDS: dict[str, tuple[int, int]] = {
    "kids/toys/toddler": (0, 2),
    "kids/toys/preschool": (3, 6),
    "kids/toys/school": (7, 12),
}


def validate_service(service: str) -> str:
    """Return ``service`` unchanged if it is one of SERVICES, else raise ValueError listing the valid ones."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    return service


@dataclass(frozen=True)
class Category:
    category_id: str          # stable slug, e.g. "grocery/vegetables"
    name_ru: str              # plural, lower-case, usable as an accusative object: "овощи"
    name_en: str              # "vegetables"
    parent_id: str | None
    sensitive: bool           # health / pharmacy: never surfaced unless the user asked about health


@dataclass(frozen=True)
class Item:
    item_id: int              # global id, unique across services, 0..N-1 contiguous
    service: str              # one of SERVICES
    family_id: int            # shared by the same product sold in two services
    name: str                 # Russian product name
    brand: str
    category_id: str          # leaf category
    price: float              # rubles, > 0
    in_stock: bool
    tags: frozenset[str]      # subset of TAGS
    name_en: str = ""         # the product's plain English name ("bananas"), what English requests name it by


def _item_error(item: Item, field: str, problem: str) -> ValueError:
    return ValueError(f"item {item.item_id} ({item.name!r}): field {field!r} {problem}")


def _validate_categories(categories: list[Category]) -> dict[str, Category]:
    by_id: dict[str, Category] = {}
    for category in categories:
        if category.category_id in by_id:
            raise ValueError(f"category {category.category_id!r}: field 'category_id' is duplicated")
        if not category.name_ru or not category.name_en:
            raise ValueError(f"category {category.category_id!r}: fields 'name_ru' and 'name_en' must be non-empty")
        by_id[category.category_id] = category
    for category in categories:
        if category.parent_id is not None and category.parent_id not in by_id:
            raise ValueError(
                f"category {category.category_id!r}: field 'parent_id' refers to unknown category {category.parent_id!r}"
            )
        _check_no_cycle(category, by_id)
    return by_id


def _check_no_cycle(category: Category, by_id: dict[str, Category]) -> None:
    seen = {category.category_id}
    parent_id = category.parent_id
    while parent_id is not None:
        if parent_id in seen:
            raise ValueError(f"category {category.category_id!r}: field 'parent_id' forms a cycle through {parent_id!r}")
        seen.add(parent_id)
        parent_id = by_id[parent_id].parent_id


def _validate_item(position: int, item: Item, categories: dict[str, Category]) -> None:
    if item.item_id != position:
        raise _item_error(item, "item_id", f"must be contiguous: expected {position}, got {item.item_id}")
    if item.service not in SERVICES:
        raise _item_error(item, "service", f"is unknown: {item.service!r}; expected one of {', '.join(SERVICES)}")
    if item.category_id not in categories:
        raise _item_error(item, "category_id", f"refers to unknown category {item.category_id!r}")
    if not isinstance(item.price, (int, float)) or not math.isfinite(item.price) or item.price <= 0:
        raise _item_error(item, "price", f"must be a finite number > 0, got {item.price!r}")
    if not item.name.strip():
        raise _item_error(item, "name", "must be non-empty")
    unknown_tags = set(item.tags) - TAGS
    if unknown_tags:
        raise _item_error(item, "tags", f"has unknown tags {sorted(unknown_tags)}")


class Catalog:
    """Validated, immutable catalog with lookups by id, service, category and family."""

    def __init__(self, categories: list[Category], items: list[Item]):
        self.categories: dict[str, Category] = _validate_categories(categories)
        for position, item in enumerate(items):
            _validate_item(position, item, self.categories)
        self.items: list[Item] = list(items)
        self._sensitive_category_ids = frozenset(
            category_id for category_id in self.categories
            if any(category.sensitive for category in self.category_path(category_id))
        )
        self._by_service: dict[str, list[Item]] = {service: [] for service in SERVICES}
        self._by_family: dict[int, list[Item]] = {}
        for item in self.items:
            self._by_service[item.service].append(item)
            self._by_family.setdefault(item.family_id, []).append(item)
        self._check_families()

    def _check_families(self) -> None:
        for family_id, members in self._by_family.items():
            services = [item.service for item in members]
            if len(services) != len(set(services)):
                duplicate = members[-1]
                raise _item_error(duplicate, "family_id", f"{family_id} appears twice in service {duplicate.service!r}")

    def __len__(self) -> int:
        return len(self.items)

    def get(self, item_id: int) -> Item:
        try:
            index = operator.index(item_id)
        except TypeError:
            index = -1
        if not 0 <= index < len(self.items):
            raise KeyError(f"no item with item_id {item_id!r}; valid ids are 0..{len(self.items) - 1}")
        return self.items[index]

    def in_service(self, service: str) -> list[Item]:
        return list(self._by_service[validate_service(service)])

    def category_path(self, category_id: str) -> list[Category]:
        """Categories from the root down to ``category_id`` inclusive."""
        if category_id not in self.categories:
            raise KeyError(f"no category with category_id {category_id!r}")
        path = []
        current: str | None = category_id
        while current is not None:
            category = self.categories[current]
            path.append(category)
            current = category.parent_id
        return path[::-1]

    def category_ids_above(self, category_id: str) -> frozenset[str]:
        """``category_id`` and its ancestors' ids."""
        return frozenset(category.category_id for category in self.category_path(category_id))

    def item_ids_under(self) -> dict[str, list[int]]:
        """Category id (every level) → the ids of the items in its subtree, in item order (categories with no item
        left out)."""
        under: dict[str, list[int]] = {}
        for item in self.items:
            for category_id in self.category_ids_above(item.category_id):
                under.setdefault(category_id, []).append(item.item_id)
        return under

    def is_sensitive(self, item: Item) -> bool:
        """True when the item's category or any ancestor is sensitive (health / pharmacy)."""
        return item.category_id in self._sensitive_category_ids

    def family_members(self, family_id: int) -> list[Item]:
        """Items of one product family (one per service); empty for an unknown family."""
        return list(self._by_family.get(family_id, []))

    def save_jsonl(self, path: str | Path) -> None:
        """One JSON object per line: all categories (``"kind": "category"``) first, then items (``"kind": "item"``)."""
        with open(path, "w", encoding="utf-8") as out:
            for category in self.categories.values():
                out.write(json.dumps(_category_record(category), ensure_ascii=False) + "\n")
            for item in self.items:
                out.write(json.dumps(_item_record(item), ensure_ascii=False) + "\n")
        logger.info("saved catalog with %d categories and %d items to %s", len(self.categories), len(self.items), path)

    @classmethod
    def load_jsonl(cls, path: str | Path) -> Catalog:
        categories: list[Category] = []
        items: list[Item] = []
        with open(path, encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                kind = record.pop("kind", None)
                if kind == "category":
                    categories.append(Category(**record))
                elif kind == "item":
                    record["tags"] = frozenset(record["tags"])
                    items.append(Item(**record))
                else:
                    raise ValueError(f"{path}:{line_number}: field 'kind' must be 'category' or 'item', got {kind!r}")
        return cls(categories, items)


def _category_record(category: Category) -> dict:
    return {"kind": "category", "category_id": category.category_id, "name_ru": category.name_ru,
            "name_en": category.name_en, "parent_id": category.parent_id, "sensitive": category.sensitive}


def _item_record(item: Item) -> dict:
    return {"kind": "item", "item_id": item.item_id, "service": item.service, "family_id": item.family_id,
            "name": item.name, "brand": item.brand, "category_id": item.category_id, "price": item.price,
            "in_stock": item.in_stock, "tags": sorted(item.tags), **({"name_en": item.name_en} if item.name_en else {})}
