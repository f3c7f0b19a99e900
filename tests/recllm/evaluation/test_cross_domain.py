"""Food–Kitchen protocol on a tiny LLMCDSR-format data set: evaluation lines (overlap, target-only histories,
sampled negatives), and the three tables of the report."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.datasets.food_kitchen import FOOD, KITCHEN, load_food_kitchen
from recllm.evaluation.cross_domain import (
    CrossDomainEvalConfig,
    domain_items,
    eval_lines,
    evaluate_food_kitchen,
    item_side_info,
    sample_negatives,
    training_sequences,
)
from recllm.seqrec.sasrec import SASRecConfig
from tests.recllm.evaluation.tiny_data import N_FOOD, N_KITCHEN, write_food_kitchen_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_food_kitchen(write_food_kitchen_dir(tmp_path_factory.mktemp("food_kitchen")))


def test_negatives_are_distinct_in_domain_and_never_the_target():
    pool = np.arange(1, 101)
    negatives = sample_negatives(pool, 7, 50, np.random.default_rng(0))
    assert len(set(negatives.tolist())) == 50 and 7 not in negatives and set(negatives) <= set(pool)
    assert sorted(sample_negatives(pool[:5], 3, 999, np.random.default_rng(0)).tolist()) == [1, 2, 4, 5]


def test_lines_shift_ids_and_split_overlapping_histories(tiny):
    config = CrossDomainEvalConfig(n_negatives=5)
    lines = eval_lines(tiny, "test", tiny.test, config, np.random.default_rng(0))
    mixed = [line for line in lines if line.variant == "mixed"]
    assert len(mixed) == len(tiny.test) == 40
    for line, example in zip(mixed, tiny.test):
        assert line.history == tuple(item + 1 for item in example.history) and line.target == example.target + 1
        assert line.domain == example.target_domain
        pool = set(domain_items(tiny, line.domain).tolist())
        assert len(line.negatives) == 5 and set(line.negatives.tolist()) <= pool - {line.target}
    only = [line for line in lines if line.variant == "target_only"]
    assert only and all(line.overlapping for line in only)
    for line in only:
        twin = next(m for m in mixed if m.negatives is line.negatives)       # same negatives as its mixed line
        pool = set(domain_items(tiny, line.domain).tolist())
        assert line.history == tuple(item for item in twin.history if item in pool)
        assert line.target == twin.target


def test_domain_items_are_the_shifted_id_ranges(tiny):
    assert domain_items(tiny, FOOD).tolist() == list(range(1, N_FOOD + 1))
    assert domain_items(tiny, KITCHEN).tolist() == list(range(N_FOOD + 1, N_FOOD + N_KITCHEN + 1))
    assert len(training_sequences(tiny, 1)) == 280 and len(training_sequences(tiny, 10)) == 28
    assert len(training_sequences(tiny, 1, kitchen_only_stride=4)) == 80 + 20 + 120


def test_the_report_has_per_domain_lift_and_sampled_tables(tiny, single_thread):
    config = CrossDomainEvalConfig(SASRecConfig.from_name("test", epochs=10), n_negatives=10)
    with single_thread():
        report = evaluate_food_kitchen(tiny, config)
    per_domain = report.numbers["per_domain"]
    assert {name.split(" (")[0] for name in per_domain} == {f"{s} {d} {v}" for s in ("valid", "test")
                                                            for d in (FOOD, KITCHEN) for v in ("raw", "filtered")}
    # kitchen targets follow the food item just before them: with the mixed history they are easy
    kitchen = [m for name, m in per_domain.items() if "kitchen raw" in name]
    assert all(m["R@5"] > 2 * 5 / N_KITCHEN for m in kitchen)
    lift = report.numbers["cross_domain_lift"]
    for name, metrics in lift.items():
        if "lift" in name:
            both = next(m for n, m in lift.items() if n.startswith(name.split(":")[0] + ": both"))
            only = next(m for n, m in lift.items() if n.startswith(name.split(":")[0]) and "only" in n
                        and "lift" not in n)
            assert metrics["R@10"] == pytest.approx(both["R@10"] - only["R@10"])
    for table, rows in report.numbers.items():  # every row says which training produced it
        protocols = report.protocols[table]
        assert set(protocols) == set(rows)
        assert all(protocols[n].startswith("refit" if n.startswith("test") else "valid") for n in rows)
    sampled = report.numbers["sampled_999"]
    assert all(set(m) == {"HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "NDCG@10"} for m in sampled.values())
    for name, metrics in sampled.items():          # a subset of the domain: the target can only rank higher
        split_domain = name.split(" (")[0]
        full = next(m for n, m in per_domain.items() if n.startswith(f"{split_domain} raw"))
        assert metrics["HR@5"] >= full["R@5"] and metrics["HR@10"] >= full["R@10"]


def test_item_side_info_indexes_by_model_id_with_domains_content_and_unique_sids(tiny):
    side = item_side_info(tiny, CrossDomainEvalConfig(sid_codebook_size=4))
    n_items = N_FOOD + N_KITCHEN
    assert side.domains.tolist() == [0] + [0] * N_FOOD + [1] * N_KITCHEN
    assert side.content.shape[0] == side.sids.shape[0] == side.attributes.shape[0] == n_items + 1
    assert not side.content[0].any() and np.allclose(np.linalg.norm(side.content[1:], axis=1), 1.0, atol=1e-5)
    assert len({tuple(row) for row in side.sids[1:].tolist()}) == n_items          # every item its own SID
    assert side.sids[1:, :-1].max() < 4                                            # the codebook size is honoured


def test_every_stage_is_reported_on_test_and_targets_stay_in_their_domain(tiny, single_thread):
    config = CrossDomainEvalConfig(SASRecConfig.from_name("test", epochs=3), n_negatives=10,
                                   generative=None, weight_grid=(0.0, 0.5))
    with single_thread():
        report = evaluate_food_kitchen(tiny, config)
    stages = report.numbers["per_domain_stages"]
    for stage in ("SASRec (ids)", "first stage (SASRec + transitions)", "full pipeline (reranked)"):
        assert {name for name in stages if name.endswith(stage)} == {
            f"test {d} {v}: {stage}" for d in (FOOD, KITCHEN) for v in ("raw", "filtered")}
    # ranking is within the target's domain: R@20 over the 10 food items is always 1
    assert all(m["R@20"] == 1.0 for name, m in stages.items() if name.startswith("test food raw"))
    assert "SID generator: 0 epochs" in report.markdown()
