"""Per-user LoRA adapters in the TensorRT-LLM backend's tensor format, and the task id each user maps to.

The backend takes an adapter as two tensors (tensorrtllm_backend docs/lora.md):
``lora_config`` INT32 ``[N, 3]``, one row ``[module_id, layer_idx, rank]`` per module and layer, and
``lora_weights`` ``[N, rank*d_in + d_out*rank]``, row i = A_i ``[rank, d_in]`` flattened then B_i ``[d_out, rank]``
flattened, zero-padded to the longest row. Files ``<dir>/<task_id>/model.lora_{config,weights}.npy`` are the
layout of ``lora_prefetch_dir`` and of the GPU generator's adapter folder.
"""

from __future__ import annotations


import numpy as np

from builders.trtllm.memory_plan import LORA_MODULES, lora_module_dims
from builders.trtllm.model_shape import QwenShape
from recllm.user_layers.trtllm_export import lora_task_id  # noqa: F401 - one task-id rule for CPU and GPU sides
from recllm.user_layers.trtllm_export import write_prefetch as write_adapter  # noqa: F401

# TensorRT-LLM LoRA module ids (LoraModule::ModuleType).
MODULE_IDS = {"attn_qkv": 0, "attn_q": 1, "attn_k": 2, "attn_v": 3, "attn_dense": 4,
              "mlp_h_to_4h": 5, "mlp_4h_to_h": 6, "mlp_gate": 7}


def pack_adapter(a: dict, b: dict, shape: QwenShape, rank: int, alpha: float | None = None):
    """(weights [N, W], config [N, 3]) from ``a[(module, layer)]`` [rank, d_in] and ``b[...]`` [d_out, rank].

    B is scaled by alpha / rank (as TensorRT-LLM's hf_lora_convert.py does), so the backend applies x A^T B^T.
    """
    dims = lora_module_dims(shape)
    scale = (alpha if alpha is not None else rank) / rank
    rows, config = [], []
    for (module, layer), a_matrix in sorted(a.items(), key=lambda kv: (kv[0][1], MODULE_IDS[kv[0][0]])):
        d_in, d_out = dims[module]
        b_matrix = b[(module, layer)]
        if a_matrix.shape != (rank, d_in) or b_matrix.shape != (d_out, rank):
            raise ValueError(f"adapter {module} layer {layer}: A {a_matrix.shape} / B {b_matrix.shape}, expected "
                             f"({rank}, {d_in}) / ({d_out}, {rank})")
        rows.append(np.concatenate([a_matrix.reshape(-1), (b_matrix * scale).reshape(-1)]))
        config.append([MODULE_IDS[module], layer, rank])
    width = max(row.size for row in rows)
    weights = np.zeros((len(rows), width), dtype=np.float16)
    for i, row in enumerate(rows):
        weights[i, :row.size] = row
    return weights, np.asarray(config, dtype=np.int32)


def random_adapter(shape: QwenShape, rank: int = 8, seed: int = 0, std: float = 0.02):
    """A random adapter on attn q/k/v/dense of every layer (for smoke tests: two seeds give two users)."""
    rng = np.random.default_rng(seed)
    dims = lora_module_dims(shape)
    a, b = {}, {}
    for layer in range(shape.num_layers):
        for module in LORA_MODULES:
            d_in, d_out = dims[module]
            a[(module, layer)] = rng.normal(0, std, (rank, d_in)).astype(np.float32)
            b[(module, layer)] = rng.normal(0, std, (d_out, rank)).astype(np.float32)
    return pack_adapter(a, b, shape, rank)
