"""Retriever: candidate items from the requested service plus the user's relevant profile fragments.

Candidates come from three sources, so both the query and the person shape the list:
1. FAISS search with the query vector over the service's catalog;
2. the same search with the query blended with the user's long-term preference vector (cross-service: what the
   user buys anywhere pulls similar items of this service up) — the differentially private release of it
   (``differential_privacy``), read from the profile store;
3. the user's earlier purchases that are sold in this service (repeat purchases, "как в прошлый раз").
Then the privacy/availability filter: only in-stock items of the service, within the stated budget, with the
stated dietary tags ("без лактозы" → lactose_free); health/medicine items only for a query about that domain
and only there (the same rule applies to fragments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recllm.catalog import SERVICES, Catalog
from recllm.catalog_index import CatalogIndex
from recllm.profile_store import ProfileFragment, ProfileStore, UserFragmentIndex
from recllm.request_validation import RecRequest
from recllm.user_signals import UserSignals, check_preference_source, compute_user_signals, with_released_preferences


@dataclass
class RetrieverConfig:
    num_candidates: int = 64
    preference_weight: float = 0.35  # weight of the long-term preference vector in the blended search vector
    max_repeat_candidates: int = 24
    num_fragments: int = 4
    # The query is "about health" when its nearest item, or this share of its nearest health_vote_k, is a health item.
    health_vote_k: int = 5
    health_vote_threshold: float = 0.4
    # "released": the user's differentially private preference release from the profile store (no release: the
    # vector parts are cold); "raw": the exact decayed sums (tests and analysis only — never serve it).
    preference_source: str = "released"

    def __post_init__(self) -> None:
        for name in ("num_candidates", "health_vote_k"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RetrieverConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_repeat_candidates", "num_fragments"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetrieverConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.preference_weight <= 1:
            raise ValueError(f"RetrieverConfig.preference_weight must be in [0, 1], got {self.preference_weight!r}")
        if not 0 < self.health_vote_threshold <= 1:
            raise ValueError(
                f"RetrieverConfig.health_vote_threshold must be in (0, 1], got {self.health_vote_threshold!r}"
            )
        check_preference_source("RetrieverConfig.preference_source", self.preference_source)


@dataclass
class Retrieval:
    service: str
    candidate_ids: np.ndarray  # [C] int64, best first
    candidate_scores: np.ndarray  # [C] float32, query·item
    fragments: list[tuple[ProfileFragment, float]] = field(default_factory=list)
    health_query: bool = False


class Retriever:
    def __init__(self, catalog: Catalog, catalog_index: CatalogIndex, profile: ProfileStore, config: RetrieverConfig):
        self.catalog = catalog
        self.index = catalog_index
        self.profile = profile
        self.config = config
        self.sensitive_items = np.array(
            [any(c.sensitive for c in catalog.category_path(i.category_id)) for i in catalog.items], dtype=bool
        )

    def infer_service(self, query_vector: np.ndarray) -> str:
        """The service whose best 5 items match the query best."""
        means = {}
        for service in SERVICES:
            scores, _ = self.index.search(service, query_vector[None, :], 5)
            means[service] = float(scores[0].mean()) if scores.size else -1.0
        return max(means, key=means.get)

    def is_health_query(self, query_vector: np.ndarray) -> bool:
        hits = []
        for service in SERVICES:
            scores, ids = self.index.search(service, query_vector[None, :], self.config.health_vote_k)
            hits.extend(zip(scores[0].tolist(), ids[0].tolist()))
        top = [item_id for _, item_id in sorted(hits, reverse=True)[: self.config.health_vote_k] if item_id >= 0]
        if not top:
            return False
        return bool(self.sensitive_items[top[0]]) or self.sensitive_items[top].mean() >= self.config.health_vote_threshold

    def user_signals(self, user_id: str) -> tuple[list, UserSignals]:
        purchases = self.profile.events_of(user_id, kind="purchase")
        signals = compute_user_signals(user_id, purchases, self.catalog, self.index.item_vectors)
        if self.config.preference_source == "released":
            signals = with_released_preferences(signals, self.profile.released_preferences_of(user_id))
        return purchases, signals

    def retrieve(
        self, request: RecRequest, query_vector: np.ndarray, exclude_item_ids: frozenset[int] = frozenset()
    ) -> Retrieval:
        service = request.service or self.infer_service(query_vector)
        health = self.is_health_query(query_vector)
        events, signals = self.user_signals(request.user_id)
        pool = self.search_pool(service, query_vector, signals)
        pool.update(self.repeat_candidates(service, events))
        allowed = [i for i in pool if self.allowed(i, service, request, health, exclude_item_ids)]
        ids = np.array(allowed, dtype=np.int64)
        scores = self.index.item_vectors[ids] @ query_vector if len(ids) else np.zeros(0, np.float32)  # [C]
        order = np.argsort(-scores, kind="stable")[: self.config.num_candidates]
        return Retrieval(
            service=service,
            candidate_ids=ids[order],
            candidate_scores=scores[order].astype(np.float32),
            fragments=self.relevant_fragments(request.user_id, query_vector, health),
            health_query=health,
        )

    def search_pool(self, service: str, query_vector: np.ndarray, signals: UserSignals) -> set[int]:
        vectors = [query_vector]
        if signals.pref_long is not None and self.config.preference_weight > 0:
            blended = (1 - self.config.preference_weight) * query_vector + self.config.preference_weight * signals.pref_long
            vectors.append(blended / max(float(np.linalg.norm(blended)), 1e-8))
        # Over-fetch: filters below drop out-of-stock, over-budget and sensitive items.
        _, ids = self.index.search(service, np.stack(vectors), self.config.num_candidates * 2)
        return {int(i) for i in ids.ravel() if i >= 0}

    def repeat_candidates(self, service: str, events: list) -> set[int]:
        """Items of this service from the user's purchased families, most recent first."""
        families, seen = [], set()
        for event in reversed(events):
            if event.kind != "purchase":
                continue
            family = self.catalog.get(event.item_id).family_id
            if family not in seen:
                seen.add(family)
                families.append(family)
        found: set[int] = set()
        for family in families:
            for item in self.catalog.family_members(family):
                if len(found) >= self.config.max_repeat_candidates:
                    return found
                if item.service == service:
                    found.add(item.item_id)
        return found

    def allowed(self, item_id: int, service: str, request: RecRequest, health: bool, exclude: frozenset[int]) -> bool:
        item = self.catalog.get(item_id)
        return (
            item.service == service
            and item.in_stock
            and item_id not in exclude
            and (request.max_price is None or item.price <= request.max_price)
            and request.required_tags <= item.tags
            # The health domain is routed on its own: a health question gets health items only, and health items
            # never surface anywhere else.
            and bool(self.sensitive_items[item_id]) == health
        )

    def relevant_fragments(self, user_id: str, query_vector: np.ndarray, health: bool) -> list[tuple[ProfileFragment, float]]:
        fragments = [f for f in self.profile.fragments_of(user_id) if health or not f.sensitive]
        return UserFragmentIndex(fragments).search(query_vector, self.config.num_fragments)
