"""FAISS inner-product indexes over the catalog, one per service.

Item vectors come from the query encoder applied to each item's search text, so a query vector and item
vectors share one space. One index per service keeps "only items sold in the service asked" a property of the
index rather than a post-filter. Exact (flat) search: the catalogs here are small; the quality issue brings
approximate indexes and Semantic IDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from recllm.catalog.product_catalog import SERVICES, Catalog, Item, validate_service


def item_search_text(item: Item, catalog: Catalog) -> str:
    """What the encoder sees of an item: name, brand, category path in both languages, tags."""
    path = catalog.category_path(item.category_id)
    categories = " ".join(f"{c.name_ru} {c.name_en}" for c in path)
    tags = " ".join(sorted(t.replace("_", " ") for t in item.tags))
    return f"{item.name} {item.brand} {categories} {tags}"


@dataclass
class ServiceIndex:
    """Exact inner-product search over one service's item vectors; ids are global item ids."""

    service: str
    index: faiss.Index

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [B, k], item ids [B, k]); ids are -1 past the end of a small catalog."""
        k = min(k, self.index.ntotal)
        return self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)


class CatalogIndex:
    """Per-service indexes plus the item vectors themselves (the reranker and explanations use them)."""

    def __init__(self, item_vectors: np.ndarray, catalog: Catalog):
        if item_vectors.shape[0] != len(catalog.items):
            raise ValueError(
                f"item_vectors has {item_vectors.shape[0]} rows but the catalog has {len(catalog.items)} items"
            )
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)  # [N, D]
        self.by_service = {service: self._build(service, catalog) for service in SERVICES}

    def _build(self, service: str, catalog: Catalog) -> ServiceIndex:
        ids = np.array([item.item_id for item in catalog.in_service(service)], dtype=np.int64)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.item_vectors.shape[1]))
        if len(ids):
            index.add_with_ids(self.item_vectors[ids], ids)
        return ServiceIndex(service, index)

    def search(self, service: str, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.by_service[validate_service(service)].search(query_vectors, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "item_vectors.npy", self.item_vectors)

    @classmethod
    def load(cls, directory: Path, catalog: Catalog) -> "CatalogIndex":
        # Flat indexes rebuild from the vectors in milliseconds; saving vectors keeps one source of truth.
        return cls(np.load(Path(directory) / "item_vectors.npy"), catalog)
