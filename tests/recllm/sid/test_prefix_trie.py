"""Prefix trie and constrained decoding: random tries and random logits never yield an item outside the trie."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.catalog.product_catalog import Catalog, Category, Item
from recllm.sid.prefix_trie import (SamplingConfig, SidTrie, beam_search, constrained_log_softmax,
                                    level_logits_model, sample, service_trie)


@st.composite
def tries(draw):
    depth = draw(st.integers(1, 4))
    vocab = draw(st.lists(st.integers(1, 5), min_size=depth, max_size=depth))
    all_sids = st.tuples(*[st.integers(0, v - 1) for v in vocab])
    sids = draw(st.lists(all_sids, min_size=1, max_size=30, unique=True))
    item_ids = draw(st.permutations(range(100, 100 + len(sids))))
    return SidTrie(np.array(sids), item_ids, vocab)


def random_step_logits(trie: SidTrie, seed: int, scale: float):
    """Logits that depend on the request row and the whole prefix (like an autoregressive model)."""
    def step(rows, prefixes):
        out = np.empty((len(rows), trie.vocab_sizes[prefixes.shape[1]]))
        for i, (row, prefix) in enumerate(zip(rows.tolist(), prefixes.tolist())):
            rng = np.random.default_rng([seed, row, len(prefix), *prefix])
            out[i] = rng.normal(scale=scale, size=out.shape[1])
        return out
    return step


def members(trie: SidTrie) -> dict[int, tuple]:
    return {int(item): tuple(sid) for item, sid in zip(trie.item_ids.tolist(), trie.sids.tolist())}


@settings(max_examples=60, deadline=None)
@given(trie=tries(), seed=st.integers(0, 10_000), beam=st.integers(1, 8), scale=st.sampled_from([0.1, 3.0, 50.0]))
def test_beam_search_returns_only_trie_items_best_first(trie, seed, beam, scale):
    decoded = beam_search(trie, random_step_logits(trie, seed, scale), n_rows=3, beam_size=beam, row_chunk=2)
    known = members(trie)
    for row in range(3):
        valid = decoded.item_ids[row] >= 0
        assert valid.sum() == min(beam, len(trie))
        for item, sid in zip(decoded.item_ids[row][valid], decoded.sids[row][valid]):
            assert known[int(item)] == tuple(sid)
        assert len(set(decoded.item_ids[row][valid].tolist())) == valid.sum()
        scores = decoded.log_probs[row][valid]
        assert np.all(np.diff(scores) <= 1e-6) and np.all(scores <= 1e-6)


@settings(max_examples=60, deadline=None)
@given(trie=tries(), seed=st.integers(0, 10_000), temperature=st.sampled_from([0.1, 1.0, 5.0]),
       top_k=st.integers(0, 3), top_p=st.sampled_from([0.05, 0.5, 1.0]))
def test_sampling_invalid_rate_is_exactly_zero(trie, seed, temperature, top_k, top_p):
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    decoded = sample(trie, random_step_logits(trie, seed, 5.0), n_rows=4, n_samples=6, config=config)
    known = members(trie)
    assert (decoded.item_ids >= 0).all()
    for item, sid in zip(decoded.item_ids.ravel(), decoded.sids.reshape(-1, trie.depth)):
        assert known[int(item)] == tuple(sid)
    assert np.isfinite(decoded.log_probs).all() and (decoded.log_probs <= 1e-9).all()


def test_log_probs_of_all_items_sum_to_one():
    trie = SidTrie(np.array([[0, 0], [0, 2], [1, 1], [2, 0]]), [5, 6, 7, 8], [3, 3])
    decoded = beam_search(trie, random_step_logits(trie, 1, 2.0), n_rows=1, beam_size=10)
    assert np.isclose(np.exp(decoded.log_probs[0][decoded.valid()[0]]).sum(), 1.0)


def test_top_k_one_is_greedy_and_exact_beam_matches_brute_force():
    sids = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    trie = SidTrie(sids, [10, 11, 12, 13])
    level0, level1 = np.array([[0.0, 2.0]]), np.array([[3.0, 0.0]])
    step = level_logits_model([level0, level1])
    greedy = sample(trie, step, 1, 5, SamplingConfig(top_k=1))
    assert (greedy.item_ids == 12).all()
    best = beam_search(trie, step, 1, beam_size=4)
    # log-probs: 12 = ls(2)+ls(3) > 10 = ls(-2)+ls(3) > 13 = ls(2)+ls(-3) > 11 (ls = log-sigmoid of the gap)
    assert best.item_ids[0].tolist() == [12, 10, 13, 11]


def test_allowed_next_and_unknown_prefix():
    trie = SidTrie(np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0]]), [1, 2, 3])
    assert trie.allowed_next([]).tolist() == [0, 2]
    assert trie.allowed_next([0, 1]).tolist() == [0, 1]
    assert trie.item_of([2, 0, 0]) == 3 and trie.item_of([2, 0, 1]) is None
    with pytest.raises(ValueError, match="no item's SID starts with"):
        trie.allowed_next([1])
    assert trie.restricted_to([3]).allowed_next([]).tolist() == [2]


def test_duplicate_sids_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="must be unique"):
        SidTrie(np.array([[0, 1], [0, 1]]), [1, 2])
    with pytest.raises(ValueError, match="item_ids shape"):
        SidTrie(np.array([[0, 1]]), [1, 2])
    with pytest.raises(ValueError, match="vocab_sizes"):
        SidTrie(np.array([[0, 3]]), [1], [1, 2])
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)


def test_constrained_softmax_puts_no_mass_outside_the_mask():
    mask = np.array([[True, False, True]])
    out = constrained_log_softmax(np.array([[0.0, 100.0, 0.0]]), mask)
    assert out[0, 1] == -np.inf and np.allclose(np.exp(out[0, [0, 2]]), 0.5)


def test_service_trie_keeps_only_that_services_in_stock_items():
    categories = [Category("c", "к", "c", None, False)]
    items = [Item(0, "samokat", 0, "молоко", "b", "c", 10.0, True, frozenset()),
             Item(1, "kuper", 0, "молоко", "b", "c", 11.0, True, frozenset()),
             Item(2, "kuper", 2, "сыр", "b", "c", 12.0, False, frozenset()),
             Item(3, "kuper", 3, "хлеб", "b", "c", 13.0, True, frozenset())]
    catalog = Catalog(categories, items)
    item_sids = np.array([[0, 0], [0, 0], [1, 0], [2, 0]])   # the two copies of family 0 share a SID
    kuper = service_trie(catalog, item_sids, "kuper")
    assert sorted(kuper.item_ids.tolist()) == [1, 3] and kuper.item_of([0, 0]) == 1
    assert service_trie(catalog, item_sids, "samokat").item_of([0, 0]) == 0
    assert sorted(service_trie(catalog, item_sids, "kuper", in_stock_only=False).item_ids.tolist()) == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown service"):
        service_trie(catalog, item_sids, "ozon")
