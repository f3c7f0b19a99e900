"""Second-stage reranker for next-item candidates, trained on the validation split only.

The first stage (``HybridScorer``) ranks all items; its top ``num_candidates`` per user are rescored by a small MLP
over features that the first stage does not combine on its own:

- the SASRec log-probability, the normalised transition score and the mixture's log-probability and rank;
- the item's log popularity in the training sequences;
- repeat signal: whether the item is already in the user's history, and how many steps ago;
- content match: the share of the item's attributes (brand, categories) seen in the user's history and in the
  latest item;
- the history length;
- any extra per-item score views the caller passes (e.g. a generative model's log-probability of the item's SID).

Training is listwise (softmax cross-entropy over each user's candidate list, lists without the target skipped) on
validation targets with first-stage models trained on the training split; at test time the same features come from
first-stage models retrained on train + validation. Items outside the candidate list keep their first-stage order
below every candidate, so the output is still a full ranking over all items.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

SCORE_FEATURES = ("sasrec_logprob", "transition", "mixture_logprob", "mixture_rank", "popularity")
USER_FEATURES = ("in_history", "steps_since_seen", "history_attribute_share", "last_item_attribute_share",
                 "history_length")
EPS = 1e-9


@dataclass
class CandidateRerankerConfig:
    num_candidates: int = 100
    hidden: int = 32
    epochs: int = 40
    lr: float = 3e-3
    batch_lists: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_candidates", "hidden", "epochs", "batch_lists"):
            if getattr(self, name) < 1:
                raise ValueError(f"CandidateRerankerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"CandidateRerankerConfig.lr must be > 0, got {self.lr!r}")


@dataclass
class ItemContext:
    """Per-item facts the features need: training popularity and attribute ids ([n_items + 1, F], 0 = none)."""

    popularity: np.ndarray    # [n_items + 1] interaction counts in the training sequences
    attributes: np.ndarray    # [n_items + 1, F]

    @classmethod
    def from_training(cls, sequences: Sequence[Sequence[int]], attributes: np.ndarray) -> "ItemContext":
        counts = np.bincount(np.fromiter((i for s in sequences for i in s), dtype=np.int64),
                             minlength=attributes.shape[0]).astype(np.float32)
        return cls(counts[:attributes.shape[0]], np.asarray(attributes, dtype=np.int64))


def feature_names(extra_views: Sequence[str] = ()) -> tuple[str, ...]:
    """Column names of ``CandidateLists.features``, in order."""
    return SCORE_FEATURES + tuple(extra_views) + USER_FEATURES


@dataclass
class CandidateLists:
    items: np.ndarray      # [U, C] candidate item ids, first-stage order
    features: np.ndarray   # [U, C, F] float32
    first_stage: np.ndarray | None  # [U, I] first-stage scores for the items outside the lists (None: training only)

    def for_training(self) -> "CandidateLists":
        """The lists without the [U, I] first-stage matrix (training needs only the candidates)."""
        return CandidateLists(self.items, self.features, None)


def _top_candidates(scores: np.ndarray, count: int) -> np.ndarray:
    top = np.argpartition(-scores, count, axis=1)[:, :count]                                   # [U, C] unordered
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _attribute_share(candidate_attributes: np.ndarray, seen: set[int]) -> np.ndarray:
    """[C] share of each candidate's non-zero attributes that are in ``seen``."""
    present = candidate_attributes != 0
    hits = np.isin(candidate_attributes, list(seen)) & present if seen else np.zeros_like(present)
    return hits.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def build_candidate_lists(sasrec_logits: np.ndarray, transitions: np.ndarray, mixture: np.ndarray,
                          histories: Sequence[Sequence[int]], context: ItemContext, num_candidates: int,
                          extra_views: Mapping[str, np.ndarray] | None = None) -> CandidateLists:
    """Candidate lists and their features for one chunk of users (every score matrix is [U, n_items + 1])."""
    count = min(num_candidates, mixture.shape[1] - 2)
    items = _top_candidates(mixture, count)                                                    # [U, C]
    logits = torch.from_numpy(sasrec_logits)
    sasrec_logprob = torch.log_softmax(logits, dim=1).numpy()
    mass = transitions.sum(axis=1, keepdims=True)
    transition_share = np.divide(transitions, mass, out=np.zeros_like(transitions), where=mass > 0)
    take = lambda matrix: np.take_along_axis(matrix, items, axis=1)                            # noqa: E731
    rows = []
    for u, history in enumerate(histories):
        history = list(history)
        last_seen = {item: len(history) - pos for pos, item in enumerate(history)}            # steps ago, 1 = newest
        candidates = items[u]
        steps = np.array([last_seen.get(int(i), 0) for i in candidates], dtype=np.float32)
        history_attributes = set(context.attributes[history].ravel().tolist()) - {0}
        last_attributes = set(context.attributes[history[-1]].tolist()) - {0} if history else set()
        rows.append(np.stack([
            steps > 0, np.where(steps > 0, 1.0 / np.maximum(steps, 1), 0.0),
            _attribute_share(context.attributes[candidates], history_attributes),
            _attribute_share(context.attributes[candidates], last_attributes),
            np.full(len(candidates), math.log1p(len(history))),
        ], axis=1))
    per_user = np.stack(rows)                                                                  # [U, C, 5]
    columns = [take(sasrec_logprob), take(transition_share), np.log(take(mixture) + EPS),
               np.log1p(np.broadcast_to(np.arange(count, dtype=np.float32), items.shape)),
               np.log1p(context.popularity[items])]
    columns += [take(view) for view in (extra_views or {}).values()]
    features = np.concatenate([np.stack(columns, axis=2), per_user], axis=2).astype(np.float32)
    return CandidateLists(items, features, mixture)


class CandidateReranker(nn.Module):
    """MLP from candidate features to a score, with feature standardisation fitted on the training lists."""

    def __init__(self, n_features: int, config: CandidateRerankerConfig):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = nn.Sequential(nn.Linear(n_features, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:                                 # [..., F] -> [...]
        return self.net((features - self.mean) / self.std).squeeze(-1)

    @classmethod
    def fit(cls, lists: Sequence[CandidateLists], targets: Sequence[np.ndarray],
            config: CandidateRerankerConfig) -> "CandidateReranker":
        """Listwise training on the lists whose target is among the candidates."""
        torch.manual_seed(config.seed)
        features = np.concatenate([chunk.features for chunk in lists])                         # [U, C, F]
        items = np.concatenate([chunk.items for chunk in lists])                               # [U, C]
        target = np.concatenate(targets)                                                       # [U]
        hit = items == target[:, None]
        keep = hit.any(axis=1)
        if not keep.any():
            raise ValueError("CandidateReranker.fit: no list contains its target; raise num_candidates")
        x = torch.from_numpy(features[keep])
        y = torch.from_numpy(hit[keep].argmax(axis=1))
        model = cls(x.shape[-1], config)
        flat = x.reshape(-1, x.shape[-1])
        model.mean.copy_(flat.mean(dim=0))
        model.std.copy_(flat.std(dim=0).clamp(min=1e-6))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        rng = random.Random(config.seed)
        order = list(range(len(x)))
        for _ in range(config.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_lists):
                batch = order[start:start + config.batch_lists]
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return model.eval()

    @torch.no_grad()
    def rerank(self, lists: CandidateLists) -> np.ndarray:
        """[U, I] scores: candidates above every other item, in reranker order; the rest in first-stage order."""
        if lists.first_stage is None:
            raise ValueError("CandidateReranker.rerank needs the lists' first-stage scores")
        scores = self(torch.from_numpy(lists.features)).numpy()                                 # [U, C]
        first = lists.first_stage
        out = (first - first.max(axis=1, keepdims=True) - 1.0).astype(np.float32)              # all < 0... and < -1
        span = scores - scores.min(axis=1, keepdims=True)                                      # >= 0
        np.put_along_axis(out, lists.items, span.astype(np.float32), axis=1)
        return out
