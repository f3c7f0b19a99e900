"""Dynamic attention embeddings: a few key/value vectors per chosen layer, produced from ``u``.

``UserPrefixEncoder`` maps ``u`` [B, d_u] through a small MLP to ``P`` keys and values per KV head of each chosen
layer; the Qwen2 attention prepends them to that layer's keys/values (``PrefixKV``), so every token can attend to
"who is asking". The keys carry no rotary phase (the hook uses them as given): a prefix is position-free. Rows with
no user (``has_user`` False) mask their prefix out, which is exactly the base attention; no prefix at all adds no
work. The output layer starts small (std ``init_std``) so a fresh encoder barely moves the base model.
"""

from __future__ import annotations

import torch
from torch import nn

from recllm.generator.qwen2 import PrefixKV, Qwen2Config


class UserPrefixEncoder(nn.Module):
    def __init__(self, config: Qwen2Config, user_dim: int, layers: tuple[int, ...], num_prefix: int = 4,
                 hidden: int = 64, init_std: float = 0.02):
        super().__init__()
        if num_prefix <= 0:
            raise ValueError(f"UserPrefixEncoder num_prefix must be > 0, got {num_prefix}")
        for index in layers:
            if not 0 <= index < config.num_hidden_layers:
                raise ValueError(f"prefix layer {index} is not in [0, {config.num_hidden_layers})")
        self.layers = tuple(layers)
        self.num_prefix, self.n_kv, self.head_dim = num_prefix, config.num_key_value_heads, config.head_dim
        per_layer = 2 * num_prefix * self.n_kv * self.head_dim  # keys and values
        self.mlp = nn.Sequential(nn.Linear(user_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, len(self.layers) * per_layer))
        nn.init.normal_(self.mlp[2].weight, 0.0, init_std)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, u: torch.Tensor, has_user: torch.Tensor | None = None) -> dict[int, PrefixKV]:
        """layer -> PrefixKV with k, v [B, KV, P, hd] and mask [B, P] (False for rows without a user)."""
        B = u.shape[0]
        out = self.mlp(u.to(self.mlp[0].weight.dtype))  # [B, L * 2 * P * KV * hd]
        out = out.view(B, len(self.layers), 2, self.n_kv, self.num_prefix, self.head_dim)
        mask = torch.ones(B, self.num_prefix, dtype=torch.bool, device=u.device)
        if has_user is not None:
            mask = mask & has_user.to(torch.bool)[:, None]
        return {layer: PrefixKV(out[:, i, 0], out[:, i, 1], mask) for i, layer in enumerate(self.layers)}


__all__ = ["UserPrefixEncoder"]
