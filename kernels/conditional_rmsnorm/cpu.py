"""Conditional RMSNorm on CPU: the reference's arithmetic, in the same order, with in-place ops on one float32
buffer instead of a temporary per step. Bit-for-bit equal to :mod:`.reference`."""

from __future__ import annotations

import torch

from kernels.conditional_rmsnorm.checks import check_conditional_rms_norm


def _one_row_if_broadcast(t: torch.Tensor) -> torch.Tensor:
    """A stride-0 [N, D] view as its single [1, D] row: ``.float()`` and ``+ 1`` would otherwise fill N rows."""
    return t[:1] if t.stride(0) == 0 else t


def conditional_rms_norm_cpu(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                             eps: float = 1e-6) -> torch.Tensor:
    """``x * rsqrt(mean(x^2, -1) + eps) * weight * (1 + gamma) + beta`` in float32, returned in x's dtype."""
    gamma, beta = (_one_row_if_broadcast(t) for t in check_conditional_rms_norm(x, weight, gamma, beta))
    out = x.to(torch.float32, copy=True)                                   # [N, D]
    rstd = out.pow(2).mean(-1, keepdim=True).add_(eps).rsqrt_()           # [N, 1]
    out.mul_(rstd).mul_(weight.float()).mul_(gamma.float() + 1).add_(beta.float())
    return out.to(x.dtype)
