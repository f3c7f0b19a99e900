"""Reranker: candidate × profile features, listwise training that finds a planted signal, persistence, config."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from recllm.rag.reranker import FEATURE_NAMES, Reranker, RerankerConfig, candidate_features, train_reranker
from recllm.profile.user_signals import compute_user_signals

F = {name: column for column, name in enumerate(FEATURE_NAMES)}
PERSONAL = ("pref_long_sim", "pref_short_sim", "log_category_purchases", "log_service_category_purchases",
            "log_parent_category_purchases", "log_family_purchases", "family_recency", "tag_affinity",
            "brand_affinity", "log_price_ratio")


@pytest.fixture(scope="module")
def warm_user(ecosystem):
    return next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)


@pytest.fixture(scope="module")
def popularity(ecosystem) -> dict[int, int]:
    counts: dict[int, int] = {}
    for event in ecosystem.events:
        if event.kind == "purchase":
            counts[event.item_id] = counts.get(event.item_id, 0) + 1
    return counts


def features_for(user_id, service, ecosystem, catalog, vectors, popularity, item_ids=None):
    events = ecosystem.events_of(user_id)
    now_ts = ecosystem.config.history_end
    signals = compute_user_signals(user_id, events, catalog, vectors, now_ts)
    ids = np.array(item_ids if item_ids is not None else [i.item_id for i in catalog.in_service(service)],
                   dtype=np.int64)
    scores = np.linspace(0.9, 0.1, len(ids)).astype(np.float32)
    features = candidate_features(ids, scores, signals, service, catalog, vectors, popularity, now_ts)
    return ids, scores, signals, features


def planted_lists(seed: int, count: int, size: int = 10) -> list[tuple[np.ndarray, int]]:
    """Random feature lists whose target always has the largest log_family_purchases (by a margin of 0.5)."""
    rng = np.random.default_rng(seed)
    column = F["log_family_purchases"]
    lists = []
    for _ in range(count):
        features = rng.standard_normal((size, len(FEATURE_NAMES))).astype(np.float32)
        target = int(rng.integers(size))
        features[target, column] = features[:, column].max() + 0.5
        lists.append((features, target))
    return lists


def top1_accuracy(reranker: Reranker, lists) -> float:
    # One batched call: scores are per candidate (see test_score_is_per_candidate_and_order_independent).
    size = len(lists[0][0])
    scores = reranker.score(np.concatenate([features for features, _ in lists])).reshape(len(lists), size)
    return float(np.mean(scores.argmax(axis=1) == np.array([target for _, target in lists])))


@pytest.fixture(scope="module")
def trained(single_thread) -> Reranker:
    config = dataclasses.replace(RerankerConfig.from_name("test"), epochs=15, learning_rate=1e-2)
    with single_thread():
        return train_reranker(planted_lists(seed=0, count=200), config, progress=False)


# --- config --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("hidden", 0, "hidden must be > 0"), ("epochs", -1, "epochs must be > 0"),
    ("learning_rate", 0.0, "learning_rate must be > 0"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=rf"RerankerConfig\.{message}, got {value!r}"):
        RerankerConfig(**{field: value})


def test_config_presets():
    assert RerankerConfig.from_name("default") == RerankerConfig()
    assert (RerankerConfig.from_name("test").hidden, RerankerConfig.from_name("test").epochs) == (16, 8)
    with pytest.raises(ValueError, match=r"unknown RerankerConfig preset 'big'; expected one of \['default', 'test'\]"):
        RerankerConfig.from_name("big")


# --- features ------------------------------------------------------------------------------------------------------

def test_feature_matrix_shape_and_pass_through_columns(warm_user, ecosystem, catalog, random_item_vectors,
                                                       popularity):
    ids, scores, _, features = features_for(warm_user, "kuper", ecosystem, catalog, random_item_vectors, popularity)
    assert features.shape == (len(ids), len(FEATURE_NAMES)) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    np.testing.assert_allclose(features[:, F["retrieval_score"]], scores)
    np.testing.assert_allclose(features[:, F["log_popularity"]], [math.log1p(popularity.get(i, 0)) for i in ids],
                               rtol=1e-6)
    assert np.all(features[:, F["is_cold_user"]] == 0.0)


def test_family_purchase_feature_is_positive_exactly_for_bought_families(warm_user, ecosystem, catalog,
                                                                         random_item_vectors, popularity):
    bought = {catalog.get(e.item_id).family_id for e in ecosystem.events_of(warm_user) if e.kind == "purchase"}
    for service in ("samokat", "kuper", "megamarket"):
        ids, _, signals, features = features_for(warm_user, service, ecosystem, catalog, random_item_vectors,
                                                 popularity)
        in_family = np.array([catalog.get(int(i)).family_id in bought for i in ids])
        assert in_family.any() or service == "megamarket"
        np.testing.assert_array_equal(features[:, F["log_family_purchases"]] > 0, in_family)
        np.testing.assert_array_equal(features[:, F["family_recency"]] > 0, in_family)
        expected = [math.log1p(signals.family_counts.get(catalog.get(int(i)).family_id, 0)) for i in ids]
        np.testing.assert_allclose(features[:, F["log_family_purchases"]], expected, rtol=1e-6)


def test_category_features_count_purchases_across_services(warm_user, ecosystem, catalog, random_item_vectors,
                                                           popularity):
    ids, _, signals, features = features_for(warm_user, "samokat", ecosystem, catalog, random_item_vectors,
                                             popularity)
    for row, item_id in enumerate(ids.tolist()):
        item = catalog.get(item_id)
        assert features[row, F["log_category_purchases"]] == pytest.approx(
            math.log1p(signals.category_counts.get(item.category_id, 0)), rel=1e-6)
        assert features[row, F["log_service_category_purchases"]] == pytest.approx(
            math.log1p(signals.service_category_counts.get(("samokat", item.category_id), 0)), rel=1e-6)
        assert features[row, F["log_price_ratio"]] == pytest.approx(
            math.log(item.price / signals.median_price), rel=1e-5, abs=1e-6)
    # Purchases on kuper count for the same category on samokat.
    assert np.any(features[:, F["log_category_purchases"]] > features[:, F["log_service_category_purchases"]])


def test_cold_user_has_only_query_and_popularity_features(ecosystem, catalog, random_item_vectors, popularity):
    cold = next(u.user_id for u in ecosystem.users if not ecosystem.events_of(u.user_id))
    _, scores, signals, features = features_for(cold, "kuper", ecosystem, catalog, random_item_vectors, popularity)
    assert signals.is_cold
    assert np.all(features[:, F["is_cold_user"]] == 1.0)
    for name in PERSONAL:
        assert np.all(features[:, F[name]] == 0.0), name
    np.testing.assert_allclose(features[:, F["retrieval_score"]], scores)


def test_no_candidates_gives_an_empty_matrix(warm_user, ecosystem, catalog, random_item_vectors, popularity):
    _, _, _, features = features_for(warm_user, "kuper", ecosystem, catalog, random_item_vectors, popularity,
                                     item_ids=[])
    assert features.shape == (0, len(FEATURE_NAMES))


# --- training / scoring --------------------------------------------------------------------------------------------

def test_trained_reranker_puts_the_planted_target_first_on_new_lists(trained):
    new_lists = planted_lists(seed=99, count=200)
    torch.manual_seed(0)
    untrained = Reranker(RerankerConfig.from_name("test"))
    assert top1_accuracy(trained, new_lists) >= 0.95  # chance is 0.1
    assert top1_accuracy(untrained, new_lists) < 0.5


def test_score_is_per_candidate_and_order_independent(trained):
    features, _ = planted_lists(seed=5, count=1, size=12)[0]
    permutation = np.random.default_rng(1).permutation(12)
    np.testing.assert_allclose(trained.score(features[permutation]), trained.score(features)[permutation],
                               rtol=1e-5, atol=1e-6)
    assert trained.score(features).shape == (12,) and trained.score(features).dtype == np.float32
    assert trained.score(np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)).shape == (0,)


def test_save_load_gives_identical_scores(trained, tmp_path):
    trained.save(tmp_path / "reranker")
    loaded = Reranker.load(tmp_path / "reranker")
    assert loaded.config == trained.config
    for features, _ in planted_lists(seed=7, count=5):
        np.testing.assert_array_equal(loaded.score(features), trained.score(features))


def test_lists_without_their_target_are_ignored(single_thread):
    config = dataclasses.replace(RerankerConfig.from_name("test"), epochs=2)
    good = planted_lists(seed=3, count=20)
    junk = [(good[0][0], -1), (good[1][0], len(good[1][0])), (np.zeros((0, len(FEATURE_NAMES)), np.float32), 0)]
    with single_thread():
        clean = train_reranker(good, config, progress=False)
        noisy = train_reranker(junk[:2] + good + junk[2:], config, progress=False)
    features = planted_lists(seed=4, count=1)[0][0]
    np.testing.assert_allclose(noisy.score(features), clean.score(features), rtol=1e-6)


def test_training_without_usable_lists_raises():
    with pytest.raises(ValueError, match="train_reranker needs at least one candidate list containing its target"):
        train_reranker([(np.zeros((3, len(FEATURE_NAMES)), np.float32), 3)], RerankerConfig.from_name("test"),
                       progress=False)
