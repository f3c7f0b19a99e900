"""Per-service catalog indexes: exact inner-product search checked against brute force, service isolation, I/O."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.catalog.product_catalog import SERVICES
from recllm.rag.catalog_index import CatalogIndex, item_search_text


@pytest.fixture(scope="module")
def index(random_item_vectors, catalog, faiss_single_thread) -> CatalogIndex:
    return CatalogIndex(random_item_vectors, catalog)


def brute_force(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of ``vectors[ids] @ query``, best first."""
    scores = vectors[ids] @ query  # [S]
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], ids[order]


def random_queries(seed: int, count: int, dim: int = 16) -> np.ndarray:
    queries = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("k", [1, 10, 37])
def test_search_equals_brute_force_per_service(index, catalog, random_item_vectors, service, k):
    service_ids = np.array([item.item_id for item in catalog.in_service(service)])
    queries = random_queries(seed=k, count=6)
    scores, ids = index.search(service, queries, k)
    assert scores.shape == ids.shape == (6, k)
    for row, query in enumerate(queries):
        expected_scores, expected_ids = brute_force(random_item_vectors, service_ids, query, k)
        np.testing.assert_array_equal(ids[row], expected_ids)
        np.testing.assert_allclose(scores[row], expected_scores, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(service=st.sampled_from(SERVICES), k=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_results_never_contain_items_of_another_service(index, catalog, service, k, seed):
    _, ids = index.search(service, random_queries(seed, count=2), k)
    in_service = len(catalog.in_service(service))
    assert ids.shape == (2, min(k, in_service))  # k is capped at the service's catalog size, no -1 padding
    assert {catalog.get(int(i)).service for i in ids.ravel()} == {service}
    assert all(len(set(row)) == len(row) for row in ids.tolist())


def test_k_past_the_catalog_returns_every_item_of_the_service(index, catalog):
    for service in SERVICES:
        _, ids = index.search(service, random_queries(0, 1), 10_000)
        assert sorted(ids[0].tolist()) == [item.item_id for item in catalog.in_service(service)]


def test_search_accepts_float64_queries(index):
    query = random_queries(5, 1).astype(np.float64)
    np.testing.assert_array_equal(index.search("kuper", query, 5)[1],
                                  index.search("kuper", query.astype(np.float32), 5)[1])


def test_unknown_service_is_refused(index):
    with pytest.raises(ValueError, match="unknown service 'ozon'"):
        index.search("ozon", random_queries(0, 1), 3)


def test_item_search_text_has_name_brand_categories_in_both_languages_and_tags(catalog):
    for item in catalog.items:
        text = item_search_text(item, catalog)
        assert item.name in text and item.brand in text
        for category in catalog.category_path(item.category_id):
            assert category.name_ru in text and category.name_en in text
        for tag in item.tags:
            assert tag.replace("_", " ") in text
        assert "_" not in text.replace(item.name, "").replace(item.brand, "")


def test_item_search_text_of_a_known_item(catalog):
    item = next(i for i in catalog.items if i.category_id == "grocery/lactose_free")
    text = item_search_text(item, catalog)
    assert "продукты groceries" in text and "lactose free" in text


def test_mismatched_vector_rows_raise(catalog, random_item_vectors):
    with pytest.raises(ValueError, match=f"item_vectors has 219 rows but the catalog has {len(catalog)} items"):
        CatalogIndex(random_item_vectors[:219], catalog)
    with pytest.raises(ValueError, match="has 221 rows"):
        CatalogIndex(np.vstack([random_item_vectors, random_item_vectors[:1]]), catalog)


def test_item_vectors_are_kept_as_contiguous_float32(catalog, random_item_vectors):
    index = CatalogIndex(random_item_vectors.astype(np.float64)[:, ::1], catalog)
    assert index.item_vectors.dtype == np.float32 and index.item_vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(index.item_vectors, random_item_vectors, atol=1e-7)


def test_save_load_round_trip(index, catalog, tmp_path):
    index.save(tmp_path / "index")
    loaded = CatalogIndex.load(tmp_path / "index", catalog)
    np.testing.assert_array_equal(loaded.item_vectors, index.item_vectors)
    queries = random_queries(9, 4)
    for service in SERVICES:
        for original, reloaded in zip(index.search(service, queries, 12), loaded.search(service, queries, 12)):
            np.testing.assert_array_equal(original, reloaded)
