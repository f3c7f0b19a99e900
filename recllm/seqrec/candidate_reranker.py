"""Second-stage reranker for next-item candidates, trained on the validation split only.

The first stage (``HybridScorer``) ranks all items; its top ``num_candidates`` per user are rescored by a small MLP
over features that the first stage does not combine on its own (``FEATURE_GROUPS`` names them for ablations):

- retriever scores: the SASRec log-probability, the normalised transition score and the mixture's log-probability
  and rank, the item's log popularity in the training sequences;
- generative score (appended by the pipeline): log p(SID of the item | history) under the SID generator;
- repeat signal: whether the item is already in the user's history, and how many steps ago;
- attribute match: the share of the item's attributes (brand, categories) seen in the user's history and in the
  latest item;
- content-profile match: cosine of the item's content vector with the user's content profile (recency-weighted mean
  of the history's vectors), with the latest item and the best match among the recent items;
- cross-service signals: the share of the user's history in the item's service (domain), whether the latest
  interaction was in that service, and how many steps ago the user was last there (constant on one-domain data);
- the history length;
- any extra per-item score views the caller passes.

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
from recllm.config.field_checks import require_above

SCORE_FEATURES = ("sasrec_logprob", "transition", "mixture_logprob", "mixture_rank", "popularity")
USER_FEATURES = ("in_history", "steps_since_seen", "history_attribute_share", "last_item_attribute_share",
                 "profile_content_cosine", "last_item_content_cosine", "recent_max_content_cosine",
                 "history_share_in_item_domain", "last_item_same_domain", "steps_since_item_domain",
                 "history_length")
GENERATIVE_FEATURE = "generative_logprob"
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "retriever": SCORE_FEATURES,
    "generative": (GENERATIVE_FEATURE,),
    "repeat": ("in_history", "steps_since_seen"),
    "attributes": ("history_attribute_share", "last_item_attribute_share"),
    "content_profile": ("profile_content_cosine", "last_item_content_cosine", "recent_max_content_cosine"),
    "cross_service": ("history_share_in_item_domain", "last_item_same_domain", "steps_since_item_domain"),
}
PROFILE_DECAY = 0.9      # weight of an item k steps back in the content profile: PROFILE_DECAY ** k
RECENT_ITEMS = 10        # "recent" for the best single-item content match
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
        require_above(self, "lr", 0)


@dataclass
class ItemSideInfo:
    """What is known of every item besides its id; row 0 of each array is the padding item."""

    attributes: np.ndarray                # [n_items + 1, F] attribute ids, 0 = none
    content: np.ndarray | None = None     # [n_items + 1, D] content vectors (None: no content match)
    domains: np.ndarray | None = None     # [n_items + 1] domain / service index (None: one domain)
    sids: np.ndarray | None = None        # [n_items + 1, L] Semantic IDs (None: no generative retriever)

    def __post_init__(self) -> None:
        rows = self.attributes.shape[0]
        for name in ("content", "domains", "sids"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != rows:
                raise ValueError(f"ItemSideInfo.{name} has {value.shape[0]} rows; attributes have {rows}")


@dataclass
class ItemContext:
    """Per-item facts the features need: training popularity, attribute ids ([n_items + 1, F], 0 = none), unit
    content vectors and domain indices."""

    popularity: np.ndarray      # [n_items + 1] interaction counts in the training sequences
    attributes: np.ndarray      # [n_items + 1, F]
    content: np.ndarray         # [n_items + 1, D] unit rows (zeros: no content)
    domains: np.ndarray         # [n_items + 1] int

    @classmethod
    def from_training(cls, sequences: Sequence[Sequence[int]], side: ItemSideInfo | np.ndarray) -> "ItemContext":
        side = side if isinstance(side, ItemSideInfo) else ItemSideInfo(np.asarray(side))
        rows = side.attributes.shape[0]
        counts = np.bincount(np.fromiter((i for s in sequences for i in s), dtype=np.int64),
                             minlength=rows).astype(np.float32)
        content = np.zeros((rows, 1), np.float32) if side.content is None else np.asarray(side.content, np.float32)
        content = content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), EPS)
        domains = np.zeros(rows, np.int64) if side.domains is None else np.asarray(side.domains, np.int64)
        return cls(counts[:rows], np.asarray(side.attributes, dtype=np.int64), content, domains)


def feature_names(extra_views: Sequence[str] = (), appended: Sequence[str] = ()) -> tuple[str, ...]:
    """Column names of ``CandidateLists.features``, in order (``appended``: ``CandidateLists.with_columns``)."""
    return SCORE_FEATURES + tuple(extra_views) + USER_FEATURES + tuple(appended)


@dataclass
class CandidateLists:
    items: np.ndarray      # [U, C] candidate item ids, first-stage order
    features: np.ndarray   # [U, C, F] float32
    first_stage: np.ndarray | None  # [U, I] first-stage scores for the items outside the lists (None: training only)

    def for_training(self) -> "CandidateLists":
        """The lists without the [U, I] first-stage matrix (training needs only the candidates)."""
        return CandidateLists(self.items, self.features, None)

    def with_columns(self, columns: np.ndarray) -> "CandidateLists":
        """The lists with per-candidate feature columns [U, C] or [U, C, k] appended (e.g. a generative score)."""
        columns = np.asarray(columns, dtype=np.float32)
        columns = columns[..., None] if columns.ndim == 2 else columns
        if columns.shape[:2] != self.items.shape:
            raise ValueError(f"CandidateLists.with_columns: expected [{self.items.shape[0]}, {self.items.shape[1]}"
                             f", k] columns, got {tuple(columns.shape)}")
        return CandidateLists(self.items, np.concatenate([self.features, columns], axis=2), self.first_stage)

    def without(self, columns: Sequence[int]) -> "CandidateLists":
        """The lists with the given feature columns set to zero (a reranker fitted on them ignores those features)."""
        features = self.features.copy()
        features[..., list(columns)] = 0.0
        return CandidateLists(self.items, features, self.first_stage)


def _top_candidates(scores: np.ndarray, count: int) -> np.ndarray:
    top = np.argpartition(-scores, count, axis=1)[:, :count]                                   # [U, C] unordered
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _attribute_share(candidate_attributes: np.ndarray, seen: set[int]) -> np.ndarray:
    """[C] share of each candidate's non-zero attributes that are in ``seen``."""
    present = candidate_attributes != 0
    hits = np.isin(candidate_attributes, list(seen)) & present if seen else np.zeros_like(present)
    return hits.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _content_features(history: list[int], candidates: np.ndarray, context: ItemContext) -> list[np.ndarray]:
    """Cosines of each candidate's content vector with the user's content profile, the latest item and the best of
    the recent items (all zero for an empty history or items without content)."""
    if not history:
        return [np.zeros(len(candidates), np.float32)] * 3
    vectors = context.content[history]                                                         # [H, D] unit rows
    weights = PROFILE_DECAY ** np.arange(len(history) - 1, -1, -1, dtype=np.float32)           # newest weighs 1
    profile = weights @ vectors
    profile /= max(float(np.linalg.norm(profile)), EPS)
    candidate_vectors = context.content[candidates]                                            # [C, D]
    recent = candidate_vectors @ vectors[-RECENT_ITEMS:].T                                     # [C, R]
    return [candidate_vectors @ profile, recent[:, -1], recent.max(axis=1)]


def _domain_features(history: list[int], candidates: np.ndarray, context: ItemContext) -> list[np.ndarray]:
    """Share of the history in each candidate's domain, latest item in that domain, 1 / steps since last there."""
    if not history:
        return [np.zeros(len(candidates), np.float32)] * 3
    history_domains = context.domains[history]                                                 # [H]
    candidate_domains = context.domains[candidates]                                            # [C]
    in_domain = history_domains[None, :] == candidate_domains[:, None]                         # [C, H]
    share = in_domain.mean(axis=1)
    newest_position = np.where(in_domain.any(axis=1), len(history) - 1 - np.argmax(in_domain[:, ::-1], axis=1), -1)
    steps_ago = np.where(newest_position >= 0, len(history) - newest_position, 0)              # 1 = latest item
    return [share, in_domain[:, -1].astype(np.float32), np.where(steps_ago > 0, 1.0 / np.maximum(steps_ago, 1), 0.0)]


def _user_features(history: list[int], candidates: np.ndarray, context: ItemContext) -> np.ndarray:
    """[C, len(USER_FEATURES)] for one user's candidates."""
    last_seen = {item: len(history) - pos for pos, item in enumerate(history)}                # steps ago, 1 = newest
    steps = np.array([last_seen.get(int(i), 0) for i in candidates], dtype=np.float32)
    history_attributes = set(context.attributes[history].ravel().tolist()) - {0}
    last_attributes = set(context.attributes[history[-1]].tolist()) - {0} if history else set()
    return np.stack([
        steps > 0, np.where(steps > 0, 1.0 / np.maximum(steps, 1), 0.0),
        _attribute_share(context.attributes[candidates], history_attributes),
        _attribute_share(context.attributes[candidates], last_attributes),
        *_content_features(history, candidates, context),
        *_domain_features(history, candidates, context),
        np.full(len(candidates), math.log1p(len(history))),
    ], axis=1).astype(np.float32)


def build_candidate_lists(sasrec_logits: np.ndarray, transitions: np.ndarray, mixture: np.ndarray,
                          histories: Sequence[Sequence[int]], context: ItemContext, num_candidates: int,
                          extra_views: Mapping[str, np.ndarray] | None = None) -> CandidateLists:
    """Candidate lists and their features for one chunk of users (every score matrix is [U, n_items + 1])."""
    # Only items with probability > 0 (never the padding column or items outside an allowed domain) are candidates.
    count = max(1, min(num_candidates, mixture.shape[1] - 2, int((mixture > 0).sum(axis=1).min())))
    items = _top_candidates(mixture, count)                                                    # [U, C]
    logits = torch.from_numpy(sasrec_logits)
    sasrec_logprob = torch.log_softmax(logits, dim=1).numpy()
    mass = transitions.sum(axis=1, keepdims=True)
    transition_share = np.divide(transitions, mass, out=np.zeros_like(transitions), where=mass > 0)
    take = lambda matrix: np.take_along_axis(matrix, items, axis=1)                            # noqa: E731
    per_user = np.stack([_user_features(list(history), items[u], context)
                         for u, history in enumerate(histories)])                              # [U, C, 11]
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
