"""SASRec-family next-item model in plain torch, trained with full-softmax cross-entropy over all items.

Item embedding (tied with the output layer) + learned positions counted from the END of the sequence (the newest item
always sits at position ``max_len - 1``), ``n_layers`` pre-norm causal self-attention blocks, a final LayerNorm.
Training predicts the next item at every position of each training prefix, with a softmax over all ``n_items``
(the full-CE variant that beats the original BCE-with-one-negative SASRec on Beauty). Sequences are left-padded with
item 0; a real position never attends to padding. Scores feed ``recllm.seqrec.full_ranking``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recllm.neural.causal_block import CausalBlock
from recllm.config.field_checks import require_above, require_in_interval, require_positive_ints

logger = logging.getLogger(__name__)

PAD = 0
LOSSES = ("full", "sampled")


@dataclass
class SASRecConfig:
    """Model and training hyper-parameters; ``n_items`` = largest item id (ids are 1..n_items, 0 is padding)."""

    n_items: int = 12101
    max_len: int = 50
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    ffn_mult: int = 4
    dropout: float = 0.3
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 18
    seed: int = 0
    # Content features (attribute / SID tokens) added to each item's ID embedding, initialised at this scale so the
    # ID embedding dominates early and features carry what IDs of rare items cannot.
    feature_init_std: float = 0.01
    # "full": softmax over every item (best on catalogues of ~10^4 items); "sampled": the target against
    # ``num_negatives`` items drawn uniformly per batch (shared by its positions), accidental hits masked — for
    # catalogues too large to score whole at every training step.
    loss: str = "full"
    num_negatives: int = 512

    @classmethod
    def from_name(cls, name: str, **overrides) -> "SASRecConfig":
        if name not in PRESETS:
            raise ValueError(f"SASRecConfig preset {name!r} unknown; expected one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    def __post_init__(self) -> None:
        positive = ("n_items", "max_len", "hidden", "n_layers", "n_heads", "ffn_mult", "batch_size", "epochs")
        require_positive_ints(self, positive)
        if self.hidden % self.n_heads:
            raise ValueError(f"SASRecConfig.hidden must be divisible by n_heads={self.n_heads}, got {self.hidden}")
        require_in_interval(self, "dropout", "[0, 1)")
        require_above(self, "lr", 0)
        require_above(self, "feature_init_std", 0)
        require_above(self, "weight_decay", 0, inclusive=True)
        if self.loss not in LOSSES:
            raise ValueError(f"SASRecConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if not isinstance(self.num_negatives, int) or self.num_negatives < 1:
            raise ValueError(f"SASRecConfig.num_negatives must be a positive int, got {self.num_negatives!r}")


PRESETS: dict[str, SASRecConfig] = {
    "default": SASRecConfig(),
    "test": SASRecConfig(n_items=20, max_len=10, hidden=32, n_layers=2, n_heads=2, ffn_mult=2, dropout=0.0,
                         lr=5e-3, batch_size=32, epochs=30),
}


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: query q may see key k iff k <= q and (k is a real item or k == q)."""
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()     # [T, T]
    real = (items != PAD)[:, None, None, :]                                               # [B, 1, 1, T]
    own = torch.eye(length, dtype=torch.bool, device=items.device)
    return causal & (real | own)


class ItemTable(nn.Module):
    """Item vectors [n_items + 1, H]: an ID embedding plus the mean of the item's content-feature embeddings.

    ``item_features`` [n_items + 1, F] holds feature ids (1-based, 0 = none) such as brand, category or Semantic-ID
    codes; with ``None`` the table is the ID embedding alone. Row 0 (padding) is all zeros.
    """

    def __init__(self, config: SASRecConfig, item_features: np.ndarray | None):
        super().__init__()
        self.ids = nn.Embedding(config.n_items + 1, config.hidden, padding_idx=PAD)
        nn.init.normal_(self.ids.weight, std=1.0 / math.sqrt(config.hidden))
        with torch.no_grad():
            self.ids.weight[PAD].zero_()
        self.features = None
        if item_features is not None:
            features = torch.as_tensor(np.asarray(item_features), dtype=torch.long)
            if features.ndim != 2 or features.shape[0] != config.n_items + 1:
                raise ValueError(f"item_features must be [n_items + 1 = {config.n_items + 1}, F], "
                                 f"got {tuple(features.shape)}")
            if (features < 0).any():
                raise ValueError("item_features ids must be >= 0 (0 = no feature)")
            features[PAD] = 0
            self.register_buffer("feature_ids", features, persistent=True)
            counts = (features != 0).sum(dim=1, keepdim=True).clamp(min=1).float()
            self.register_buffer("feature_norm", 1.0 / counts, persistent=True)
            self.features = nn.Embedding(int(features.max()) + 1, config.hidden, padding_idx=0)
            nn.init.normal_(self.features.weight, std=config.feature_init_std)
            with torch.no_grad():
                self.features.weight[0].zero_()

    def forward(self) -> torch.Tensor:
        table = self.ids.weight
        if self.features is not None:
            table = table + self.features(self.feature_ids).sum(dim=1) * self.feature_norm
        return table


class SASRec(nn.Module):
    """``forward(items [B, T]) -> hidden [B, T, H]``; ``logits(hidden [N, H]) -> [N, n_items + 1]`` (column 0 = -inf)."""

    def __init__(self, config: SASRecConfig, item_features: np.ndarray | None = None):
        super().__init__()
        self.config = config
        self.items = ItemTable(config, item_features)
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(config.hidden, config.n_heads, config.ffn_mult * config.hidden, config.dropout,
                        residual_dropout=True)
            for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.hidden)

    def encode(self, items: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        length = items.shape[1]
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=items.device)  # [T]
        x = table[items] * math.sqrt(self.config.hidden) + self.pos_emb(positions)[None]                  # [B, T, H]
        x = self.emb_drop(x)
        allowed = attention_mask(items)
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.encode(items, self.items())

    def logits(self, hidden: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        table = self.items() if table is None else table
        scores = hidden @ table.T                                                         # [N, n_items + 1]
        scores[:, PAD] = float("-inf")
        return scores


def left_pad(sequences: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """[B, T] long, each row the last ``max_len`` items right-aligned, T = longest kept length, padded with 0."""
    kept = [list(seq)[-max_len:] for seq in sequences]
    length = max(1, max(len(seq) for seq in kept))
    return torch.tensor([[PAD] * (length - len(seq)) + seq for seq in kept], dtype=torch.long)


def training_batch(sequences: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``seq[:-1]`` and next-item targets ``seq[1:]`` (last ``max_len`` of each), both left-padded [B, T]."""
    return left_pad([seq[:-1] for seq in sequences], max_len), left_pad([seq[1:] for seq in sequences], max_len)


def batch_loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-padding positions: full softmax, or sampled (``SASRecConfig.loss``)."""
    real = targets != PAD                                                                  # [B, T]
    table = model.items()                                                                  # [n_items + 1, H]
    hidden = model.encode(inputs, table)[real]                                             # [N, H]
    if model.config.loss == "full":
        return F.cross_entropy(model.logits(hidden, table), targets[real])
    return sampled_softmax_loss(hidden, table, targets[real], model.config.num_negatives)


def sampled_softmax_loss(hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                         num_negatives: int) -> torch.Tensor:
    """Cross-entropy of each target against ``num_negatives`` uniformly drawn items shared by the batch; a drawn
    item equal to a position's target is masked out for that position (uniform sampling needs no logQ term)."""
    negatives = torch.randint(1, table.shape[0], (num_negatives,), device=hidden.device)   # [K]
    positive = (hidden * table[targets]).sum(dim=1, keepdim=True)                          # [N, 1]
    negative = hidden @ table[negatives].T                                                 # [N, K]
    negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([positive, negative], dim=1)                                        # [N, 1 + K]
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))


def length_bucketed_batches(sequences: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """Shuffled batches of similar length (sorted within windows of 50 batches) so padding stays small."""
    order = sequences[:]
    rng.shuffle(order)
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=len)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def train_sasrec(sequences: Sequence[Sequence[int]], config: SASRecConfig,
                 item_features: np.ndarray | None = None) -> SASRec:
    """A model trained on every prefix of ``sequences`` (item ids 1..n_items; sequences shorter than 2 are skipped);
    ``item_features`` [n_items + 1, F] adds content-feature embeddings to the item vectors (see ``ItemTable``)."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    usable = [list(seq) for seq in sequences if len(seq) >= 2]
    if not usable:
        raise ValueError("train_sasrec: no sequence has >= 2 items")
    too_big = max(max(seq) for seq in usable)
    if too_big > config.n_items:
        raise ValueError(f"train_sasrec: item id {too_big} exceeds SASRecConfig.n_items={config.n_items}")
    model = SASRec(config, item_features)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for epoch in range(config.epochs):
        start, total = time.perf_counter(), 0.0
        model.train()
        batches = length_bucketed_batches(usable, config.batch_size, rng)
        for batch in batches:
            loss = batch_loss(model, *training_batch(batch, config.max_len))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        logger.info("epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, config.epochs, total / len(batches),
                    time.perf_counter() - start)
    model.eval()
    return model


@torch.no_grad()
def score_histories(model: SASRec, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """[U, n_items + 1] float32 next-item scores after each history (column 0, padding, is -inf)."""
    model.eval()
    table = model.items()
    hidden = model.encode(left_pad(histories, model.config.max_len), table)[:, -1]        # [U, H]
    return model.logits(hidden, table).numpy()


@torch.no_grad()
def user_states(model: SASRec, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """[U, H] float32: the model's state after each history (its inner product with an item vector is the score)."""
    model.eval()
    return model.encode(left_pad(histories, model.config.max_len), model.items())[:, -1].numpy()


@torch.no_grad()
def item_vectors(model: SASRec) -> np.ndarray:
    """[n_items + 1, H] float32 item vectors (ID + content features); row 0 is padding."""
    return model.items().numpy().astype(np.float32)
