"""Capacity plan for the GPU generator: writes ``docs/capacity.md`` from the engine presets and GPU specs.

    python -m builders.trtllm.capacity_plan            # rewrites docs/capacity.md (a test fails on drift)

Every number in the document is computed here from ``EngineBuildConfig`` presets, ``memory_plan`` and ``GPUS``
under the ``TrafficAssumptions`` listed at its top; nothing is typed in by hand and nothing was measured on a GPU.
The model is the usual first-order one: decode is HBM-bandwidth bound (each step reads this rank's weights, the
batch's KV cache and the batch's adapters), prefill is compute bound at an assumed MFU.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

from builders.trtllm import memory_plan
from builders.trtllm.engine_config import EngineBuildConfig
from builders.trtllm.gpu_specs import GPUS, GpuSpec
from builders.trtllm.model_shape import PRESET_SHAPES

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPACITY_DOC = REPO_ROOT / "docs" / "capacity.md"
GIB, MB = memory_plan.GIB, 1e6


@dataclass(frozen=True)
class TrafficAssumptions:
    """Inputs of the plan (assumptions, not measurements); change them here and regenerate."""

    prompt_tokens: int = 1500          # system + profile facts + 10 retrieved items + last turns
    reply_tokens: int = 48             # a short reply naming 3-5 items
    turn_budget_ms: float = 500.0      # full chat turn, p95 target
    retrieval_ms: float = 40.0         # encoder+retriever+reranker: chat first token p95 39.1 ms on 2 CPU cores
    network_ms: float = 30.0           # client <-> gateway <-> Triton, both ways
    hbm_efficiency: float = 0.7        # achieved / peak HBM bandwidth in decode
    prefill_mfu: float = 0.4           # achieved / peak tensor throughput in prefill
    think_time_s: float = 30.0         # a user's pause between turns
    peak_active_users: int = 5_000     # users inside a chat at the daily peak (1x)
    registered_users: int = 1_000_000  # users with a personal adapter (1x)
    host_lora_cache_gib: float = 256.0  # lora_cache_host_memory_bytes per node
    lora_rank: int = 8

    def __post_init__(self):
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"TrafficAssumptions.{f.name} must be > 0, got {getattr(self, f.name)!r}")
        if not (self.hbm_efficiency <= 1 and self.prefill_mfu <= 1):
            raise ValueError("TrafficAssumptions.hbm_efficiency and prefill_mfu must be <= 1")


# (preset, quant, tp, gpu) rows the plan covers; the 72B rows are the production candidates.
SERVING_CONFIGS = (
    ("0.5b", "bf16", 1, "H100"), ("7b", "bf16", 1, "H100"),
    ("72b", "fp8", 4, "H100"), ("72b", "fp8", 4, "H200"),
    ("72b", "bf16", 8, "H100"), ("72b", "bf16", 8, "H200"),
    ("72b", "int4_awq", 1, "H200"),
)
BUDGET_CONFIGS = [c for c in SERVING_CONFIGS if c[0] == "72b" and c[1] in ("fp8", "bf16")]
SCALES = (1, 10, 100)


@dataclass(frozen=True)
class ServingEstimate:
    """One engine configuration on one GPU type, at the build's max batch."""

    label: str
    config: EngineBuildConfig
    gpu: GpuSpec
    weights_gib: float
    decode_bound_ms: float             # weights / peak bandwidth: the floor for one token at batch 1
    step_ms: float                     # one decode step at max batch, realistic bandwidth
    prefill_ms: float
    ttft_ms: float
    turn_gpu_ms: float                 # TTFT + reply tokens
    tokens_in_budget: int              # reply tokens that fit in the turn budget after the other parts
    adapter_mb: float                  # whole adapter, all ranks
    adapter_gpu_mb: float              # one rank's share
    adapters_per_gpu: int              # leftover memory (after weights, full KV, reserve) / adapter share
    engines_per_node: int
    turns_per_s_node: float
    users_per_node: int                # concurrent chat users a node sustains (Little's law)
    host_adapters_per_node: int
    budget_batch: int                  # largest batch whose full turn (reply_tokens) stays within the budget
    budget_turns_per_s_node: float


def estimate(preset: str, quant: str, tp: int, gpu_key: str, a: TrafficAssumptions) -> ServingEstimate:
    gpu = GPUS[gpu_key]
    config = EngineBuildConfig.for_preset(preset, quant=quant, tp=tp, gpu_memory_gib=gpu.usable_gib,
                                          max_lora_rank=a.lora_rank)
    report = config.memory_report()
    weights = report.weights["total"]
    batch, context = config.max_batch_size, a.prompt_tokens + a.reply_tokens // 2
    bandwidth = gpu.hbm_tb_s * 1e12
    per_request = context * report.kv_bytes_per_token_per_gpu + report.lora_adapter_bytes_per_gpu
    step_ms = 1e3 * (weights + batch * per_request) / (bandwidth * a.hbm_efficiency)
    prefill_ms = 1e3 * 2 * config.shape.total_params() / tp * a.prompt_tokens / (
        gpu.dense_tflops(quant) * 1e12 * a.prefill_mfu)
    ttft_ms = prefill_ms + step_ms
    turn_gpu_ms = ttft_ms + a.reply_tokens * step_ms
    spare_ms = a.turn_budget_ms - a.retrieval_ms - a.network_ms - ttft_ms
    leftover = report.gpu_memory_bytes - weights - report.kv_cache_bytes_per_gpu - report.runtime_reserve_bytes
    engines = gpu.gpus_per_node // tp
    turns_per_s = engines * batch / (turn_gpu_ms / 1e3)
    # Full turn = network + retrieval + prefill + (1 + reply_tokens) steps; solve the step for the batch size.
    step_budget_s = (a.turn_budget_ms - a.network_ms - a.retrieval_ms - prefill_ms) / (1 + a.reply_tokens) / 1e3
    budget_batch = int(min(batch, max(0, (step_budget_s * bandwidth * a.hbm_efficiency - weights) // per_request)))
    budget_step_ms = 1e3 * (weights + budget_batch * per_request) / (bandwidth * a.hbm_efficiency)
    budget_turn_ms = prefill_ms + (1 + a.reply_tokens) * budget_step_ms
    return ServingEstimate(
        label=f"{config.shape.name} {quant} TP{tp} {gpu_key}", config=config, gpu=gpu, weights_gib=weights / GIB,
        decode_bound_ms=1e3 * weights / bandwidth, step_ms=step_ms, prefill_ms=prefill_ms, ttft_ms=ttft_ms,
        turn_gpu_ms=turn_gpu_ms, tokens_in_budget=max(0, math.floor(spare_ms / step_ms)),
        adapter_mb=report.lora_adapter_bytes / MB, adapter_gpu_mb=report.lora_adapter_bytes_per_gpu / MB,
        adapters_per_gpu=int(leftover // report.lora_adapter_bytes_per_gpu), engines_per_node=engines,
        turns_per_s_node=turns_per_s, users_per_node=int(turns_per_s * (a.think_time_s + turn_gpu_ms / 1e3)),
        host_adapters_per_node=int(a.host_lora_cache_gib * GIB // report.lora_adapter_bytes),
        budget_batch=budget_batch, budget_turns_per_s_node=engines * budget_batch / (budget_turn_ms / 1e3),
    )


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def model_section() -> list[str]:
    rows = []
    for preset, shape in PRESET_SHAPES.items():
        rows.append([preset, f"{shape.total_params() / 1e9:.2f}", shape.num_layers,
                     f"{shape.num_heads}/{shape.num_kv_heads}", shape.head_dim, shape.vocab_size,
                     f"{memory_plan.kv_bytes_per_token(shape, 2):,}", f"{memory_plan.kv_bytes_per_token(shape, 1):,}",
                     f"{memory_plan.lora_adapter_bytes(shape, 8) / MB:.1f}"])
    return ["## Models", "", "KV bytes per token = 2 · layers · kv_heads · head_dim · bytes (whole model, all ranks). "
            "Rank-8 LoRA on q/k/v/o = 8 · Σ(in + out) · layers · 2 bytes.", "",
            *_table(["preset", "params (B, SID rows incl.)", "layers", "heads/kv", "head_dim", "vocab (SID incl.)",
                     "KV B/token bf16", "KV B/token fp8", "rank-8 q/k/v/o LoRA MB (fp16)"], rows), ""]


def gpu_section() -> list[str]:
    rows = [[key, g.name, f"{g.usable_gib:.1f}", g.hbm_tb_s, g.bf16_dense_tflops, g.fp8_dense_tflops, g.nvlink_gb_s]
            for key, g in GPUS.items()]
    return ["## GPUs (published datasheet figures, dense)", "",
            *_table(["key", "GPU", "usable GiB", "HBM TB/s", "BF16 TFLOPS", "FP8 TFLOPS", "NVLink GB/s"], rows), ""]


def serving_section(estimates: list[ServingEstimate], a: TrafficAssumptions) -> list[str]:
    rows = [[e.label, f"{e.weights_gib:.1f}", f"{e.decode_bound_ms:.2f}", f"{e.step_ms:.2f}",
             f"{e.adapter_gpu_mb:.1f}", f"{e.adapters_per_gpu:,}", e.engines_per_node, f"{e.turns_per_s_node:.0f}",
             f"{e.users_per_node:,}"] for e in estimates]
    return ["## Per engine and per node (8 GPUs)", "",
            f"Decode bound = weights per GPU / peak HBM bandwidth (batch 1, ideal). Step = one decode step at max "
            f"batch {estimates[0].config.max_batch_size} with {a.prompt_tokens + a.reply_tokens // 2} tokens of "
            f"context each and one distinct adapter per request, at {a.hbm_efficiency:.0%} of peak bandwidth. "
            f"Adapters per GPU = memory left after weights, the full KV cache (max batch × max_seq_len) and the "
            f"runtime reserve, divided by one rank's share of a rank-{a.lora_rank} adapter. Users per node = "
            f"turns/s × (think time {a.think_time_s:.0f} s + turn time).", "",
            *_table(["engine", "weights GiB/GPU", "decode bound ms/token", "step ms @max batch",
                     "adapter MB/GPU", "adapters/GPU", "engines/node", "turns/s/node", "users/node"], rows), ""]


def budget_section(estimates: list[ServingEstimate], a: TrafficAssumptions) -> list[str]:
    rows = []
    for e in estimates:
        total = a.network_ms + a.retrieval_ms + e.turn_gpu_ms
        rows.append([e.label, f"{a.network_ms:.0f}", f"{a.retrieval_ms:.0f}", f"{e.ttft_ms:.0f}",
                     f"{a.reply_tokens} × {e.step_ms:.1f} = {a.reply_tokens * e.step_ms:.0f}", f"{total:.0f}",
                     "yes" if total <= a.turn_budget_ms else "no", e.tokens_in_budget, e.budget_batch,
                     f"{e.budget_turns_per_s_node:.0f}"])
    return [f"## The {a.turn_budget_ms:.0f} ms turn budget (Qwen2-72B, at max batch)", "",
            f"TTFT = prefill of {a.prompt_tokens} prompt tokens at {a.prefill_mfu:.0%} MFU + one decode step.", "",
            *_table(["engine", "network ms", "retrieval ms", "TTFT ms", "reply tokens ms", "full turn ms",
                     f"≤ {a.turn_budget_ms:.0f} ms", "reply tokens that fit", "largest batch within budget",
                     "turns/s/node at that batch"], rows), "",
            "Reading: at max batch the decode step is dominated by the batch's KV cache and adapters, not the "
            "weights; either the reply is streamed and the budget applies to the first items (TTFT plus the tokens "
            "that fit), or each engine runs at the smaller batch and the fleet grows accordingly.", ""]


def scale_section(estimates: list[ServingEstimate], a: TrafficAssumptions) -> list[str]:
    rows = []
    for e in estimates:
        for m in SCALES:
            nodes = math.ceil(a.peak_active_users * m / e.users_per_node)
            store_tb = a.registered_users * m * e.adapter_mb * MB / 1e12
            host_share = min(1.0, nodes * e.host_adapters_per_node / (a.registered_users * m))
            rows.append([e.label, f"{m}×", f"{a.peak_active_users * m:,}", nodes, nodes * 8,
                         f"{store_tb:.1f}", f"{host_share:.1%}"])
    return ["## 1×, 10×, 100× the users", "",
            f"1× = {a.peak_active_users:,} concurrent chat users at peak and {a.registered_users:,} users with a "
            f"rank-{a.lora_rank} adapter. Host adapter cache {a.host_lora_cache_gib:.0f} GiB per node; users are "
            f"routed to nodes by user id so each adapter lives in one node's cache.", "",
            *_table(["engine", "scale", "peak users", "nodes", "GPUs", "adapter store TB", "adapters in host caches"],
                    rows), ""]


def what_changes(estimates: list[ServingEstimate], a: TrafficAssumptions) -> list[str]:
    best = min(estimates, key=lambda e: math.ceil(a.peak_active_users * 100 / e.users_per_node))
    nodes_1 = math.ceil(a.peak_active_users / best.users_per_node)
    nodes_100 = math.ceil(a.peak_active_users * 100 / best.users_per_node)
    store_1 = a.registered_users * best.adapter_mb * MB / 1e12
    store_100 = a.registered_users * 100 * best.adapter_mb * MB / 1e15
    return ["## What changes with scale", "",
            f"- **1×**: {nodes_1} node(s) of {best.label} carry the peak at max batch; the host LoRA cache holds "
            f"{best.host_adapters_per_node:,} adapters per node against {store_1:.1f} TB of adapters in total, so "
            f"most adapters are loaded on a user's first turn of a session (one {best.adapter_mb:.0f} MB upload "
            f"with the request, then the id only).",
            f"- **10×**: the fleet is sized by decode bandwidth, not memory; route by user id (consistent hashing "
            f"at the gateway) so an adapter stays in one node's host and GPU cache and the `lora_task_id` fast path "
            f"(id only, no weights) is the common case. The PostgreSQL profile store and the FAISS retrieval "
            f"nodes scale out separately on CPU.",
            f"- **100×**: {nodes_100} nodes ({best.label}) and {store_100:.1f} PB of adapters: per-user adapters "
            f"no longer fit any cache, so keep rank-{a.lora_rank} adapters for active users only, fall back to "
            f"per-segment adapters + the user prefix (prompt table, {best.config.user_prefix_tokens} rows) for the "
            f"rest, and store adapters in object storage keyed by user id. Add speculative decoding or a smaller "
            f"draft model only if the reply-token column above is the limit.",
            "- Everything above is first-order arithmetic; `builders/trtllm/validate_on_gpu.sh` measures the real "
            "step time, TTFT and memory on a GPU node, and those numbers replace the assumptions.", ""]


def render(a: TrafficAssumptions | None = None) -> str:
    a = a or TrafficAssumptions()
    estimates = [estimate(*row, a) for row in SERVING_CONFIGS]
    budget = [e for e, row in zip(estimates, SERVING_CONFIGS) if row in BUDGET_CONFIGS]
    lines = ["<!-- Generated by builders/trtllm/capacity_plan.py - do not edit; run "
             "`python -m builders.trtllm.capacity_plan`. -->", "",
             "# Capacity plan: the GPU generator", "",
             "Computed from the engine presets (`builders/trtllm/engine_config.py`), the memory model "
             "(`builders/trtllm/memory_plan.py`) and the GPU table (`builders/trtllm/gpu_specs.py`). "
             "**Estimates: nothing here was measured on a GPU.**", "",
             "## Assumptions", "",
             *_table(["assumption", "value"], [[f.name, getattr(a, f.name)] for f in fields(a)]), "",
             *model_section(), *gpu_section(), *serving_section(estimates, a), *budget_section(budget, a),
             *scale_section(budget, a), *what_changes(budget, a)]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=CAPACITY_DOC)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
