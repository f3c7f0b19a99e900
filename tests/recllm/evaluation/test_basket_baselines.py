"""Next-basket baselines: popularity and personal frequency orders, TIFU-KNN's decayed vectors and neighbours
checked against hand computations and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recllm.evaluation.basket_baselines import (
    GlobalPopularity,
    TifuKnn,
    TifuKnnConfig,
    basket_weights,
    group_sizes,
    nearest_neighbours,
    neighbour_mean,
    personal_frequency,
    personal_then_global,
    top_items,
    user_vectors,
)


def test_global_popularity_counts_baskets_not_duplicates():
    popularity = GlobalPopularity([[1, 1, 2], [2, 3], [2], [3, 4]])
    assert popularity.ranked == [2, 3, 1, 4]
    assert popularity.top(2) == [2, 3]


def test_personal_frequency_breaks_ties_by_recency_then_id():
    history = [[5, 1], [7, 9], [1, 9], [3, 2]]
    # 1 and 9 twice (9's last basket = 1's last basket -> smaller id first), then 2 and 3 (basket 3), then 7, 5
    assert personal_frequency(history, 10) == [1, 9, 2, 3, 7, 5]
    assert personal_frequency(history, 2) == [1, 9]


def test_personal_then_global_fills_with_unbought_popular_items():
    popularity = GlobalPopularity([[8], [8], [4], [4], [4], [1]])
    assert personal_then_global([[1], [1, 2]], popularity, 4) == [1, 2, 4, 8]


@pytest.mark.parametrize("n, m, sizes", [(10, 3, [3, 3, 4]), (9, 3, [3, 3, 3]), (2, 7, [1, 1]), (11, 7,
                                          [1, 1, 1, 2, 2, 2, 2])])
def test_groups_are_consecutive_and_the_later_ones_larger(n, m, sizes):
    assert group_sizes(n, m) == sizes


def test_basket_weights_match_the_formula():
    # 5 baskets, 2 groups of sizes [2, 3]; rb = 0.5, rg = 0.1
    expected = [0.5 / 2 * 0.1 / 2, 1 / 2 * 0.1 / 2, 0.25 / 3 * 1 / 2, 0.5 / 3 * 1 / 2, 1 / 3 * 1 / 2]
    assert np.allclose(basket_weights(5, 2, 0.5, 0.1), expected)


def test_user_vectors_sum_basket_weights_per_item():
    vectors = user_vectors([[[0, 1], [1, 1, 2]], []], 4, group_count=2, within_decay=0.5, group_decay=0.1)
    dense = vectors.to_dense().numpy()
    w_old, w_new = 0.1 / 2, 1 / 2          # two groups of one basket each
    assert np.allclose(dense[0], [w_old, w_old + w_new, w_new, 0])
    assert np.allclose(dense[1], 0)


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    pool = torch.tensor(rng.random((40, 9)) * (rng.random((40, 9)) < 0.4), dtype=torch.float32)
    queries = torch.tensor(rng.random((6, 9)), dtype=torch.float32)
    found = nearest_neighbours(queries, pool.to_sparse(), 5).numpy()
    distances = ((queries.numpy()[:, None, :] - pool.numpy()[None]) ** 2).sum(-1)        # [Q, N]
    assert (found == np.argsort(distances, axis=1, kind="stable")[:, :5]).all()


def test_neighbour_mean_averages_the_chosen_rows():
    pool = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 4.0]])
    mean = neighbour_mean(pool.to_sparse().t().coalesce(), torch.tensor([[0, 2], [1, 0]]), 3)
    assert torch.allclose(mean, torch.tensor([[0.5, 0, 2.0], [0.5, 1.0, 0]]))


def test_top_items_drop_unscored_items():
    assert top_items(torch.tensor([[0.0, 3.0, 1.0, 0.0]]), 3) == [[1, 2]]


def test_tifu_knn_with_alpha_one_ranks_the_users_own_decayed_items():
    pool = [[[0, 1]], [[2, 3]], [[4]]]
    model = TifuKnn(pool, 6, TifuKnnConfig(group_count=2, within_decay=1.0, group_decay=0.5, n_neighbors=1,
                                           alpha=1.0))
    assert model.predict([[[5], [0]]], 3) == [[0, 5]]          # the newer group weighs more


def test_tifu_knn_borrows_items_from_the_nearest_user():
    pool = [[[0, 1, 2]], [[7, 8]]]
    model = TifuKnn(pool, 10, TifuKnnConfig(group_count=1, within_decay=1.0, group_decay=1.0, n_neighbors=1,
                                            alpha=0.5))
    (predicted,) = model.predict([[[0, 1]]], 5)     # scores 0.5 * [1, 1, 0] + 0.5 * [1, 1, 1]
    assert sorted(predicted[:2]) == [0, 1] and predicted[2:] == [2]


@pytest.mark.parametrize("field, value", [("group_count", 0), ("n_neighbors", 1.5), ("alpha", 1.2),
                                          ("within_decay", -0.1)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"TifuKnnConfig.{field}"):
        TifuKnnConfig(**{field: value})
