"""Pure-torch conditional RMSNorm (adaLN-style, user-conditioned), the ground truth for the faster paths.

For every row i of x [N, D], in float32::

    r[i] = rsqrt(mean_d(x[i, d]^2) + eps)
    y[i, d] = ((x[i, d] * r[i]) * weight[d]) * (1 + gamma[i, d]) + beta[i, d]

returned in x's dtype. gamma and beta are the per-row user modulation (often ``gamma_user[row_to_user]`` or a
stride-0 ``.expand`` of one user's vector). The operation order is plain RMSNorm's, then the modulation, so with
gamma = beta = 0 the result is bit-for-bit :func:`rms_norm_reference` (times 1.0, plus 0.0): an adaLN-Zero
modulation (zero-initialised last linear, as in DiT) starts as the identity on the base model.
"""

from __future__ import annotations

import torch

from kernels.conditional_rmsnorm.checks import check_conditional_rms_norm


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Plain RMSNorm in float32: ``(x * rsqrt(mean(x^2, -1) + eps)) * weight``, returned in x's dtype."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


def conditional_rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor,
                                   beta: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x * rsqrt(mean(x^2, -1) + eps) * weight * (1 + gamma) + beta`` in float32, returned in x's dtype."""
    gamma, beta = check_conditional_rms_norm(x, weight, gamma, beta)
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()   # [N, D]
    return (normed * (1 + gamma.float()) + beta.float()).to(x.dtype)
