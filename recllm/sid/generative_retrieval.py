"""A tiny TIGER-style generative retriever: user history → the next item's Semantic ID, token by token.

Encoder: each history item is the sum of its SID-token embeddings (one table per SID position) plus a position
counted from the end; ``n_layers`` pre-norm causal self-attention blocks give a user state after every item.
Decoder: the next item's SID is generated autoregressively, ``p(c_1 | h) p(c_2 | h, c_1) … p(c_L | h, c_<L)``; the
query for position l is ``h + sum_{j<l} prefix_emb_j[c_j]`` through a small residual MLP, scored against that
position's token embeddings (tied with the encoder's). Because the decoder works on one user state per history
position, training predicts the next item at every position of every training sequence in one pass, like SASRec.

Retrieval is trie-constrained beam search (``prefix_trie``), so every returned item exists; ``generative_scores``
gives log p(SID(item) | history) of any candidate items, the feature a reranker uses.
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

from recllm.sid.prefix_trie import DecodedItems, SamplingConfig, SidTrie, beam_search, sample
from recllm.config.field_checks import require_above, require_in_interval

logger = logging.getLogger(__name__)

PAD = 0


@dataclass
class GenerativeRetrieverConfig:
    """Model, training and decoding settings; item ids are 1..n_items (0 = padding)."""

    max_len: int = 20            # TIGER's history cap
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    lr: float = 2e-3
    batch_size: int = 128
    epochs: int = 20
    beam_size: int = 20
    max_train_seconds: float = 0.0   # stop after the epoch that crosses this wall-clock budget (0 = no budget)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_len", "hidden", "n_layers", "n_heads", "batch_size", "epochs", "beam_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GenerativeRetrieverConfig.{name} must be a positive int, got {value!r}")
        if self.hidden % self.n_heads:
            raise ValueError(f"GenerativeRetrieverConfig.hidden={self.hidden} must be divisible by "
                             f"n_heads={self.n_heads}")
        require_in_interval(self, "dropout", "[0, 1)")
        require_above(self, "lr", 0)
        if not self.max_train_seconds >= 0:
            raise ValueError("GenerativeRetrieverConfig.max_train_seconds must be >= 0, "
                             f"got {self.max_train_seconds!r}")

    @classmethod
    def from_name(cls, name: str, **overrides) -> "GenerativeRetrieverConfig":
        if name not in PRESETS:
            raise ValueError(f"GenerativeRetrieverConfig preset {name!r} unknown; expected one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, GenerativeRetrieverConfig] = {
    "default": GenerativeRetrieverConfig(),
    "test": GenerativeRetrieverConfig(max_len=8, hidden=32, n_layers=1, n_heads=2, dropout=0.0, lr=1e-2,
                                      batch_size=16, epochs=40, beam_size=5),
}


class GenerativeRetriever(nn.Module):
    """``user_states(items [B, T]) -> [B, T, H]``; ``level_logits(h [N, H], prefix [N, l]) -> [N, V_l]``."""

    def __init__(self, config: GenerativeRetrieverConfig, item_sids: np.ndarray):
        super().__init__()
        item_sids = np.asarray(item_sids, dtype=np.int64)
        if item_sids.ndim != 2 or len(item_sids) < 2:
            raise ValueError(f"item_sids must be [n_items + 1, L] (row 0 = padding), got {item_sids.shape}")
        self.config = config
        self.vocab_sizes = [int(v) for v in item_sids[1:].max(axis=0) + 1]
        self.register_buffer("item_sids", torch.as_tensor(item_sids), persistent=True)        # [I + 1, L]
        self.tokens = nn.ModuleList(nn.Embedding(v, config.hidden) for v in self.vocab_sizes)
        self.prefix = nn.ModuleList(nn.Embedding(v, config.hidden) for v in self.vocab_sizes[:-1])
        for table in [*self.tokens, *self.prefix]:
            nn.init.normal_(table.weight, std=1.0 / math.sqrt(config.hidden))
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(config.hidden, config.n_heads, 4 * config.hidden, config.dropout, residual_dropout=False)
            for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.hidden)
        self.decoder = nn.ModuleList(nn.Sequential(nn.LayerNorm(config.hidden), nn.Linear(config.hidden,
                                                   2 * config.hidden), nn.GELU(),
                                                   nn.Linear(2 * config.hidden, config.hidden))
                                     for _ in self.vocab_sizes)
        self.trie = SidTrie(item_sids[1:], np.arange(1, len(item_sids)), self.vocab_sizes)
        self.epochs_trained = 0

    @property
    def depth(self) -> int:
        return len(self.vocab_sizes)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        codes = self.item_sids[items]                                                          # [..., L]
        return sum(table(codes[..., level]) for level, table in enumerate(self.tokens))         # [..., H]

    def user_states(self, items: torch.Tensor) -> torch.Tensor:
        length = items.shape[1]
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=items.device)
        x = self.emb_drop(self.item_vectors(items) + self.pos_emb(positions)[None])           # [B, T, H]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal & ((items != PAD)[:, None, None, :] | torch.eye(length, dtype=torch.bool))
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x)

    def level_logits(self, states: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Logits [..., V_l] of SID position l = prefix.shape[-1] after user states [..., H]."""
        level = prefix.shape[-1]
        query = states
        for j in range(level):
            query = query + self.prefix[j](prefix[..., j])
        query = query + self.decoder[level](query)                                             # [..., H]
        return query @ self.tokens[level].weight.T                                             # [..., V_l]

    def sid_log_probs(self, states: torch.Tensor, sids: torch.Tensor) -> torch.Tensor:
        """[..., L] log p(sids[..., l] | states, sids[..., <l]) (unconstrained softmax over each position)."""
        return torch.stack([F.log_softmax(self.level_logits(states, sids[..., :level]), dim=-1)
                            .gather(-1, sids[..., level:level + 1]).squeeze(-1)
                            for level in range(self.depth)], dim=-1)


def left_pad(sequences: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """[B, T] long: the last ``max_len`` items of each sequence right-aligned, left-padded with 0."""
    kept = [list(seq)[-max_len:] for seq in sequences]
    length = max(1, max(len(seq) for seq in kept))
    return torch.tensor([[PAD] * (length - len(seq)) + seq for seq in kept], dtype=torch.long)


def batch_loss(model: GenerativeRetriever, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over real positions of -log p(SID of the next item | history so far), summed over SID positions."""
    inputs = left_pad([seq[:-1] for seq in sequences], model.config.max_len)                 # [B, T]
    targets = left_pad([seq[1:] for seq in sequences], model.config.max_len)                 # [B, T]
    real = targets != PAD
    states = model.user_states(inputs)[real]                                                 # [N, H]
    return -model.sid_log_probs(states, model.item_sids[targets[real]]).sum(-1).mean()


def _batches(sequences: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    order = sequences[:]
    rng.shuffle(order)
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):  # similar lengths per batch keep padding small
        chunk = sorted(order[start:start + window], key=len)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def train_generative_retriever(sequences: Sequence[Sequence[int]], item_sids: np.ndarray,
                               config: GenerativeRetrieverConfig, progress: bool = False) -> GenerativeRetriever:
    """Trained on every prefix of ``sequences`` (ids 1..n_items); ``item_sids`` [n_items + 1, L], row 0 padding."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    usable = [list(seq)[-(config.max_len + 1):] for seq in sequences if len(seq) >= 2]
    if not usable:
        raise ValueError("train_generative_retriever: no sequence has >= 2 items")
    largest = max(max(seq) for seq in usable)
    if largest >= len(item_sids) or min(min(seq) for seq in usable) < 1:
        raise ValueError(f"train_generative_retriever: item ids must be in 1..{len(item_sids) - 1}, got {largest}")
    model = GenerativeRetriever(config, item_sids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    started = time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc="generative retriever", disable=not progress):
        start, total = time.perf_counter(), 0.0
        model.train()
        batches = _batches(usable, config.batch_size, rng)
        for batch in batches:
            loss = batch_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        logger.info("epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, config.epochs, total / len(batches),
                    time.perf_counter() - start)
        model.epochs_trained = epoch + 1
        if config.max_train_seconds and time.perf_counter() - started > config.max_train_seconds:
            logger.info("stopping after epoch %d: training budget of %.0f s used", epoch + 1, config.max_train_seconds)
            break
    model.eval()
    return model


@torch.no_grad()
def final_states(model: GenerativeRetriever, histories: Sequence[Sequence[int]], chunk: int = 1024) -> torch.Tensor:
    """[U, H] user state after each history's last item."""
    model.eval()
    parts = [model.user_states(left_pad(histories[i:i + chunk], model.config.max_len))[:, -1]
             for i in range(0, len(histories), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, model.config.hidden)


def step_logits_for(model: GenerativeRetriever, states: torch.Tensor):
    """The ``StepLogits`` callable of ``prefix_trie`` decoding for users with ``states`` [U, H]."""
    @torch.no_grad()
    def step(rows: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        return model.level_logits(states[torch.as_tensor(rows)], torch.as_tensor(prefixes)).numpy()
    return step


def retrieve(model: GenerativeRetriever, histories: Sequence[Sequence[int]], top_k: int | None = None,
             trie: SidTrie | None = None) -> DecodedItems:
    """Top ``top_k`` (default ``config.beam_size``) items per history by trie-constrained beam search.

    ``trie`` restricts the items (e.g. to one service's assortment); default: every item the model knows.
    """
    states = final_states(model, histories)
    return beam_search(trie or model.trie, step_logits_for(model, states), len(histories),
                       top_k or model.config.beam_size)


def sample_items(model: GenerativeRetriever, histories: Sequence[Sequence[int]], n_samples: int,
                 config: SamplingConfig, trie: SidTrie | None = None) -> DecodedItems:
    """``n_samples`` sampled items per history (temperature / top-k / top-p), trie-constrained."""
    states = final_states(model, histories)
    return sample(trie or model.trie, step_logits_for(model, states), len(histories), n_samples, config)


@torch.no_grad()
def generative_scores(model: GenerativeRetriever, histories: Sequence[Sequence[int]],
                      candidate_item_ids: np.ndarray | Sequence[Sequence[int]], constrained: bool = True) -> np.ndarray:
    """[U, C] float32 log p(SID(candidate) | history) under the model, a reranker feature.

    ``constrained``: each position's softmax is renormalised over the tokens the model's trie allows after the
    candidate's prefix (the same distribution beam search ranks by); otherwise the raw softmax. Ids outside
    1..n_items raise ValueError.
    """
    candidates = torch.as_tensor(np.asarray(candidate_item_ids, dtype=np.int64))                # [U, C]
    if candidates.ndim != 2 or candidates.shape[0] != len(histories):
        raise ValueError(f"generative_scores: candidate_item_ids must be [{len(histories)}, C], "
                         f"got {tuple(candidates.shape)}")
    n_items = len(model.item_sids) - 1
    if candidates.numel() and (candidates.min() < 1 or candidates.max() > n_items):
        raise ValueError(f"generative_scores: candidate ids must be in 1..{n_items}")
    states = final_states(model, histories)[:, None].expand(-1, candidates.shape[1], -1)      # [U, C, H]
    sids = model.item_sids[candidates]                                                         # [U, C, L]
    total = torch.zeros(candidates.shape, dtype=torch.float32)
    for level in range(model.depth):
        logits = model.level_logits(states, sids[..., :level])                                 # [U, C, V_l]
        if constrained:
            prefixes = sids[..., :level].reshape(candidates.numel(), level).numpy()
            mask = torch.as_tensor(model.trie.masks_for(prefixes)).view(logits.shape)
            logits = logits.masked_fill(~mask, float("-inf"))
        total += F.log_softmax(logits, dim=-1).gather(-1, sids[..., level:level + 1]).squeeze(-1)
    return total.numpy()


@torch.no_grad()
def unconstrained_greedy_sids(model: GenerativeRetriever, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """[U, L] argmax SID per history without the trie: how often a free decoder invents non-existent items."""
    states = final_states(model, histories)
    prefix = torch.zeros(len(histories), 0, dtype=torch.long)
    for _ in range(model.depth):
        prefix = torch.cat([prefix, model.level_logits(states, prefix).argmax(-1, keepdim=True)], dim=1)
    return prefix.numpy()
