"""FAISS candidate retrieval agrees with the model's full scores; sampled-softmax training learns too."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recllm.seqrec.candidate_index import CandidateIndex
from recllm.seqrec.full_ranking import full_ranking_metrics
from recllm.seqrec.sasrec import SASRec, SASRecConfig, score_histories, train_sasrec


def test_faiss_top_k_equals_full_scoring_top_k():
    torch.manual_seed(0)
    features = (np.arange(21) % 3 + 1)[:, None]
    model = SASRec(SASRecConfig.from_name("test"), features).eval()
    histories = [[1, 2, 3], [7], [4, 9, 12, 18]]
    ids, scores = CandidateIndex(model).search(histories, k=5)
    full = score_histories(model, histories)
    for row in range(len(histories)):
        expected = np.argsort(-full[row], kind="stable")[:5]
        assert ids[row].tolist() == expected.tolist()
        assert scores[row] == pytest.approx(full[row, expected], rel=1e-4, abs=1e-4)


def test_allowed_items_restrict_the_index():
    model = SASRec(SASRecConfig.from_name("test")).eval()
    ids, _ = CandidateIndex(model, allowed_items=[2, 4, 6]).search([[1, 2]], k=3)
    assert sorted(ids[0].tolist()) == [2, 4, 6]
    with pytest.raises(ValueError, match="allowed items"):
        CandidateIndex(model, allowed_items=[0])


def test_sampled_softmax_learns_successor_pattern():
    torch.set_num_threads(2)
    config = SASRecConfig.from_name("test", loss="sampled", num_negatives=8)
    rng = random.Random(0)
    sequences = [list(range(s, s + n)) for s, n in ((rng.randint(1, 12), rng.randint(3, 8)) for _ in range(300))]
    model = train_sasrec(sequences, config)
    histories = [list(range(s, s + n)) for s in range(1, 12) for n in (1, 3) if s + n <= config.n_items]
    metrics = full_ranking_metrics(score_histories(model, histories), [h[-1] + 1 for h in histories], ks=(1,))
    assert metrics["R@1"] > 0.8


def test_loss_name_validated():
    with pytest.raises(ValueError, match="SASRecConfig.loss"):
        SASRecConfig(loss="bpr")
