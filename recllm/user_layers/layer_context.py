"""The per-batch object the Qwen2 hooks pass to every adaptive layer (``layer_context``): one row per batch row.

Each field switches one kind of adaptive layer on for this batch; ``None`` switches it off, so the same model
runs as the base model (all ``None``), with conditional norms only, with prefixes only, etc.:

* ``norm_vectors`` [B, d_u]: the user vectors the conditional RMSNorms read (``norm_mask`` [B]: only these rows);
* ``prefixes`` layer index -> ``PrefixKV`` (already computed from ``u`` by ``UserPrefixEncoder``);
* ``lora_indices`` [B, K] slot ids (-1 = none) and ``mix_weights`` [B, K]: what the multi-LoRA projections apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recllm.generator.qwen2 import PrefixKV


@dataclass
class UserLayerContext:
    norm_vectors: torch.Tensor | None = None  # [B, d_u]
    prefixes: dict[int, PrefixKV] | None = None
    lora_indices: torch.Tensor | None = None  # [B, K] int, -1 = no adapter
    mix_weights: torch.Tensor | None = None  # [B, K] or None (all ones)
    norm_mask: torch.Tensor | None = None  # [B] bool: rows whose norms are modulated (None: all rows)

    def __post_init__(self):
        self._token_rows: dict[int, tuple] = {}
        self._cache: dict = {}

    def cached(self, key, compute):
        """``compute()`` once per context for ``key`` at inference (what depends only on the batch's users, not on
        the tokens: a decode step reuses the prefill's); recomputed every call when gradients are on."""
        if torch.is_grad_enabled():
            return compute()
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def lora_rows(self, tokens_per_row: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(indices [B*T, K], mix_weights [B*T, K] or None), expanded once per sequence length and shared by
        every LoRA projection of the forward pass."""
        if tokens_per_row not in self._token_rows:
            mix = self.mix_weights
            self._token_rows[tokens_per_row] = (
                rows_per_token(self.lora_indices, tokens_per_row),
                None if mix is None else rows_per_token(mix, tokens_per_row))
        return self._token_rows[tokens_per_row]

    def prefix_kv(self, layer_index: int) -> PrefixKV | None:
        """The Qwen2 attention hook: this layer's user prefix, or None."""
        return None if self.prefixes is None else self.prefixes.get(layer_index)


def context_cached(layer_context, key, compute):
    """``layer_context.cached(key, compute)`` for a context that keeps per-batch values (``UserLayerContext``), else
    ``compute()``: what the adaptive layers call for everything that depends only on the batch's users."""
    cached = getattr(layer_context, "cached", None)
    return compute() if cached is None else cached(key, compute)


def rows_per_token(per_row: torch.Tensor, tokens_per_row: int) -> torch.Tensor:
    """[B, ...] -> [B * T, ...]: each batch row's value repeated for its T tokens (token-major order of a
    ``[B, T, D].reshape(B * T, D)``)."""
    return per_row if tokens_per_row == 1 else per_row.repeat_interleave(tokens_per_row, dim=0)


__all__ = ["UserLayerContext", "context_cached", "rows_per_token"]
