"""Our LoRA adapters in TensorRT-LLM's LoRA tensors: ``lora_weights`` / ``lora_config`` and the prefetch layout.

The backend's format (tensorrtllm_backend docs/lora.md; ``builders/trtllm/lora_tensors.py`` writes the same for
the GPU smoke tests, and a test checks both agree):

* ``lora_config`` int32 [N, 3]: one row ``[module_id, layer_idx, rank]`` per (module, layer), rows ordered by
  layer then module id; module ids attn_q 1, attn_k 2, attn_v 3, attn_dense 4, mlp_h_to_4h 5, mlp_4h_to_h 6,
  mlp_gate 7;
* ``lora_weights`` [N, W]: row i = A_i [r, d_in] flattened, then B_i [d_out, r] flattened and scaled by alpha / r
  (the backend computes ``x A^T B^T`` with no scale of its own), zero-padded to the longest row;
* ``lora_prefetch_dir/<task_id>/model.lora_weights.npy`` and ``model.lora_config.npy``.

Next to them :func:`export_adapter` writes ``adapter_info.json`` (kind, trained_at, num_events): the GPU generator
applies the adapter store's fallback policy (``adapter_store.fallback_chain``: fresh user adapter, else segment
adapter, else base model) to it, and :func:`write_user_segments` writes ``user_segments.json``, each user's segment
keyed by the user adapter's task id (no user ids on disk).

``unpack_trtllm_lora`` inverts the packing (used by the round-trip test and by anyone auditing an export).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from recllm.generator.qwen2 import Qwen2Config
from recllm.user_layers.adapter_store import AdapterInfo, user_adapter_name
from recllm.user_layers.lora_adapter import LoRAAdapter, module_dims

TRTLLM_MODULE_IDS = {"attn_qkv": 0, "attn_q": 1, "attn_k": 2, "attn_v": 3, "attn_dense": 4,
                     "mlp_h_to_4h": 5, "mlp_4h_to_h": 6, "mlp_gate": 7}
# our (HF) projection name -> TensorRT-LLM module name, as TensorRT-LLM's own LoRA loader maps them: its GatedMLP
# applies the activation to ``fc`` (mlp_h_to_4h), which is HF's gate_proj; its ``gate`` (mlp_gate) is HF's up_proj
TRTLLM_MODULE_OF = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_dense",
                    "gate_proj": "mlp_h_to_4h", "down_proj": "mlp_4h_to_h", "up_proj": "mlp_gate"}
OUR_MODULE_OF = {trt: ours for ours, trt in TRTLLM_MODULE_OF.items()}
WEIGHTS_NPY = "model.lora_weights.npy"
CONFIG_NPY = "model.lora_config.npy"
INFO_JSON = "adapter_info.json"
SEGMENTS_JSON = "user_segments.json"


def lora_task_id(user_id: str) -> int:
    """Stable positive 63-bit task id per adapter name (the GPU generator computes the same)."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") & (2 ** 63 - 1)


def to_trtllm(adapter: LoRAAdapter, dtype: np.dtype = np.float16) -> tuple[np.ndarray, np.ndarray]:
    """(lora_weights [N, W] in ``dtype``, lora_config [N, 3] int32) of one adapter."""
    rows, config = [], []
    keys = sorted(adapter.a, key=lambda key: (key[0], TRTLLM_MODULE_IDS[TRTLLM_MODULE_OF[key[1]]]))
    for layer, module in keys:
        a = adapter.a[(layer, module)].detach().float().cpu().numpy()  # [r, d_in]
        b = adapter.b[(layer, module)].detach().float().cpu().numpy() * adapter.scale  # [d_out, r]
        rows.append(np.concatenate([a.reshape(-1), b.reshape(-1)]))
        config.append([TRTLLM_MODULE_IDS[TRTLLM_MODULE_OF[module]], layer, adapter.rank])
    weights = np.zeros((len(rows), max(row.size for row in rows)), dtype=dtype)
    for i, row in enumerate(rows):
        weights[i, :row.size] = row
    return weights, np.asarray(config, dtype=np.int32)


def unpack_trtllm_lora(weights: np.ndarray, config: np.ndarray, model_config: Qwen2Config
                       ) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """(layer, our module) -> (A [r, d_in], B_scaled [d_out, r]) from the two tensors."""
    dims = module_dims(model_config)
    ids = {v: k for k, v in TRTLLM_MODULE_IDS.items()}
    out = {}
    for row, (module_id, layer, rank) in zip(weights, config.tolist()):
        module = OUR_MODULE_OF[ids[module_id]]
        d_in, d_out = dims[module]
        a = row[:rank * d_in].reshape(rank, d_in)
        b = row[rank * d_in:rank * d_in + d_out * rank].reshape(d_out, rank)
        out[(layer, module)] = (a, b)
    return out


def write_prefetch(prefetch_dir: Path | str, task_id: int, weights: np.ndarray, config: np.ndarray) -> Path:
    """``<prefetch_dir>/<task_id>/model.lora_{weights,config}.npy``; returns the task folder."""
    target = Path(prefetch_dir) / str(task_id)
    target.mkdir(parents=True, exist_ok=True)
    np.save(target / WEIGHTS_NPY, weights)
    np.save(target / CONFIG_NPY, config)
    return target


def export_adapter(adapter: LoRAAdapter, prefetch_dir: Path | str, dtype: np.dtype = np.float16) -> Path:
    """Export one adapter under its task id (``lora_task_id(adapter.name)``), with its ``adapter_info.json``."""
    weights, config = to_trtllm(adapter, dtype)
    return write_exported(prefetch_dir, adapter.name, weights, config, kind=adapter.kind,
                          trained_at=adapter.trained_at, num_events=adapter.num_events)


def write_exported(adapter_dir: Path | str, name: str, weights: np.ndarray, config: np.ndarray, *, kind: str,
                   trained_at: int, num_events: int) -> Path:
    """Packed tensors of the adapter called ``name`` and its ``adapter_info.json``, under ``lora_task_id(name)``."""
    folder = write_prefetch(adapter_dir, lora_task_id(name), weights, config)
    info = {"kind": kind, "trained_at": int(trained_at), "num_events": int(num_events)}
    (folder / INFO_JSON).write_text(json.dumps(info) + "\n", encoding="utf-8")
    return folder


def exported_info(adapter_dir: Path | str, name: str) -> AdapterInfo | None:
    """The bookkeeping of an exported adapter, or None unless its weights, config and info are all there."""
    folder = Path(adapter_dir) / str(lora_task_id(name))
    if not all((folder / f).is_file() for f in (WEIGHTS_NPY, CONFIG_NPY, INFO_JSON)):
        return None
    info = json.loads((folder / INFO_JSON).read_text(encoding="utf-8"))
    return AdapterInfo(name, folder, info["kind"], int(info["trained_at"]), int(info["num_events"]))


def load_exported(adapter_dir: Path | str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(lora_weights [N, W], lora_config [N, 3] int32) of an exported adapter."""
    folder = Path(adapter_dir) / str(lora_task_id(name))
    return np.load(folder / WEIGHTS_NPY), np.load(folder / CONFIG_NPY).astype(np.int32)


def write_user_segments(adapter_dir: Path | str, segments: Mapping[str, int]) -> Path:
    """``<adapter_dir>/user_segments.json``: user id -> segment, keyed by the task id of the user's adapter name."""
    path = Path(adapter_dir) / SEGMENTS_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    keyed = {str(lora_task_id(user_adapter_name(user))): int(segment) for user, segment in segments.items()}
    path.write_text(json.dumps(keyed, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_user_segments(adapter_dir: Path | str) -> dict[int, int]:
    """User-adapter task id -> segment ({} when the file is absent: nobody has a segment fallback)."""
    path = Path(adapter_dir) / SEGMENTS_JSON
    if not path.is_file():
        return {}
    return {int(key): int(value) for key, value in json.loads(path.read_text(encoding="utf-8")).items()}


__all__ = ["CONFIG_NPY", "INFO_JSON", "OUR_MODULE_OF", "SEGMENTS_JSON", "TRTLLM_MODULE_IDS", "TRTLLM_MODULE_OF",
           "WEIGHTS_NPY", "export_adapter", "exported_info", "load_exported", "lora_task_id", "read_user_segments",
           "to_trtllm", "unpack_trtllm_lora", "write_exported", "write_prefetch", "write_user_segments"]
