"""What Russian shoppers call goods that the catalog names otherwise: the request word's lemma → the catalog's.

Tried as a user: «хочу телефон» got gaming headsets, «нужен мобильник» gaming mice, «памперсы для малыша» wet wipes
and baby puree, «кроссы для бега» running belts, «ноут для учёбы» trail running shoes: a word that no item name
uses names no kind (``product_terms``), and the vector search then returns whatever is nearest. Each synonym here
names the items of its targets (the catalog's kind words, as pymorphy3 lemmas); a target the catalog does not sell
(an everyday good of ``everyday_goods``: «ноутбук») makes the synonym one too, so the request is told plainly that
it is not sold here. A catalog word is never rewritten (a test holds every key off, and every target on, the default
catalog's words). Colloquial words, diminutives and brand names used for the product:
"""

from __future__ import annotations

RUSSIAN_SYNONYMS: dict[str, tuple[str, ...]] = {
    # phones: the catalog's word is «смартфон»
    # («сотовый» and «андроид» are left out: «сотовый мёд», «приставка на андроиде»)
    "телефон": ("смартфон",), "мобильник": ("смартфон",), "мобила": ("смартфон",), "айфон": ("смартфон",),
    "ноут": ("ноутбук",),
    # chargers: «Зарядное устройство …», whose kind word is its noun (live: «зарядка от телефона мамы» got gaming
    # accessories)
    "зарядка": ("устройство",),
    "памперс": ("подгузник",),
    "кросс": ("кроссовок",),
    "газировка": ("лимонад", "кола"), "пепси": ("кола",), "спрайт": ("лимонад",),
    "минералка": ("вода",),
    "макароны": ("спагетти",),  # not «паста»: the toothpaste is one too
    # diminutives pymorphy3 keeps as their own lemma
    "шоколадка": ("шоколад",), "конфетка": ("конфета",), "чипсик": ("чипсы",), "йогуртик": ("йогурт",),
    "кофеварка": ("кофемашин",),
}
