"""Hybrid next-item scorer: the SASRec/transition mixture and weight tuning on validation data."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recllm.seqrec.hybrid_scorer import HybridConfig, HybridScorer, chunked, mix, same_domain_mask
from recllm.seqrec.sasrec import SASRecConfig


def test_mix_is_a_distribution_and_falls_back_to_sasrec_without_successors():
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    transitions = np.array([[0.0, 3.0, 1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    mixed = mix(logits, transitions, weight=0.5)
    softmax = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert mixed.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert mixed[0] == pytest.approx(0.5 * softmax[0] + 0.5 * np.array([0.0, 0.75, 0.25]))
    assert mixed[1] == pytest.approx(softmax[1])


def test_weight_validated():
    with pytest.raises(ValueError, match="transition_weight"):
        HybridConfig(transition_weight=1.5)


def test_tuning_picks_transitions_when_they_carry_the_signal():
    # Each item i (1..9) is followed by a fixed random successor; one epoch of SASRec cannot learn that yet,
    # the transition table can: tuning on held-out pairs must move the weight off 0.
    torch.set_num_threads(2)
    rng = random.Random(0)
    successor = {i: rng.randint(1, 20) for i in range(1, 21)}
    sequences = []
    for _ in range(200):
        item = rng.randint(1, 20)
        sequence = [item]
        for _ in range(5):
            item = successor[item]
            sequence.append(item)
        sequences.append(sequence)
    config = HybridConfig(sasrec=SASRecConfig.from_name("test", epochs=1), weight_grid=(0.0, 0.5, 1.0))
    scorer = HybridScorer.fit(sequences, config)
    histories = [[rng.randint(1, 20)] for _ in range(50)]
    targets = [successor[h[-1]] for h in histories]
    by_weight = scorer.tune_weight(histories, targets, metric="R@5")
    assert scorer.config.transition_weight > 0
    assert by_weight[scorer.config.transition_weight] > by_weight[0.0]
    metrics = chunked(scorer.score, histories, targets)
    assert metrics["filtered"]["R@5"] == pytest.approx(by_weight[scorer.config.transition_weight])


def test_same_domain_mask_keeps_each_targets_domain_and_never_padding():
    domains = np.array([0, 0, 0, 1, 1])                    # item 0 = padding
    allowed = same_domain_mask(domains, [1, 4])
    assert allowed.tolist() == [[False, True, True, False, False], [False, False, False, True, True]]


def test_parts_restricted_to_allowed_items_make_a_distribution_over_them():
    torch.manual_seed(0)
    sequences = [[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2]] * 5
    scorer = HybridScorer.fit(sequences, HybridConfig(sasrec=SASRecConfig.from_name("test", n_items=4, epochs=1)))
    allowed = same_domain_mask(np.array([0, 0, 0, 1, 1]), [3, 1])
    logits, transitions = scorer.parts([[1, 2], [3, 4]], allowed)
    assert np.isneginf(logits[~allowed]).all() and np.isfinite(logits[allowed]).all()
    assert (transitions[~allowed] == 0).all()
    mixed = mix(logits, transitions, 0.5)
    assert mixed.sum(axis=1) == pytest.approx([1.0, 1.0]) and (mixed[~allowed] == 0).all()
    # the transition 2 -> 3 is kept (3 is in the target's domain); 4 -> 1 is kept for the second row
    assert transitions[0, 3] > 0 and transitions[1, 1] > 0
