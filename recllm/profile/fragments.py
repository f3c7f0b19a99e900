"""Profile fragments: short facts about a user's habits, derived from purchases, in Russian and English.

A fragment says what the user buys, where and how often — "каждую неделю берёте овощи в Купере" /
"you buy vegetables on Kuper every week" — and carries the mean vector of the items behind it, so a query vector
finds the fragments relevant to it and an item vector finds the fragment that explains it. Fragments never
contain names, contacts or anything not derived from the user's own purchases.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from recllm.catalog.product_catalog import SERVICE_DISPLAY, Catalog
from recllm.profile.records import ProfileFragment
from recllm.profile.user_signals import DAY_S, PURCHASE_KINDS

MIN_PURCHASES_FOR_HABIT = 2


def frequency_phrase(timestamps: list[int]) -> tuple[str, str]:
    """(ru, en) phrase for how often purchases repeat, from the median gap between them."""
    if len(timestamps) < MIN_PURCHASES_FOR_HABIT:
        return "покупали", "you bought"
    gaps = np.diff(sorted(timestamps)) / DAY_S
    median_gap = float(np.median(gaps))
    if median_gap <= 2.5:
        return "почти каждый день берёте", "you buy {} almost every day"
    if median_gap <= 9:
        return "каждую неделю берёте", "you buy {} every week"
    if median_gap <= 20:
        return "пару раз в месяц берёте", "you buy {} a couple of times a month"
    return "время от времени берёте", "you buy {} from time to time"


def fragment_texts(category_ru: str, category_en: str, service: str, timestamps: list[int]) -> tuple[str, str]:
    ru_verb, en_pattern = frequency_phrase(timestamps)
    where_ru = SERVICE_DISPLAY[service]["ru_where"]
    service_en = SERVICE_DISPLAY[service]["en"]
    if "{}" in en_pattern:
        en = en_pattern.format(f"{category_en} on {service_en}")
    else:
        en = f"{en_pattern} {category_en} on {service_en}"
    return f"{ru_verb} {category_ru} {where_ru}", en


def build_fragments(user_id: str, events: list, catalog: Catalog, item_vectors: np.ndarray) -> list[ProfileFragment]:
    """One fragment per (service, leaf category) the user bought in, strongest habits first."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for event in events:
        if event.kind in PURCHASE_KINDS:
            groups[(event.service, catalog.get(event.item_id).category_id)].append(event)
    fragments = []
    for (service, category_id), purchases in groups.items():
        category = catalog.categories[category_id]
        timestamps = [e.timestamp for e in purchases]
        text_ru, text_en = fragment_texts(category.name_ru, category.name_en, service, timestamps)
        vector = item_vectors[[e.item_id for e in purchases]].mean(axis=0)  # [D]
        vector = vector / max(float(np.linalg.norm(vector)), 1e-8)
        sensitive = any(c.sensitive for c in catalog.category_path(category_id))
        fragments.append(
            ProfileFragment(
                user_id=user_id,
                fragment_key=f"{service}:{category_id}",
                service=service,
                category_id=category_id,
                text_ru=text_ru,
                text_en=text_en,
                sensitive=sensitive,
                weight=float(len(purchases)),
                vector=vector.astype(np.float32),
            )
        )
    fragments.sort(key=lambda f: (-f.weight, f.fragment_key))
    return fragments
