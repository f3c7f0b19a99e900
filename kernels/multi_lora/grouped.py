"""Multi-LoRA on CPU: rows grouped by adapter slot, one matmul pair per distinct slot, ``index_add_`` back.

Computes exactly the loop in :mod:`kernels.multi_lora.reference`, but instead of visiting rows it sorts the
(row, k) pairs that carry an adapter by slot id and runs one dense ``[M, D_in] @ [D_in, R]`` and one
``[M, R] @ [R, D_out]`` per distinct slot (the Python loop is over slots in use, at most S, never over rows).
Rows without an adapter are never touched by a matmul; a row that names the same slot twice simply appears in
that slot's group twice and ``index_add_`` sums both. Arithmetic is float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.multi_lora.checks import check_apply, check_expand, check_shrink


@dataclass(frozen=True)
class SlotGroups:
    """(row, k) pairs with an adapter, sorted by slot: ``pairs`` are flat positions ``row * K + k``."""

    slots: list[int]          # distinct slots in use, ascending
    rows: list[torch.Tensor]  # per slot: row of each pair        [M_s]
    pairs: list[torch.Tensor]  # per slot: flat (row, k) position  [M_s]


def group_by_slot(indices: torch.Tensor) -> SlotGroups:
    """Groups the (row, k) positions of ``indices [N, K]`` by slot id, skipping -1."""
    n_mix = indices.shape[1]
    flat = indices.reshape(-1)
    pairs = torch.nonzero(flat >= 0).squeeze(1)              # [P]
    slot_sorted, order = torch.sort(flat[pairs], stable=True)
    pairs = pairs[order]
    slots, counts = torch.unique_consecutive(slot_sorted, return_counts=True)
    counts = counts.tolist()
    return SlotGroups(slots=slots.tolist(), rows=list((pairs // n_mix).split(counts)),
                      pairs=list(pairs.split(counts)))


def _add_into(y: torch.Tensor, delta: torch.Tensor) -> None:
    """``y += delta`` with delta in float32, rounding once to y's dtype."""
    if y.dtype == torch.float32:
        y.add_(delta)
    else:
        y.copy_(y.float().add_(delta))


def lora_shrink_grouped(x: torch.Tensor, lora_a: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``h [N, K, R]`` float32, ``h[i, k] = x[i] @ lora_a[indices[i, k]].T``; zeros where the index is -1."""
    indices = check_shrink(x, lora_a, indices)
    n_rows, n_mix = indices.shape
    h = torch.zeros((n_rows * n_mix, lora_a.shape[1]), dtype=torch.float32, device=x.device)
    groups = group_by_slot(indices)
    for slot, rows, pairs in zip(groups.slots, groups.rows, groups.pairs):
        h[pairs] = x[rows].float() @ lora_a[slot].float().T  # [M, R]
    return h.view(n_rows, n_mix, -1)


def lora_expand_grouped(y: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                        indices: torch.Tensor, mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y[i] += Σ_k mix_weights[i, k] * (h[i, k] @ lora_b[s].T) * scales[s]`` in place; returns y."""
    indices, mix_weights = check_expand(y, h, lora_b, scales, indices, mix_weights)
    h_flat = h.reshape(-1, h.shape[2])                        # [N*K, R]
    weights = mix_weights.reshape(-1)                         # [N*K]
    delta = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
    groups = group_by_slot(indices)
    for slot, rows, pairs in zip(groups.slots, groups.rows, groups.pairs):
        coeff = weights[pairs].float() * scales[slot].float()                   # [M]
        delta.index_add_(0, rows, (h_flat[pairs].float() * coeff[:, None]) @ lora_b[slot].float().T)
    _add_into(y, delta)
    return y


def apply_multi_lora_grouped(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                             scales: torch.Tensor, indices: torch.Tensor,
                             mix_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]`` in place, grouped by slot; returns y."""
    indices, mix_weights = check_apply(y, x, lora_a, lora_b, scales, indices, mix_weights)
    weights = mix_weights.reshape(-1)
    delta = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
    groups = group_by_slot(indices)
    for slot, rows, pairs in zip(groups.slots, groups.rows, groups.pairs):
        coeff = weights[pairs].float() * scales[slot].float()                   # [M]
        h = x[rows].float() @ lora_a[slot].float().T                             # [M, R]
        delta.index_add_(0, rows, (h * coeff[:, None]) @ lora_b[slot].float().T)  # [M, D_out]
    _add_into(y, delta)
    return y
