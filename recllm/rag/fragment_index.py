"""A per-user FAISS index over the user's profile fragments: the "personal vector index" of the RAG stage.

Built per request (a user has tens of fragments), searched with the query vector; the retriever returns the best
fragments as the profile facts the generator may cite.
"""

from __future__ import annotations

import faiss
import numpy as np

from recllm.profile.records import ProfileFragment


class UserFragmentIndex:
    """A FAISS inner-product index over one user's fragments (built per request: a user has tens of them)."""

    def __init__(self, fragments: list[ProfileFragment]):
        self.fragments = fragments
        self.index = None
        if fragments:
            vectors = np.stack([f.vector for f in fragments]).astype(np.float32)  # [F, D]
            self.index = faiss.IndexFlatIP(vectors.shape[1])
            self.index.add(vectors)

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[ProfileFragment, float]]:
        if self.index is None or k <= 0:
            return []
        scores, rows = self.index.search(query_vector.reshape(1, -1).astype(np.float32), min(k, len(self.fragments)))
        return [(self.fragments[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
