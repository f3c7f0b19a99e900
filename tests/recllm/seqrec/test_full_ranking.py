"""Full-ranking metrics against a brute-force per-user loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recllm.seqrec.full_ranking import filter_history, full_ranking_metrics, metrics_from_ranks, target_ranks


def brute_force(scores, targets, histories=None, ks=(5, 10, 20)):
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("R", "N")}
    for u, target in enumerate(targets):
        row = [float(s) for s in scores[u]]
        if histories is not None:
            for item in histories[u]:
                row[item] = -math.inf
        rank = sum(1 for i, s in enumerate(row) if s > row[target] or (s == row[target] and i != target))
        for k in ks:
            if rank < k:
                sums[f"R@{k}"] += 1
                sums[f"N@{k}"] += 1 / math.log2(rank + 2)
    return {key: value / len(targets) for key, value in sums.items()}


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_brute_force_raw_and_filtered(seed):
    rng = np.random.default_rng(seed)
    users, items = 40, 30
    scores = rng.integers(0, 8, size=(users, items)).astype(np.float32)   # few values: many ties
    targets = rng.integers(0, items, size=users)
    histories = [list(rng.choice(items, size=rng.integers(0, 6), replace=False)) for _ in range(users)]
    for hist in (None, histories):
        got = full_ranking_metrics(scores, targets, hist)
        want = brute_force(scores, targets, hist)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key]), key


def test_filtering_removes_history_items_ahead_of_target():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]] * 1)
    assert target_ranks(scores, [3])[0] == 3
    filtered = filter_history(scores, [[0, 1]])
    assert target_ranks(filtered, [3])[0] == 1
    assert np.isneginf(filtered[0, :2]).all() and scores[0, 0] == 5.0   # input untouched


def test_target_in_history_is_a_miss_when_filtered():
    scores = np.array([[1.0, 9.0, 0.0]])
    assert full_ranking_metrics(scores, [1], ks=(1,))["R@1"] == 1.0
    assert target_ranks(filter_history(scores, [[1]]), [1])[0] == 2   # below every finite score


def test_ties_count_against_target():
    scores = np.zeros((1, 50), dtype=np.float32)
    assert target_ranks(scores, [0])[0] == 49
    assert full_ranking_metrics(scores, [7])["R@20"] == 0.0


def test_ndcg_of_top_rank_is_one_and_recall_equals_hit_rate():
    metrics = metrics_from_ranks(np.array([0, 0, 4, 9, 30]), ks=(5, 10))
    assert metrics["R@5"] == pytest.approx(3 / 5)
    assert metrics["R@10"] == pytest.approx(4 / 5)
    assert metrics["N@5"] == pytest.approx((2 + 1 / math.log2(6)) / 5)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="targets shape"):
        target_ranks(np.zeros((2, 3)), [0])
    with pytest.raises(ValueError, match="histories"):
        filter_history(np.zeros((2, 3)), [[0]])
