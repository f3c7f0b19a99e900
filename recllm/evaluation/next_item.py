"""The one door from ``recllm eval`` to the sequential model: train once, rank every evaluation target.

``train_and_rank`` trains the SASRec-family model on the training sequences and returns, for every evaluation line,
the 0-based rank of its target among all items and among any named candidate pools (the target's domain, the 999
sampled negatives of the LLMCDSR protocol, ...), each raw and history-filtered. The protocols (``leave_one_out``,
``cross_domain``, ``next_basket``) only ever see ranks, so the model behind this function can change freely.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from recllm.seqrec.full_ranking import filter_history, target_ranks
from recllm.seqrec.sasrec import SASRecConfig, score_histories, train_sasrec

logger = logging.getLogger(__name__)

ALL_ITEMS = "all"
SCORE_CHUNK = 512   # users scored at once: 512 x 36k float32 scores = 75 MB


@dataclass(frozen=True)
class TargetRanks:
    """0-based ranks of each evaluation target (pessimistic on ties, see ``full_ranking.target_ranks``)."""

    raw: np.ndarray        # [U] scores as the model gives them
    filtered: np.ndarray   # [U] after the user's history items are removed (a repeated target is then a miss)


@dataclass
class TrainedRanking:
    ranks: dict[str, TargetRanks]   # ALL_ITEMS and each candidate pool name
    train_seconds: float
    config: SASRecConfig


def pool_ranks(scores: np.ndarray, targets: Sequence[int], pools: Sequence[np.ndarray]) -> np.ndarray:
    """Rank of each target among its own candidate pool (distinct item ids; the target itself never competes).

    Loop form: ``rank[u] = #{c in pools[u], c != targets[u] : scores[u, c] >= scores[u, targets[u]]}``.
    """
    if not len(targets) == len(pools) == scores.shape[0]:
        raise ValueError(f"pool_ranks: {scores.shape[0]} score rows, {len(targets)} targets, {len(pools)} pools")
    ranks = np.empty(len(targets), dtype=np.int64)
    for row, (target, pool) in enumerate(zip(targets, pools)):
        pool_scores = scores[row, pool]                                                   # [P]
        ranks[row] = int(((pool_scores >= scores[row, target]) & (pool != target)).sum())
    return ranks


def _validate(train_sequences, eval_histories, eval_targets, n_items: int, candidate_pools) -> None:
    if len(eval_histories) != len(eval_targets):
        raise ValueError(f"train_and_rank: {len(eval_histories)} eval_histories for {len(eval_targets)} eval_targets")
    if n_items < 1:
        raise ValueError(f"train_and_rank: n_items must be >= 1, got {n_items}")
    for name, sequences in (("train_sequences", train_sequences), ("eval_histories", eval_histories),
                            ("eval_targets", [eval_targets])):
        bad = next((item for sequence in sequences for item in sequence if not 1 <= item <= n_items), None)
        if bad is not None:
            raise ValueError(f"train_and_rank: {name} holds item id {bad}; ids must be 1..n_items={n_items}")
    for name, pools in (candidate_pools or {}).items():
        if name == ALL_ITEMS:
            raise ValueError(f"train_and_rank: candidate pool name {ALL_ITEMS!r} is reserved for full ranking")
        if len(pools) != len(eval_targets):
            raise ValueError(f"train_and_rank: candidate pool {name!r} has {len(pools)} rows for "
                             f"{len(eval_targets)} targets")


def train_and_rank(train_sequences: Sequence[Sequence[int]], eval_histories: Sequence[Sequence[int]],
                   eval_targets: Sequence[int], n_items: int, config: SASRecConfig,
                   candidate_pools: Mapping[str, Sequence[np.ndarray]] | None = None) -> TrainedRanking:
    """Train on ``train_sequences`` (ids 1..n_items, oldest first) and rank ``eval_targets[u]`` after
    ``eval_histories[u]``: among all items (``ranks["all"]``) and among ``candidate_pools[name][u]`` for each pool.

    ``config.n_items`` is set to ``n_items``. A history may be empty (the model then scores from no context).
    """
    _validate(train_sequences, eval_histories, eval_targets, n_items, candidate_pools)
    config = replace(config, n_items=n_items)
    start = time.perf_counter()
    model = train_sasrec(train_sequences, config)
    train_seconds = time.perf_counter() - start
    names = [ALL_ITEMS, *(candidate_pools or {})]
    raw = {name: [] for name in names}
    filtered = {name: [] for name in names}
    for offset in range(0, len(eval_targets), SCORE_CHUNK):
        histories = [list(h) for h in eval_histories[offset:offset + SCORE_CHUNK]]
        targets = list(eval_targets[offset:offset + SCORE_CHUNK])
        scores = score_histories(model, histories)                                      # [C, n_items + 1]
        without_history = filter_history(scores, histories)
        raw[ALL_ITEMS].append(target_ranks(scores, targets))
        filtered[ALL_ITEMS].append(target_ranks(without_history, targets))
        for name, pools in (candidate_pools or {}).items():
            chunk_pools = pools[offset:offset + SCORE_CHUNK]
            raw[name].append(pool_ranks(scores, targets, chunk_pools))
            filtered[name].append(pool_ranks(without_history, targets, chunk_pools))
    logger.info("trained in %.0f s and ranked %d targets", train_seconds, len(eval_targets))
    ranks = {name: TargetRanks(np.concatenate(raw[name]) if raw[name] else np.zeros(0, dtype=np.int64),
                               np.concatenate(filtered[name]) if filtered[name] else np.zeros(0, dtype=np.int64))
             for name in names}
    return TrainedRanking(ranks, train_seconds, config)
