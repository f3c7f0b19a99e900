"""Pure-torch multi-LoRA: the ground truth every faster path is tested against. Slow on purpose (a row loop).

For every row i (a token) and mixture position k with ``s = indices[i, k] >= 0``::

    h[i, k]  = x[i] @ lora_a[s].T                                              # shrink  [R]
    y[i]    += mix_weights[i, k] * (h[i, k] @ lora_b[s].T) * scales[s]          # expand  [D_out]

so ``apply`` computes ``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]``; positions with ``s = -1``
contribute nothing whatever their weight. K = 1 with weight 1 is plain multi-LoRA (Punica BGMV); K > 1 is a
mixture of LoRA experts gated per row. Arithmetic is float32; y is read and written back in its own dtype.
"""

from __future__ import annotations

import torch

from kernels.multi_lora.checks import check_apply, check_expand, check_shrink


def lora_shrink_reference(x: torch.Tensor, lora_a: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``h [N, K, R]`` float32 with ``h[i, k] = x[i] @ lora_a[indices[i, k]].T`` (zeros where the index is -1)."""
    indices = check_shrink(x, lora_a, indices)
    n_rows, n_mix = indices.shape
    h = torch.zeros((n_rows, n_mix, lora_a.shape[1]), dtype=torch.float32, device=x.device)
    for i in range(n_rows):
        for k in range(n_mix):
            slot = int(indices[i, k])
            if slot >= 0:
                h[i, k] = x[i].float() @ lora_a[slot].float().T
    return h


def lora_expand_reference(y: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                          indices: torch.Tensor, mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y[i] += Σ_k mix_weights[i, k] * (h[i, k] @ lora_b[s].T) * scales[s]`` in place; returns y."""
    indices, mix_weights = check_expand(y, h, lora_b, scales, indices, mix_weights)
    n_rows, n_mix = indices.shape
    for i in range(n_rows):
        delta = torch.zeros(y.shape[1], dtype=torch.float32, device=y.device)
        for k in range(n_mix):
            slot = int(indices[i, k])
            if slot >= 0:
                delta += (mix_weights[i, k].float() * (h[i, k].float() @ lora_b[slot].float().T)
                          * scales[slot].float())
        y[i] = (y[i].float() + delta).to(y.dtype)
    return y


def apply_multi_lora_reference(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                               scales: torch.Tensor, indices: torch.Tensor,
                               mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Shrink then expand: ``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]`` in place; returns y."""
    indices, mix_weights = check_apply(y, x, lora_a, lora_b, scales, indices, mix_weights)
    h = lora_shrink_reference(x, lora_a, indices)
    return lora_expand_reference(y, h, lora_b, scales, indices, mix_weights)
