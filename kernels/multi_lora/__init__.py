"""Batched multi-LoRA over preallocated adapter slots (``-1`` = no adapter), with optional per-row mixtures.

``apply_multi_lora`` (and the two halves ``lora_shrink`` / ``lora_expand``) run the Triton kernels on CUDA
tensors and the grouped torch path everywhere else. The loop they compute is in :mod:`.reference`.
"""

from __future__ import annotations

import torch

from kernels.multi_lora import grouped


def uses_triton(tensor: torch.Tensor) -> bool:
    """Which path a call on ``tensor`` takes: Triton on CUDA, the grouped torch path otherwise."""
    return tensor.is_cuda


def _triton():
    from kernels.multi_lora import triton_kernel  # imports triton: only needed (and installed) on GPU nodes

    return triton_kernel


def lora_shrink(x: torch.Tensor, lora_a: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``h [N, K, R]`` float32, ``h[i, k] = x[i] @ lora_a[indices[i, k]].T`` (zeros where the index is -1)."""
    impl = _triton().lora_shrink if uses_triton(x) else grouped.lora_shrink_grouped
    return impl(x, lora_a, indices)


def lora_expand(y: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                indices: torch.Tensor, mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y[i] += Σ_k mix_weights[i, k] * (h[i, k] @ lora_b[s].T) * scales[s]`` in place; returns y."""
    impl = _triton().lora_expand if uses_triton(y) else grouped.lora_expand_grouped
    return impl(y, h, lora_b, scales, indices, mix_weights)


def apply_multi_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                     scales: torch.Tensor, indices: torch.Tensor,
                     mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y[i] += Σ_k mix_weights[i,k] * ((x[i] @ lora_a[s].T) @ lora_b[s].T) * scales[s]``, s = indices[i, k] >= 0.

    Shapes: y [N, D_out] (updated in place and returned), x [N, D_in], lora_a [S, R, D_in], lora_b [S, D_out, R],
    scales [S], indices [N, K] or [N] int32/int64, mix_weights [N, K] or None (all ones). x, y and the slot
    tensors share one dtype (float32/float16/bfloat16); arithmetic is float32. Bad shapes/dtypes raise ValueError.
    """
    impl = _triton().apply_multi_lora if uses_triton(x) else grouped.apply_multi_lora_grouped
    return impl(y, x, lora_a, lora_b, scales, indices, mix_weights)


__all__ = ["apply_multi_lora", "lora_expand", "lora_shrink", "uses_triton"]
