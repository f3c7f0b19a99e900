"""Rebuild everything derived from one user's event log (its newest ``RefreshConfig.max_events``): fragments,
history, temporal features, the DP release.

``refresh_user_profile`` is what the profile ingest service calls after committing a user's new events, so the next
request sees them: it rebuilds the user's profile fragments (``profile.fragments``), the session → day → long-term
history and per-service hour/weekday histograms (``profile.history``), and releases the long- and short-term
preference vectors through the Gaussian mechanism (``profile.differential_privacy``), charged to the user's privacy ledger.
The model only ever reads that release. ``refresh_all_profiles`` does the same for every user at build time.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from recllm.catalog.product_catalog import Catalog
from recllm.profile.differential_privacy import PrivacyConfig, ReleaseOutcome, release_preferences
from recllm.profile.fragments import build_fragments
from recllm.profile.history import HistoryConfig, build_history, histogram_rows, history_rows, temporal_histograms
from recllm.profile.storage import ProfileStorage

log = logging.getLogger(__name__)


@dataclass
class RefreshConfig:
    """How a refresh groups history and releases preferences."""

    history: HistoryConfig = field(default_factory=HistoryConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    # A refresh derives the profile from the user's newest this-many events (years of a real user's shopping): its
    # cost stays bounded however long the log grows before retention trims it — from the whole log it grew
    # linearly (~160 ms at 32,000 events here; ``benchmarks/results/ingest_growth.md``: 109 → 35 ms at 16,000).
    max_events: int = 5000

    def __post_init__(self) -> None:
        if isinstance(self.max_events, bool) or not isinstance(self.max_events, int) or self.max_events <= 0:
            raise ValueError(f"RefreshConfig.max_events must be a positive int, got {self.max_events!r}")
        if not isinstance(self.history, HistoryConfig):
            raise ValueError(f"RefreshConfig.history must be a HistoryConfig, got {type(self.history).__name__}")
        if not isinstance(self.privacy, PrivacyConfig):
            raise ValueError(f"RefreshConfig.privacy must be a PrivacyConfig, got {type(self.privacy).__name__}")


def check_refresh_inputs(catalog: Catalog, item_vectors: np.ndarray, user_id: str, now_ts: int) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    if isinstance(now_ts, bool) or not isinstance(now_ts, (int, np.integer)) or now_ts < 0:
        raise ValueError(f"now_ts must be a non-negative int of unix seconds, got {now_ts!r}")
    if item_vectors.ndim != 2 or item_vectors.shape[0] != len(catalog.items):
        raise ValueError(f"item_vectors must be [num_items={len(catalog.items)}, D], got shape {item_vectors.shape}")


def refresh_user_profile(store: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, user_id: str, now_ts: int,
                         config: RefreshConfig | None = None) -> None:
    """Rebuild the user's fragments, history and temporal histograms and make a DP release of their preferences."""
    check_refresh_inputs(catalog, item_vectors, user_id, now_ts)
    config = config or RefreshConfig()
    refresh_from_events(store, catalog, item_vectors, user_id, store.events_of(user_id, limit=config.max_events),
                        int(now_ts), config)


def refresh_from_events(store: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, user_id: str,
                        events: Sequence, now_ts: int, config: RefreshConfig) -> ReleaseOutcome:
    """The refresh over ``events`` (the user's stored log, its newest ``RefreshConfig.max_events``); returns what the
    privacy release did."""
    store.replace_fragments(user_id, build_fragments(user_id, events, catalog, item_vectors))
    store.replace_history(user_id, history_rows(build_history(user_id, events, catalog, config.history)))
    store.replace_temporal_histograms(user_id, histogram_rows(temporal_histograms(events, config.history)))
    return release_preferences(store, user_id, events, item_vectors, now_ts, config.privacy)


def refresh_all_profiles(store: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, now_ts: int,
                         config: RefreshConfig | None = None, progress: bool = False) -> Counter:
    """Refresh every user with events (build time); returns how many releases ended in each status."""
    config = config or RefreshConfig()
    user_ids = store.user_ids()
    if user_ids:
        check_refresh_inputs(catalog, item_vectors, user_ids[0], now_ts)
    statuses: Counter = Counter()
    for user_id in tqdm(user_ids, desc="profiles", disable=not progress, leave=False):
        outcome = refresh_from_events(store, catalog, item_vectors, user_id,
                                      store.events_of(user_id, limit=config.max_events), int(now_ts), config)
        statuses[outcome.status] += 1
    log.info("refreshed %d profiles: %s", len(user_ids), dict(statuses))
    return statuses
