"""MoE gate over segment adapters: a user-conditioned softmax over the S segment LoRAs, top-k of them per row.

    logits = W u + b                        [B, S]
    top-k logits -> softmax -> weights      [B, k] (sum to 1 over the chosen experts)
    indices = expert_slots[top-k experts]   [B, k] slot ids in the adapter slots (-1 when an expert is not active)

The output is exactly what ``kernels.multi_lora.apply_multi_lora`` takes (``indices`` + ``mix_weights``), so the
mixture runs in the same batched op as plain per-user LoRA. ``init_from_centroids`` starts the gate as a soft
nearest-segment classifier (``logits = -‖u - c_s‖² / τ`` up to a per-row constant), training refines it.
"""

from __future__ import annotations

import torch
from torch import nn


class MixtureGate(nn.Module):
    def __init__(self, user_dim: int, num_experts: int, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MixtureGate top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.top_k = top_k
        self.proj = nn.Linear(user_dim, num_experts)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    @torch.no_grad()
    def init_from_centroids(self, centroids: torch.Tensor, temperature: float = 0.5) -> "MixtureGate":
        """centroids [S, d_u]: logits_s = (2 u·c_s - ‖c_s‖²) / τ, i.e. -‖u - c_s‖² / τ plus a per-row constant."""
        centroids = centroids.to(self.proj.weight)
        self.proj.weight.copy_(2 * centroids / temperature)
        self.proj.bias.copy_(-(centroids ** 2).sum(-1) / temperature)
        return self

    def forward(self, u: torch.Tensor, expert_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices [B, k] slot ids, mix_weights [B, k]); ``expert_slots`` [S] maps expert -> slot (-1 = none)."""
        logits = self.proj(u.to(self.proj.weight.dtype))  # [B, S]
        top, experts = logits.topk(self.top_k, dim=-1)  # [B, k]
        weights = torch.softmax(top, dim=-1)  # [B, k]
        return expert_slots.to(u.device)[experts], weights


__all__ = ["MixtureGate"]
