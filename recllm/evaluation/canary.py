"""A canary for the leave-one-out protocol: with the test targets shuffled across users, every metric must be at chance.

``shuffle_test_targets`` gives each user the test target (last item) of another user — a permutation without fixed
points, so the new target says nothing about the user's own sequence. A model trained and scored as the protocol
says (train on all but the last two items, test history = all but the last) can then only guess: its Recall and
NDCG are those of a uniformly random ranking (``chance_metrics``). If the answer leaked — the test item in training
(``sequence[:-1]`` used where ``sequence[:-2]`` belongs), the target in the scoring history, a metric reading
the target — the shuffled target is still "learned" and the metrics rise above chance, which
``above_chance`` reports. A run costs one tiny training (``tests/recllm/evaluation/test_canary.py``).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Mapping, Sequence

from recllm.datasets.interaction_dataset import InteractionDataset
from recllm.seqrec.full_ranking import DEFAULT_KS


def shuffle_test_targets(dataset: InteractionDataset, seed: int = 0) -> InteractionDataset:
    """A copy of ``dataset`` whose users' last items are permuted across users (no user keeps their own)."""
    users = list(dataset.sequences)
    if len(users) < 2:
        raise ValueError(f"shuffle_test_targets: need >= 2 users to permute targets, got {len(users)}")
    order = list(range(len(users)))
    random.Random(seed).shuffle(order)
    # One cycle through the shuffled users: nobody is their own donor.
    donor = {users[order[i]]: users[order[(i + 1) % len(order)]] for i in range(len(order))}
    sequences = {user: seq[:-1] + [dataset.sequences[donor[user]][-1]] for user, seq in dataset.sequences.items()}
    return replace(dataset, sequences=sequences)


def random_ranking_metrics(n_candidates: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Expected R@k and N@k of one target (a candidate) under a uniformly random order of ``n_candidates``."""
    metrics = {}
    for k in ks:
        top = min(k, n_candidates)
        metrics[f"R@{k}"] = top / n_candidates
        metrics[f"N@{k}"] = sum(1.0 / math.log2(rank + 2) for rank in range(top)) / n_candidates
    return metrics


def chance_metrics(histories: Sequence[Sequence[int]], targets: Sequence[int], n_items: int, filtered: bool,
                   ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean expected metrics of a random ranking over ``n_items`` items; ``filtered``: each user's history items
    are removed first (a target in the history is then always a miss)."""
    if len(histories) != len(targets) or not targets:
        raise ValueError(f"chance_metrics: {len(histories)} histories for {len(targets)} targets (need >= 1 each)")
    total = dict.fromkeys(random_ranking_metrics(n_items, ks), 0.0)
    for history, target in zip(histories, targets):
        seen = set(history)
        if filtered and target in seen:
            continue
        for name, value in random_ranking_metrics(n_items - len(seen) if filtered else n_items, ks).items():
            total[name] += value
    return {name: value / len(targets) for name, value in total.items()}


def above_chance(metrics: Mapping[str, float], chance: Mapping[str, float], n_users: int,
                 z: float = 4.0) -> dict[str, tuple[float, float]]:
    """{metric: (value, bound)} for every metric above ``chance + z`` standard errors of a mean of ``n_users``
    values in [0, 1] (bounded by sqrt(p(1 - p) / n) with p = chance) — empty when the run is at chance."""
    flagged = {}
    for name, p in chance.items():
        if name not in metrics:
            continue
        bound = p + z * math.sqrt(max(p * (1 - p), 1e-12) / n_users)
        if metrics[name] > bound:
            flagged[name] = (metrics[name], bound)
    return flagged
