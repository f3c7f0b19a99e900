"""The pre-norm causal self-attention block shared by SASRec (``seqrec.sasrec``) and the SID generator
(``sid.generative_retrieval``).

Parameter names (``attn_norm``, ``qkv``, ``out``, ``ffn_norm``, ``ffn``) are part of the saved checkpoints of both
models, so they stay fixed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalBlock(nn.Module):
    """Pre-norm block: x + MHA(LN(x)) under ``allowed`` [B, 1, T, T], then x + FFN(LN(x)).

    ``residual_dropout`` adds dropout on the attention output before the residual sum (SASRec trains with it;
    the SID generator without).
    """

    def __init__(self, hidden: int, n_heads: int, ffn_hidden: int, dropout: float, residual_dropout: bool):
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"CausalBlock: hidden={hidden} must be divisible by n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_hidden), nn.GELU(), nn.Linear(ffn_hidden, hidden),
                                 nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout) if residual_dropout else nn.Identity()

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(hidden, dim=-1)                        # [B, T, H] each
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # [B, h, T, H/h]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, length, hidden)                               # [B, T, H]
        x = x + self.resid_drop(self.out(y))
        return x + self.ffn(self.ffn_norm(x))
