"""The leakage canary: test targets shuffled across users must score at chance — through the metric functions, a
count model trained the right way and a leaky way, and the whole leave-one-out pipeline of ``recllm eval``."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from recllm.datasets.amazon_beauty import leave_one_out, load_amazon_dir
from recllm.evaluation.canary import above_chance, chance_metrics, random_ranking_metrics, shuffle_test_targets
from recllm.evaluation.leave_one_out import LeaveOneOutEvalConfig, evaluate_leave_one_out, quick_pipeline
from recllm.seqrec.full_ranking import full_ranking_metrics
from recllm.seqrec.sasrec import SASRecConfig
from tests.recllm.evaluation.tiny_data import AMAZON_ITEMS, write_amazon_dir

N_USERS = 240


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_amazon_dir(write_amazon_dir(tmp_path_factory.mktemp("canary"), n_users=N_USERS))


@pytest.fixture(scope="module")
def shuffled(dataset):
    return shuffle_test_targets(dataset, seed=1)


def test_shuffling_permutes_the_last_items_and_keeps_everything_else(dataset, shuffled):
    assert list(shuffled.sequences) == list(dataset.sequences)
    assert all(shuffled.sequences[u][:-1] == seq[:-1] for u, seq in dataset.sequences.items())
    assert Counter(s[-1] for s in shuffled.sequences.values()) == Counter(s[-1] for s in dataset.sequences.values())
    moved = [u for u in dataset.sequences if shuffled.sequences[u][-1] != dataset.sequences[u][-1]]
    assert len(moved) > 0.8 * N_USERS  # only users whose donor has the same last item keep it
    assert shuffle_test_targets(dataset, seed=1).sequences == shuffled.sequences  # seeded
    with pytest.raises(ValueError, match=">= 2 users"):
        shuffle_test_targets(type(dataset)("one", {"u": [1, 2, 3]}, {}, {1: "d", 2: "d", 3: "d"}))


def test_chance_metrics_match_a_random_scorer(dataset):
    split = leave_one_out(dataset)
    histories, targets = [e.history for e in split.test], [e.target for e in split.test]
    rng = np.random.default_rng(0)
    for filtered in (False, True):
        draws = [full_ranking_metrics(rng.random((len(targets), AMAZON_ITEMS + 1))[:, :] * _no_padding(),
                                      targets, histories if filtered else None) for _ in range(200)]
        mean = {name: np.mean([d[name] for d in draws]) for name in draws[0]}
        chance = chance_metrics(histories, targets, AMAZON_ITEMS, filtered)
        assert mean == pytest.approx(chance, abs=0.01)
    assert random_ranking_metrics(AMAZON_ITEMS)["R@10"] == pytest.approx(10 / AMAZON_ITEMS)


def _no_padding() -> np.ndarray:
    """Column 0 is the padding id: scored below every item, as the pipeline's scorers do."""
    weights = np.ones(AMAZON_ITEMS + 1)
    weights[0] = -1.0
    return weights


def transition_scores(train: dict[str, list[int]], histories: list[tuple[int, ...]]) -> np.ndarray:
    """A count model: score[u, j] = how often j followed the user's last item in the training sequences."""
    counts = np.zeros((AMAZON_ITEMS + 1, AMAZON_ITEMS + 1))
    for sequence in train.values():
        for a, b in zip(sequence, sequence[1:]):
            counts[a, b] += 1
    scores = counts[[h[-1] for h in histories]] + 1e-3 * np.random.default_rng(0).random((len(histories),
                                                                                         AMAZON_ITEMS + 1))
    scores[:, 0] = -np.inf
    return scores


def canary_flags(train: dict[str, list[int]], split, filtered: bool) -> dict:
    histories, targets = [e.history for e in split.test], [e.target for e in split.test]
    metrics = full_ranking_metrics(transition_scores(train, histories), targets, histories if filtered else None)
    return above_chance(metrics, chance_metrics(histories, targets, AMAZON_ITEMS, filtered), len(targets))


def test_the_canary_passes_a_clean_model_and_catches_a_leak_into_training(dataset, shuffled):
    honest = leave_one_out(dataset)
    assert canary_flags(honest.train, honest, filtered=False)  # unshuffled: the ring is learned, far above chance
    split = leave_one_out(shuffled)
    for filtered in (False, True):
        assert canary_flags(split.train, split, filtered) == {}  # trained on all but the last two: chance
        leaky_train = {u: s for u, s in shuffled.sequences.items()}  # the test item slipped into training
        assert "R@10" in canary_flags(leaky_train, split, filtered)


def test_the_canary_catches_a_scorer_that_reads_the_target(shuffled):
    split = leave_one_out(shuffled)
    histories, targets = [e.history for e in split.test], [e.target for e in split.test]
    scores = np.random.default_rng(1).random((len(targets), AMAZON_ITEMS + 1))
    scores[np.arange(len(targets)), targets] += 0.3  # a faint leak of the answer into the scores
    metrics = full_ranking_metrics(scores, targets)
    assert set(above_chance(metrics, chance_metrics(histories, targets, AMAZON_ITEMS, False), len(targets))) >= {
        "R@5", "R@10", "N@10"}


def test_recllm_eval_leave_one_out_is_at_chance_on_shuffled_test_targets(shuffled, single_thread):
    config = LeaveOneOutEvalConfig(quick_pipeline(SASRecConfig.from_name("test", epochs=12)))
    with single_thread():
        report = evaluate_leave_one_out(shuffled, config)
    rows = report.numbers["leave_one_out"]
    split = leave_one_out(shuffled)
    histories, targets = [e.history for e in split.test], [e.target for e in split.test]
    test_rows = [name for name in rows if name.startswith("ours test")]
    assert len(test_rows) >= 4  # the final pipeline and its ablations, raw and filtered
    for name in test_rows:
        chance = chance_metrics(histories, targets, AMAZON_ITEMS, filtered="filtered" in name)
        assert above_chance(rows[name], chance, len(targets)) == {}, name
    for name in ("ours valid raw", "ours valid filtered"):  # the validation targets were not shuffled: learned
        assert rows[name]["R@5"] > 4 * 5 / AMAZON_ITEMS


def test_the_pipeline_canary_fails_when_the_test_item_leaks_into_the_refit(shuffled, single_thread, monkeypatch):
    from recllm.seqrec import next_item_pipeline  # noqa: PLC0415

    honest = next_item_pipeline.TwoPhaseSplit.from_leave_one_out.__func__

    def leaky(cls, split):  # the bug this canary exists for: phase 2 refits on the test targets too
        two_phase = honest(cls, split)
        return replace(two_phase, train_plus_valid=[list(e.history) + [e.target] for e in split.test])

    monkeypatch.setattr(next_item_pipeline.TwoPhaseSplit, "from_leave_one_out", classmethod(leaky))
    config = LeaveOneOutEvalConfig(quick_pipeline(SASRecConfig.from_name("test", epochs=12)))
    with single_thread():
        rows = evaluate_leave_one_out(shuffled, config).numbers["leave_one_out"]
    split = leave_one_out(shuffled)
    histories, targets = [e.history for e in split.test], [e.target for e in split.test]
    chance = chance_metrics(histories, targets, AMAZON_ITEMS, filtered=False)
    assert "R@10" in above_chance(rows["ours test raw"], chance, len(targets))
