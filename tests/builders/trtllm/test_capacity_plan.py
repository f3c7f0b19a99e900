"""docs/capacity.md is generated from the presets and stays in sync; spot checks of its arithmetic."""

from __future__ import annotations

import pytest

from builders.trtllm import capacity_plan
from builders.trtllm.gpu_specs import GPUS, GpuSpec


def test_committed_capacity_doc_is_up_to_date():
    assert capacity_plan.CAPACITY_DOC.exists(), "run `python -m builders.trtllm.capacity_plan`"
    assert capacity_plan.CAPACITY_DOC.read_text() == capacity_plan.render(), \
        "docs/capacity.md drifted: run `python -m builders.trtllm.capacity_plan`"


def test_doc_states_the_72b_rank8_lora_size():
    # Rank-8 q/k/v/o LoRA of Qwen2-72B in fp16: 65,536,000 bytes = 65.5 MB (62.5 MiB); the "about 65 MB" claim holds.
    row = next(line for line in capacity_plan.render().splitlines() if line.startswith("| 72b |"))
    assert row.rstrip(" |").endswith("65.5")


def test_decode_bound_is_weights_over_bandwidth():
    a = capacity_plan.TrafficAssumptions()
    e = capacity_plan.estimate("72b", "fp8", 4, "H100", a)
    weights = e.config.memory_report().weights["total"]
    assert e.decode_bound_ms == pytest.approx(1e3 * weights / 3.35e12)
    assert 5.0 < e.decode_bound_ms < 7.0                    # ~19 GiB per GPU over 3.35 TB/s
    h200 = capacity_plan.estimate("72b", "fp8", 4, "H200", a)
    assert h200.decode_bound_ms == pytest.approx(e.decode_bound_ms * 3.35 / 4.8)


def test_budget_batch_meets_the_turn_budget():
    a = capacity_plan.TrafficAssumptions()
    for row in capacity_plan.BUDGET_CONFIGS:
        e = capacity_plan.estimate(*row, a)
        assert 0 <= e.budget_batch <= e.config.max_batch_size
        if e.budget_batch:
            report = e.config.memory_report()
            per_request = (a.prompt_tokens + a.reply_tokens // 2) * report.kv_bytes_per_token_per_gpu \
                + report.lora_adapter_bytes_per_gpu
            step_ms = 1e3 * (report.weights["total"] + e.budget_batch * per_request) / (
                e.gpu.hbm_tb_s * 1e12 * a.hbm_efficiency)
            total = a.network_ms + a.retrieval_ms + e.prefill_ms + (1 + a.reply_tokens) * step_ms
            assert total <= a.turn_budget_ms


def test_node_counts_grow_with_users():
    a = capacity_plan.TrafficAssumptions()
    text = capacity_plan.render(a)
    assert "| 100× | 500,000 |" in text
    for row in capacity_plan.BUDGET_CONFIGS:
        e = capacity_plan.estimate(*row, a)
        assert e.users_per_node > 0 and e.engines_per_node * row[2] == 8


def test_gpu_table_and_assumptions_validate():
    assert GPUS["H200"].hbm_tb_s > GPUS["H100"].hbm_tb_s and GPUS["H200"].usable_gib > GPUS["H100"].usable_gib
    with pytest.raises(ValueError, match="GpuSpec.hbm_tb_s"):
        GpuSpec("x", 1, 1.0, 0.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="TrafficAssumptions.prompt_tokens"):
        capacity_plan.TrafficAssumptions(prompt_tokens=0)
