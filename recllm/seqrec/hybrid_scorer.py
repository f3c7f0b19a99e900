"""Next-item scores from two views of the same training sequences: SASRec and item-to-item transitions.

SASRec (with content features) models the whole ordered history; ``ItemTransitions`` remembers which items directly
follow which, which SASRec's small embeddings blur for the long tail. The two are mixed as probability
distributions over all items:

    p(i | h) = (1 - w) * softmax(sasrec(h))_i + w * t(h)_i / sum_j t(h)_j

where ``t(h)`` are the transition scores of the user's latest items; when nothing in the history has known
successors the whole mass stays with SASRec. ``w`` is chosen on the validation split only (``tune_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from recllm.seqrec.full_ranking import filter_history, metrics_from_ranks, target_ranks
from recllm.seqrec.item_transitions import ItemTransitions, TransitionConfig
from recllm.seqrec.sasrec import SASRec, SASRecConfig, score_histories, train_sasrec
from recllm.config.field_checks import require_in_interval

SCORE_CHUNK = 1024


@dataclass
class HybridConfig:
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    transitions: TransitionConfig = field(default_factory=lambda: TransitionConfig(window=5, history_items=5, decay=0.7))
    transition_weight: float = 0.3
    weight_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

    def __post_init__(self) -> None:
        require_in_interval(self, "transition_weight", "[0, 1]")
        if not self.weight_grid or any(not 0 <= w <= 1 for w in self.weight_grid):
            raise ValueError(f"HybridConfig.weight_grid must be non-empty values in [0, 1], got {self.weight_grid!r}")


def mix(sasrec_scores: np.ndarray, transition_scores: np.ndarray, weight: float,
        allowed: np.ndarray | None = None) -> np.ndarray:
    """The mixture above for one chunk: [U, I] logits and [U, I] non-negative transition scores → probabilities.
    With ``allowed`` (the mask ``parts`` applied) the other items score -1: strictly below every allowed item, even
    one whose probability underflows to 0, so ties with excluded items never cost a target rank."""
    logits = torch.from_numpy(sasrec_scores)
    probabilities = torch.softmax(logits, dim=1).numpy()                                    # [U, I]
    mass = transition_scores.sum(axis=1, keepdims=True)                                     # [U, 1]
    has_successors = mass > 0
    transitions = np.divide(transition_scores, mass, out=np.zeros_like(transition_scores), where=has_successors)
    effective = np.where(has_successors, weight, 0.0)                                       # [U, 1]
    mixed = ((1.0 - effective) * probabilities + effective * transitions).astype(np.float32)
    return mixed if allowed is None else np.where(allowed, mixed, np.float32(-1.0))


class HybridScorer:
    """A trained SASRec and transition table; ``score(histories, weight)`` gives [U, n_items + 1] probabilities."""

    def __init__(self, model: SASRec, transitions: ItemTransitions, config: HybridConfig):
        self.model, self.transitions, self.config = model, transitions, config

    @classmethod
    def fit(cls, sequences: Sequence[Sequence[int]], config: HybridConfig,
            item_features: np.ndarray | None = None) -> "HybridScorer":
        model = train_sasrec(sequences, config.sasrec, item_features)
        transitions = ItemTransitions(sequences, config.sasrec.n_items, config.transitions)
        return cls(model, transitions, config)

    def parts(self, histories: Sequence[Sequence[int]],
              allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """SASRec logits and transition scores, each [U, n_items + 1]; with ``allowed`` [U, n_items + 1] (bool) the
        other items get logit -inf and transition score 0, so the mixture is a distribution over the allowed ones."""
        logits, transitions = score_histories(self.model, histories), self.transitions.score(histories)
        if allowed is not None:
            logits = np.where(allowed, logits, -np.inf).astype(np.float32)
            transitions = np.where(allowed, transitions, 0.0).astype(np.float32)
        return logits, transitions

    def score(self, histories: Sequence[Sequence[int]], weight: float | None = None) -> np.ndarray:
        weight = self.config.transition_weight if weight is None else weight
        return mix(*self.parts(histories), weight)

    def tune_weight(self, histories: Sequence[Sequence[int]], targets: Sequence[int], metric: str = "N@10",
                    item_domains: np.ndarray | None = None) -> dict[float, float]:
        """History-filtered ``metric`` on a validation split for every weight of the grid; sets the best one.
        With ``item_domains`` [n_items + 1] each target is ranked among the items of its own domain only."""
        results = {w: [] for w in self.config.weight_grid}
        for offset in range(0, len(histories), SCORE_CHUNK):
            chunk_h, chunk_t = histories[offset:offset + SCORE_CHUNK], targets[offset:offset + SCORE_CHUNK]
            allowed = None if item_domains is None else same_domain_mask(item_domains, chunk_t)
            sasrec_scores, transition_scores = self.parts(chunk_h, allowed)
            for weight in self.config.weight_grid:
                ranked = filter_history(mix(sasrec_scores, transition_scores, weight, allowed), chunk_h)
                results[weight].append(target_ranks(ranked, chunk_t))
        by_weight = {w: metrics_from_ranks(np.concatenate(r))[metric] for w, r in results.items()}
        self.config.transition_weight = max(by_weight, key=by_weight.get)
        return by_weight


def same_domain_mask(item_domains: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """[U, n_items + 1] bool: the items in the domain of each row's target (the padding column 0 never)."""
    domains = np.asarray(item_domains)
    allowed = domains[None, :] == domains[np.asarray(targets, dtype=np.int64)][:, None]
    allowed[:, 0] = False
    return allowed


def chunked(score: Callable[[Sequence[Sequence[int]]], np.ndarray], histories: Sequence[Sequence[int]],
            targets: Sequence[int]) -> dict[str, dict[str, float]]:
    """Raw and history-filtered full-ranking metrics of ``score`` over ``histories`` in chunks."""
    raw, filtered = [], []
    for offset in range(0, len(histories), SCORE_CHUNK):
        chunk_h, chunk_t = histories[offset:offset + SCORE_CHUNK], targets[offset:offset + SCORE_CHUNK]
        scores = score(chunk_h)
        raw.append(target_ranks(scores, chunk_t))
        filtered.append(target_ranks(filter_history(scores, chunk_h), chunk_t))
    return {"raw": metrics_from_ranks(np.concatenate(raw)), "filtered": metrics_from_ranks(np.concatenate(filtered))}
