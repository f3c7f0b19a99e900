"""Catalog validation, lookups and the JSONL round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.catalog.product_catalog import SERVICES, TAGS, Catalog, Category, Item, validate_service

CATEGORIES = [
    Category("grocery", "продукты", "groceries", None, False),
    Category("grocery/dairy", "молочные продукты", "dairy products", "grocery", False),
    Category("pharmacy", "аптечные товары", "pharmacy goods", None, True),
    Category("pharmacy/vitamins", "витамины", "vitamins", "pharmacy", False),
]


def make_item(index: int, **changes) -> Item:
    fields = dict(item_id=index, service="samokat", family_id=index, name=f"Молоко Простоквашино {index}",
                  brand="Простоквашино", category_id="grocery/dairy", price=89.99, in_stock=True,
                  tags=frozenset({"dairy"}))
    fields.update(changes)
    return Item(**fields)


def small_catalog() -> Catalog:
    return Catalog(CATEGORIES, [
        make_item(0),
        make_item(1, service="kuper", family_id=0, price=92.5),
        make_item(2, service="kuper", category_id="pharmacy/vitamins", tags=frozenset({"health"})),
        make_item(3, service="megamarket", in_stock=False, name="Кроссовки беговые Demix Pulse"),
    ])


def test_validate_service_accepts_known_and_names_the_bad_one():
    assert validate_service("kuper") == "kuper"
    with pytest.raises(ValueError, match="unknown service 'ozon'; expected one of samokat, megamarket, kuper"):
        validate_service("ozon")


@pytest.mark.parametrize("changes, field", [
    ({"item_id": 5}, "item_id"),
    ({"service": "ozon"}, "service"),
    ({"category_id": "grocery/unknown"}, "category_id"),
    ({"price": 0.0}, "price"),
    ({"price": -3.0}, "price"),
    ({"price": float("nan")}, "price"),
    ({"tags": frozenset({"not_a_tag"})}, "tags"),
    ({"name": "  "}, "name"),
    ({"family_id": 0}, "family_id"),  # the same family twice in one service
])
def test_invalid_item_error_names_item_and_field(changes, field):
    items = [make_item(0), make_item(1, **changes)]
    with pytest.raises(ValueError) as error:
        Catalog(CATEGORIES, items)
    message = str(error.value)
    assert f"field '{field}'" in message
    assert "item " in message


def test_invalid_category_parent_and_duplicates_are_reported():
    with pytest.raises(ValueError, match="field 'parent_id'.*'nowhere'"):
        Catalog(CATEGORIES + [Category("x", "икс", "x", "nowhere", False)], [])
    with pytest.raises(ValueError, match="field 'category_id' is duplicated"):
        Catalog(CATEGORIES + [CATEGORIES[0]], [])
    cycle = [Category("a", "а", "a", "b", False), Category("b", "б", "b", "a", False)]
    with pytest.raises(ValueError, match="cycle"):
        Catalog(cycle, [])


def test_lookups():
    catalog = small_catalog()
    assert catalog.get(2).category_id == "pharmacy/vitamins"
    with pytest.raises(KeyError, match="no item with item_id 4"):
        catalog.get(4)
    with pytest.raises(KeyError):
        catalog.get(-1)
    assert [item.item_id for item in catalog.in_service("kuper")] == [1, 2]
    with pytest.raises(ValueError, match="unknown service"):
        catalog.in_service("wildberries")
    assert [c.category_id for c in catalog.category_path("grocery/dairy")] == ["grocery", "grocery/dairy"]
    assert {item.service for item in catalog.family_members(0)} == {"samokat", "kuper"}
    assert catalog.family_members(12345) == []
    assert catalog.is_sensitive(catalog.get(2))       # sensitive through its parent
    assert not catalog.is_sensitive(catalog.get(0))


def test_in_service_returns_a_copy():
    catalog = small_catalog()
    catalog.in_service("samokat").clear()
    assert len(catalog.in_service("samokat")) == 1


def test_jsonl_round_trip_is_exact(tmp_path):
    catalog = small_catalog()
    path = tmp_path / "catalog.jsonl"
    catalog.save_jsonl(path)
    kinds = [json.loads(line)["kind"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert kinds == ["category"] * len(CATEGORIES) + ["item"] * len(catalog.items)
    loaded = Catalog.load_jsonl(path)
    assert loaded.items == catalog.items
    assert loaded.categories == catalog.categories
    assert "Кроссовки беговые" in path.read_text(encoding="utf-8")   # stored readable, not \u-escaped


def test_load_rejects_unknown_record_kind(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "user", "user_id": "u1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="field 'kind'"):
        Catalog.load_jsonl(path)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SERVICES), st.floats(0.01, 1e6, allow_nan=False),
                          st.text(min_size=1, max_size=30).filter(str.strip),
                          st.frozensets(st.sampled_from(sorted(TAGS)), max_size=4), st.booleans()),
                max_size=20))
def test_jsonl_round_trip_property(tmp_path_factory, rows):
    items = [make_item(index, service=service, price=price, name=name, tags=tags, in_stock=in_stock)
             for index, (service, price, name, tags, in_stock) in enumerate(rows)]
    catalog = Catalog(CATEGORIES, items)
    path = tmp_path_factory.mktemp("rt") / "catalog.jsonl"
    catalog.save_jsonl(path)
    loaded = Catalog.load_jsonl(path)
    assert [dataclasses.astuple(item) for item in loaded.items] == [dataclasses.astuple(item) for item in items]


def test_an_english_name_round_trips_and_is_optional(tmp_path):
    import dataclasses

    catalog = small_catalog()
    named = Catalog(list(catalog.categories.values()),
                    [dataclasses.replace(catalog.items[0], name_en="running shoes"), *catalog.items[1:]])
    path = tmp_path / "catalog.jsonl"
    named.save_jsonl(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    items = [r for r in records if r["kind"] == "item"]
    assert items[0]["name_en"] == "running shoes" and all("name_en" not in r for r in items[1:])
    assert Catalog.load_jsonl(path).items == named.items      # a file without the field loads as ""
