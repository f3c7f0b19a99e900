"""Shared fixtures for the recllm unit tests: the tiny synthetic ecosystem and what is built from it.

The data fixtures are session-scoped and deterministic: the ecosystem (< 0.5 s), a small query encoder trained on
the ecosystem's (query, relevant item text) pairs (a few seconds on one thread), item vectors in its space and a
profile store filled the way ``builders`` fills the real one. Fixtures that only need geometry use
``random_item_vectors`` instead of the encoder.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import faiss
import numpy as np
import pytest
import torch

from builders.build_artifacts import encoder_pairs, fill_profile, store_fragments
from recllm.catalog.product_catalog import Catalog
from recllm.rag.catalog_index import CatalogIndex, item_search_text
from recllm.profile.sqlite_store import ProfileStore
from recllm.rag.query_encoder import QueryEncoder, QueryEncoderConfig, train_query_encoder
from recllm.synthetic.ecosystem import Ecosystem, SyntheticConfig, generate_ecosystem

ENCODER_EPOCHS = 10


@contextmanager
def one_torch_thread():
    """Run torch on one intra-op thread, then restore: on the shared 2-core machine small trainings run several
    times faster without thread contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def single_thread():
    """``with single_thread(): ...`` for test code that trains a model."""
    return one_torch_thread


@pytest.fixture(scope="module")
def faiss_single_thread():
    """One OpenMP thread for FAISS in this module: on a loaded 2-core machine a tiny flat search with OpenMP
    threads takes ~18 ms instead of ~1 ms."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@pytest.fixture(scope="session")
def ecosystem() -> Ecosystem:
    return generate_ecosystem(SyntheticConfig.from_name("test"))


@pytest.fixture(scope="session")
def catalog(ecosystem) -> Catalog:
    return ecosystem.catalog


@pytest.fixture(scope="session")
def random_item_vectors(catalog) -> np.ndarray:
    """[N, 16] fixed random unit rows: for tests that need item geometry but not meaning."""
    rng = np.random.default_rng(1234)
    vectors = rng.standard_normal((len(catalog.items), 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def encoder_training_pairs(ecosystem: Ecosystem) -> list[tuple[str, str]]:
    """The builder's own recipe, over every query of the test ecosystem."""
    return encoder_pairs(ecosystem, ecosystem.queries, seed=0)


@pytest.fixture(scope="session")
def trained_encoder(ecosystem) -> QueryEncoder:
    config = dataclasses.replace(QueryEncoderConfig.from_name("test"), train_epochs=ENCODER_EPOCHS)
    with one_torch_thread():
        return train_query_encoder(encoder_training_pairs(ecosystem), config, progress=False)


@pytest.fixture(scope="session")
def item_vectors(trained_encoder, catalog) -> np.ndarray:
    """[N, D] item vectors in the trained encoder's space."""
    with one_torch_thread():
        return trained_encoder.encode([item_search_text(item, catalog) for item in catalog.items])


@pytest.fixture(scope="session")
def catalog_index(item_vectors, catalog) -> CatalogIndex:
    return CatalogIndex(item_vectors, catalog)


@pytest.fixture(scope="session")
def profile_store(tmp_path_factory, ecosystem, item_vectors) -> ProfileStore:
    """Users, events, popularity and fragments of the whole ecosystem, as ``builders`` stores them."""
    store = fill_profile(ProfileStore(tmp_path_factory.mktemp("profile") / "profile.db"), ecosystem)
    store_fragments(ecosystem, store, item_vectors)
    return store
