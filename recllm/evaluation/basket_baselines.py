"""Next-basket baselines of the "Next Basket Recommendation Reality Check": popularity, personal frequency, TIFU-KNN.

Each predictor maps a user's history baskets (oldest first) to a ranked list of item ids:

- ``GlobalPopularity`` (G-TopFreq): the most frequent items over the given baskets, the same list for everyone;
- ``personal_frequency`` (P-TopFreq): the user's own items by how many of their baskets hold them (ties: the more
  recent last occurrence first, then the smaller id); shorter than K when the user bought fewer distinct items;
- ``personal_then_global`` (G-P-TopFreq): P-TopFreq filled up to K with the global list;
- ``TifuKnn`` (Hu et al., KDD 2020): a user vector of time-decayed basket vectors — the history is cut into
  ``group_count`` consecutive groups, baskets inside a group weighted ``within_decay ** (baskets after it in the
  group)`` and averaged, groups weighted ``group_decay ** (groups after it)`` and averaged — then the score
  ``alpha * user + (1 - alpha) * mean of the n_neighbors nearest (Euclidean) neighbour vectors``.

Vectors are torch sparse tensors (no scipy here); item ids index the vector columns directly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from recllm.config.field_checks import require_positive_ints

Baskets = Sequence[Sequence[int]]


class GlobalPopularity:
    """G-TopFreq: items ranked by the number of baskets holding them (ties by smaller id)."""

    def __init__(self, baskets: Baskets):
        counts = Counter(item for basket in baskets for item in set(basket))
        self.ranked = [item for item, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))]

    def top(self, k: int) -> list[int]:
        return self.ranked[:k]


def personal_frequency(history: Baskets, k: int) -> list[int]:
    """P-TopFreq: the user's items by basket count, then by most recent basket, then by id; at most ``k``."""
    counts, last_seen = Counter(), {}
    for position, basket in enumerate(history):
        for item in set(basket):
            counts[item] += 1
            last_seen[item] = position
    return sorted(counts, key=lambda item: (-counts[item], -last_seen[item], item))[:k]


def personal_then_global(history: Baskets, popularity: GlobalPopularity, k: int) -> list[int]:
    """G-P-TopFreq: ``personal_frequency`` then the most popular items the user has not bought, ``k`` in all."""
    personal = personal_frequency(history, k)
    seen = set(personal)
    fill = (item for item in popularity.ranked if item not in seen)
    return personal + [item for _, item in zip(range(k - len(personal)), fill)]


@dataclass(frozen=True)
class TifuKnnConfig:
    group_count: int = 7          # m: number of consecutive basket groups
    within_decay: float = 0.9     # r_b: decay between baskets inside a group
    group_decay: float = 0.7      # r_g: decay between groups
    n_neighbors: int = 300        # k: nearest neighbour users averaged
    alpha: float = 0.7            # weight of the user's own vector against the neighbours' mean

    def __post_init__(self) -> None:
        require_positive_ints(self, ("group_count", "n_neighbors"))
        for name in ("within_decay", "group_decay", "alpha"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TifuKnnConfig.{name} must be in [0, 1], got {value!r}")


def group_sizes(n_baskets: int, group_count: int) -> list[int]:
    """Consecutive group sizes, ``min(group_count, n_baskets)`` groups as equal as possible, the later ones larger."""
    groups = min(group_count, n_baskets)
    base, extra = divmod(n_baskets, groups)
    return [base + (index >= groups - extra) for index in range(groups)]


def basket_weights(n_baskets: int, group_count: int, within_decay: float, group_decay: float) -> np.ndarray:
    """[n_baskets] the weight of each basket in the user vector (oldest first).

    Basket ``p`` of group ``j`` (size ``s``, ``g`` groups): ``within_decay**(s-1-p) / s * group_decay**(g-1-j) / g``.
    """
    sizes = group_sizes(n_baskets, group_count)
    weights = []
    for group, size in enumerate(sizes):
        group_weight = group_decay ** (len(sizes) - 1 - group) / len(sizes)
        weights.extend(within_decay ** (size - 1 - position) / size * group_weight for position in range(size))
    return np.asarray(weights, dtype=np.float64)


def user_vectors(histories: Sequence[Baskets], n_items: int, group_count: int, within_decay: float,
                 group_decay: float) -> torch.Tensor:
    """[U, n_items] sparse COO (coalesced, float32): the TIFU-KNN vector of each history (multi-hot baskets)."""
    rows, cols, values = [], [], []
    for user, history in enumerate(histories):
        if not history:
            continue
        for weight, basket in zip(basket_weights(len(history), group_count, within_decay, group_decay), history):
            for item in set(basket):
                rows.append(user)
                cols.append(item)
                values.append(weight)
    indices = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    return torch.sparse_coo_tensor(indices, torch.tensor(values, dtype=torch.float32),
                                   (len(histories), n_items), check_invariants=True).coalesce()


def nearest_neighbours(queries: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    """[Q, k] indices of the ``k`` pool rows closest in Euclidean distance to each query row (closest first).

    ``queries`` [Q, I] dense, ``pool`` [N, I] sparse; the query users must not be in the pool themselves.
    """
    k = min(k, pool.shape[0])
    pool_norms = torch.sparse.sum(pool * pool, dim=1).to_dense()                        # [N]
    dots = torch.sparse.mm(pool, queries.T)                                              # [N, Q]
    distances = pool_norms[:, None] - 2 * dots                                           # + |q|^2: same per column
    return distances.topk(k, dim=0, largest=False).indices.T                             # [Q, k]


def neighbour_mean(pool_transposed: torch.Tensor, neighbours: torch.Tensor, pool_size: int) -> torch.Tensor:
    """[Q, I] dense mean of the neighbour rows: ``mean_j pool[neighbours[q, j]]`` via one sparse product."""
    n_queries, k = neighbours.shape
    selection = torch.zeros(pool_size, n_queries)                                        # [N, Q]
    selection[neighbours.T.reshape(-1), torch.arange(n_queries).repeat(k)] = 1.0 / k
    return torch.sparse.mm(pool_transposed, selection).T                                 # [Q, I]


def top_items(scores: torch.Tensor, k: int) -> list[list[int]]:
    """The ``k`` best-scored item ids of each row (only items with a positive score)."""
    values, items = scores.topk(min(k, scores.shape[1]), dim=1)
    return [[int(item) for item, value in zip(row_items, row_values) if value > 0]
            for row_items, row_values in zip(items.tolist(), values.tolist())]


class TifuKnn:
    """TIFU-KNN over a fixed neighbour pool (the training users' histories)."""

    def __init__(self, pool_histories: Sequence[Baskets], n_items: int, config: TifuKnnConfig):
        self.config, self.n_items = config, n_items
        self.pool = user_vectors(pool_histories, n_items, config.group_count, config.within_decay,
                                 config.group_decay)                                     # [N, I]
        self.pool_transposed = self.pool.t().coalesce()                                  # [I, N]

    def scores(self, histories: Sequence[Baskets]) -> torch.Tensor:
        """[Q, n_items] dense TIFU-KNN scores."""
        config = self.config
        queries = user_vectors(histories, self.n_items, config.group_count, config.within_decay,
                               config.group_decay).to_dense()                            # [Q, I]
        neighbours = nearest_neighbours(queries, self.pool, config.n_neighbors)
        return self.mix(queries, neighbours, config.alpha)

    def mix(self, queries: torch.Tensor, neighbours: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha * queries + (1 - alpha) * neighbour_mean(self.pool_transposed, neighbours, self.pool.shape[0])

    def predict(self, histories: Sequence[Baskets], k: int) -> list[list[int]]:
        return top_items(self.scores(histories), k)
