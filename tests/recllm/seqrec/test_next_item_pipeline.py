"""Leave-one-out next-item pipeline on a tiny planted data set: both phases run, weights are tuned on validation."""

from __future__ import annotations

import random

import numpy as np
import torch

from recllm.datasets.amazon_beauty import leave_one_out
from recllm.datasets.interaction_dataset import InteractionDataset
from recllm.seqrec.candidate_reranker import CandidateRerankerConfig
from recllm.seqrec.hybrid_scorer import HybridConfig
from recllm.seqrec.next_item_pipeline import NextItemPipelineConfig, run_leave_one_out
from recllm.seqrec.sasrec import SASRecConfig

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
    assert set(result.valid) == {"sasrec", "hybrid"}
    assert result.transition_weight > 0       # one SASRec epoch has not learnt the chain; transitions have
    assert result.weight_search[result.transition_weight] == max(result.weight_search.values())
    assert result.test["hybrid"]["raw"]["R@5"] > 0.9           # chance: 5 / 20
    assert result.test["reranked"]["raw"]["R@5"] > 0.9
    assert config.hybrid.transition_weight == HybridConfig().transition_weight   # the caller's config is untouched
