"""OpenAI-Triton conditional RMSNorm: one program per row, float32 inside, computing the loop in
:mod:`.reference`. gamma/beta are addressed through their strides, so a stride-0 broadcast view (one user's
modulation for all of that user's rows) is read without being materialised.

Rows up to MAX_BLOCK_D elements are normalised from registers in one read of x; longer rows take two passes
(sum of squares, then normalise) in MAX_BLOCK_D chunks. Tested for correctness under ``TRITON_INTERPRET=1``;
num_warps follows the Triton layer-norm tutorial and is not tuned.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.conditional_rmsnorm.checks import check_conditional_rms_norm

MAX_BLOCK_D = 8192


@triton.jit
def _modulate(x, r, w_ptr, g_row, b_row, offs, mask, sw_d, sg_d, sb_d):
    w = tl.load(w_ptr + offs * sw_d, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_row + offs * sg_d, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_row + offs * sb_d, mask=mask, other=0.0).to(tl.float32)
    return x * r * w * (1.0 + g) + b


@triton.jit
def _cond_rms_norm_kernel(x_ptr, w_ptr, g_ptr, b_ptr, y_ptr, D, eps,
                          sx_n, sx_d, sw_d, sg_n, sg_d, sb_n, sb_d, sy_n, sy_d,
                          BLOCK_D: tl.constexpr, ONE_BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * sx_n
    g_row = g_ptr + row * sg_n
    b_row = b_ptr + row * sb_n
    y_row = y_ptr + row * sy_n
    offs = tl.arange(0, BLOCK_D)
    if ONE_BLOCK:
        mask = offs < D
        x = tl.load(x_row + offs * sx_d, mask=mask, other=0.0).to(tl.float32)
        r = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)
        y = _modulate(x, r, w_ptr, g_row, b_row, offs, mask, sw_d, sg_d, sb_d)
        tl.store(y_row + offs * sy_d, y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        sq = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            mask = d0 + offs < D
            x = tl.load(x_row + (d0 + offs) * sx_d, mask=mask, other=0.0).to(tl.float32)
            sq += x * x
        r = 1.0 / tl.sqrt(tl.sum(sq, axis=0) / D + eps)
        for d0 in range(0, D, BLOCK_D):
            mask = d0 + offs < D
            x = tl.load(x_row + (d0 + offs) * sx_d, mask=mask, other=0.0).to(tl.float32)
            y = _modulate(x, r, w_ptr, g_row, b_row, d0 + offs, mask, sw_d, sg_d, sb_d)
            tl.store(y_row + (d0 + offs) * sy_d, y.to(y_ptr.dtype.element_ty), mask=mask)


def conditional_rms_norm(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                         eps: float = 1e-6, max_block_d: int = MAX_BLOCK_D) -> torch.Tensor:
    """``x * rsqrt(mean(x^2, -1) + eps) * weight * (1 + gamma) + beta`` in float32, returned in x's dtype."""
    gamma, beta = check_conditional_rms_norm(x, weight, gamma, beta)
    n_rows, dim = x.shape
    y = torch.empty_like(x)
    if y.numel() == 0:
        return y
    block_d = min(triton.next_power_of_2(dim), max_block_d)
    _cond_rms_norm_kernel[(n_rows,)](
        x, weight, gamma, beta, y, dim, eps,
        *x.stride(), weight.stride(0), *gamma.stride(), *beta.stride(), *y.stride(),
        BLOCK_D=block_d, ONE_BLOCK=dim <= block_d, num_warps=min(max(block_d // 256, 1), 8))
    return y
