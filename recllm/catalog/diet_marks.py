"""Diet marks the catalog does not carry as tags but its categories and names state: "vegetarian".

The catalog tags ``vegan``, ``sugar_free`` and ``lactose_free``; a request «ужин без мяса» had nothing to filter on, and
the list came with minced beef. Meat and fish are what a vegetarian leaves out, and the catalog says where they are:
the meat and fish shelves, and dishes whose names name them («Салат цезарь с курицей», "pepperoni pizza"). An item is
``vegetarian`` when neither is the case (a frying pan is, too: the mark restricts food and leaves the rest alone).
The mark is read once per catalog (``derived_tag_masks``) and filters like a tag (``ItemArrays.tagged``).
"""

from __future__ import annotations

import re

import numpy as np

from recllm.catalog.product_catalog import Catalog, Item

MEAT_AND_FISH_CATEGORIES = ("grocery/meat", "grocery/fish")
# what a dish's name says it is made of (both of the catalog's languages)
MEAT_OR_FISH_WORDS = re.compile(
    r"мяс|куриц|курин|курочк|говяж|говядин|свин|индейк|\bутк|\bутин|баранин|телятин|фарш|котлет|сосиск|сардельк|колбас|"
    r"ветчин|бекон|пепперони|салями|болоньезе|пельмен|лосос|сёмг|семг|треск|минта|креветк|\bрыб|тунец|тунц|сельд|"
    r"кальмар|форел|"
    r"\bmeat|chicken|\bbeef|\bpork|turkey|\bduck|\blamb\b|\bveal|mince|cutlet|sausage|\bham\b|bacon|pepperoni|salami|"
    r"bolognese|dumpling|salmon|\bcod\b|pollock|shrimp|prawn|\bfish(?:es)?\b|tuna|herring|squid|trout",
    re.IGNORECASE)


def has_meat_or_fish(item: Item, catalog: Catalog) -> bool:
    """The item is on a meat or fish shelf or its name says it is made with meat or fish."""
    on_shelf = any(c.category_id in MEAT_AND_FISH_CATEGORIES for c in catalog.category_path(item.category_id))
    return on_shelf or bool(MEAT_OR_FISH_WORDS.search(f"{item.name} {item.name_en or ''}"))


def item_marks(item: Item, catalog: Catalog) -> frozenset[str]:
    """The derived marks one item carries (``derived_tag_masks`` for one item)."""
    return frozenset() if has_meat_or_fish(item, catalog) else frozenset({"vegetarian"})


def derived_tag_masks(catalog: Catalog) -> dict[str, np.ndarray]:
    """Per derived mark, [N] bool by item id."""
    return {"vegetarian": np.array([not has_meat_or_fish(item, catalog) for item in catalog.items], dtype=bool)}
