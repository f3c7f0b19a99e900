"""Conditional RMSNorm ``x * rsqrt(mean(x^2) + eps) * weight * (1 + gamma) + beta`` with per-row user gamma/beta.

``conditional_rms_norm`` runs the Triton kernel on CUDA tensors and the in-place torch path otherwise.
"""

from __future__ import annotations

import torch

from kernels.conditional_rmsnorm.cpu import conditional_rms_norm_cpu


def uses_triton(tensor: torch.Tensor) -> bool:
    """Which path a call on ``tensor`` takes: Triton on CUDA, the torch path otherwise."""
    return tensor.is_cuda


def conditional_rms_norm(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                         eps: float = 1e-6) -> torch.Tensor:
    """``y = x * rsqrt(mean(x^2, -1) + eps) * weight * (1 + gamma) + beta``, float32 inside, x's dtype out.

    x [N, D]; weight [D]; gamma, beta [N, D] (any strides, stride 0 along rows allowed) or [1, D] / [D].
    With gamma = beta = 0 this is plain RMSNorm. Bad shapes/dtypes raise ValueError.
    """
    if uses_triton(x):
        from kernels.conditional_rmsnorm import triton_kernel  # imports triton: GPU nodes only

        return triton_kernel.conditional_rms_norm(x, weight, gamma, beta, eps)
    return conditional_rms_norm_cpu(x, weight, gamma, beta, eps)


__all__ = ["conditional_rms_norm", "uses_triton"]
