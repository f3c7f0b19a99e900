"""Diet marks read from the catalog's shelves and names: meat and fish are where the catalog says they are."""

from __future__ import annotations

import pytest

from recllm.catalog.diet_marks import derived_tag_masks, has_meat_or_fish
from recllm.catalog.product_catalog import Catalog, Category, Item

CATEGORIES = [Category("grocery", "продукты", "groceries", None, False),
              Category("grocery/meat", "мясо", "meat", "grocery", False),
              Category("grocery/ready_food", "готовая еда", "ready food", "grocery", False),
              Category("kids", "детям", "kids", None, False)]
ITEMS = [  # (name, English name, category, has meat or fish)
    ("Филе индейки Петелинка 500 г", "turkey fillet", "grocery/meat", True),
    ("Салат цезарь с курицей Шеф 200 г", "chicken caesar salad", "grocery/ready_food", True),
    ("Пицца пепперони Обед 400 г", "pepperoni pizza", "grocery/ready_food", True),
    ("Суп-пюре тыквенный Обед 300 г", "pumpkin soup", "grocery/ready_food", False),
    ("Кабачковая икра Дядя Ваня 500 г", "squash caviar", "grocery/ready_food", False),
    ("Погремушка Fisher-Price мягкая", "rattle", "kids", False),  # a brand is no fish
    ("Брокколи Зелёная линия 400 г", "", "grocery/ready_food", False),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en)
             for i, (name, name_en, category, _) in enumerate(ITEMS)]
    return Catalog(CATEGORIES, items)


def test_meat_and_fish_come_from_the_shelf_or_the_dish_name(catalog):
    assert [has_meat_or_fish(item, catalog) for item in catalog.items] == [row[3] for row in ITEMS]


def test_the_vegetarian_mark_is_the_rest(catalog):
    assert derived_tag_masks(catalog)["vegetarian"].tolist() == [not row[3] for row in ITEMS]
