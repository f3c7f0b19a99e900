"""Export a trained user-layers folder to the GPU generator's adapter folder (the backend's prefetch layout).

    python -m builders.trtllm.export_adapters --user-layers artifacts/user_layers --out /opt/recllm/adapters

Reads what ``builders/train_user_layers.py`` wrote — ``adapters/<name>/`` in PEFT format and ``state.json`` (each
user's segment) — and writes, for every adapter, ``<out>/<task_id>/model.lora_{weights,config}.npy`` plus
``adapter_info.json`` (``recllm.user_layers.trtllm_export.export_adapter``), and ``<out>/user_segments.json``
(keyed by task id: no user ids), which ``model_repository_gpu/generator_trtllm`` reads to walk the
user → segment → base chain. Point ``tensorrt_llm``'s ``lora_prefetch_dir`` and the generator's ``adapter_dir`` at
``<out>``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recllm.user_layers.adapter_store import CONFIG_FILE, load_adapter
from recllm.user_layers.trtllm_export import export_adapter, lora_task_id, write_user_segments

DTYPES = {"fp16": np.float16, "fp32": np.float32}  # npy has no bf16 (hf_lora_convert.py stores fp16 too)


@dataclass(frozen=True)
class ExportReport:
    adapters: dict[str, int]        # adapter name -> task id
    users_with_segment: int
    out_dir: Path


def adapter_folders(user_layers_dir: Path) -> list[Path]:
    root = user_layers_dir / "adapters"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist: train user layers first (python -m builders.train_user_layers)")
    return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def user_segments(user_layers_dir: Path) -> dict[str, int]:
    """User id -> segment from ``state.json`` (users without a segment, -1, are left out: base model)."""
    path = user_layers_dir / "state.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the user-layers folder is incomplete")
    users = json.loads(path.read_text(encoding="utf-8"))["users"]
    return {user: int(entry["segment"]) for user, entry in users.items() if int(entry.get("segment", -1)) >= 0}


def export_user_layers(user_layers_dir: Path | str, out_dir: Path | str, dtype: str = "fp16") -> ExportReport:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    user_layers_dir, out_dir = Path(user_layers_dir), Path(out_dir)
    folders = adapter_folders(user_layers_dir)
    if not folders:
        raise FileNotFoundError(f"no adapters under {user_layers_dir / 'adapters'}")
    segments = user_segments(user_layers_dir)
    exported = {}
    for folder in folders:
        adapter = load_adapter(folder)
        export_adapter(adapter, out_dir, dtype=DTYPES[dtype])
        exported[adapter.name] = lora_task_id(adapter.name)
    write_user_segments(out_dir, segments)
    return ExportReport(exported, len(segments), out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user-layers", type=Path, required=True, help="output folder of builders.train_user_layers")
    parser.add_argument("--out", type=Path, required=True, help="the GPU generator's adapter folder")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    args = parser.parse_args(argv)
    try:
        report = export_user_layers(args.user_layers, args.out, args.dtype)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"export_adapters: {exc}\n")
    print(f"exported {len(report.adapters)} adapters and the segments of {report.users_with_segment} users "
          f"to {report.out_dir}")


if __name__ == "__main__":
    main()
