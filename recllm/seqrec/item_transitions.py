"""Item-to-item transitions: "after buying A, people buy B next" counted in the training sequences.

A cheap, strong companion to the sequential model on sparse catalogues such as Amazon Beauty: for every pair of
items (a, b) with b within ``window`` steps after a in some training sequence, ``T[a, b] += 1 / distance``. A user's
scores are the recency-weighted sum of the rows of their latest items, ``sum_j decay ** age_j * T[h_j]``, where
``age_j`` is 0 for the newest item. Rows are normalised by the item's outgoing mass, so popular items do not drown
rare ones. Used as a reranker feature (see ``recllm.seqrec.candidate_reranker``).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from recllm.config.field_checks import require_in_interval


@dataclass
class TransitionConfig:
    window: int = 3          # b counts as following a when it comes at most this many steps later
    history_items: int = 5   # how many of the user's latest items vote
    decay: float = 0.6       # weight of the vote of the item ``age`` steps back: decay ** age

    def __post_init__(self) -> None:
        for name in ("window", "history_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"TransitionConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        require_in_interval(self, "decay", "(0, 1]")


class ItemTransitions:
    """Row-normalised sparse transition matrix [n_items + 1, n_items + 1] fitted on training sequences."""

    def __init__(self, sequences: Sequence[Sequence[int]], n_items: int, config: TransitionConfig | None = None):
        self.config = config or TransitionConfig()
        self.n_items = n_items
        counts: dict[tuple[int, int], float] = defaultdict(float)
        for sequence in sequences:
            for i, source in enumerate(sequence):
                for distance in range(1, self.config.window + 1):
                    if i + distance >= len(sequence):
                        break
                    counts[(source, sequence[i + distance])] += 1.0 / distance
        self.matrix = self._normalised(counts)

    def _normalised(self, counts: dict[tuple[int, int], float]) -> torch.Tensor:
        size = self.n_items + 1
        if not counts:
            return torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), (size, size)).coalesce()
        pairs = np.array(list(counts.keys()), dtype=np.int64)                 # [P, 2]
        if pairs.max() > self.n_items or pairs.min() < 1:
            raise ValueError(f"ItemTransitions: item ids must be in 1..{self.n_items}")
        values = np.array(list(counts.values()), dtype=np.float32)            # [P]
        out_mass = np.bincount(pairs[:, 0], weights=values, minlength=size)   # [n_items + 1]
        values = (values / out_mass[pairs[:, 0]]).astype(np.float32)
        indices = torch.from_numpy(pairs.T.copy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_coo_tensor(indices, torch.from_numpy(values), (size, size)).coalesce()

    def history_weights(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Sparse [U, n_items + 1]: decay ** age on each of the user's latest ``history_items`` items."""
        rows, cols, values = [], [], []
        for u, history in enumerate(histories):
            latest = list(history)[-self.config.history_items:]
            for age, item in enumerate(reversed(latest)):
                rows.append(u)
                cols.append(item)
                values.append(self.config.decay ** age)
        indices = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        weights = torch.tensor(values, dtype=torch.float32)
        return torch.sparse_coo_tensor(indices, weights, (len(histories), self.n_items + 1)).coalesce()

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """[U, n_items + 1] float32 transition scores (0 where nothing in the history leads to an item)."""
        with warnings.catch_warnings():   # torch labels its sparse kernels beta; the product is checked in tests
            warnings.simplefilter("ignore", UserWarning)
            product = torch.sparse.mm(self.history_weights(histories), self.matrix)
        return product.to_dense().numpy()
