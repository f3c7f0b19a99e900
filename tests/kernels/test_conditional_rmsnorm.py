"""Conditional RMSNorm: the Triton kernel (interpreted on CPU) and the CPU path against the reference; with
gamma = beta = 0 the reference and the CPU path equal plain RMSNorm (and Qwen2's RMSNorm) bit for bit in fp32."""

from __future__ import annotations

import os
import re

import pytest
import torch
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from kernels import conditional_rmsnorm
from kernels.conditional_rmsnorm import cpu, reference, triton_kernel

DEVICE = os.environ.get("KERNELS_TEST_DEVICE", "cpu")
HIDDEN = [64, 512, 1000, 4096, 8192]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
       torch.float16: dict(rtol=2e-3, atol=2e-3)}
ROW_TO_USER = torch.tensor([0, 2, 2, 1, 0])


def make_inputs(dim: int, dtype: torch.dtype, layout: str, n_rows: int = 5, seed: int = 0):
    """x, weight, gamma, beta with the modulation laid out as the serving code produces it."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=gen)).to(dtype=dtype, device=DEVICE)

    x = rand(n_rows, dim, scale=3.0)
    weight = rand(dim, scale=0.1, shift=1.0)
    if layout == "per_row":                       # [N, D] contiguous
        gamma, beta = rand(n_rows, dim, scale=0.2), rand(n_rows, dim, scale=0.2)
    elif layout == "gathered_users":              # gamma_user[row_to_user]
        gamma_user, beta_user = rand(3, dim, scale=0.2), rand(3, dim, scale=0.2)
        rows = ROW_TO_USER[:n_rows].to(DEVICE)
        gamma, beta = gamma_user[rows], beta_user[rows]
    elif layout == "expanded_one_user":           # one user's vector, stride 0 along rows
        gamma, beta = rand(1, dim, scale=0.2).expand(n_rows, dim), rand(dim, scale=0.2).expand(n_rows, dim)
    else:                                         # [D] and [1, D]: the function broadcasts them itself
        gamma, beta = rand(dim, scale=0.2), rand(1, dim, scale=0.2)
    return x, weight, gamma, beta


LAYOUTS = ["per_row", "gathered_users", "expanded_one_user", "vector"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dim", HIDDEN)
def test_kernel_and_cpu_path_match_reference(dim, layout, dtype):
    x, weight, gamma, beta = make_inputs(dim, dtype, layout)
    expected = reference.conditional_rms_norm_reference(x, weight, gamma, beta)
    got = triton_kernel.conditional_rms_norm(x, weight, gamma, beta)
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got, expected, **TOL[dtype])
    assert torch.equal(cpu.conditional_rms_norm_cpu(x, weight, gamma, beta), expected)  # same ops, same order


@pytest.mark.parametrize("dim,max_block_d", [(8192, 1024), (1000, 256), (4096, 4096)])
def test_kernel_two_pass_path_for_rows_longer_than_a_block(dim, max_block_d):
    x, weight, gamma, beta = make_inputs(dim, torch.float32, "gathered_users")
    expected = reference.conditional_rms_norm_reference(x, weight, gamma, beta)
    got = triton_kernel.conditional_rms_norm(x, weight, gamma, beta, max_block_d=max_block_d)
    torch.testing.assert_close(got, expected, **TOL[torch.float32])


def test_kernel_fp16_strided_x_and_custom_eps():
    x, weight, gamma, beta = make_inputs(96, torch.float16, "expanded_one_user")
    wide = torch.randn(5, 200, dtype=torch.float16, device=DEVICE) * 1e-3
    wide[:, 50:146] = x
    x_view = wide[:, 50:146]                                # row stride 200
    expected = reference.conditional_rms_norm_reference(x_view, weight, gamma, beta, eps=1e-2)
    got = triton_kernel.conditional_rms_norm(x_view, weight, gamma, beta, eps=1e-2)
    torch.testing.assert_close(got, expected, **TOL[torch.float16])


@pytest.mark.parametrize("dim", HIDDEN)
def test_zero_modulation_is_plain_rms_norm_bit_for_bit(dim):
    x, weight, _, _ = make_inputs(dim, torch.float32, "per_row")
    zeros = torch.zeros_like(x)
    plain = reference.rms_norm_reference(x, weight)
    assert torch.equal(reference.conditional_rms_norm_reference(x, weight, zeros, zeros), plain)
    assert torch.equal(cpu.conditional_rms_norm_cpu(x, weight, zeros, zeros), plain)
    assert torch.equal(conditional_rmsnorm.conditional_rms_norm(x, weight, zeros, zeros), plain)
    qwen2 = Qwen2RMSNorm(dim, eps=1e-6).to(DEVICE)        # the base model's own norm
    with torch.no_grad():
        qwen2.weight.copy_(weight)
        assert torch.equal(qwen2(x), plain)
    # the kernel sums squares in another order: equal to float32 rounding, not bit for bit
    torch.testing.assert_close(triton_kernel.conditional_rms_norm(x, weight, zeros, zeros), plain,
                               rtol=1e-6, atol=1e-6)


def test_zero_modulation_in_bf16_equals_plain_rms_norm_computed_in_fp32():
    x, weight, _, _ = make_inputs(512, torch.bfloat16, "per_row")
    zeros = torch.zeros_like(x)
    assert torch.equal(cpu.conditional_rms_norm_cpu(x, weight, zeros, zeros), reference.rms_norm_reference(x, weight))


def test_dispatcher_uses_the_cpu_path_on_cpu_tensors(monkeypatch):
    x, weight, gamma, beta = (t.cpu() for t in make_inputs(64, torch.float32, "per_row"))
    assert not conditional_rmsnorm.uses_triton(x)
    monkeypatch.setattr(triton_kernel, "conditional_rms_norm",
                        lambda *a, **k: pytest.fail("the Triton kernel must not be used for CPU tensors"))
    calls = []
    monkeypatch.setattr(conditional_rmsnorm, "conditional_rms_norm_cpu",
                        lambda *a: calls.append(1) or cpu.conditional_rms_norm_cpu(*a))
    got = conditional_rmsnorm.conditional_rms_norm(x, weight, gamma, beta, eps=1e-5)
    assert calls == [1]
    assert torch.equal(got, reference.conditional_rms_norm_reference(x, weight, gamma, beta, eps=1e-5))


BAD_ARGUMENTS = [
    ("x", torch.randn(2, 3, 16), "x must be [N, D] (flatten leading dimensions first), got shape [2, 3, 16]"),
    ("x", torch.ones(4, 16, dtype=torch.int32), "x must be float32, float16 or bfloat16, got torch.int32"),
    ("weight", torch.ones(15), "weight must be [D=16] to match x [4, 16], got shape [15]"),
    ("gamma", torch.zeros(4, 17), "gamma must be [N=4, D=16] (or [1, D] / [D]) to match x, got shape [4, 17]"),
    ("beta", torch.zeros(3, 16), "beta must be [N=4, D=16] (or [1, D] / [D]) to match x, got shape [3, 16]"),
    ("beta", torch.zeros(4, 16, dtype=torch.float64), "beta must be float32, float16 or bfloat16, got torch.float64"),
]


@pytest.mark.parametrize("impl", [conditional_rmsnorm.conditional_rms_norm, cpu.conditional_rms_norm_cpu,
                                  reference.conditional_rms_norm_reference, triton_kernel.conditional_rms_norm],
                         ids=["dispatcher", "cpu", "reference", "triton"])
@pytest.mark.parametrize("name,value,message", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_errors_naming_argument_and_shape(impl, name, value, message):
    args = dict(x=torch.randn(4, 16), weight=torch.ones(16), gamma=torch.zeros(4, 16), beta=torch.zeros(4, 16))
    args[name] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        impl(**args)
