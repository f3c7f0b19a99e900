"""Ta-Feng protocol: basket metrics against hand computations, TIFU-KNN tuned on the validation users only, and the
whole report on a tiny Reality-Check-format data set (personal staples: personal frequency must beat popularity)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recllm.datasets.tafeng import load_tafeng, user_split
from recllm.evaluation.basket_baselines import TifuKnn
from recllm.evaluation.next_basket import (
    NOT_RANKED,
    BasketTargets,
    NextBasketEvalConfig,
    TifuGrid,
    basket_metrics,
    evaluate_tafeng,
    list_ranks,
    score_lists,
    tune_tifu_knn,
)
from recllm.seqrec.sasrec import SASRecConfig
from tests.recllm.evaluation.tiny_data import TAFENG_ITEMS, write_tafeng_dir

SMALL_GRID = TifuGrid((1, 3), (0.9,), (0.7, 1.0), (20, 60), (0.5, 1.0))


def test_list_ranks_are_positions_or_not_ranked():
    assert list_ranks([7, 3, 9], np.array([9, 4, 7])).tolist() == [2, NOT_RANKED, 0]


def test_basket_metrics_match_hand_computation():
    # user 1: target {a, b, c} at ranks 0, 3, absent; user 2: target {d} at rank 12 (a hit at 20 only)
    ranks = [np.array([0, 3, NOT_RANKED]), np.array([12])]
    repeat = [np.array([True, False, False]), np.array([True])]
    metrics = basket_metrics(ranks, repeat, (10, 20))
    ideal_3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics["R@10"] == pytest.approx((2 / 3 + 0) / 2)
    assert metrics["N@10"] == pytest.approx(((1 + 1 / math.log2(5)) / ideal_3 + 0) / 2)
    assert metrics["PHR@10"] == 0.5 and metrics["PHR@20"] == 1.0
    assert metrics["R@20"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["N@20"] == pytest.approx(((1 + 1 / math.log2(5)) / ideal_3 + 1 / math.log2(14)) / 2)
    assert metrics["Rrep@10"] == pytest.approx((1 + 0) / 2)        # repeat targets: a (hit), d (miss at 10)
    assert metrics["Rexpl@10"] == pytest.approx(0.5)               # only user 1 has new items: b hit, c miss


def test_a_perfect_list_scores_one():
    targets = BasketTargets(["u"], [[[1]]], [np.array([4, 5])], [np.array([False, False])])
    metrics = score_lists([[5, 4, 1]], targets, (10,))
    assert metrics["R@10"] == metrics["N@10"] == metrics["PHR@10"] == 1.0
    assert math.isnan(metrics["Rrep@10"])


@pytest.fixture(scope="module")
def tiny_tafeng(tmp_path_factory):
    return load_tafeng(write_tafeng_dir(tmp_path_factory.mktemp("tafeng")))


def test_tuning_reads_only_validation_users_and_returns_the_best_grid_point(tiny_tafeng):
    split = user_split(tiny_tafeng)
    valid = BasketTargets.of(tiny_tafeng, split.valid)
    pool = [tiny_tafeng.history[user] for user in split.train]
    tuning = tune_tifu_knn(pool, valid, TAFENG_ITEMS, SMALL_GRID, "R@10", (10, 20))
    assert tuning.tried == SMALL_GRID.size() == 16
    rerun = score_lists(TifuKnn(pool, TAFENG_ITEMS, tuning.best).predict(valid.histories, 20), valid, (10, 20))
    assert rerun["R@10"] == pytest.approx(tuning.best_valid["R@10"])
    # changing the test users' future baskets cannot change the choice
    for user in split.test:
        tiny_tafeng.future[user] = [0]
    again = tune_tifu_knn(pool, BasketTargets.of(tiny_tafeng, split.valid), TAFENG_ITEMS, SMALL_GRID, "R@10",
                          (10, 20))
    assert again.best == tuning.best


def test_the_report_ranks_personal_frequency_above_popularity(tmp_path, single_thread):
    dataset = load_tafeng(write_tafeng_dir(tmp_path, seed=1))
    config = NextBasketEvalConfig(grid=SMALL_GRID, model=SASRecConfig.from_name("test", epochs=2))
    with single_thread():
        report = evaluate_tafeng(dataset, config)
    test = report.numbers["test"]
    assert set(test) == {"G-TopFreq (global popularity)", "P-TopFreq (personal frequency)",
                         "G-P-TopFreq (personal, then global)", "TIFU-KNN (tuned on valid)",
                         "SASRec over flattened baskets (ours)"}
    # each future basket holds 2 of the user's 3 staples: the staples alone give recall ~2/3
    assert test["P-TopFreq (personal frequency)"]["R@10"] > 0.55 > test["G-TopFreq (global popularity)"]["R@10"]
    assert test["G-P-TopFreq (personal, then global)"]["R@20"] >= test["P-TopFreq (personal frequency)"]["R@20"]
    assert test["TIFU-KNN (tuned on valid)"]["R@10"] > test["G-TopFreq (global popularity)"]["R@10"]
    assert test["P-TopFreq (personal frequency)"]["Rrep@10"] > 0.9
    assert test["P-TopFreq (personal frequency)"]["Rexpl@10"] == 0.0   # it never recommends a new item
    assert "## Test users (n=60)" in report.markdown() and "chosen by valid R@10" in report.markdown()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="tune_metric"):
        NextBasketEvalConfig(tune_metric="R@5")
    with pytest.raises(ValueError, match="TifuGrid.alpha"):
        TifuGrid(alpha=())
    with pytest.raises(ValueError, match="TifuKnnConfig.alpha"):
        TifuGrid(alpha=(2.0,))
    with pytest.raises(ValueError, match="preset 'big'"):
        NextBasketEvalConfig.from_name("big")


def test_real_tafeng_personal_history_beats_popularity():
    from recllm.datasets.tafeng import DEFAULT_DATA_DIR
    from recllm.evaluation.basket_baselines import GlobalPopularity, personal_then_global

    if not DEFAULT_DATA_DIR.is_dir():
        pytest.skip(f"Ta-Feng data not found at {DEFAULT_DATA_DIR}")
    dataset = load_tafeng()
    split = user_split(dataset)
    test = BasketTargets.of(dataset, split.test)
    popularity = GlobalPopularity([basket for user in split.train for basket in dataset.steps_of(user)])
    global_only = score_lists([popularity.top(20)] * len(test.users), test, (10, 20))
    personal = score_lists([personal_then_global(h, popularity, 20) for h in test.histories], test, (10, 20))
    assert len(test.users) == 2_772
    assert 0.03 < global_only["R@10"] < personal["R@10"] < 0.5
    assert personal["Rrep@20"] > global_only["Rrep@20"]
