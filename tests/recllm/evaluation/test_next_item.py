"""train_and_rank: ranks among all items and among candidate pools, raw and history-filtered, checked against the
loop definitions; bad input names the argument."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.evaluation.next_item import ALL_ITEMS, pool_ranks, train_and_rank
from recllm.seqrec.full_ranking import filter_history, target_ranks
from recllm.seqrec.sasrec import SASRecConfig

N_ITEMS = 12


def ring_sequences(n_users: int, length: int = 6) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [[(start + step) % N_ITEMS + 1 for step in range(length)] for start in rng.integers(0, N_ITEMS, n_users)]


def test_pool_ranks_follow_the_loop_definition():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(30, 20)).astype(np.float32)   # many ties
    targets = rng.integers(0, 20, size=30).tolist()
    pools = [rng.choice(20, size=rng.integers(1, 20), replace=False) for _ in range(30)]
    expected = [sum(1 for c in pool if c != t and scores[u, c] >= scores[u, t]) for u, (t, pool) in
                enumerate(zip(targets, pools))]
    assert pool_ranks(scores, targets, pools).tolist() == expected


def test_a_pool_of_all_items_gives_the_full_ranking():
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((10, 15)).astype(np.float32)
    targets = rng.integers(0, 15, size=10).tolist()
    everything = [np.arange(15)] * 10
    assert pool_ranks(scores, targets, everything).tolist() == target_ranks(scores, targets).tolist()


@pytest.fixture(scope="module")
def trained(single_thread):
    train = ring_sequences(120)
    histories = [[3, 4, 5], [12, 1], [7], []]
    targets = [6, 2, 8, 5]
    pools = {"odd": [np.arange(1, N_ITEMS + 1, 2)] * 4, "first_three": [np.array([1, 2, 3])] * 4}
    config = SASRecConfig.from_name("test", epochs=15)
    with single_thread():
        return histories, targets, train_and_rank(train, histories, targets, N_ITEMS, config, pools)


def test_the_model_learns_the_ring_and_ranks_every_view(trained):
    histories, targets, result = trained
    assert set(result.ranks) == {ALL_ITEMS, "odd", "first_three"}
    assert result.config.n_items == N_ITEMS
    full = result.ranks[ALL_ITEMS]
    assert full.raw.shape == full.filtered.shape == (4,)
    assert full.raw[:3].tolist() == [0, 0, 0]          # the next ring item is first after a ring history
    assert (full.filtered <= full.raw).all()           # removing other items can only lift a target ...
    assert full.filtered[3] == full.raw[3]              # ... and an empty history removes nothing


def test_pool_ranks_never_exceed_the_pool(trained):
    _, targets, result = trained
    assert (result.ranks["first_three"].raw <= 3).all()
    assert (result.ranks["odd"].raw <= result.ranks[ALL_ITEMS].raw).all()


def test_a_repeated_target_is_a_miss_when_filtered():
    scores = np.array([[-np.inf, 0.1, 0.9, 0.5]], dtype=np.float32)
    filtered = filter_history(scores, [[2]])
    assert pool_ranks(filtered, [2], [np.array([1, 2, 3])]).tolist() == [2]


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_targets": [1, 2]}, "1 eval_histories for 2 eval_targets"),
    ({"train_sequences": [[1, 99]]}, "train_sequences holds item id 99"),
    ({"eval_targets": [0]}, "eval_targets holds item id 0"),
    ({"candidate_pools": {"all": [np.array([1])]}}, "reserved"),
    ({"candidate_pools": {"p": []}}, "pool 'p' has 0 rows"),
])
def test_bad_input_names_the_argument(kwargs, message):
    arguments = {"train_sequences": [[1, 2, 3]], "eval_histories": [[1]], "eval_targets": [2], "n_items": 5,
                 "config": SASRecConfig.from_name("test", epochs=1), **kwargs}
    with pytest.raises(ValueError, match=message):
        train_and_rank(**arguments)
