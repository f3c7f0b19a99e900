"""Multi-LoRA on CPU: rows grouped by adapter slot, one matmul pair per distinct slot, ``index_add_`` back.

Computes exactly the loop in :mod:`kernels.multi_lora.reference`, but instead of visiting rows it sorts the
(row, k) pairs that carry an adapter by slot id and runs one dense ``[M, D_in] @ [D_in, R]`` and one
``[M, R] @ [R, D_out]`` per distinct slot (the Python loop is over slots in use, at most S, never over rows).
For small batches the fused call instead gathers each pair's A and B and runs two bmm calls (no loop at all).
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
    rows: list[torch.Tensor]  # per slot: row of each pair (int32)  [M_s]
    pairs: list[torch.Tensor]  # per slot: flat (row, k) position  [M_s]


def group_by_slot(indices: torch.Tensor) -> SlotGroups:
    """Groups the (row, k) positions of ``indices [N, K]`` by slot id, skipping -1."""
    n_mix = indices.shape[1]
    flat = indices.reshape(-1)
    pairs = torch.nonzero(flat >= 0).squeeze(1)              # [P]
    slot_sorted, order = torch.sort(flat.index_select(0, pairs), stable=True)
    pairs = pairs.index_select(0, order)
    slots, counts = torch.unique_consecutive(slot_sorted, return_counts=True)
    counts = counts.tolist()
    # int32 rows: torch 2.13's CPU index_add_ with int64 indices opens an OpenMP region even for one row, which
    # cost 40-150 ms per call on a shared 2-core box whose other core was busy (int32: 6 us to 1.6 ms).
    rows = (pairs // n_mix).to(torch.int32)
    return SlotGroups(slots=slots.tolist(), rows=list(rows.split(counts)), pairs=list(pairs.split(counts)))


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
        h[pairs] = x.index_select(0, rows).float() @ lora_a[slot].float().T  # [M, R]
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
        coeff = weights.index_select(0, pairs).float() * scales[slot].float()   # [M]
        delta.index_add_(0, rows, (h_flat.index_select(0, pairs).float() * coeff[:, None]) @ lora_b[slot].float().T)
    _add_into(y, delta)
    return y


def _apply_per_slot(delta: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                    scales: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> None:
    groups = group_by_slot(indices)
    for slot, rows, pairs in zip(groups.slots, groups.rows, groups.pairs):
        coeff = weights.index_select(0, pairs).float() * scales[slot].float()   # [M]
        h = x.index_select(0, rows).float() @ lora_a[slot].float().T             # [M, R]
        delta.index_add_(0, rows, (h * coeff[:, None]) @ lora_b[slot].float().T)  # [M, D_out]


def _apply_gathered(delta: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                    scales: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> None:
    pairs = torch.nonzero(indices.reshape(-1) >= 0).squeeze(1)          # [P] flat (row, k) positions
    slots = indices.reshape(-1).index_select(0, pairs)                   # [P]
    rows = (pairs // indices.shape[1]).to(torch.int32)                   # [P] (int32: see group_by_slot)
    # index_select, not a[idx]: 6x faster for these gathers on CPU (torch 2.13)
    coeff = weights.index_select(0, pairs).float() * scales.index_select(0, slots).float()     # [P]
    h = torch.bmm(lora_a.index_select(0, slots).float(), x.index_select(0, rows).float()[:, :, None])  # [P, R, 1]
    out = torch.bmm(lora_b.index_select(0, slots).float(), h * coeff[:, None, None])            # [P, D_out, 1]
    delta.index_add_(0, rows, out.squeeze(2))


GATHER_ELEMENTS = 1 << 22  # "auto" gathers per-pair weights while they stay under 16 MiB of float32
STRATEGIES = ("auto", "per_slot", "gathered")


def auto_strategy(indices: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> str:
    """"gathered" while the gathered A and B of all N*K pairs stay under GATHER_ELEMENTS, else "per_slot"."""
    gathered_elements = indices.numel() * lora_a.shape[1] * (lora_a.shape[2] + lora_b.shape[1])
    return "gathered" if gathered_elements <= GATHER_ELEMENTS else "per_slot"


def apply_multi_lora_grouped(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                             scales: torch.Tensor, indices: torch.Tensor, mix_weights: torch.Tensor | None = None,
                             *, strategy: str = "auto") -> torch.Tensor:
    """``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]`` in place; returns y.

    ``per_slot``: one matmul pair per distinct slot in use (prefill: long runs of rows share an adapter).
    ``gathered``: the A and B of every (row, k) pair gathered into ``[P, R, D_in]`` / ``[P, D_out, R]`` and two
    bmm calls, no Python loop at all (decode: a handful of rows, often one per adapter). ``auto`` gathers while
    ``N * K * R * (D_in + D_out) <= GATHER_ELEMENTS`` (a bound on the gathered size: P <= N * K).
    """
    indices, mix_weights = check_apply(y, x, lora_a, lora_b, scales, indices, mix_weights)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        strategy = auto_strategy(indices, lora_a, lora_b)
    delta = torch.zeros(y.shape, dtype=torch.float32, device=y.device)   # [N, D_out]
    apply = _apply_gathered if strategy == "gathered" else _apply_per_slot
    apply(delta, x, lora_a, lora_b, scales, indices, mix_weights.reshape(-1))
    _add_into(y, delta)
    return y
