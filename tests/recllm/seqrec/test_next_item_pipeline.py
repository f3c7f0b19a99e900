"""Leave-one-out next-item pipeline on a tiny planted data set: both phases run, weights are tuned on validation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recllm.datasets.amazon_beauty import leave_one_out
from recllm.datasets.interaction_dataset import InteractionDataset
from recllm.seqrec.candidate_reranker import CandidateRerankerConfig, ItemSideInfo
from recllm.seqrec.hybrid_scorer import HybridConfig
from recllm.seqrec.next_item_pipeline import (EvalRequests, NextItemPipelineConfig, TwoPhaseSplit, run_leave_one_out,
                                             run_two_phase)
from recllm.seqrec.sasrec import SASRecConfig
from recllm.sid.generative_retrieval import GenerativeRetrieverConfig

N_ITEMS = 20


def planted_split():
    """Each item has a fixed successor; users walk that chain from a random start."""
    rng = random.Random(0)
    successor = {i: rng.randint(1, N_ITEMS) for i in range(1, N_ITEMS + 1)}
    sequences = {}
    for user in range(300):
        item = rng.randint(1, N_ITEMS)
        walk = [item]
        for _ in range(rng.randint(4, 8)):
            item = successor[item]
            walk.append(item)
        sequences[f"u{user}"] = walk
    items = {i: f"item {i}" for i in range(1, N_ITEMS + 1)}
    dataset = InteractionDataset("planted", sequences, items, {i: "d" for i in items})
    return leave_one_out(dataset)


def test_pipeline_runs_both_phases_and_beats_chance_on_test():
    torch.set_num_threads(2)
    config = NextItemPipelineConfig(
        hybrid=HybridConfig(sasrec=SASRecConfig.from_name("test", epochs=1), weight_grid=(0.0, 0.5, 1.0)),
        reranker=CandidateRerankerConfig(num_candidates=10, epochs=5))
    attributes = (np.arange(N_ITEMS + 1) % 4 + 1)[:, None]
    result = run_leave_one_out(planted_split(), attributes, config)
    assert set(result.test) == {"sasrec", "hybrid", "reranked"}
    assert result.generative_epochs == 0                       # no SIDs: no generative score
    assert not any(name.startswith("fit_generative") for name in result.seconds)
    assert set(result.valid) == {"sasrec", "hybrid"}
    assert result.transition_weight > 0       # one SASRec epoch has not learnt the chain; transitions have
    assert result.weight_search[result.transition_weight] == max(result.weight_search.values())
    assert result.test["hybrid"]["raw"]["R@5"] > 0.9           # chance: 5 / 20
    assert result.test["reranked"]["raw"]["R@5"] > 0.9
    assert config.hybrid.transition_weight == HybridConfig().transition_weight   # the caller's config is untouched


def planted_sids() -> np.ndarray:
    """[N_ITEMS + 1, 3] unique Semantic IDs: two code levels from the item id's digits in base 4 / 3, and a collision
    level telling apart the items whose two codes repeat; row 0 = padding."""
    ids = np.arange(N_ITEMS)                                  # item id - 1
    codes = np.stack([ids % 4, ids // 4 % 3, ids // 12], axis=1)
    return np.vstack([np.zeros((1, 3), dtype=np.int64), codes])


def pipeline_config(**overrides) -> NextItemPipelineConfig:
    return NextItemPipelineConfig(
        hybrid=HybridConfig(sasrec=SASRecConfig.from_name("test", epochs=1), weight_grid=(0.0, 0.5, 1.0)),
        reranker=CandidateRerankerConfig(num_candidates=10, epochs=5), **overrides)


@pytest.fixture(scope="module")
def generative_result(single_thread):
    sids = planted_sids()
    assert len({tuple(row) for row in sids[1:]}) == N_ITEMS
    side = ItemSideInfo((np.arange(N_ITEMS + 1) % 4 + 1)[:, None], sids=sids)
    config = pipeline_config(generative=GenerativeRetrieverConfig.from_name("test", epochs=1),
                             ablations=("generative", "repeat"))
    with single_thread():
        return run_leave_one_out(planted_split(), side, config)


def test_pipeline_trains_the_sid_generator_in_both_phases(generative_result):
    assert generative_result.generative_epochs == 1
    assert generative_result.seconds["fit_generative_train"] > 0
    assert generative_result.seconds["fit_generative_train_plus_valid"] > 0


def test_ablations_add_one_reranker_per_group_scored_on_test(generative_result):
    assert set(generative_result.test) == {"sasrec", "hybrid", "reranked", "reranked without generative",
                                           "reranked without repeat"}
    assert set(generative_result.valid) == {"sasrec", "hybrid"}
    for stage, metrics in generative_result.test.items():
        for variant in ("raw", "filtered"):
            assert 0 <= metrics[variant]["R@5"] <= metrics[variant]["R@10"] <= 1, stage
    assert generative_result.test["reranked"]["raw"]["R@5"] > 0.9            # chance: 5 / 20


def test_unknown_ablation_group_is_an_error_naming_the_field():
    with pytest.raises(ValueError, match=r"NextItemPipelineConfig.ablations: unknown groups \['colour'\]"):
        pipeline_config(ablations=("repeat", "colour"))


def test_an_ablation_without_columns_is_skipped_not_reported_as_a_copy(single_thread):
    side = ItemSideInfo((np.arange(N_ITEMS + 1) % 4 + 1)[:, None])          # no SIDs: no generative column
    with single_thread():
        result = run_leave_one_out(planted_split(), side, pipeline_config(ablations=("generative",)))
    assert result.generative_epochs == 0
    assert set(result.test) == {"sasrec", "hybrid", "reranked"}


def test_two_phase_ranks_within_the_target_domain_and_in_pools(single_thread):
    split = TwoPhaseSplit.from_leave_one_out(planted_split())
    domains = np.r_[0, (np.arange(1, N_ITEMS + 1) > 3).astype(np.int64)]   # domain 0 = items 1..3
    side = ItemSideInfo((np.arange(N_ITEMS + 1) % 4 + 1)[:, None], domains=domains)
    # Every test target is item 1, which the chain rarely predicts: among all 20 items it would rank low, among
    # the 3 items of its domain it cannot rank below 2.
    targets = [1] * len(split.test.targets)
    pools = [np.array([1, 5, 6, 7])] * len(targets)
    split.test = EvalRequests(split.test.histories, targets, pools)
    with single_thread():
        within = run_two_phase(split, side, pipeline_config(generative=None, rank_within_target_domain=True))
        everywhere = run_two_phase(split, side, pipeline_config(generative=None))
    for stage, ranks in within.test_ranks.items():
        assert (ranks["raw"] <= 2).all(), stage
        assert (ranks["pool"] <= 3).all() and len(ranks["pool"]) == len(targets)
    assert (everywhere.test_ranks["hybrid"]["raw"] > 2).mean() > 0.5      # the contrast: all items compete
    with pytest.raises(ValueError, match="rank_within_target_domain needs ItemSideInfo.domains"):
        run_two_phase(split, ItemSideInfo(side.attributes), pipeline_config(rank_within_target_domain=True))
