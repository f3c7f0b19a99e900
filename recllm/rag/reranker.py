"""Reranker: a trained scorer over candidate × profile features.

Features join what the query asks (query·item) with who asks: long/short-term preference similarity (to the
user's differentially private release of those vectors, ``profile.differential_privacy``; zero without a release),
purchases in the item's category across all services and in this service, repeat purchases of the product
family and their recency, tag and brand affinity, price relative to the user's usual level, and popularity.
A small MLP is trained listwise (softmax over each query's candidate list) on synthetic requests whose target
is the item the user actually picked.

What the user said to the assistant in earlier sessions (``profile.feedback``) is no training signal the synthetic
requests carry, so it adjusts the trained scores by rule (``feedback_adjustment``): a rejected item goes below every
other candidate, an item at or above the price the user called too high in its category is lowered, items with a
diet the user asked for are raised.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from recllm.catalog.diet_marks import item_marks
from recllm.catalog.product_catalog import Catalog
from recllm.profile.feedback import FeedbackSignals
from recllm.profile.user_signals import DAY_S, UserSignals
from recllm.config.field_checks import require_above

log = logging.getLogger(__name__)

FEATURE_NAMES = (
    "retrieval_score",
    "pref_long_sim",
    "pref_short_sim",
    "log_category_purchases",
    "log_service_category_purchases",
    "log_parent_category_purchases",
    "log_family_purchases",
    "family_recency",
    "tag_affinity",
    "brand_affinity",
    "log_price_ratio",
    "log_popularity",
    "is_cold_user",
)


@dataclass
class RerankerConfig:
    hidden: int = 32
    epochs: int = 30
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RerankerConfig.{name} must be > 0, got {getattr(self, name)!r}")
        require_above(self, "learning_rate", 0)

    @classmethod
    def from_name(cls, name: str) -> "RerankerConfig":
        presets = {"default": cls(), "test": cls(hidden=16, epochs=8)}
        if name not in presets:
            raise ValueError(f"unknown RerankerConfig preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]


def candidate_features(
    item_ids: np.ndarray,
    retrieval_scores: np.ndarray,
    signals: UserSignals,
    service: str,
    catalog: Catalog,
    item_vectors: np.ndarray,
    popularity: dict[int, int],
    now_ts: int,
) -> np.ndarray:
    """[C, len(FEATURE_NAMES)] float32 features for one request's candidates."""
    vectors = item_vectors[item_ids]  # [C, D]
    long_sim = vectors @ signals.pref_long if signals.pref_long is not None else np.zeros(len(item_ids))
    short_sim = vectors @ signals.pref_short if signals.pref_short is not None else np.zeros(len(item_ids))
    total = max(signals.num_purchases, 1)
    rows = []
    for k, item_id in enumerate(item_ids.tolist()):
        item = catalog.get(item_id)
        parent = catalog.categories[item.category_id].parent_id
        category_purchases = signals.category_counts.get(item.category_id, 0)
        last = signals.family_last_ts.get(item.family_id)
        recency = math.exp(-max(now_ts - last, 0) / (30 * DAY_S)) if last is not None else 0.0
        tags = [signals.tag_counts.get(t, 0) / total for t in item.tags]
        brand = signals.brand_counts.get((item.category_id, item.brand), 0) / max(category_purchases, 1)
        price_ratio = math.log(item.price / signals.median_price) if signals.median_price else 0.0
        rows.append((
            retrieval_scores[k],
            long_sim[k],
            short_sim[k],
            math.log1p(category_purchases),
            math.log1p(signals.service_category_counts.get((service, item.category_id), 0)),
            math.log1p(signals.parent_category_counts.get(parent, 0)) if parent else 0.0,
            math.log1p(signals.family_counts.get(item.family_id, 0)),
            recency,
            sum(tags) / len(tags) if tags else 0.0,  # np.mean of a few floats costs ~10 µs each, 64 times a request
            brand,
            price_ratio,
            math.log1p(popularity.get(item_id, 0)),
            1.0 if signals.is_cold else 0.0,
        ))
    return np.asarray(rows, dtype=np.float32).reshape(len(item_ids), len(FEATURE_NAMES))


# Reranker scores are logits of a softmax over the list: +1 makes an item e times likelier to be the pick.
REJECTED_PENALTY = 1e3        # below every candidate the user did not reject (scores are O(10))
TOO_EXPENSIVE_PENALTY = 1.0
DIET_PREFERENCE_BONUS = 1.0
DERIVED_DIETS = frozenset({"vegetarian"})  # diets read from the catalog's shelves and names (``diet_marks``)


def feedback_adjustment(item_ids: np.ndarray, feedback: FeedbackSignals, catalog: Catalog) -> np.ndarray:
    """[C] float32 added to the reranker's scores of ``item_ids`` for the user's earlier feedback."""
    adjustment = np.zeros(len(item_ids), dtype=np.float32)
    if feedback.is_empty:
        return adjustment
    wanted = set(feedback.diets)
    reads_marks = bool(wanted & DERIVED_DIETS)  # (the marks are read per item only for a user who asked for one)
    for k, item_id in enumerate(item_ids.tolist()):
        item = catalog.get(item_id)
        if item_id in feedback.rejected:
            adjustment[k] -= REJECTED_PENALTY
        ceiling = feedback.too_expensive.get(item.category_id)
        if ceiling is not None and item.price >= ceiling:
            adjustment[k] -= TOO_EXPENSIVE_PENALTY
        diets = item.tags | item_marks(item, catalog) if reads_marks else item.tags
        if diets & wanted:
            adjustment[k] += DIET_PREFERENCE_BONUS
    return adjustment


class RerankerModel(nn.Module):
    def __init__(self, config: RerankerConfig):
        super().__init__()
        width = len(FEATURE_NAMES)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std).squeeze(-1)  # [C]


class Reranker:
    def __init__(self, config: RerankerConfig, model: RerankerModel | None = None):
        self.config = config
        self.model = model or RerankerModel(config)
        self.model.eval()

    @torch.no_grad()
    def score(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.model(torch.from_numpy(features)).numpy().astype(np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "reranker_config.json").write_text(json.dumps(asdict(self.config), indent=2))
        torch.save(self.model.state_dict(), directory / "reranker.pt")

    @classmethod
    def load(cls, directory: Path) -> "Reranker":
        directory = Path(directory)
        config = RerankerConfig(**json.loads((directory / "reranker_config.json").read_text()))
        model = RerankerModel(config)
        model.load_state_dict(torch.load(directory / "reranker.pt", weights_only=True))
        return cls(config, model)


def pad_lists(lists: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [N, C, F], valid mask [N, C], targets [N]) with every list padded to the longest one."""
    width = max(len(f) for f, _ in lists)
    features = np.zeros((len(lists), width, len(FEATURE_NAMES)), dtype=np.float32)
    mask = np.zeros((len(lists), width), dtype=bool)
    for row, (f, _) in enumerate(lists):
        features[row, : len(f)] = f
        mask[row, : len(f)] = True
    targets = torch.tensor([t for _, t in lists])
    return torch.from_numpy(features), torch.from_numpy(mask), targets


def train_reranker(lists: Sequence[tuple[np.ndarray, int]], config: RerankerConfig, progress: bool = True) -> Reranker:
    """Listwise training on (features [C, F], index of the picked item) pairs: softmax over each list."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    lists = [(f, t) for f, t in lists if 0 <= t < len(f)]
    if not lists:
        raise ValueError("train_reranker needs at least one candidate list containing its target")
    torch.manual_seed(config.seed)
    model = RerankerModel(config)
    stacked = torch.from_numpy(np.concatenate([f for f, _ in lists]))
    model.mean.copy_(stacked.mean(0))
    model.std.copy_(stacked.std(0).clamp(min=1e-3))
    features, mask, targets = pad_lists(lists)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    bar = tqdm(range(config.epochs), desc="reranker", disable=not progress, leave=False)
    for _ in bar:
        total = 0.0
        for batch in torch.randperm(len(lists), generator=generator).split(32):
            logits = model(features[batch]).masked_fill(~mask[batch], -1e9)  # [B, C]
            loss = nn.functional.cross_entropy(logits, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        bar.set_postfix(loss=f"{total / len(lists):.3f}")
    model.eval()
    log.info("reranker trained on %d lists, final loss %.3f", len(lists), total / len(lists))
    return Reranker(config, model)
