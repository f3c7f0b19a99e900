"""Hugging Face Qwen2 checkpoint folders <-> ``qwen2.Qwen2``.

A folder holds ``config.json`` and either ``model.safetensors`` or shards ``model-0000i-of-0000n.safetensors`` listed
by ``model.safetensors.index.json`` (``{"metadata": {"total_size": bytes}, "weight_map": {name: file}}``). Tensor
names are HF's (``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight`` / ``.bias``, ...,
``lm_head.weight``), which are also our module paths, so no renaming table exists. With tied embeddings
``lm_head.weight`` is not stored, as HF does. What ``save_qwen2`` writes, ``transformers.Qwen2ForCausalLM
.from_pretrained`` reads, and ``load_qwen2`` reads what ``save_pretrained`` writes.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .qwen2 import Qwen2, Qwen2Config

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# buffers some older exporters stored; recomputed from the config here
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


class CheckpointError(ValueError):
    """A checkpoint folder that does not describe a loadable Qwen2."""


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as ``"5GB"``, ``"500MB"``, ``"2GiB"``, ``"1000"``."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
        if not match:
            raise ValueError(f"max_shard_size must be an int or like '5GB', got {size!r}")
        unit = (match.group(2) or "B").upper()
        scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                 "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
        value = int(float(match.group(1)) * scale)
    if value <= 0:
        raise ValueError(f"max_shard_size must be > 0, got {size!r}")
    return value


def read_config(folder: Path | str) -> Qwen2Config:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {str(folder)!r} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint folder {str(folder)!r} has no {CONFIG_FILE}")
    hf = json.loads(path.read_text(encoding="utf-8"))
    if hf.get("model_type") != "qwen2":
        raise CheckpointError(f"{path}: model_type must be 'qwen2', got {hf.get('model_type')!r}")
    try:
        return Qwen2Config.from_hf_config(hf)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from error


def weight_files(folder: Path | str) -> dict[str, Path]:
    """tensor name -> file holding it."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map' object")
        files = {name: folder / file for name, file in weight_map.items()}
        for file in sorted(set(files.values())):
            if not file.is_file():
                raise CheckpointError(f"{index} names shard {file.name!r}, which is missing from {str(folder)!r}")
        return files
    single = folder / SINGLE_FILE
    if single.is_file():
        with safe_open(single, framework="pt") as f:
            return {name: single for name in f.keys()}
    present = sorted(p.name for p in folder.iterdir())
    raise CheckpointError(f"checkpoint folder {str(folder)!r} has neither {SINGLE_FILE} nor {INDEX_FILE} "
                          f"(found: {present}); only safetensors checkpoints are supported")


def expected_shapes(model: Qwen2) -> dict[str, torch.Size]:
    shapes = {name: t.shape for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight")
    return shapes


def read_state_dict(folder: Path | str, model: Qwen2) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors for ``model``, checked: no missing, no unexpected, no shape mismatch."""
    files = weight_files(folder)
    expected = expected_shapes(model)
    names = {n for n in files if not _IGNORED.match(n)}
    if model.config.tie_word_embeddings and "lm_head.weight" in names:
        logger.info("%s: tied embeddings; ignoring the stored lm_head.weight", folder)
        names.discard("lm_head.weight")
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {str(folder)!r} does not match its config: missing tensors {missing[:10]}"
                              f"{' ...' if len(missing) > 10 else ''}, unexpected tensors {unexpected[:10]}"
                              f"{' ...' if len(unexpected) > 10 else ''}")
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for name in sorted(names):
        by_file.setdefault(files[name], []).append(name)
    for file, file_names in by_file.items():
        with safe_open(file, framework="pt") as f:
            for name in file_names:
                state[name] = f.get_tensor(name)
    mismatched = [f"{n}: checkpoint {tuple(state[n].shape)} vs model {tuple(expected[n])}"
                  for n in sorted(state) if state[n].shape != expected[n]]
    if mismatched:
        raise CheckpointError(f"checkpoint {str(folder)!r}: shape mismatch for {len(mismatched)} tensors: "
                              + "; ".join(mismatched[:5]))
    return state


def load_qwen2(folder: Path | str, *, dtype: torch.dtype | None = None,
               device: torch.device | str = "cpu") -> Qwen2:
    """Our model with the checkpoint's weights (in ``dtype`` if given, else as stored), in eval mode."""
    config = read_config(folder)
    with torch.device("meta"):
        model = Qwen2(config)  # no memory until the checkpoint's tensors are assigned
    state = read_state_dict(folder, model)
    state = {n: t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
             for n, t in state.items()}
    model.load_state_dict(state, strict=not config.tie_word_embeddings, assign=True)
    model.tie_weights()
    model.reset_rotary(device)
    logger.info("loaded Qwen2 from %s: %d tensors, %.1fM parameters", folder, len(state),
                model.num_parameters() / 1e6)
    return model.eval()


def _shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards, current, size = [], {}, 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    return shards


def save_qwen2(model: Qwen2, folder: Path | str, *, max_shard_size: int | str = "5GB",
               dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` and the weights (one file, or shards of at most ``max_shard_size`` bytes each plus
    an index; a tensor larger than the limit gets a shard of its own). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    max_bytes = parse_size(max_shard_size)
    state = {n: t.detach().to(dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
             .contiguous().cpu() for n, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    stored_dtype = next(t for t in state.values() if t.is_floating_point()).dtype
    dtype_name = str(stored_dtype).removeprefix("torch.")
    # "dtype" for transformers >= 5, "torch_dtype" for older readers (TensorRT-LLM converters)
    hf_config = model.config.to_hf_config() | {"dtype": dtype_name, "torch_dtype": dtype_name}
    (folder / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    for stale in [folder / SINGLE_FILE, folder / INDEX_FILE, *folder.glob("model-*-of-*.safetensors")]:
        stale.unlink(missing_ok=True)

    shards = _shards(state, max_bytes)
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], folder / SINGLE_FILE, metadata=metadata)
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, folder / file, metadata=metadata)
            weight_map.update(dict.fromkeys(shard, file))
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    logger.info("saved Qwen2 to %s: %d tensors in %d file(s)", folder, len(state), len(shards))
    return folder


__all__ = ["CONFIG_FILE", "INDEX_FILE", "SINGLE_FILE", "CheckpointError", "expected_shapes", "load_qwen2",
           "parse_size", "read_config", "read_state_dict", "save_qwen2", "weight_files"]
