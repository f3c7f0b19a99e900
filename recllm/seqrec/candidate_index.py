"""Candidate retrieval by inner product: user states from the sequential model against a FAISS index of items.

At catalogue scale the first stage cannot score every item for every request; ``CandidateIndex`` holds the item
vectors of a trained SASRec (ID + content-feature embeddings) in a FAISS inner-product index and returns each user's
top-K items, the same order as the model's full scores (``score_histories``) restricted to the top K.
"""

from __future__ import annotations

from typing import Sequence

import faiss
import numpy as np

from recllm.seqrec.sasrec import SASRec, item_vectors, user_states


class CandidateIndex:
    """FAISS ``IndexFlatIP`` over items 1..n_items (padding excluded); ``search`` → (item ids, scores), best first."""

    def __init__(self, model: SASRec, allowed_items: Sequence[int] | None = None):
        self.model = model
        vectors = item_vectors(model)
        ids = np.arange(1, vectors.shape[0], dtype=np.int64) if allowed_items is None \
            else np.asarray(sorted(set(allowed_items)), dtype=np.int64)
        if len(ids) == 0 or ids.min() < 1 or ids.max() >= vectors.shape[0]:
            raise ValueError(f"CandidateIndex: allowed items must be non-empty ids in 1..{vectors.shape[0] - 1}")
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
        self.index.add_with_ids(np.ascontiguousarray(vectors[ids]), ids)

    def search(self, histories: Sequence[Sequence[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"CandidateIndex.search: k must be >= 1, got {k}")
        scores, ids = self.index.search(np.ascontiguousarray(user_states(self.model, histories)), k)
        return ids, scores
