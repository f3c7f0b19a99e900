"""RQ-KMeans: unique SIDs, correct collision codes and stats, determinism, no empty codes on spread data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.sid.residual_quantization import (RQKMeansConfig, assign_codes, balanced_assignment, collision_codes,
                                              fit_rq_kmeans, kmeans, normalized_entropy, quantization_stats,
                                              spread_within_prefixes)


def clustered_points(seed: int = 0, n: int = 300, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim)) * 5
    return centers[rng.integers(0, 10, n)] + rng.normal(size=(n, dim))


def test_fit_gives_unique_deterministic_sids_and_consistent_stats():
    points = clustered_points()
    config = RQKMeansConfig(levels=3, codebook_size=8, iterations=20, spread_last_level=False, seed=3)
    sids = fit_rq_kmeans(points, config)
    assert sids.codes.shape == (300, 4) and sids.codes.dtype == np.int64
    assert len(np.unique(sids.codes, axis=0)) == 300
    assert np.array_equal(sids.codes, fit_rq_kmeans(points, config).codes)
    stats = quantization_stats(sids)
    prefix = [tuple(row) for row in sids.codes[:, :3].tolist()]
    shared = np.mean([prefix.count(p) > 1 for p in prefix])
    assert stats["collision_rate"] == pytest.approx(shared)
    assert stats["max_collision_depth"] == max(prefix.count(p) for p in prefix) == sids.codes[:, 3].max() + 1
    assert stats["unique_sids"] == 300
    assert [level["codes_used"] for level in stats["per_level"]] == [8, 8, 8]
    assert sids.vocab_sizes() == [8, 8, 8, int(sids.codes[:, 3].max()) + 1]
    assert np.array_equal(assign_codes(points, sids), sids.codes[:, :3])


def test_collision_codes_count_up_in_row_order():
    prefix = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    assert collision_codes(prefix).tolist() == [0, 0, 1, 2, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40))
def test_collision_codes_make_every_row_unique(rows):
    prefix = np.array(rows)
    codes = np.c_[prefix, collision_codes(prefix)]
    assert len(np.unique(codes, axis=0)) == len(rows)


def test_empty_clusters_are_reseeded():
    # 2 far groups but k = 6: k-means++ and re-seeding must still use all 6 codes on distinct points
    points = np.r_[np.zeros((20, 2)) + np.arange(20)[:, None] * 1e-3, np.ones((20, 2)) * 100]
    points[20:, 0] += np.arange(20)
    _, assignment = kmeans(points, 6, 30, seed=0)
    assert len(np.unique(assignment)) == 6


def test_more_codes_than_points_and_identical_points():
    _, assignment = kmeans(np.zeros((3, 2)), 8, 5, seed=0)
    assert assignment.shape == (3,)
    sids = fit_rq_kmeans(np.zeros((3, 2)), RQKMeansConfig(levels=2, codebook_size=4, spread_last_level=False))
    assert sids.codes[:, -1].tolist() == [0, 1, 2] and quantization_stats(sids)["collision_rate"] == 1.0


def test_spreading_the_last_level_removes_collisions_the_codebook_can_hold():
    points = clustered_points()
    plain = fit_rq_kmeans(points, RQKMeansConfig(levels=2, codebook_size=8, spread_last_level=False, seed=1))
    spread = fit_rq_kmeans(points, RQKMeansConfig(levels=2, codebook_size=8, seed=1))
    assert quantization_stats(plain)["collision_rate"] > 0.5            # 300 points, 64 two-level codes
    assert np.array_equal(plain.codes[:, 0], spread.codes[:, 0])        # earlier levels untouched
    # a first-level group of n points uses min(n, 8) distinct last-level codes
    for code in np.unique(spread.codes[:, 0]):
        group = spread.codes[spread.codes[:, 0] == code]
        assert len(np.unique(group[:, 1])) == min(len(group), 8)
    assert quantization_stats(spread)["collision_rate"] <= quantization_stats(plain)["collision_rate"]


def test_spread_within_prefixes_takes_nearest_free_codes_and_leaves_singletons_alone():
    prefix = np.array([[0], [0], [0], [1]])
    distances = np.array([[0.0, 1.0, 2.0],     # row 0 wants code 0 most
                          [0.1, 0.2, 3.0],     # row 1 also wants 0, gets 1
                          [0.5, 0.6, 0.7],     # row 2 gets the last free code 2
                          [0.0, 1.0, 1.0]])    # a group of one keeps its nearest code
    assert spread_within_prefixes(prefix, distances).tolist() == [0, 1, 2, 0]
    crowded = spread_within_prefixes(np.zeros((4, 1), np.int64), np.array([[0.0, 1.0]] * 4))
    assert sorted(crowded.tolist()[:2]) == [0, 1] and crowded.tolist()[2:] == [0, 0]   # past K: nearest code


def test_balanced_assignment_respects_capacity():
    rng = np.random.default_rng(0)
    distances = rng.random((50, 4))
    distances[:, 0] = 0  # everyone wants cluster 0
    assignment = balanced_assignment(distances, capacity=13)
    assert np.bincount(assignment, minlength=4).max() <= 13
    balanced = fit_rq_kmeans(clustered_points(), RQKMeansConfig(levels=1, codebook_size=10, balanced=True))
    assert np.bincount(balanced.codes[:, 0]).max() <= 30


def test_entropy_and_validation():
    assert normalized_entropy(np.array([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert normalized_entropy(np.array([1, 1, 1]), 4) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="codebook_size"):
        RQKMeansConfig(codebook_size=1)
    with pytest.raises(ValueError, match="finite"):
        fit_rq_kmeans(np.array([[np.nan, 1.0]]), RQKMeansConfig())
