"""RQ-KMeans: content vectors → Semantic IDs (``levels`` k-means codes + one collision code), unique per item.

Level 1 clusters the item vectors, level 2 clusters what level 1 left over (vector − its centroid), and so on: items
sharing a prefix are similar, coarse to fine. Items whose ``levels`` codes coincide get a last code 0, 1, 2, … in
input order, so every SID is unique (TIGER's collision token). K-means is our own (k-means++ init, Lloyd steps) so
it is deterministic for a seed; an empty cluster is re-seeded with the point worst served by its centroid, which is
the guard against codebook collapse. ``quantization_stats`` reports what the issue asks: collision rate, maximum
collision depth, per-level usage and normalised entropy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class RQKMeansConfig:
    """``levels`` k-means levels of ``codebook_size`` codes each (a collision level is added on top)."""

    levels: int = 3
    codebook_size: int = 256
    iterations: int = 30
    # Cap every cluster at ceil(N / K) points: plain residual k-means sends the items with tiny residuals to one code
    # per level, which is where most 3-level collisions come from.
    balanced: bool = False
    # Scale every level's residuals to unit length before clustering them: items of a tight level-1 cluster have tiny
    # residuals that plain RQ piles onto the code nearest the origin; their directions still tell them apart.
    # Measured on Beauty (64-d content vectors, 3 x 256): collision rate .59 plain, .53 balanced, .46 normalised.
    normalize_residuals: bool = True
    # Give the items that share every earlier code distinct last-level codes where the codebook allows (nearest free
    # code first): residual k-means leaves near neighbours on one full code, and each such collision costs the
    # generator an extra, content-free token. Measured on Beauty: see benchmarks/results/beauty_sids.md.
    spread_last_level: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("levels", 1), ("codebook_size", 2), ("iterations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"RQKMeansConfig.{name} must be an int >= {minimum}, got {value!r}")
        for name in ("balanced", "normalize_residuals", "spread_last_level"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RQKMeansConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"RQKMeansConfig.seed must be an int, got {self.seed!r}")


@dataclass
class SemanticIds:
    """``codes`` [N, levels + 1] int64 (last column = collision index); ``codebooks[l]`` [K_l, D] float32."""

    codes: np.ndarray
    codebooks: list[np.ndarray]
    codebook_size: int
    normalize_residuals: bool = True

    @property
    def levels(self) -> int:
        return len(self.codebooks)

    def vocab_sizes(self) -> list[int]:
        """Tokens per position: ``codebook_size`` per k-means level, largest collision index + 1 for the last."""
        return [self.codebook_size] * self.levels + [int(self.codes[:, -1].max()) + 1]


def squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[N, K] ``|points[n] - centroids[k]|^2`` (clipped at 0 against rounding)."""
    cross = points @ centroids.T                                                           # [N, K]
    out = (points * points).sum(1)[:, None] - 2.0 * cross + (centroids * centroids).sum(1)[None]
    return np.maximum(out, 0.0)


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k initial centroids [k, D]: the first uniform, each next with probability ∝ squared distance to the chosen."""
    chosen = [int(rng.integers(len(points)))]
    closest = squared_distances(points, points[chosen]).ravel()                             # [N]
    for _ in range(1, k):
        total = closest.sum()
        pick = int(rng.integers(len(points))) if total <= 0 else int(rng.choice(len(points), p=closest / total))
        chosen.append(pick)
        closest = np.minimum(closest, squared_distances(points, points[pick:pick + 1]).ravel())
    return points[chosen].copy()


def _reseed_empty(points: np.ndarray, centroids: np.ndarray, assignment: np.ndarray, distance: np.ndarray) -> int:
    """Move every empty centroid onto the point farthest from its own centroid (each point used once). Returns count."""
    counts = np.bincount(assignment, minlength=len(centroids))
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return 0
    farthest = np.argsort(-distance, kind="stable")
    for cluster, point in zip(empty, farthest):
        if distance[point] <= 0:  # every point sits on its centroid: nothing left to split
            break
        centroids[cluster] = points[point]
        assignment[point] = cluster
        distance[point] = 0.0
    return len(empty)


def balanced_assignment(distances: np.ndarray, capacity: int) -> np.ndarray:
    """[N] cluster per point, no cluster above ``capacity`` (needs ``capacity * K >= N``).

    Rounds of proposals: every unassigned point proposes to its nearest cluster with room left; each cluster
    accepts its closest proposers up to its room. Ties break by point index, so the result is deterministic.
    """
    n_points, k = distances.shape
    if capacity * k < n_points:
        raise ValueError(f"balanced_assignment: capacity {capacity} x {k} clusters < {n_points} points")
    assignment = np.full(n_points, -1, dtype=np.int64)
    room = np.full(k, capacity, dtype=np.int64)
    open_distances = distances.astype(np.float64, copy=True)
    while (assignment < 0).any():
        pending = np.flatnonzero(assignment < 0)
        open_distances[:, room == 0] = np.inf
        wanted = open_distances[pending].argmin(1)                                          # [P]
        order = np.lexsort((pending, open_distances[pending, wanted], wanted))              # by cluster, distance
        cluster_sorted = wanted[order]
        first_of_cluster = np.r_[0, np.flatnonzero(np.diff(cluster_sorted)) + 1]
        rank = np.arange(len(order)) - np.repeat(first_of_cluster, np.diff(np.r_[first_of_cluster, len(order)]))
        accepted = rank < room[cluster_sorted]
        assignment[pending[order[accepted]]] = cluster_sorted[accepted]
        room -= np.bincount(cluster_sorted[accepted], minlength=k)
    return assignment


def kmeans(points: np.ndarray, k: int, iterations: int, seed: int,
           balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k', D], assignment [N]) with ``k' = min(k, N)``; Lloyd steps from k-means++, stops when stable.

    ``balanced``: assignments respect a capacity of ceil(N / k') points per cluster (``balanced_assignment``).
    """
    points = np.asarray(points, dtype=np.float64)
    k = min(k, len(points))
    capacity = -(-len(points) // k)
    rng = np.random.default_rng(seed)
    centroids = kmeans_plus_plus(points, k, rng)
    assignment = np.full(len(points), -1)

    def assign(distances: np.ndarray) -> np.ndarray:
        return balanced_assignment(distances, capacity) if balanced else distances.argmin(1)

    for _ in range(iterations):
        distances = squared_distances(points, centroids)                                    # [N, k]
        new_assignment = assign(distances)
        distance = distances[np.arange(len(points)), new_assignment]
        reseeded = _reseed_empty(points, centroids, new_assignment, distance)
        if not reseeded and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = np.zeros_like(centroids)
        np.add.at(sums, assignment, points)
        counts = np.bincount(assignment, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    assignment = assign(squared_distances(points, centroids))
    return centroids.astype(np.float32), assignment.astype(np.int64)


def spread_within_prefixes(prefix_codes: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """[N] last-level codes, distinct among rows with equal ``prefix_codes`` [N, P] while the K codes last.

    ``distances`` [N, K] are each row's distances to the last level's centroids. Inside a group of equal prefixes,
    (row, code) pairs are taken by increasing distance, each row once and each code once (greedy matching); rows of
    a group larger than K keep their nearest code. A group of one gets its nearest code, as plain assignment does.
    """
    codes = distances.argmin(axis=1)
    n_codes = distances.shape[1]
    if prefix_codes.shape[1] == 0:
        groups = [np.arange(len(codes))]
    else:
        _, inverse = np.unique(prefix_codes, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        groups = [group for group in np.split(order, bounds) if len(group) > 1]
    for rows in groups:
        if len(np.unique(codes[rows])) == len(rows):
            continue
        pairs = np.argsort(distances[rows].ravel(), kind="stable")
        taken_rows, taken_codes = np.zeros(len(rows), bool), np.zeros(n_codes, bool)
        for pair in pairs:
            row, code = divmod(int(pair), n_codes)
            if taken_rows[row] or taken_codes[code]:
                continue
            codes[rows[row]], taken_rows[row], taken_codes[code] = code, True, True
            if taken_rows.all() or taken_codes.all():
                break
    return codes


def collision_codes(prefix_codes: np.ndarray) -> np.ndarray:
    """[N] 0, 1, 2, … among rows of ``prefix_codes`` [N, L] that are equal, in row order (0 for unique rows)."""
    _, inverse = np.unique(prefix_codes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")                                             # groups, rows in order
    group_start = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    starts = np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(len(order)) - starts
    return out


def fit_rq_kmeans(vectors: np.ndarray, config: RQKMeansConfig,
                  on_level: Callable[[int], None] | None = None) -> SemanticIds:
    """Semantic IDs of ``vectors`` [N, D]: ``config.levels`` residual k-means codes plus the collision code.

    Level l uses seed ``config.seed + l``. ``on_level(l)`` is called after each level (progress bars).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) == 0 or not np.isfinite(vectors).all():
        raise ValueError(f"fit_rq_kmeans: vectors must be a finite non-empty [N, D] array, got shape {vectors.shape}")
    residual = vectors.copy()
    codes, codebooks = [], []
    for level in range(config.levels):
        if config.normalize_residuals:
            residual = unit_rows(residual)
        centroids, assignment = kmeans(residual, config.codebook_size, config.iterations, config.seed + level,
                                       config.balanced)
        if config.spread_last_level and level == config.levels - 1 and level > 0:
            earlier = np.stack(codes, axis=1) if codes else np.zeros((len(residual), 0), np.int64)
            assignment = spread_within_prefixes(earlier, squared_distances(residual, centroids.astype(np.float64)))
        codebooks.append(centroids)
        codes.append(assignment)
        residual = residual - centroids[assignment].astype(np.float64)
        logger.info("RQ level %d: %d codes used, residual norm %.4f", level + 1, len(np.unique(assignment)),
                    float(np.linalg.norm(residual, axis=1).mean()))
        if on_level is not None:
            on_level(level)
    prefix = np.stack(codes, axis=1)                                                      # [N, L]
    return SemanticIds(np.concatenate([prefix, collision_codes(prefix)[:, None]], axis=1), codebooks,
                       config.codebook_size, config.normalize_residuals)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def assign_codes(vectors: np.ndarray, sids: SemanticIds) -> np.ndarray:
    """[N, L] k-means codes of new vectors under fitted codebooks (nearest centroid, level by level, no collision)."""
    residual = np.asarray(vectors, dtype=np.float64)
    codes = []
    for centroids in sids.codebooks:
        if sids.normalize_residuals:
            residual = unit_rows(residual)
        assignment = squared_distances(residual, centroids.astype(np.float64)).argmin(1)
        codes.append(assignment)
        residual = residual - centroids[assignment].astype(np.float64)
    return np.stack(codes, axis=1).astype(np.int64)


def normalized_entropy(codes: np.ndarray, codebook_size: int) -> float:
    """Entropy of the code distribution divided by log(codebook_size): 1 = uniform use of all codes, 0 = one code."""
    probabilities = np.bincount(codes, minlength=codebook_size) / len(codes)
    probabilities = probabilities[probabilities > 0]
    return float(-(probabilities * np.log(probabilities)).sum() / np.log(codebook_size))


def quantization_stats(sids: SemanticIds) -> dict:
    """Collision rate, maximum collision depth, per-level usage / entropy; ``unique_sids`` must equal ``n_items``."""
    prefix = sids.codes[:, :-1]
    _, inverse, counts = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.ravel()] > 1
    per_level = []
    for level in range(sids.levels):
        level_codes = prefix[:, level]
        per_level.append({"level": level + 1, "codes_used": int(len(np.unique(level_codes))),
                          "usage": float(len(np.unique(level_codes)) / sids.codebook_size),
                          "normalized_entropy": normalized_entropy(level_codes, sids.codebook_size)})
    return {
        "n_items": int(len(sids.codes)),
        "levels": sids.levels,
        "codebook_size": sids.codebook_size,
        "unique_prefixes": int(len(counts)),
        "collision_rate": float(shared.mean()),
        "max_collision_depth": int(counts.max()),
        "items_with_collision_code_above_0": int((sids.codes[:, -1] > 0).sum()),
        "unique_sids": int(len(np.unique(sids.codes, axis=0))),
        "per_level": per_level,
    }
