"""Multi-LoRA: the Triton kernels (interpreted on CPU) and the grouped CPU path against the per-row reference loop,
over real hidden sizes, ranks and adapter mixes; the dispatcher's choice; ValueErrors for bad arguments."""

from __future__ import annotations

import os
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import multi_lora
from kernels.multi_lora import grouped, reference, triton_kernel

DEVICE = os.environ.get("KERNELS_TEST_DEVICE", "cpu")
# The interpreter pays per Triton op, so big shapes run with big tiles there; compiled runs keep the GPU default.
BIG_TILE = 1 << 16 if os.environ.get("TRITON_INTERPRET") == "1" else triton_kernel.TILE_ELEMENTS
RANKS = [4, 8, 16, 64]
MIXES = ["rows_without_adapter", "all_same", "all_different", "k2_with_minus_one"]
TOL = {torch.float32: dict(rtol=1e-5, atol=2e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
       torch.float16: dict(rtol=2e-3, atol=2e-3)}
H_TOL = dict(rtol=1e-5, atol=1e-4)  # h is float32 in every path, whatever the input dtype


def mix_indices(mix: str, n_rows: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(indices [N, K], mix_weights [N, K], number of slots) for one named adapter mix."""
    if mix == "rows_without_adapter":
        idx = torch.tensor([[2], [-1], [0], [-1], [1], [-1]])[:n_rows]
        return idx, torch.ones(idx.shape), 3
    if mix == "all_same":
        return torch.full((n_rows, 1), 3), torch.ones(n_rows, 1), 4       # the last slot: offsets matter
    if mix == "all_different":
        return torch.arange(n_rows)[:, None].flip(0), torch.ones(n_rows, 1), n_rows
    # K=2 gate: two experts, one expert, -1 in either slot (with a weight that must be ignored), same slot twice
    idx = torch.tensor([[0, 1], [1, -1], [-1, 2], [-1, -1], [2, 2], [1, 0]])[:n_rows]
    weights = torch.tensor([[0.7, 0.3], [1.0, 5.0], [9.0, 0.5], [3.0, 3.0], [0.25, 0.5], [0.4, 0.6]])[:n_rows]
    return idx, weights, 3


def make_case(d_in: int, d_out: int, rank: int, mix: str, dtype: torch.dtype, n_rows: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    indices, weights, n_slots = mix_indices(mix, n_rows)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype=dtype, device=DEVICE)

    x = rand(n_rows, d_in)                                  # [N, D_in]
    lora_a = rand(n_slots, rank, d_in, scale=d_in ** -0.5)  # [S, R, D_in]
    lora_b = rand(n_slots, d_out, rank, scale=rank ** -0.5)  # [S, D_out, R]
    scales = (0.5 + torch.rand(n_slots, generator=gen)).to(DEVICE)
    y = rand(n_rows, d_out)                                 # the base layer's output, updated in place
    return dict(y=y, x=x, lora_a=lora_a, lora_b=lora_b, scales=scales, indices=indices.to(DEVICE),
                mix_weights=weights.to(DEVICE))


def check_kernels(case: dict, tile_elements: int = triton_kernel.TILE_ELEMENTS) -> None:
    """Triton shrink vs reference shrink (h), then Triton expand vs reference expand (y)."""
    y_ref = reference.apply_multi_lora_reference(case["y"].clone(), case["x"], case["lora_a"], case["lora_b"],
                                                 case["scales"], case["indices"], case["mix_weights"])
    h_ref = reference.lora_shrink_reference(case["x"], case["lora_a"], case["indices"])
    h = triton_kernel.lora_shrink(case["x"], case["lora_a"], case["indices"], tile_elements=tile_elements)
    torch.testing.assert_close(h, h_ref, **H_TOL)
    y = case["y"].clone()
    out = triton_kernel.lora_expand(y, h, case["lora_b"], case["scales"], case["indices"], case["mix_weights"],
                                    tile_elements=tile_elements)
    assert out is y
    torch.testing.assert_close(y, y_ref, **TOL[y.dtype])


# ---- Triton kernels (interpreter on CPU) --------------------------------------------------------------------------

@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("d_in,d_out", [(64, 96), (512, 384)])
def test_kernels_match_reference_fp32(d_in, d_out, rank, mix):
    check_kernels(make_case(d_in, d_out, rank, mix, torch.float32, n_rows=6))


@pytest.mark.parametrize("mix,rank", list(zip(MIXES, RANKS)) + list(zip(MIXES, reversed(RANKS))))
@pytest.mark.parametrize("d_in,d_out", [(512, 384)])
def test_kernels_match_reference_bf16(d_in, d_out, rank, mix):
    check_kernels(make_case(d_in, d_out, rank, mix, torch.bfloat16, n_rows=6))


# Real hidden sizes (Qwen2 7B-ish 3584/4096 and 72B 8192 with its 1024-wide GQA k/v projection), few rows.
@pytest.mark.parametrize("d_in,d_out,rank,mix,dtype", [
    (4096, 4096, 4, "rows_without_adapter", torch.float32),
    (4096, 1000, 8, "k2_with_minus_one", torch.bfloat16),
    (4096, 4096, 16, "all_different", torch.bfloat16),
    (4096, 512, 64, "all_same", torch.float32),
    (8192, 1024, 4, "all_same", torch.bfloat16),
    (8192, 1024, 8, "all_different", torch.float32),
    (8192, 1024, 16, "rows_without_adapter", torch.bfloat16),
    (8192, 1024, 64, "k2_with_minus_one", torch.float32),
])
def test_kernels_match_reference_at_real_hidden_sizes(d_in, d_out, rank, mix, dtype):
    check_kernels(make_case(d_in, d_out, rank, mix, dtype, n_rows=3), tile_elements=BIG_TILE)


def test_kernel_fp16_and_strided_output():
    """y a column slice of a wider buffer (the q part of a fused qkv output), x a non-contiguous view."""
    case = make_case(96, 64, 8, "k2_with_minus_one", torch.float16, n_rows=5)
    fused = torch.randn(5, 160, dtype=torch.float16, device=DEVICE)
    y_view = fused[:, 32:96]                                  # [N, D_out], row stride 160
    x_view = torch.randn(96, 5, dtype=torch.float16, device=DEVICE).T
    expected = reference.apply_multi_lora_reference(y_view.clone(), x_view, case["lora_a"], case["lora_b"],
                                                    case["scales"], case["indices"], case["mix_weights"])
    untouched = fused[:, :32].clone(), fused[:, 96:].clone()
    triton_kernel.apply_multi_lora(y_view, x_view, case["lora_a"], case["lora_b"], case["scales"],
                                   case["indices"], case["mix_weights"])
    torch.testing.assert_close(fused[:, 32:96], expected, **TOL[torch.float16])
    assert torch.equal(fused[:, :32], untouched[0]) and torch.equal(fused[:, 96:], untouched[1])


def test_activations_and_output_in_different_dtypes():
    """x / lora_a in bfloat16, y / lora_b in float32 (e.g. an fp32 accumulation buffer)."""
    case = make_case(64, 96, 8, "k2_with_minus_one", torch.bfloat16, n_rows=6)
    y0, lora_b = case["y"].float(), case["lora_b"].float()
    args = (case["x"], case["lora_a"], lora_b, case["scales"], case["indices"], case["mix_weights"])
    expected = reference.apply_multi_lora_reference(y0.clone(), *args)
    for impl in (triton_kernel.apply_multi_lora, grouped.apply_multi_lora_grouped, multi_lora.apply_multi_lora):
        torch.testing.assert_close(impl(y0.clone(), *args), expected, **TOL[torch.float32])


# ---- grouped CPU path ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("d_in,d_out", [(64, 96), (512, 384), (4096, 4096), (8192, 1024)])
def test_grouped_matches_reference(d_in, d_out, rank, mix, dtype):
    case = make_case(d_in, d_out, rank, mix, dtype, n_rows=6 if d_in <= 512 else 4)
    args = [case[k] for k in ("x", "lora_a", "lora_b", "scales", "indices", "mix_weights")]
    expected = reference.apply_multi_lora_reference(case["y"].clone(), *args)
    for strategy in grouped.STRATEGIES:
        y = case["y"].clone()
        assert grouped.apply_multi_lora_grouped(y, *args, strategy=strategy) is y
        torch.testing.assert_close(y, expected, **TOL[dtype], msg=lambda m: f"strategy={strategy}: {m}")
    h = grouped.lora_shrink_grouped(case["x"], case["lora_a"], case["indices"])
    torch.testing.assert_close(h, reference.lora_shrink_reference(case["x"], case["lora_a"], case["indices"]),
                               **H_TOL)
    y2 = grouped.lora_expand_grouped(case["y"].clone(), h, case["lora_b"], case["scales"], case["indices"],
                                     case["mix_weights"])
    torch.testing.assert_close(y2, expected, **TOL[dtype])


@pytest.mark.parametrize("strategy", grouped.STRATEGIES)
def test_grouped_with_no_adapter_anywhere_leaves_y_bit_identical(strategy):
    case = make_case(64, 96, 8, "all_same", torch.bfloat16, n_rows=6)
    y = case["y"].clone()
    grouped.apply_multi_lora_grouped(y, case["x"], case["lora_a"], case["lora_b"], case["scales"],
                                     torch.full((6, 2), -1, device=DEVICE), torch.ones(6, 2, device=DEVICE),
                                     strategy=strategy)
    assert torch.equal(y, case["y"])


def test_grouped_auto_strategy(monkeypatch):
    used = []
    for name in ("per_slot", "gathered", "dense"):
        monkeypatch.setitem(grouped.APPLY, name, lambda *a, name=name: used.append(name))
    a, b, scales = torch.zeros(8, 16, 2048), torch.zeros(8, 2048, 16), torch.ones(8)
    for indices in (torch.arange(8),                      # decode, slots 0..7 all in use: dense
                    torch.tensor([0, 7, 0, 7, 0, 7, -1, 7]),  # decode, span 0..7 with holes: gathered
                    torch.arange(1024) % 8):              # prefill: per slot
        n_rows = len(indices)
        grouped.apply_multi_lora_grouped(torch.zeros(n_rows, 2048), torch.zeros(n_rows, 2048), a, b, scales, indices)
    assert used == ["dense", "gathered", "per_slot"]
    with pytest.raises(ValueError, match="strategy must be one of"):
        grouped.apply_multi_lora_grouped(torch.zeros(8, 2048), torch.zeros(8, 2048), a, b, scales, torch.arange(8),
                                         strategy="fast")


def test_nan_weights_at_minus_one_are_ignored():
    case = make_case(64, 96, 8, "k2_with_minus_one", torch.float32, n_rows=6)
    weights = case["mix_weights"].clone()
    weights[case["indices"] < 0] = float("nan")
    args = [case[k] for k in ("x", "lora_a", "lora_b", "scales", "indices")] + [weights]
    expected = reference.apply_multi_lora_reference(case["y"].clone(), *args)
    assert not expected.isnan().any()
    for strategy in grouped.STRATEGIES:
        got = grouped.apply_multi_lora_grouped(case["y"].clone(), *args, strategy=strategy)
        torch.testing.assert_close(got, expected, **TOL[torch.float32])
    got = triton_kernel.apply_multi_lora(case["y"].clone(), *args)
    torch.testing.assert_close(got, expected, **TOL[torch.float32])


def test_grouped_on_many_rows_with_one_token_per_adapter_run():
    """A prefill-like batch: 8 sequences x 16 tokens, each sequence its own adapter, some without."""
    case = make_case(256, 128, 16, "all_different", torch.float32, n_rows=8)
    seq_slots = torch.tensor([0, 1, -1, 3, 4, -1, 6, 7], device=DEVICE)
    x = torch.randn(128, 256, device=DEVICE)
    indices = seq_slots.repeat_interleave(16)                 # [N] means K = 1, weight 1
    y0 = torch.randn(128, 128, device=DEVICE)
    expected = reference.apply_multi_lora_reference(y0.clone(), x, case["lora_a"], case["lora_b"],
                                                    case["scales"], indices)
    got = multi_lora.apply_multi_lora(y0.clone(), x, case["lora_a"], case["lora_b"], case["scales"], indices)
    torch.testing.assert_close(got, expected, **TOL[torch.float32])


@settings(max_examples=40, deadline=None)
@given(n_rows=st.integers(0, 9), n_mix=st.integers(1, 3), n_slots=st.integers(1, 5), rank=st.integers(1, 9),
       d_in=st.integers(1, 40), d_out=st.integers(1, 40), data=st.data())
def test_grouped_strategies_match_reference_on_arbitrary_shapes_and_indices(n_rows, n_mix, n_slots, rank, d_in,
                                                                              d_out, data):
    indices = torch.tensor(data.draw(st.lists(st.lists(st.integers(-1, n_slots - 1), min_size=n_mix,
                                                       max_size=n_mix), min_size=n_rows, max_size=n_rows)),
                           dtype=torch.int64).reshape(n_rows, n_mix)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    x, y = torch.randn(n_rows, d_in, generator=gen), torch.randn(n_rows, d_out, generator=gen)
    lora_a, lora_b = torch.randn(n_slots, rank, d_in, generator=gen), torch.randn(n_slots, d_out, rank, generator=gen)
    scales, weights = torch.rand(n_slots, generator=gen), torch.rand(n_rows, n_mix, generator=gen)
    expected = reference.apply_multi_lora_reference(y.clone(), x, lora_a, lora_b, scales, indices, weights)
    for strategy in grouped.STRATEGIES:
        got = grouped.apply_multi_lora_grouped(y.clone(), x, lora_a, lora_b, scales, indices, weights,
                                               strategy=strategy)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# ---- dispatcher -----------------------------------------------------------------------------------------------------

def test_dispatcher_uses_the_grouped_path_on_cpu_tensors(monkeypatch):
    case = make_case(64, 96, 4, "k2_with_minus_one", torch.float32, n_rows=6)
    case = {k: v.cpu() for k, v in case.items()}
    assert not multi_lora.uses_triton(case["x"])

    def no_triton():
        raise AssertionError("the Triton kernel must not be used for CPU tensors")

    monkeypatch.setattr(multi_lora, "_triton", no_triton)
    calls = []
    real = grouped.apply_multi_lora_grouped
    monkeypatch.setattr(grouped, "apply_multi_lora_grouped", lambda *a: calls.append(1) or real(*a))
    expected = reference.apply_multi_lora_reference(case["y"].clone(), case["x"], case["lora_a"], case["lora_b"],
                                                    case["scales"], case["indices"], case["mix_weights"])
    got = multi_lora.apply_multi_lora(case["y"].clone(), case["x"], case["lora_a"], case["lora_b"],
                                      case["scales"], case["indices"], case["mix_weights"])
    assert calls == [1]
    torch.testing.assert_close(got, expected, **TOL[torch.float32])
    h = multi_lora.lora_shrink(case["x"], case["lora_a"], case["indices"])
    y = multi_lora.lora_expand(case["y"].clone(), h, case["lora_b"], case["scales"], case["indices"],
                               case["mix_weights"])
    torch.testing.assert_close(y, expected, **TOL[torch.float32])


# ---- argument errors ------------------------------------------------------------------------------------------------

def _good():
    n, d_in, d_out, rank, slots = 4, 32, 48, 8, 3
    return dict(y=torch.zeros(n, d_out), x=torch.randn(n, d_in), lora_a=torch.randn(slots, rank, d_in),
                lora_b=torch.randn(slots, d_out, rank), scales=torch.ones(slots),
                indices=torch.tensor([[0], [1], [-1], [2]]), mix_weights=torch.ones(n, 1))


BAD_ARGUMENTS = [
    ("x", torch.randn(4, 2, 32), "x must be [N, D_in], got shape [4, 2, 32]"),
    ("x", torch.ones(4, 32, dtype=torch.int64), "x must be float32, float16 or bfloat16, got torch.int64"),
    ("lora_a", torch.randn(3, 8, 33), "lora_a must be [S, R, D_in=32] to match x [4, 32], got shape [3, 8, 33]"),
    ("lora_a", torch.randn(3, 8, 32, dtype=torch.bfloat16), "lora_a dtype torch.bfloat16 must equal x dtype"),
    ("lora_b", torch.randn(3, 47, 8), "lora_b must be [S, D_out=48, R] to match y [4, 48], got shape [3, 47, 8]"),
    ("lora_b", torch.randn(2, 48, 8),
     "lora_b must be [S=3, D_out, R=8] to match lora_a [3, 8, 32], got shape [2, 48, 8]"),
    ("y", torch.zeros(5, 48), "y must be [N=4, D_out] to match x [4, 32], got shape [5, 48]"),
    ("scales", torch.ones(2), "scales must be [S=3], got shape [2]"),
    ("indices", torch.zeros(4, 1), "indices must be an int32/int64 tensor [N, K], got torch.float32"),
    ("indices", torch.zeros(3, 1, dtype=torch.int64), "indices must be [N=4, K] (or [N]), got shape [3, 1]"),
    ("indices", torch.tensor([[0], [3], [-1], [1]]), "indices must lie in [-1, 3) for 3 slots, got min -1 max 3"),
    ("mix_weights", torch.ones(4, 2), "mix_weights must have the shape of indices [4, 1], got shape [4, 2]"),
]


@pytest.mark.parametrize("impl", [multi_lora.apply_multi_lora, grouped.apply_multi_lora_grouped,
                                  reference.apply_multi_lora_reference, triton_kernel.apply_multi_lora],
                         ids=["dispatcher", "grouped", "reference", "triton"])
@pytest.mark.parametrize("name,value,message", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_errors_naming_argument_and_shape(impl, name, value, message):
    args = _good()
    args[name] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        impl(**args)


def test_expand_checks_h_shape():
    args = _good()
    with pytest.raises(ValueError, match=re.escape("h must be [N, K, R] = [4, 1, 8], got shape [4, 1, 4]")):
        multi_lora.lora_expand(args["y"], torch.zeros(4, 1, 4), args["lora_b"], args["scales"], args["indices"])
