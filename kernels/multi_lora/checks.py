"""Argument checks shared by every multi-LoRA path: one place that turns bad shapes and dtypes into ValueErrors.

Layout (Punica/vLLM style slot tensors):
  x            [N, D_in]        activations, one row per token
  lora_a       [S, R, D_in]     A of every adapter slot (S preallocated slots, common rank R; pad smaller ranks)
  lora_b       [S, D_out, R]    B of every adapter slot
  scales       [S]              per-slot scale (alpha / r)
  indices      [N, K] int       slot used by row i in mixture position k; -1 = nothing there
  mix_weights  [N, K] float     gate weight of that position (all ones for plain multi-LoRA)
  h            [N, K, R]        shrink output (float32)
  y            [N, D_out]       updated in place by expand
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def check_float(name: str, t: torch.Tensor, ndim: int, layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {_shape(t)}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype} (shape {_shape(t)})")


def _index_matrix(indices: torch.Tensor, n_rows: int) -> torch.Tensor:
    if not isinstance(indices, torch.Tensor) or indices.dtype not in INDEX_DTYPES:
        got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"indices must be an int32/int64 tensor [N, K], got {got}")
    if indices.dim() == 1:
        indices = indices[:, None]
    if indices.dim() != 2 or indices.shape[0] != n_rows:
        raise ValueError(f"indices must be [N={n_rows}, K] (or [N]), got shape {_shape(indices)}")
    return indices


def normalize_indices(indices: torch.Tensor, mix_weights: torch.Tensor | None,
                      n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked ``(indices [N, K], mix_weights [N, K])``; 1-D indices mean K=1, ``None`` weights mean all ones."""
    indices = _index_matrix(indices, n_rows)
    if mix_weights is None:
        mix_weights = torch.ones(indices.shape, dtype=torch.float32, device=indices.device)
    check_float("mix_weights", mix_weights, 2, f"[N={n_rows}, K={indices.shape[1]}]")
    if mix_weights.shape != indices.shape:
        raise ValueError(f"mix_weights must have the shape of indices {_shape(indices)}, "
                         f"got shape {_shape(mix_weights)}")
    return indices, mix_weights


def check_index_values(indices: torch.Tensor, n_slots: int) -> None:
    """Every index in [-1, n_slots). Needs a host sync, so callers skip it on CUDA (as vLLM and Punica do)."""
    if not indices.numel():
        return
    low, high = (int(v) for v in torch.aminmax(indices))
    if low < -1 or high >= n_slots:
        raise ValueError(f"indices must lie in [-1, {n_slots}) for {n_slots} slots, "
                         f"got min {low} max {high} (shape {_shape(indices)})")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")


def check_shrink(x: torch.Tensor, lora_a: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Checks shrink arguments; returns indices as [N, K]."""
    check_float("x", x, 2, "[N, D_in]")
    check_float("lora_a", lora_a, 3, "[S, R, D_in]")
    if lora_a.shape[2] != x.shape[1]:
        raise ValueError(f"lora_a must be [S, R, D_in={x.shape[1]}] to match x {_shape(x)}, "
                         f"got shape {_shape(lora_a)}")
    if lora_a.dtype != x.dtype:
        raise ValueError(f"lora_a dtype {lora_a.dtype} must equal x dtype {x.dtype} (shape {_shape(lora_a)})")
    indices = _index_matrix(indices, x.shape[0])
    check_same_device(x=x, lora_a=lora_a, indices=indices)
    if not x.is_cuda:
        check_index_values(indices, lora_a.shape[0])
    return indices


def _check_b_side(y: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor) -> None:
    check_float("y", y, 2, "[N, D_out]")
    check_float("lora_b", lora_b, 3, "[S, D_out, R]")
    check_float("scales", scales, 1, "[S]")
    if lora_b.shape[1] != y.shape[1]:
        raise ValueError(f"lora_b must be [S, D_out={y.shape[1]}, R] to match y {_shape(y)}, "
                         f"got shape {_shape(lora_b)}")
    if lora_b.dtype != y.dtype:
        raise ValueError(f"lora_b dtype {lora_b.dtype} must equal y dtype {y.dtype} (shape {_shape(lora_b)})")
    if scales.shape[0] != lora_b.shape[0]:
        raise ValueError(f"scales must be [S={lora_b.shape[0]}], got shape {_shape(scales)}")


def check_expand(y: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                 indices: torch.Tensor, mix_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks expand arguments; returns ``(indices [N, K], mix_weights [N, K])``."""
    _check_b_side(y, lora_b, scales)
    indices, mix_weights = normalize_indices(indices, mix_weights, y.shape[0])
    want = [y.shape[0], indices.shape[1], lora_b.shape[2]]
    check_float("h", h, 3, f"[N, K, R] = {want}")
    if list(h.shape) != want:
        raise ValueError(f"h must be [N, K, R] = {want}, got shape {_shape(h)}")
    check_same_device(y=y, h=h, lora_b=lora_b, scales=scales, indices=indices, mix_weights=mix_weights)
    if not y.is_cuda:
        check_index_values(indices, lora_b.shape[0])
    return indices, mix_weights


def check_apply(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                scales: torch.Tensor, indices: torch.Tensor,
                mix_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks the fused call; returns ``(indices [N, K], mix_weights [N, K])``."""
    indices = check_shrink(x, lora_a, indices)
    check_float("lora_b", lora_b, 3, "[S, D_out, R]")
    if (lora_b.shape[0], lora_b.shape[2]) != (lora_a.shape[0], lora_a.shape[1]):
        raise ValueError(f"lora_b must be [S={lora_a.shape[0]}, D_out, R={lora_a.shape[1]}] to match lora_a "
                         f"{_shape(lora_a)}, got shape {_shape(lora_b)}")
    _check_b_side(y, lora_b, scales)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be [N={x.shape[0]}, D_out] to match x {_shape(x)}, got shape {_shape(y)}")
    indices, mix_weights = normalize_indices(indices, mix_weights, x.shape[0])
    check_same_device(x=x, y=y, lora_b=lora_b, scales=scales, mix_weights=mix_weights)
    return indices, mix_weights
