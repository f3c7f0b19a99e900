"""Tiny generative retriever: learns a deterministic next-item rule, returns only existing items, scores candidates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recllm.sid.generative_retrieval import (GenerativeRetrieverConfig, generative_scores, retrieve, sample_items,
                                             train_generative_retriever, unconstrained_greedy_sids)
from recllm.sid.prefix_trie import SamplingConfig

N_ITEMS = 12


def item_sids() -> np.ndarray:
    """[13, 3]: row 0 padding, items 1..12 on a 3 x 4 x 1 grid plus a collision level."""
    rows = [[0, 0, 0]] + [[(i - 1) // 4, (i - 1) % 4, 0] for i in range(1, N_ITEMS + 1)]
    return np.array(rows, dtype=np.int64)


def cyclic_sequences(n_users: int = 60) -> list[list[int]]:
    """Every user walks items i, i+1, i+2, … (mod 12): the next item is a function of the last one."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n_users):
        start, length = int(rng.integers(1, N_ITEMS + 1)), int(rng.integers(3, 7))
        out.append([(start - 1 + step) % N_ITEMS + 1 for step in range(length)])
    return out


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return train_generative_retriever(cyclic_sequences(), item_sids(), GenerativeRetrieverConfig.from_name("test"))


def test_learns_the_next_item_and_returns_only_existing_items(model):
    histories = [[3, 4, 5], [11, 12], [12, 1, 2]]
    decoded = retrieve(model, histories, top_k=5)
    assert decoded.item_ids[:, 0].tolist() == [6, 1, 3]
    assert ((decoded.item_ids >= 1) & (decoded.item_ids <= N_ITEMS)).all()
    assert np.array_equal(model.item_sids.numpy()[decoded.item_ids], decoded.sids)


def test_sampling_never_leaves_the_catalog(model):
    config = SamplingConfig(temperature=3.0, top_k=3, top_p=0.9, seed=1)
    decoded = sample_items(model, [[1, 2], [7]], n_samples=50, config=config)
    assert ((decoded.item_ids >= 1) & (decoded.item_ids <= N_ITEMS)).all()
    assert np.array_equal(model.item_sids.numpy()[decoded.item_ids], decoded.sids)


def test_restricting_the_trie_restricts_the_items(model):
    decoded = retrieve(model, [[3, 4, 5]], top_k=3, trie=model.trie.restricted_to([2, 9, 10, 11]))
    assert set(decoded.item_ids[0].tolist()) <= {2, 9, 10, 11}


def test_generative_scores_match_beam_log_probs_and_rank_the_true_next_item_first(model):
    histories = [[3, 4, 5], [11, 12]]
    decoded = retrieve(model, histories, top_k=4)
    scores = generative_scores(model, histories, decoded.item_ids)
    assert np.allclose(scores, decoded.log_probs, atol=1e-4)
    all_items = np.tile(np.arange(1, N_ITEMS + 1), (2, 1))
    full = generative_scores(model, histories, all_items)
    assert full.argmax(1).tolist() == [5, 0]                     # items 6 and 1
    assert np.allclose(np.exp(full).sum(1), 1.0, atol=1e-4)      # constrained: a distribution over the catalog
    assert (generative_scores(model, histories, all_items, constrained=False) <= full + 1e-6).all()


def test_bad_candidates_are_rejected(model):
    with pytest.raises(ValueError, match="candidate ids"):
        generative_scores(model, [[1]], np.array([[N_ITEMS + 1]]))
    with pytest.raises(ValueError, match="candidate_item_ids"):
        generative_scores(model, [[1], [2]], np.array([[1]]))
    with pytest.raises(ValueError, match="hidden"):
        GenerativeRetrieverConfig(hidden=30, n_heads=4)


def test_unconstrained_decoding_shape(model):
    assert unconstrained_greedy_sids(model, [[1, 2]]).shape == (1, 3)
