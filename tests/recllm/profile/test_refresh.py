"""Profile refresh: one user's fragments, history, histograms and DP release rebuilt from the event log; the model
(retriever and ranking stage) reads only the release."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from builders.build_artifacts import fill_profile
from recllm.profile.differential_privacy import PrivacyConfig
from recllm.pipeline import RankingStage
from recllm.profile.history import HistoryConfig, HistorySummary
from recllm.profile.refresh import RefreshConfig, refresh_all_profiles, refresh_user_profile
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import EventRow
from recllm.rag.rec_request import RecRequest
from recllm.rag.reranker import FEATURE_NAMES, Reranker, RerankerConfig
from recllm.rag.retriever import Retriever, RetrieverConfig
from recllm.profile.user_signals import compute_user_signals

SECRET = b"refresh-test-secret-0123456789"


@pytest.fixture
def store(tmp_path, ecosystem) -> ProfileStore:
    return fill_profile(ProfileStore(tmp_path / "profile.db"), ecosystem)


@pytest.fixture
def config() -> RefreshConfig:
    return RefreshConfig(privacy=PrivacyConfig(releases_per_window=4, secret=SECRET))


def warm_user(store: ProfileStore) -> str:
    return max(store.user_ids(), key=lambda u: len(store.events_of(u, kind="purchase")))


def new_purchase(store: ProfileStore, catalog, user: str, ts: int) -> EventRow:
    """A purchase in a (service, category) the user never bought in."""
    bought = {(e.service, catalog.get(e.item_id).category_id) for e in store.events_of(user, kind="purchase")}
    item = next(i for i in catalog.items if (i.service, i.category_id) not in bought)
    return EventRow(user, item.service, item.item_id, "purchase", ts, "new-basket", item.price, 1, "moscow", "web")


def test_refresh_makes_new_events_visible_in_every_derived_table(store, catalog, random_item_vectors, config):
    user = warm_user(store)
    now = store.latest_timestamp()
    refresh_user_profile(store, catalog, random_item_vectors, user, now, config)
    before = store.released_preferences_of(user)
    purchases = len(store.events_of(user, kind="purchase"))
    event = new_purchase(store, catalog, user, now + 60)
    store.add_events([event])

    refresh_user_profile(store, catalog, random_item_vectors, user, now + 120, config)

    keys = {f.fragment_key for f in store.fragments_of(user)}
    assert f"{event.service}:{catalog.get(event.item_id).category_id}" in keys
    (long_term,) = [HistorySummary.from_json(text) for *_, text in store.history_of(user, "long_term")]
    assert long_term.purchases == purchases + 1 and long_term.end_ts == event.timestamp
    hours = {service: sum(h) for service, h, _ in store.temporal_histograms_of(user)}
    assert sum(hours.values()) == len(store.events_of(user))
    after = store.released_preferences_of(user)
    assert after.release_index == before.release_index + 1 and after.released_ts == now + 120
    assert not np.allclose(after.pref_long, before.pref_long)
    assert store.privacy_ledger_of(user)[-1].releases == after.release_index + 1


def test_refresh_of_a_forgotten_user_leaves_nothing_derived(store, catalog, random_item_vectors, config):
    user = warm_user(store)
    refresh_user_profile(store, catalog, random_item_vectors, user, store.latest_timestamp(), config)
    store.connection().execute("DELETE FROM events WHERE user_id = ?", (user,)).connection.commit()
    refresh_user_profile(store, catalog, random_item_vectors, user, store.latest_timestamp(), config)
    assert store.fragments_of(user) == [] and store.history_of(user) == []
    assert store.temporal_histograms_of(user) == [] and store.released_preferences_of(user) is None


def test_refresh_uses_the_history_config(store, catalog, random_item_vectors):
    user = warm_user(store)
    now = store.latest_timestamp()
    refresh_user_profile(store, catalog, random_item_vectors, user, now)
    default_sessions = len(store.history_of(user, "session"))
    wide = RefreshConfig(history=HistoryConfig(session_gap_minutes=24 * 60))
    refresh_user_profile(store, catalog, random_item_vectors, user, now, wide)
    assert len(store.history_of(user, "session")) < default_sessions


@pytest.mark.parametrize("kwargs, message", [
    ({"user_id": ""}, "user_id must be a non-empty string"),
    ({"now_ts": -5}, "now_ts must be a non-negative int"),
    ({"now_ts": 1.5}, "now_ts must be a non-negative int"),
    ({"item_vectors": np.zeros((3, 4), np.float32)}, r"item_vectors must be \[num_items="),
])
def test_bad_input_is_named(store, catalog, random_item_vectors, kwargs, message):
    arguments = {"store": store, "catalog": catalog, "item_vectors": random_item_vectors, "user_id": "u000001",
                 "now_ts": 1_700_000_000, **kwargs}
    with pytest.raises(ValueError, match=message):
        refresh_user_profile(**arguments)


def test_refresh_config_rejects_wrong_parts():
    with pytest.raises(ValueError, match="RefreshConfig.privacy"):
        RefreshConfig(privacy=HistoryConfig())
    with pytest.raises(ValueError, match="RefreshConfig.max_events"):
        RefreshConfig(max_events=0)


def test_a_refresh_reads_only_the_newest_max_events(store, catalog, random_item_vectors, config):
    """Its cost stays bounded however long the log grows: the profile is derived from the newest events only."""
    user = warm_user(store)
    events = store.events_of(user)
    bounded = dataclasses.replace(config, max_events=10)
    refresh_user_profile(store, catalog, random_item_vectors, user, store.latest_timestamp(), bounded)
    hours = {service: sum(h) for service, h, _ in store.temporal_histograms_of(user)}
    assert len(events) > 10 and sum(hours.values()) == 10
    newest = {f"{e.service}:{catalog.get(e.item_id).category_id}" for e in events[-10:] if e.kind == "purchase"}
    assert {f.fragment_key for f in store.fragments_of(user)} == newest


def test_bulk_refresh_releases_for_every_user_with_purchases(store, catalog, random_item_vectors, config, ecosystem):
    statuses = refresh_all_profiles(store, catalog, random_item_vectors, store.latest_timestamp(), config)
    buyers = {e.user_id for e in ecosystem.events if e.kind == "purchase"}
    assert statuses["released"] == len(buyers)
    assert sum(statuses.values()) == len(store.user_ids())
    for user in store.user_ids():
        assert (store.released_preferences_of(user) is not None) == (user in buyers)
        assert store.history_of(user, "long_term")
    again = refresh_all_profiles(store, catalog, random_item_vectors, store.latest_timestamp(), config)
    assert again["unchanged"] == len(buyers)  # nothing new: every release is re-served, no budget spent
    assert all(e.releases == 1 for u in buyers for e in store.privacy_ledger_of(u))


# --- the model reads the release -------------------------------------------------------------------------------

@pytest.fixture
def refreshed(store, catalog, random_item_vectors, config) -> ProfileStore:
    refresh_all_profiles(store, catalog, random_item_vectors, store.latest_timestamp(), config)
    return store


def index_over(catalog, vectors):
    from recllm.rag.catalog_index import CatalogIndex  # noqa: PLC0415

    return CatalogIndex(vectors, catalog)


def test_retriever_uses_the_release_and_treats_a_user_without_one_as_cold(refreshed, catalog, random_item_vectors):
    user = warm_user(refreshed)
    index = index_over(catalog, random_item_vectors)
    reader = ProfileStore(refreshed.path, read_only=True)  # as in the Triton process
    retriever = Retriever(catalog, index, reader, RetrieverConfig())
    signals = retriever.read_context(user).signals
    np.testing.assert_array_equal(signals.pref_long, refreshed.released_preferences_of(user).pref_long)
    raw = Retriever(catalog, index, reader, RetrieverConfig(preference_source="raw")).read_context(user).signals
    assert not np.allclose(raw.pref_long, signals.pref_long)

    refreshed.delete_released_preferences(user)
    unreleased = retriever.read_context(user).signals
    assert unreleased.pref_long is None and unreleased.pref_short is None
    assert unreleased.num_purchases == raw.num_purchases  # only the vector parts go cold


def test_ranking_features_use_the_release(refreshed, catalog, random_item_vectors):
    user = warm_user(refreshed)
    index = index_over(catalog, random_item_vectors)
    seen = []

    class RecordingReranker(Reranker):
        def score(self, features):
            seen.append(features)
            return super().score(features)

    ranking = RankingStage(catalog, index, ProfileStore(refreshed.path, read_only=True),
                           RecordingReranker(RerankerConfig(hidden=4)))
    ids = np.array([i.item_id for i in catalog.items if i.service == "kuper"][:6], dtype=np.int64)
    request = RecRequest(user, "q", 3, "kuper", "ru", None, frozenset())
    ranking.rank(request, "kuper", ids, np.zeros(len(ids), np.float32))
    release = refreshed.released_preferences_of(user)
    column = FEATURE_NAMES.index("pref_long_sim")
    np.testing.assert_allclose(seen[0][:, column], random_item_vectors[ids] @ release.pref_long, rtol=1e-5)
    raw = compute_user_signals(user, refreshed.events_of(user, kind="purchase"), catalog, random_item_vectors)
    assert not np.allclose(seen[0][:, column], random_item_vectors[ids] @ raw.pref_long)


def test_preference_source_is_validated(refreshed, catalog, random_item_vectors):
    with pytest.raises(ValueError, match="RetrieverConfig.preference_source"):
        RetrieverConfig(preference_source="exact")
    with pytest.raises(ValueError, match="preference_source"):
        RankingStage(catalog, index_over(catalog, random_item_vectors), refreshed,
                     Reranker(RerankerConfig(hidden=4)), preference_source="exact")


def test_config_dataclasses_are_independent():
    first, second = RefreshConfig(), RefreshConfig()
    assert first.privacy is not second.privacy
    assert dataclasses.replace(first, history=HistoryConfig(session_gap_minutes=5)).history.session_gap_minutes == 5


def test_ttl_expiry_refreshes_history_and_release(refreshed, catalog, random_item_vectors):
    from recllm.profile.retention import DAY_S, RetentionConfig, expire_stale_events  # noqa: PLC0415

    user = warm_user(refreshed)
    before = refreshed.released_preferences_of(user)
    now = refreshed.latest_timestamp() + DAY_S  # the next day: a fresh privacy window
    week = RetentionConfig(ttl_days={"samokat": 7, "kuper": 7, "megamarket": 7})
    assert expire_stale_events(refreshed, catalog, random_item_vectors, now, week) > 0
    (long_term,) = [HistorySummary.from_json(text) for *_, text in refreshed.history_of(user, "long_term")]
    assert long_term.start_ts >= now - 7 * DAY_S
    assert all(start >= now - 8 * DAY_S for _, start, _, _ in refreshed.history_of(user))
    after = refreshed.released_preferences_of(user)
    assert after is None or (after.history_digest != before.history_digest
                             and after.window_start > before.window_start)
