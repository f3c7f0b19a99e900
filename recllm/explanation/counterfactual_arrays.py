"""The counterfactual checks of ``causal_explanations`` as array operations over one request's purchases.

``causal_explanations`` defines a profile fact as a group of purchases and checks it by re-computing the user's
signals without the group (``signals_without``) and the reranker's features of the item from them
(``candidate_features``). That reference walks Python counters per group and item: ~15 ms a request for a user with
a few hundred purchases, most of the reranker stage. Here the purchases become columns once per request
(``PurchaseTable``) and each counterfactual is a boolean "kept" row over them; for one item::

    rows[r] == candidate_features([item], [score], signals_without(signals, purchases, dropped[r]), ...)[0]

with ``dropped[0]`` empty (the full profile). Only the features that depend on the purchases are recomputed (counts
per category, service-category, parent category, family, brand, tag; family recency; median price; cold); the
preference similarities and popularity do not change when purchases are removed (the DP release is kept as
released). ``tests/recllm/explanation/test_counterfactual_arrays.py`` holds the two paths equal.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recllm.catalog.product_catalog import SERVICES, TAGS, Catalog
from recllm.profile.records import EventRow
from recllm.profile.user_signals import DAY_S, UserSignals
from recllm.rag.reranker import FEATURE_NAMES

_TAG_INDEX = {tag: k for k, tag in enumerate(sorted(TAGS))}
_SERVICE_INDEX = {service: k for k, service in enumerate(SERVICES)}
_F = {name: k for k, name in enumerate(FEATURE_NAMES)}
_NO_TIME = np.iinfo(np.int64).min  # the "last purchase" of a family with no kept purchase (masked out)


@dataclass(frozen=True)
class CatalogCodes:
    """Per catalog item, the attributes a fact group matches on, as integer codes ([N] each; ``tags`` [N, T])."""

    family: np.ndarray        # [N] int64 family id
    category: np.ndarray      # [N] int64 code of the leaf category
    parent: np.ndarray        # [N] int64 code of the parent category, -1 = none
    brand: np.ndarray         # [N] int64 code of (category, brand)
    tags: np.ndarray          # [N, T] bool
    price: np.ndarray         # [N] float64
    leaf_sensitive: np.ndarray  # [N] bool: the item's own category is sensitive (no history is cited)

    @classmethod
    def build(cls, catalog: Catalog) -> "CatalogCodes":
        categories = {category_id: k for k, category_id in enumerate(catalog.categories)}
        brands: dict[tuple[str, str], int] = {}
        tags = np.zeros((len(catalog), len(_TAG_INDEX)), dtype=bool)
        for item in catalog.items:
            tags[item.item_id, [_TAG_INDEX[t] for t in item.tags]] = True
        parents = [catalog.categories[item.category_id].parent_id for item in catalog.items]
        return cls(
            family=np.array([item.family_id for item in catalog.items], dtype=np.int64),
            category=np.array([categories[item.category_id] for item in catalog.items], dtype=np.int64),
            parent=np.array([categories[p] if p else -1 for p in parents], dtype=np.int64),
            brand=np.array([brands.setdefault((item.category_id, item.brand), len(brands))
                            for item in catalog.items], dtype=np.int64),
            tags=tags,
            price=np.array([item.price for item in catalog.items], dtype=np.float64),
            leaf_sensitive=np.array([catalog.categories[item.category_id].sensitive for item in catalog.items]),
        )


_codes: "weakref.WeakKeyDictionary[Catalog, CatalogCodes]" = weakref.WeakKeyDictionary()


def catalog_codes(catalog: Catalog) -> CatalogCodes:
    """The catalog's codes, built once per catalog object (the catalog is immutable)."""
    codes = _codes.get(catalog)
    if codes is None:
        codes = _codes[catalog] = CatalogCodes.build(catalog)
    return codes


def _similarity(item_vectors: np.ndarray, item_id: int, vector: np.ndarray | None) -> float:
    """item · vector as ``candidate_features`` computes it for a counterfactual ([1, D] @ [D], the same rounding)."""
    return float((item_vectors[[item_id]] @ vector)[0]) if vector is not None else 0.0


class PurchaseTable:
    """One request's purchases as columns ([P] each), for every item's fact groups and counterfactuals."""

    def __init__(self, purchases: Sequence[EventRow], catalog: Catalog):
        codes = catalog_codes(catalog)
        self.codes = codes
        columns = dict(zip(EventRow._fields, zip(*purchases))) if purchases else {}
        items = np.array(columns.get("item_id", ()), dtype=np.int64)  # [P]
        self.timestamp = np.array(columns.get("timestamp", ()), dtype=np.int64)
        self.price = np.array(columns.get("price", ()), dtype=np.float64)
        self.service = np.array([_SERVICE_INDEX[s] for s in columns.get("service", ())], dtype=np.int64)
        self.family, self.category = codes.family[items], codes.category[items]
        self.parent, self.brand = codes.parent[items], codes.brand[items]
        self.tags = codes.tags[items]  # [P, T]
        self._by_price = np.argsort(self.price, kind="stable")  # [P], for the median of any kept subset

    def __len__(self) -> int:
        return len(self.timestamp)

    def fact_groups(self, item_id: int) -> list[tuple[tuple[str, str], np.ndarray]]:
        """``causal_explanations.fact_groups`` of the item: ((signal, service), purchase mask [P]) sorted by key."""
        c = self.codes
        same_category = self.category == c.category[item_id]
        parent = c.parent[item_id]
        matches = {
            "family": self.family == c.family[item_id],
            "category": same_category,
            "parent_category": (self.parent == parent) & ~same_category if parent >= 0 else None,
            "brand": self.brand == c.brand[item_id],
        }
        groups = []
        for signal, match in matches.items():
            if match is None:
                continue
            present = np.bincount(self.service[match], minlength=len(SERVICES))  # purchases per service code
            for service, code in _SERVICE_INDEX.items():
                if present[code]:
                    groups.append(((signal, service), match & (self.service == code)))
        return sorted(groups, key=lambda group: group[0])

    def median_prices(self, kept: np.ndarray) -> np.ndarray:
        """[R] ``np.median`` of the kept purchases' prices per row of ``kept`` [R, P]; NaN for a row that keeps none.
        Picks the middle element(s) of the prices sorted once, so a row costs no sort of its own."""
        rows, width = kept.shape
        if not width:
            return np.full(rows, np.nan)
        ranked = np.cumsum(kept[:, self._by_price], axis=1, dtype=np.int32)  # [R, P] kept up to each sorted position
        n = ranked[:, -1]
        # the first sorted position where a row has kept more than k purchases, for every row in one search: each
        # row is nondecreasing in 0..P, so offsetting row r by r * (P + 1) makes the whole array sorted
        offsets = np.arange(rows, dtype=np.int64) * (width + 1)
        flat = (ranked + offsets[:, None]).ravel()

        def position(k: np.ndarray) -> np.ndarray:
            found = np.searchsorted(flat, offsets + k + 1) - np.arange(rows) * width
            return np.minimum(found, width - 1)

        prices = self.price[self._by_price]
        middle = (prices[position((n - 1) // 2)] + prices[position(n // 2)]) / 2
        return np.where(n > 0, middle, np.nan)

    def features(self, item_id: int, retrieval_score: float, service: str, signals: UserSignals,
                 dropped: Sequence[np.ndarray], item_vectors: np.ndarray, popularity: dict[int, int],
                 now_ts: int) -> np.ndarray:
        """[1 + G, F] float32: the reranker's features of the item with all purchases, then without each mask of
        ``dropped`` (as ``counterfactual_features`` computes them); ``signals`` gives the kept preference vectors."""
        return self.features_many([(item_id, retrieval_score, dropped)], service, signals, item_vectors, popularity,
                                  now_ts)

    def features_many(self, items: Sequence[tuple[int, float, Sequence[np.ndarray]]], service: str,
                      signals: UserSignals, item_vectors: np.ndarray, popularity: dict[int, int],
                      now_ts: int) -> np.ndarray:
        """``features`` of several (item id, retrieval score, dropped masks) at once: their rows stacked in order,
        each item's full-profile row first. One pass over all rows instead of one per item."""
        c = self.codes
        ids = np.array([item_id for item_id, _, _ in items], dtype=np.int64)  # [I]
        sizes = np.array([1 + len(dropped) for _, _, dropped in items])
        row_item = np.repeat(np.arange(len(items)), sizes)  # [R] which item each row belongs to
        kept = np.ones((int(sizes.sum()), len(self)), dtype=bool)  # [R, P]
        row = 0
        for _, _, dropped in items:
            for mask in dropped:
                row += 1
                kept[row] &= ~mask
            row += 1
        # every count of a row in one product per item: its kept purchases [rows, P] x what each count matches
        # [P, 6 + tags] (all purchases, same category, same category in this service, same parent, same family, same
        # brand, then one column per tag of the item)
        tag_columns = [np.flatnonzero(c.tags[item_id]) for item_id in ids.tolist()]
        counts = np.zeros((len(kept), 6 + max((len(t) for t in tag_columns), default=0)))  # [R, 6 + max tags]
        in_service = self.service == _SERVICE_INDEX[service]
        kept_float = kept.astype(np.float64)
        for k, (item_id, start) in enumerate(zip(ids.tolist(), np.cumsum(sizes) - sizes)):
            same_category = self.category == c.category[item_id]
            matches = np.column_stack([
                np.ones(len(self), dtype=bool), same_category, same_category & in_service,
                self.parent == c.parent[item_id], self.family == c.family[item_id], self.brand == c.brand[item_id],
                self.tags[:, tag_columns[k]],
            ])
            counts[start: start + sizes[k], : matches.shape[1]] = kept_float[start: start + sizes[k]] @ matches
        count, category_n, service_category_n, parent_n, family_n, brand_n = counts[:, :6].T  # exact integers
        same_family = self.family[None, :] == c.family[ids][row_item][:, None]  # [R, P]
        last = np.where(kept & same_family, self.timestamp, _NO_TIME).max(axis=1)  # [R]
        tags_n = np.array([len(t) for t in tag_columns])[row_item]  # [R]
        tag_sum = (counts[:, 6:] / np.maximum(count, 1)[:, None]).sum(axis=1)
        long_sim, short_sim = (np.array([_similarity(item_vectors, i, vector) for i in ids.tolist()])
                               for vector in (signals.pref_long, signals.pref_short))
        prices = c.price[ids][row_item]
        medians = self.median_prices(kept)
        rows = np.zeros((len(kept), len(FEATURE_NAMES)), dtype=np.float64)
        rows[:, _F["retrieval_score"]] = np.array([score for _, score, _ in items], dtype=np.float32)[row_item]
        rows[:, _F["pref_long_sim"]] = long_sim[row_item]
        rows[:, _F["pref_short_sim"]] = short_sim[row_item]
        rows[:, _F["log_category_purchases"]] = np.log1p(category_n)
        rows[:, _F["log_service_category_purchases"]] = np.log1p(service_category_n)
        rows[:, _F["log_parent_category_purchases"]] = np.where(c.parent[ids][row_item] >= 0, np.log1p(parent_n), 0.0)
        rows[:, _F["log_family_purchases"]] = np.log1p(family_n)
        rows[:, _F["family_recency"]] = [math.exp(-max(now_ts - t, 0) / (30 * DAY_S)) if n else 0.0
                                         for t, n in zip(last.tolist(), family_n.tolist())]
        rows[:, _F["tag_affinity"]] = np.where(tags_n > 0, tag_sum / np.maximum(tags_n, 1), 0.0)
        rows[:, _F["brand_affinity"]] = brand_n / np.maximum(category_n, 1)
        rows[:, _F["log_price_ratio"]] = [math.log(p / m) if m == m and m else 0.0  # NaN: no purchase kept
                                          for p, m in zip(prices.tolist(), medians.tolist())]
        rows[:, _F["log_popularity"]] = np.log1p([popularity.get(i, 0) for i in ids.tolist()])[row_item]
        rows[:, _F["is_cold_user"]] = (count == 0).astype(np.float64)
        return rows.astype(np.float32)
