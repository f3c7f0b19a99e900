"""Full-ranking next-item metrics: the protocol of the sequential-recommendation papers (S3-Rec, TIGER, ...).

Every user's target is ranked against ALL items (no sampled negatives). With one target per user Recall@K equals
HR@K. Two variants are reported: "raw" (scores as the model gives them) and "history-filtered" (items the user has
already interacted with are scored -inf before ranking, as S3-Rec's evaluation does). The functions are pure and
work on one chunk of users at a time, so a caller can score 22k users x 12k items without holding the full matrix.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_KS = (5, 10, 20)


def filter_history(scores: np.ndarray, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """A copy of ``scores`` [U, I] with ``out[u, i] = -inf`` for every item ``i in histories[u]``.

    Loop form: ``for u, h in enumerate(histories): for i in h: out[u, i] = -inf``.
    """
    if len(histories) != scores.shape[0]:
        raise ValueError(f"filter_history: {len(histories)} histories for {scores.shape[0]} score rows")
    out = np.array(scores, dtype=np.float32, copy=True)
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=len(rows))
    out[rows, cols] = -np.inf
    return out


def target_ranks(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each target among all columns of ``scores`` [U, I]; ties count against the target.

    ``rank[u] = #{i : scores[u, i] > s} + #{i != targets[u] : scores[u, i] == s}`` with ``s = scores[u, targets[u]]``
    — the pessimistic convention, so a constant scorer gets no credit and a target scored -inf (filtered) is a miss.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"target_ranks: targets shape {targets.shape} does not match {scores.shape[0]} score rows")
    target_scores = scores[np.arange(len(targets)), targets][:, None]                       # [U, 1]
    return (scores >= target_scores).sum(axis=1) - 1                                        # [U]


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"R@k": mean(rank < k), "N@k": mean(1/log2(rank + 2) if rank < k else 0)}`` for each k in ``ks``."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("metrics_from_ranks: no ranks given")
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"R@{k}"] = float(hit.mean())
        metrics[f"N@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return metrics


def full_ranking_metrics(scores: np.ndarray, targets: Sequence[int], histories: Sequence[Sequence[int]] | None = None,
                         ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@k and NDCG@k of ``targets`` under ``scores`` [U, I]; history-filtered when ``histories`` is given."""
    ranked = scores if histories is None else filter_history(scores, histories)
    return metrics_from_ranks(target_ranks(ranked, targets), ks)
