"""Multi-LoRA on CPU: rows grouped by adapter slot, one matmul pair per distinct slot, ``index_add_`` back.

Computes exactly the loop in :mod:`kernels.multi_lora.reference`, but instead of visiting rows it sorts the
(row, k) pairs that carry an adapter by slot id and runs one dense ``[M, D_in] @ [D_in, R]`` and one
``[M, R] @ [R, D_out]`` per distinct slot (the Python loop is over slots in use, at most S, never over rows).
For small batches the fused call instead runs two bmm calls over gathered or spanned slot weights (no loop at all).
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
                    scales: torch.Tensor, indices: torch.Tensor, mix_weights: torch.Tensor) -> None:
    weights = mix_weights.reshape(-1)                                             # [N*K]
    groups = group_by_slot(indices)
    for slot, rows, pairs in zip(groups.slots, groups.rows, groups.pairs):
        coeff = weights.index_select(0, pairs).float() * scales[slot].float()   # [M]
        h = x.index_select(0, rows).float() @ lora_a[slot].float().T             # [M, R]
        delta.index_add_(0, rows, (h * coeff[:, None]) @ lora_b[slot].float().T)  # [M, D_out]


def _apply_gathered(delta: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                    scales: torch.Tensor, indices: torch.Tensor, mix_weights: torch.Tensor) -> None:
    pairs = torch.nonzero(indices.reshape(-1) >= 0).squeeze(1)          # [P] flat (row, k) positions
    slots = indices.reshape(-1).index_select(0, pairs)                   # [P]
    rows = (pairs // indices.shape[1]).to(torch.int32)                   # [P] (int32: see group_by_slot)
    # index_select, not a[idx]: 6x faster for these gathers on CPU (torch 2.13)
    coeff = mix_weights.reshape(-1).index_select(0, pairs).float() * scales.index_select(0, slots).float()  # [P]
    h = torch.bmm(lora_a.index_select(0, slots).float(), x.index_select(0, rows).float()[:, :, None])  # [P, R, 1]
    out = torch.bmm(lora_b.index_select(0, slots).float(), h * coeff[:, None, None])            # [P, D_out, 1]
    delta.index_add_(0, rows, out.squeeze(2))


def _apply_dense(delta: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                 scales: torch.Tensor, indices: torch.Tensor, mix_weights: torch.Tensor) -> None:
    valid = indices >= 0                                                   # [N, K]
    if not bool(valid.any()):
        return
    lo, hi = (int(v) for v in torch.aminmax(indices[valid]))
    n_rows, n_span, rank = indices.shape[0], hi - lo + 1, lora_a.shape[1]
    # coeff[i, s] = Σ_k w[i, k] * scales[s] over positions naming slot lo + s (where(), not *: a NaN weight at -1)
    coeff = torch.zeros(n_rows, n_span, dtype=torch.float32, device=x.device)
    coeff.scatter_add_(1, torch.where(valid, indices - lo, 0), torch.where(valid, mix_weights.float(), 0.0))
    coeff *= scales[lo:hi + 1].float()
    a = lora_a[lo:hi + 1].float().reshape(n_span * rank, -1)              # [S'*R, D_in], a view for float32 slots
    h = (x.float() @ a.T).view(n_rows, n_span, rank) * coeff[:, :, None]  # [N, S', R]
    delta += torch.bmm(h.transpose(0, 1), lora_b[lo:hi + 1].float().transpose(1, 2)).sum(0)  # [N, D_out]


APPLY = {"per_slot": _apply_per_slot, "gathered": _apply_gathered, "dense": _apply_dense}
STRATEGIES = ("auto", *APPLY)
GATHER_ELEMENTS = 1 << 22  # "gathered" while the per-pair copies of A and B stay under 16 MiB of float32
DENSE_MACS = 1 << 24       # "dense" while every row against every slot in the span stays under ~17M multiply-adds


def auto_strategy(indices: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> str:
    """Which strategy ``auto`` runs for these indices and slot shapes (see :func:`apply_multi_lora_grouped`)."""
    per_row = indices.numel() * lora_a.shape[1] * (lora_a.shape[2] + lora_b.shape[1])  # N*K*R*(D_in+D_out)
    used = torch.unique(indices[indices >= 0])                                           # sorted
    if used.numel():
        span = int(used[-1]) - int(used[0]) + 1
        if span == used.numel() and per_row * span <= DENSE_MACS:
            return "dense"
    return "gathered" if per_row <= GATHER_ELEMENTS else "per_slot"


def apply_multi_lora_grouped(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                             scales: torch.Tensor, indices: torch.Tensor, mix_weights: torch.Tensor | None = None,
                             *, strategy: str = "auto") -> torch.Tensor:
    """``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]`` in place; returns y.

    Strategies, none with a Python loop over rows:

    * ``per_slot``: one matmul pair per distinct slot in use (prefill: long runs of rows share an adapter).
    * ``gathered``: the A and B of every (row, k) pair gathered into ``[P, R, D_in]`` / ``[P, D_out, R]``, two bmm.
    * ``dense``: every row against every slot of the span ``[min slot, max slot]`` through views of the slot
      tensors (no copies; float32 slots), masked by a ``[N, span]`` coefficient matrix, so each slot's weights are
      read once (decode: a handful of rows, one adapter each, slots allocated side by side). It multiplies zeros by
      the weights of unused slots inside the span, so those must be finite: ``auto`` picks it only when every slot
      of the span is in use.

    ``auto``: ``dense`` when the used slots fill their span and ``N*K*R*(D_in+D_out) * span <= DENSE_MACS``, else
    ``gathered`` when ``N*K*R*(D_in+D_out) <= GATHER_ELEMENTS``, else ``per_slot``.
    """
    indices, mix_weights = check_apply(y, x, lora_a, lora_b, scales, indices, mix_weights)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        strategy = auto_strategy(indices, lora_a, lora_b)
    delta = torch.zeros(y.shape, dtype=torch.float32, device=y.device)   # [N, D_out]
    APPLY[strategy](delta, x, lora_a, lora_b, scales, indices, mix_weights)
    _add_into(y, delta)
    return y
