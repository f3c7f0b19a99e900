"""Per-user signals computed from the event log across all three services.

These are the profile quantities the reranker and the fragment builder read: long- and short-term preference
vectors (exponentially decayed sums of purchased item vectors), purchase counts per category — over all
services and per service, so kuper vegetables inform a samokat dinner query — repeat-purchase counts and
recency per product family (the same milk on samokat and kuper is one family), tag and brand affinity and the
user's usual price level.

The model reads the preference vectors only as released through the Gaussian mechanism of
``profile.differential_privacy`` (``with_released_preferences``); the raw ones computed here feed that release, the
fragment builder and offline analysis.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from itertools import chain
from dataclasses import dataclass, field

import numpy as np

from recllm.catalog.product_catalog import Catalog
from recllm.profile.records import PreferenceRelease

DAY_S = 86_400
PURCHASE_KINDS = frozenset({"purchase"})
LONG_HALF_LIFE_DAYS = 60.0
SHORT_HALF_LIFE_DAYS = 7.0
# Where the model's preference vectors come from: the user's differentially private release (serving), or the raw
# decayed sums (analysis and tests of the raw signal only).
PREFERENCE_SOURCES = ("released", "raw")


@dataclass
class UserSignals:
    user_id: str
    num_purchases: int = 0
    pref_long: np.ndarray | None = None  # [D], unit or None when the user bought nothing
    pref_short: np.ndarray | None = None  # [D]
    category_counts: Counter = field(default_factory=Counter)  # category_id -> purchases, all services
    service_category_counts: Counter = field(default_factory=Counter)  # (service, category_id) -> purchases
    parent_category_counts: Counter = field(default_factory=Counter)  # parent category id -> purchases
    family_counts: Counter = field(default_factory=Counter)  # family_id -> purchases
    family_last_ts: dict = field(default_factory=dict)  # family_id -> last purchase timestamp
    tag_counts: Counter = field(default_factory=Counter)
    brand_counts: Counter = field(default_factory=Counter)  # (category_id, brand) -> purchases
    median_price: float | None = None
    last_ts: int | None = None

    @property
    def is_cold(self) -> bool:
        return self.num_purchases == 0


def decayed_preference(vectors: np.ndarray, ages_days: np.ndarray, half_life_days: float) -> np.ndarray | None:
    """Unit-normalised sum of item vectors weighted by 0.5 ** (age / half_life)."""
    if len(vectors) == 0:
        return None
    weights = 0.5 ** (ages_days / half_life_days)  # [P]
    summed = (weights[:, None] * vectors).sum(axis=0)  # [D]
    norm = np.linalg.norm(summed)
    return (summed / norm).astype(np.float32) if norm > 0 else None


def compute_user_signals(
    user_id: str, events: list, catalog: Catalog, item_vectors: np.ndarray, now_ts: int | None = None,
    preferences: bool = True,
) -> UserSignals:
    """Aggregate one user's events (any object with service/item_id/kind/timestamp/price/quantity).
    ``preferences=False`` leaves the raw preference vectors out (None): for a caller that replaces them with the
    DP release anyway (``read_user_context``, on every request)."""
    signals = UserSignals(user_id)
    purchases = [e for e in events if e.kind in PURCHASE_KINDS]
    if not purchases:
        return signals
    now_ts = now_ts if now_ts is not None else max(e.timestamp for e in events)
    # Counters built from whole lists (counted in C), in purchase order: the same counts and key order as adding
    # one purchase at a time, at a fraction of the cost (this runs on every request).
    items = [catalog.get(e.item_id) for e in purchases]
    categories = [item.category_id for item in items]
    families = [item.family_id for item in items]
    parents = [catalog.categories[category].parent_id for category in categories]
    signals.category_counts = Counter(categories)
    signals.service_category_counts = Counter(zip((e.service for e in purchases), categories))
    signals.parent_category_counts = Counter(parent for parent in parents if parent)
    signals.family_counts = Counter(families)
    last_ts = signals.family_last_ts
    for family, event in zip(families, purchases):
        last_ts[family] = max(event.timestamp, last_ts.get(family, 0))
    signals.tag_counts = Counter(chain.from_iterable(item.tags for item in items))
    signals.brand_counts = Counter(zip(categories, (item.brand for item in items)))
    prices = [e.price for e in purchases]
    signals.num_purchases = len(purchases)
    if preferences:
        ids = np.array([e.item_id for e in purchases])
        ages = np.array([(now_ts - e.timestamp) / DAY_S for e in purchases], dtype=np.float64).clip(min=0)
        vectors = item_vectors[ids]  # [P, D]
        signals.pref_long = decayed_preference(vectors, ages, LONG_HALF_LIFE_DAYS)
        signals.pref_short = decayed_preference(vectors, ages, SHORT_HALF_LIFE_DAYS)
    signals.median_price = float(np.median(prices))
    signals.last_ts = max(e.timestamp for e in events)
    return signals


def check_preference_source(owner: str, source: str) -> None:
    if source not in PREFERENCE_SOURCES:
        raise ValueError(f"{owner} must be one of {PREFERENCE_SOURCES}, got {source!r}")


def with_released_preferences(signals: UserSignals, release: PreferenceRelease | None) -> UserSignals:
    """The same signals with the preference vectors replaced by the user's DP release; without a release the
    vector parts are those of a cold user (None), whatever the raw history holds."""
    if release is None:
        return dataclasses.replace(signals, pref_long=None, pref_short=None)
    return dataclasses.replace(signals, pref_long=release.pref_long, pref_short=release.pref_short)
