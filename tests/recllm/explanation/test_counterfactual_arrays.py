"""The array path of the causal explanations against its reference (``fact_groups``, ``counterfactual_features``,
``explain_facts_reference``): the same groups, the same feature rows, the same cited facts."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.explanation.causal_explanations import (CausalExplanationConfig, counterfactual_features,
                                                    explain_facts, explain_facts_reference, fact_groups)
from recllm.explanation.counterfactual_arrays import PurchaseTable
from recllm.profile.user_context import read_user_context
from recllm.rag.reranker import Reranker, RerankerConfig

CONFIG = CausalExplanationConfig()


@pytest.fixture(scope="module")
def buyers(profile_store, catalog, item_vectors):
    """The users with the most purchases, as the ranking reads them."""
    users = sorted(profile_store.user_ids(), key=lambda u: -len(profile_store.events_of(u, kind="purchase")))[:3]
    return [read_user_context(profile_store, catalog, item_vectors, u) for u in users]


def items_to_explain(context, catalog, count: int = 12) -> list[int]:
    """Items the user bought (many groups each) and items from elsewhere in the catalog (few or none)."""
    bought = list(dict.fromkeys(e.item_id for e in context.purchases))[:count // 2]
    others = np.random.default_rng(0).choice(len(catalog), size=count - len(bought), replace=False).tolist()
    return [int(i) for i in bought + others]


@pytest.fixture(scope="module")
def random_reranker():
    torch.manual_seed(0)
    return Reranker(RerankerConfig(hidden=16))


def test_fact_groups_equal_the_reference(buyers, catalog):
    for context in buyers:
        table = PurchaseTable(context.purchases, catalog)
        for item_id in items_to_explain(context, catalog):
            reference = fact_groups(catalog.get(item_id), context.purchases, catalog)
            fast = table.fact_groups(item_id)
            assert [key for key, _ in fast] == sorted(reference)
            for key, mask in fast:
                assert np.flatnonzero(mask).tolist() == reference[key], key


def test_feature_rows_equal_the_reference(buyers, catalog, item_vectors):
    popularity = {i: i % 7 for i in range(len(catalog))}
    for context in buyers:
        table = PurchaseTable(context.purchases, catalog)
        for item_id in items_to_explain(context, catalog):
            groups = table.fact_groups(item_id)
            masks = [mask for _, mask in groups]
            masks.append(np.ones(len(table), dtype=bool))  # everything removed: a cold user
            positions = [np.flatnonzero(mask).tolist() for mask in masks]
            for service in ("samokat", "kuper"):
                fast = table.features(item_id, 0.37, service, context.signals, masks, item_vectors, popularity,
                                      context.now_ts)
                reference = counterfactual_features(item_id, 0.37, service, context, positions, catalog,
                                                    item_vectors, popularity)
                assert fast.shape == reference.shape and fast.dtype == np.float32
                np.testing.assert_allclose(fast, reference, rtol=1e-6, atol=1e-6)


def test_cited_facts_equal_the_reference(buyers, catalog, item_vectors, random_reranker):
    for context in buyers:
        ids = items_to_explain(context, catalog)
        scores = np.linspace(0.9, 0.1, len(ids)).astype(np.float32)
        args = (ids, scores, catalog.get(ids[0]).service, context, random_reranker, catalog, item_vectors, {}, CONFIG)
        assert explain_facts(*args) == explain_facts_reference(*args)


def test_a_user_without_purchases_cites_nothing(profile_store, catalog, item_vectors, random_reranker):
    cold = read_user_context(profile_store, catalog, item_vectors, "u_never_seen")
    assert explain_facts([0, 1], [0.5, 0.4], catalog.get(0).service, cold, random_reranker, catalog, item_vectors, {},
                         CONFIG) == [(), ()]


@settings(max_examples=60, deadline=None)
@given(prices=st.lists(st.floats(1, 1e4, allow_nan=False), min_size=1, max_size=40), data=st.data())
def test_median_of_any_kept_subset_equals_numpy(prices, data):
    from recllm.profile.records import EventRow

    purchases = [EventRow("u", "kuper", 0, "purchase", k, None, p, 1, "", "") for k, p in enumerate(prices)]
    kept = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=len(prices), max_size=len(prices)),
                                       min_size=1, max_size=5)))
    table = PurchaseTable(purchases, _tiny_catalog())
    medians = table.median_prices(kept)
    for row, median in zip(kept, medians):
        if row.any():
            assert median == float(np.median(np.array(prices)[row]))
        else:
            assert np.isnan(median)


@functools.lru_cache(maxsize=1)
def _tiny_catalog():
    from recllm.catalog.product_catalog import Catalog, Category, Item

    return Catalog([Category("grocery", "продукты", "grocery", None, False)],
                   [Item(0, "kuper", 0, "Хлеб", "Бренд", "grocery", 50.0, True, frozenset())])
