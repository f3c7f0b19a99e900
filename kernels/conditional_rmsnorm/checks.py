"""Argument checks for conditional RMSNorm: shapes/dtypes to ValueErrors, per-row modulation to [N, D] views."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_float(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype} (shape {list(t.shape)})")


def check_conditional_rms_norm(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor,
                               beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks the arguments; returns gamma and beta as [N, D] views (stride 0 along rows when broadcast).

    gamma/beta may be [N, D] with any strides, or [1, D] / [D] (one modulation for every row).
    """
    for name, t in (("x", x), ("weight", weight), ("gamma", gamma), ("beta", beta)):
        _check_float(name, t)
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D] (flatten leading dimensions first), got shape {list(x.shape)}")
    n_rows, dim = x.shape
    if list(weight.shape) != [dim]:
        raise ValueError(f"weight must be [D={dim}] to match x {list(x.shape)}, got shape {list(weight.shape)}")
    views = []
    for name, t in (("gamma", gamma), ("beta", beta)):
        if t.dim() not in (1, 2) or t.shape[-1] != dim or (t.dim() == 2 and t.shape[0] not in (1, n_rows)):
            raise ValueError(f"{name} must be [N={n_rows}, D={dim}] (or [1, D] / [D]) to match x, "
                             f"got shape {list(t.shape)}")
        views.append(t.expand(n_rows, dim))
    devices = {x.device, weight.device, gamma.device, beta.device}
    if len(devices) > 1:
        raise ValueError(f"x, weight, gamma and beta must be on one device, got {sorted(map(str, devices))}")
    return views[0], views[1]
