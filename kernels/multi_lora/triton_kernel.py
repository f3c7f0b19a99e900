"""OpenAI-Triton multi-LoRA in the manner of Punica's BGMV: one program per row (and output block), gathering
that row's adapter from the slot tensors. Computes the loop in :mod:`kernels.multi_lora.reference`.

* ``lora_shrink``: grid ``(N, K)``; program (i, k) loads slot ``s = indices[i, k]`` and accumulates
  ``h[i, k, :] = Σ_d lora_a[s, :, d] * x[i, d]`` over D_in in blocks of BLOCK_D (float32).
* ``lora_expand``: grid ``(N, cdiv(D_out, BLOCK_O))``; program (i, j) sums over k inside the program (so no
  atomics: a row's output block has one writer) ``w[i,k] * scales[s] * lora_b[s, block_j, :] @ h[i, k, :]``,
  then adds it to ``y[i, block_j]`` in place.

Rows whose index is -1 take masked-off loads (no memory traffic) and add zero. Any strides are accepted, including
a y that is a column slice of a wider buffer (e.g. the q part of a fused qkv output).

Correctness is tested under ``TRITON_INTERPRET=1`` on CPU; block sizes are plausible GPU defaults, not tuned:
no split-K for decode-sized batches and no ``tl.dot`` path for long same-adapter runs (SGMV) yet.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.multi_lora.checks import check_apply, check_expand, check_shrink

TILE_ELEMENTS = 8192  # elements of one A or B tile held by a program (fp32: 32 KiB of registers per program)


@triton.jit
def _shrink_kernel(x_ptr, a_ptr, idx_ptr, h_ptr, D, R,
                   sx_n, sx_d, sa_s, sa_r, sa_d, si_n, si_k, sh_n, sh_k, sh_r,
                   BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    k = tl.program_id(1).to(tl.int64)
    slot = tl.load(idx_ptr + row * si_n + k * si_k).to(tl.int64)
    valid = slot >= 0
    slot = tl.maximum(slot, 0)
    # limits rather than `mask & valid`: a scalar bool in `&` breaks the 3.9 interpreter's mask dtype
    r_lim = tl.where(valid, R, 0)
    d_lim = tl.where(valid, D, 0)
    offs_r = tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, BLOCK_D)
    r_mask = offs_r < r_lim
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + offs_d
        d_mask = d < d_lim
        xv = tl.load(x_ptr + row * sx_n + d * sx_d, mask=d_mask, other=0.0).to(tl.float32)        # [BLOCK_D]
        av = tl.load(a_ptr + slot * sa_s + offs_r[:, None] * sa_r + d[None, :] * sa_d,
                     mask=r_mask[:, None] & d_mask[None, :], other=0.0).to(tl.float32)          # [BLOCK_R, BLOCK_D]
        acc += tl.sum(av * xv[None, :], axis=1)
    tl.store(h_ptr + row * sh_n + k * sh_k + offs_r * sh_r, acc, mask=offs_r < R)


@triton.jit
def _expand_kernel(h_ptr, b_ptr, scale_ptr, idx_ptr, w_ptr, y_ptr, D_out, R, K,
                   sh_n, sh_k, sh_r, sb_s, sb_o, sb_r, s_scale, si_n, si_k, sw_n, sw_k, sy_n, sy_o,
                   BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    o_mask = offs_o < D_out
    offs_r = tl.arange(0, BLOCK_R)
    acc = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for k in range(0, K):
        slot = tl.load(idx_ptr + row * si_n + k * si_k).to(tl.int64)
        valid = slot >= 0
        slot = tl.maximum(slot, 0)
        r_mask_k = offs_r < tl.where(valid, R, 0)
        coeff = (tl.load(w_ptr + row * sw_n + k * sw_k).to(tl.float32)
                 * tl.load(scale_ptr + slot * s_scale).to(tl.float32))
        hv = tl.load(h_ptr + row * sh_n + k * sh_k + offs_r * sh_r, mask=r_mask_k, other=0.0).to(tl.float32)
        bv = tl.load(b_ptr + slot * sb_s + offs_o[:, None] * sb_o + offs_r[None, :] * sb_r,
                     mask=o_mask[:, None] & r_mask_k[None, :], other=0.0).to(tl.float32)  # [BLOCK_O, BLOCK_R]
        acc += tl.sum(bv * hv[None, :], axis=1) * tl.where(valid, coeff, 0.0)
    y_ptrs = y_ptr + row * sy_n + offs_o * sy_o
    yv = tl.load(y_ptrs, mask=o_mask, other=0.0).to(tl.float32)
    tl.store(y_ptrs, (yv + acc).to(y_ptr.dtype.element_ty), mask=o_mask)


def _blocks(rank: int, length: int, tile_elements: int) -> tuple[int, int]:
    """(BLOCK_R, block along the long dimension) so that one tile stays near ``tile_elements``."""
    block_r = triton.next_power_of_2(rank)
    return block_r, min(triton.next_power_of_2(length), max(16, tile_elements // block_r))


def lora_shrink(x: torch.Tensor, lora_a: torch.Tensor, indices: torch.Tensor, *,
                tile_elements: int = TILE_ELEMENTS) -> torch.Tensor:
    """``h [N, K, R]`` float32 with ``h[i, k] = x[i] @ lora_a[indices[i, k]].T`` (zeros where the index is -1)."""
    indices = check_shrink(x, lora_a, indices)
    n_rows, n_mix = indices.shape
    rank, d_in = lora_a.shape[1], lora_a.shape[2]
    h = torch.empty((n_rows, n_mix, rank), dtype=torch.float32, device=x.device)
    if h.numel() == 0:
        return h
    block_r, block_d = _blocks(rank, d_in, tile_elements)
    _shrink_kernel[(n_rows, n_mix)](
        x, lora_a, indices, h, d_in, rank,
        x.stride(0), x.stride(1), *lora_a.stride(), *indices.stride(), *h.stride(),
        BLOCK_R=block_r, BLOCK_D=block_d)
    return h


def lora_expand(y: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                indices: torch.Tensor, mix_weights: torch.Tensor | None = None, *,
                tile_elements: int = TILE_ELEMENTS) -> torch.Tensor:
    """``y[i] += Σ_k mix_weights[i, k] * (h[i, k] @ lora_b[s].T) * scales[s]`` in place; returns y."""
    indices, mix_weights = check_expand(y, h, lora_b, scales, indices, mix_weights)
    n_rows, n_mix = indices.shape
    d_out, rank = lora_b.shape[1], lora_b.shape[2]
    if n_rows == 0 or d_out == 0:
        return y
    block_r, block_o = _blocks(rank, d_out, tile_elements)
    grid = (n_rows, triton.cdiv(d_out, block_o))
    _expand_kernel[grid](
        h, lora_b, scales, indices, mix_weights, y, d_out, rank, n_mix,
        *h.stride(), *lora_b.stride(), scales.stride(0), *indices.stride(), *mix_weights.stride(), *y.stride(),
        BLOCK_R=block_r, BLOCK_O=block_o)
    return y


def apply_multi_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                     scales: torch.Tensor, indices: torch.Tensor,
                     mix_weights: torch.Tensor | None = None, *,
                     tile_elements: int = TILE_ELEMENTS) -> torch.Tensor:
    """Shrink then expand (two launches, h in float32).

    ``y[i] += Σ_k w[i,k] * ((x[i] @ A[s].T) @ B[s].T) * scales[s]`` in place; returns y. ``tile_elements`` bounds
    the A/B tile a program holds (block sizes follow from it); the interpreter runs faster with larger tiles.
    """
    indices, mix_weights = check_apply(y, x, lora_a, lora_b, scales, indices, mix_weights)
    h = lora_shrink(x, lora_a, indices, tile_elements=tile_elements)
    return lora_expand(y, h, lora_b, scales, indices, mix_weights, tile_elements=tile_elements)
