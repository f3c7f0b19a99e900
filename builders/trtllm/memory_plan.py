"""Expected GPU memory of a TensorRT-LLM Qwen2 engine, per GPU: weights, KV cache, LoRA adapters.

These are plain functions of the model shape and the build choices (tensor parallelism, quantization). They are an
*estimate* to reject builds that cannot fit and to size the backend's caches; the numbers a GPU node reports
(``validate_on_gpu.sh`` records the engine's own memory log) replace them once measured.

Modelled as TensorRT-LLM lays the weights out by default:
- q/k/v/gate/up projections are column-parallel, o/down row-parallel: their weights split evenly over ``tp`` ranks;
  when ``tp`` exceeds the KV heads, KV heads are replicated so each rank holds one;
- the token embedding is replicated on every rank (``convert_checkpoint.py`` without ``--use_parallel_embedding``),
  lm_head is split over ranks by vocabulary rows (padded to a multiple of ``tp``); both stay bf16 under FP8/INT4;
- biases and norms stay bf16 and are counted unsplit (they are < 0.1 % of the weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from builders.trtllm.model_shape import QwenShape

GIB = 1024 ** 3
QUANT_FORMATS = ("bf16", "fp8", "int4_awq")
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "int4_awq": 0.5}
# FP8 builds also quantize the KV cache (quantize.py --kv_cache_dtype fp8); bf16 and INT4-AWQ keep a bf16 cache.
KV_CACHE_BYTES = {"bf16": 2, "fp8": 1, "int4_awq": 2}
BF16_BYTES = 2
LORA_MODULES = ("attn_q", "attn_k", "attn_v", "attn_dense")  # the default targets; the MLP's are optional


def kv_heads_per_gpu(shape: QwenShape, tp: int) -> int:
    return max(1, shape.num_kv_heads // tp)


def kv_bytes_per_token(shape: QwenShape, kv_bytes: int) -> int:
    """K and V of one token over all layers, whole model: 2 * layers * kv_heads * head_dim * bytes."""
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * kv_bytes


def kv_bytes_per_token_per_gpu(shape: QwenShape, tp: int, kv_bytes: int) -> int:
    return 2 * shape.num_layers * kv_heads_per_gpu(shape, tp) * shape.head_dim * kv_bytes


def padded_vocab(vocab_size: int, tp: int) -> int:
    return math.ceil(vocab_size / tp) * tp


def linear_params_per_gpu(shape: QwenShape, tp: int) -> int:
    """Projection weights one rank holds, all layers."""
    kv_width = kv_heads_per_gpu(shape, tp) * shape.head_dim
    q_width = shape.q_dim // tp
    attention = shape.hidden_size * (q_width + 2 * kv_width) + q_width * shape.hidden_size
    mlp = 3 * shape.hidden_size * shape.intermediate_size // tp
    return shape.num_layers * (attention + mlp)


def weight_bytes_per_gpu(shape: QwenShape, tp: int, quant: str, awq_block_size: int = 128) -> dict[str, int]:
    linear = linear_params_per_gpu(shape, tp)
    linear_bytes = linear * WEIGHT_BYTES[quant]
    if quant == "int4_awq":
        linear_bytes += linear * BF16_BYTES / awq_block_size          # one 16-bit scale per block of weights
    parts = {
        "linear": int(linear_bytes),
        "biases_and_norms": shape.num_layers * shape.layer_small_params() * BF16_BYTES + shape.hidden_size * 2,
        "embedding": shape.vocab_size * shape.hidden_size * BF16_BYTES,
        # Counted even for tied embeddings (0.5B): the engine holds lm_head as its own weight.
        "lm_head": padded_vocab(shape.vocab_size, tp) // tp * shape.hidden_size * BF16_BYTES,
    }
    parts["total"] = sum(parts.values())
    return parts


def lora_module_dims(shape: QwenShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA target module (attention, and the MLP's up / gate / down)."""
    return {"attn_q": (shape.hidden_size, shape.q_dim), "attn_k": (shape.hidden_size, shape.kv_dim),
            "attn_v": (shape.hidden_size, shape.kv_dim), "attn_dense": (shape.q_dim, shape.hidden_size),
            "mlp_h_to_4h": (shape.hidden_size, shape.intermediate_size),
            "mlp_gate": (shape.hidden_size, shape.intermediate_size),
            "mlp_4h_to_h": (shape.intermediate_size, shape.hidden_size)}


ROW_PARALLEL_MODULES = ("attn_dense", "mlp_4h_to_h")  # split by input columns under tensor parallelism


def lora_adapter_bytes(shape: QwenShape, rank: int, tp: int = 1, modules=LORA_MODULES,
                       bytes_per_value: int = BF16_BYTES) -> int:
    """One adapter's A and B over all layers on one rank: r*(in + out) per module for tp=1.

    With tp > 1, column-parallel modules (q/k/v, the MLP's up and gate) keep A [r, in] whole and split B by output
    rows; the row-parallel attn_dense and mlp_4h_to_h split A by input columns and keep B [out, r] whole (modelled
    Megatron-style split).
    """
    dims = lora_module_dims(shape)
    per_layer = 0
    for module in modules:
        d_in, d_out = dims[module]
        if module in ROW_PARALLEL_MODULES:
            per_layer += rank * (d_in // tp + d_out)
        else:
            per_layer += rank * (d_in + d_out // tp)
    return shape.num_layers * per_layer * bytes_per_value


@dataclass(frozen=True)
class MemoryReport:
    """Bytes per GPU for one engine rank at its build limits (max batch x max sequence resident at once)."""

    weights: dict
    kv_bytes_per_token: int
    kv_bytes_per_token_per_gpu: int
    kv_cache_bytes_per_gpu: int
    lora_adapter_bytes: int
    lora_adapter_bytes_per_gpu: int
    lora_cache_bytes_per_gpu: int
    adapters_per_gpu: int
    runtime_reserve_bytes: int
    total_bytes_per_gpu: int
    gpu_memory_bytes: int
    kv_cache_free_gpu_mem_fraction: float
    lora_cache_gpu_memory_fraction: float

    @property
    def fits(self) -> bool:
        return self.total_bytes_per_gpu <= self.gpu_memory_bytes

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["fits"] = self.fits
        out["gib"] = {"weights": round(self.weights["total"] / GIB, 2),
                      "kv_cache": round(self.kv_cache_bytes_per_gpu / GIB, 2),
                      "lora_cache": round(self.lora_cache_bytes_per_gpu / GIB, 2),
                      "runtime_reserve": round(self.runtime_reserve_bytes / GIB, 2),
                      "total": round(self.total_bytes_per_gpu / GIB, 2),
                      "gpu": round(self.gpu_memory_bytes / GIB, 2)}
        return out


def _fraction_up(part: float, whole: float) -> float:
    """part / whole rounded *up* to 0.01 (so the backend allocates at least ``part``), within [0.01, 0.99]."""
    if whole <= 0:
        return 0.99
    return min(0.99, max(0.01, math.ceil(100 * part / whole) / 100))


def memory_report(shape: QwenShape, *, tp: int, quant: str, max_batch_size: int, max_seq_len: int,
                  max_lora_rank: int, lora_cache_gpu_gib: float, runtime_reserve_gib: float,
                  gpu_memory_gib: float, awq_block_size: int = 128,
                  lora_modules: tuple[str, ...] = LORA_MODULES) -> MemoryReport:
    weights = weight_bytes_per_gpu(shape, tp, quant, awq_block_size)
    kv_token_gpu = kv_bytes_per_token_per_gpu(shape, tp, KV_CACHE_BYTES[quant])
    kv_cache = kv_token_gpu * max_batch_size * max_seq_len
    adapter_gpu = lora_adapter_bytes(shape, max_lora_rank, tp, lora_modules)
    lora_cache = int(lora_cache_gpu_gib * GIB)
    reserve = int(runtime_reserve_gib * GIB)
    gpu = int(gpu_memory_gib * GIB)
    # The backend sizes the KV pool as a fraction of memory free after the engine loads, and the LoRA cache as a
    # fraction of what the KV pool leaves: these fractions give each exactly the bytes planned here.
    free_after_weights = gpu - weights["total"] - reserve
    return MemoryReport(
        weights=weights, kv_bytes_per_token=kv_bytes_per_token(shape, KV_CACHE_BYTES[quant]),
        kv_bytes_per_token_per_gpu=kv_token_gpu, kv_cache_bytes_per_gpu=kv_cache,
        lora_adapter_bytes=lora_adapter_bytes(shape, max_lora_rank, 1, lora_modules),
        lora_adapter_bytes_per_gpu=adapter_gpu,
        lora_cache_bytes_per_gpu=lora_cache, adapters_per_gpu=lora_cache // adapter_gpu,
        runtime_reserve_bytes=reserve, total_bytes_per_gpu=weights["total"] + kv_cache + lora_cache + reserve,
        gpu_memory_bytes=gpu,
        kv_cache_free_gpu_mem_fraction=_fraction_up(kv_cache, free_after_weights),
        lora_cache_gpu_memory_fraction=_fraction_up(lora_cache, free_after_weights - kv_cache),
    )
