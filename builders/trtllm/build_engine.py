"""Build a TensorRT-LLM engine for the Rec-LLM generator from a Qwen2 HF checkpoint (GPU nodes only).

    python -m builders.trtllm.build_engine --preset 72b --checkpoint /models/qwen2-72b-sid \
        --output /engines/qwen2-72b-fp8-tp4 --tp 4 --quant fp8 --dry-run

Steps, as the official TensorRT-LLM tools spell them:
1. checkpoint -> TensorRT-LLM checkpoint: ``convert_checkpoint.py`` (bf16) or ModelOpt ``quantize.py``
   (``--qformat fp8 --kv_cache_dtype fp8`` / ``--qformat int4_awq``), split ``--tp_size`` ways;
2. ``trtllm-build`` with the LoRA plugin on attn_q/k/v/dense (per-user adapters arrive per request), a paged KV
   cache, the GEMM/attention plugins, the batch/token/sequence limits and a prompt-embedding table (user prefix).

``--dry-run`` prints the commands and writes them with the expected memory per GPU to ``<output>/build_plan.json``.
Without it the commands run one after another and the build fails with a clear message when the tools are absent
(any machine without a GPU and TensorRT-LLM). Nothing in this repository has run these commands yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from builders.trtllm.engine_config import PRESET_OVERRIDES, EngineBuildConfig, prompt_vocab_size
from builders.trtllm.memory_plan import QUANT_FORMATS
from builders.trtllm.model_shape import PRESET_SHAPES, shape_from_hf_config

log = logging.getLogger(__name__)
PLAN_FILE = "build_plan.json"
# Adapter files that would carry embedding / lm_head rows: SID rows belong to the base checkpoint.
LORA_MARKERS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class BuildToolsMissing(RuntimeError):
    """TensorRT-LLM tools are not installed here (expected on any machine without a GPU)."""


def checkpoint_stage_dir(config: EngineBuildConfig) -> Path:
    return Path(config.output_dir) / f"trtllm_checkpoint_{config.quant}_tp{config.tp}"


def engine_dir(config: EngineBuildConfig) -> Path:
    return Path(config.output_dir) / "engine"


def convert_command(config: EngineBuildConfig, python: str = "python3") -> list[str]:
    """Step 1: HF checkpoint -> TensorRT-LLM checkpoint, quantized when asked, split into ``tp`` ranks."""
    examples = Path(config.trtllm_examples_dir)
    common = ["--model_dir", config.checkpoint_dir, "--output_dir", str(checkpoint_stage_dir(config)),
              "--dtype", "bfloat16", "--tp_size", str(config.tp)]
    if config.quant == "bf16":
        return [python, str(examples / "models/core/qwen/convert_checkpoint.py"), *common]
    quantize = [python, str(examples / "quantization/quantize.py"), *common,
                "--calib_dataset", config.calib_dataset, "--calib_size", str(config.calib_size)]
    if config.quant == "fp8":
        return [*quantize, "--qformat", "fp8", "--kv_cache_dtype", "fp8"]
    return [*quantize, "--qformat", "int4_awq", "--awq_block_size", str(config.awq_block_size)]


def build_command(config: EngineBuildConfig) -> list[str]:
    """Step 2: ``trtllm-build`` for inflight batching with per-request LoRA and a per-request prompt table."""
    command = [
        "trtllm-build", "--checkpoint_dir", str(checkpoint_stage_dir(config)), "--output_dir", str(engine_dir(config)),
        "--gemm_plugin", "auto", "--gpt_attention_plugin", "auto",
        "--lora_plugin", "auto", "--lora_target_modules", *config.lora_modules,
        "--max_lora_rank", str(config.max_lora_rank),
        "--kv_cache_type", "paged", "--remove_input_padding", "enable", "--context_fmha", "enable",
        "--use_paged_context_fmha", "enable",     # needed for KV-cache reuse of the shared system prompt
        "--max_batch_size", str(config.max_batch_size), "--max_num_tokens", str(config.max_num_tokens),
        "--max_input_len", str(config.max_input_len), "--max_seq_len", str(config.max_seq_len),
        "--max_beam_width", "1",
        "--workers", str(config.tp),
    ]
    # never 0: even without prefix rows each request carries the conditional norms' user-context row
    return command + ["--max_prompt_embedding_table_size", str(config.max_prompt_embedding_table_size)]


def build_commands(config: EngineBuildConfig, python: str = "python3") -> list[list[str]]:
    return [convert_command(config, python), build_command(config)]


def build_plan(config: EngineBuildConfig, python: str = "python3") -> dict:
    """Everything ``--dry-run`` writes: the config, the commands and the expected memory per GPU."""
    return {
        "generated_by": "python -m builders.trtllm.build_engine",
        "ran_on_gpu": False,
        "config": config.as_dict(),
        "commands": build_commands(config, python),
        "engine_dir": str(engine_dir(config)),
        "memory_per_gpu": config.memory_report().as_dict(),
        "notes": [
            "Memory is an estimate (builders/trtllm/memory_plan.py); the engine's own log on a GPU node replaces it.",
            "SID vocabulary rows are part of the base embedding and lm_head; adapters carry no embedding rows.",
            f"Per-user adapters: rank <= {config.max_lora_rank} on {', '.join(config.lora_modules)}; "
            f"prompt table {prompt_vocab_size(config.user_prefix_tokens)} rows per request "
            f"({config.user_prefix_tokens} user-prefix rows + the conditional norms' user-context row).",
        ],
    }


def checkpoint_shape(preset: str, checkpoint_dir: str):
    """The model dimensions in ``<checkpoint>/config.json`` (None when absent); adapter folders are rejected."""
    if not checkpoint_dir:
        return None
    folder = Path(checkpoint_dir)
    markers = [name for name in LORA_MARKERS if (folder / name).exists()]
    if markers:
        raise ValueError(f"--checkpoint {folder} holds a LoRA adapter ({', '.join(markers)}), not a base model: "
                         f"build from the merged base checkpoint whose embedding/lm_head include the SID rows")
    config_json = folder / "config.json"
    if not config_json.exists():
        log.warning("%s not found: using the %s preset's dimensions", config_json, preset)
        return None
    shape = shape_from_hf_config(config_json, PRESET_SHAPES[preset])
    log.info("model dimensions from %s: %s", config_json, shape)
    return shape


def check_tools(config: EngineBuildConfig, python: str) -> None:
    missing = [tool for tool in ("trtllm-build",) if shutil.which(tool) is None]
    script = Path(convert_command(config, python)[1])
    if not script.exists():
        missing.append(str(script))
    probe = subprocess.run([python, "-c", "import tensorrt_llm"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["not importable"])[-1]
        missing.append(f"python module tensorrt_llm ({reason})")
    if missing:
        raise BuildToolsMissing("TensorRT-LLM build tools are not available on this machine: " + "; ".join(missing)
                                + ". Run on a GPU node inside the Triton TensorRT-LLM image (see docs/gpu_nodes.md)"
                                  ", or pass --dry-run to only plan the build.")


def run_build(config: EngineBuildConfig, python: str = "python3") -> Path:
    check_tools(config, python)
    for command in build_commands(config, python):
        log.info("running: %s", shlex.join(command))
        subprocess.run(command, check=True)
    return engine_dir(config)


def write_plan(config: EngineBuildConfig, python: str = "python3") -> Path:
    path = Path(config.output_dir) / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_plan(config, python), indent=2, ensure_ascii=False) + "\n")
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESET_OVERRIDES))
    parser.add_argument("--checkpoint", required=True, help="Qwen2 HF checkpoint folder (SID rows included)")
    parser.add_argument("--output", required=True, help="folder for the TensorRT-LLM checkpoint, engine, plan")
    parser.add_argument("--python", default=sys.executable, help="interpreter that has tensorrt_llm")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and write build_plan.json only")
    # Every other flag mirrors a dataclass field; its default comes from the preset, then the dataclass.
    for f in fields(EngineBuildConfig):
        if f.name in ("preset", "shape", "checkpoint_dir", "output_dir"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):  # a list of names (--lora-modules attn_q attn_k ...)
            parser.add_argument(flag, dest=f.name, nargs="+", default=None, help=f"default: {' '.join(f.default)}")
            continue
        kind = type(f.default) if f.default is not None else str
        choices = QUANT_FORMATS if f.name == "quant" else None
        parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices,
                            help=f"default: preset value, else {f.default!r}")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EngineBuildConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(EngineBuildConfig)
                 if f.name not in ("preset", "shape", "checkpoint_dir", "output_dir")}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return EngineBuildConfig.for_preset(args.preset, checkpoint_dir=str(args.checkpoint),
                                        output_dir=str(args.output),
                                        shape=checkpoint_shape(args.preset, str(args.checkpoint)), **overrides)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for command in build_commands(config, args.python):
            print(shlex.join(command))
        print(f"wrote {write_plan(config, args.python)}")
        return 0
    write_plan(config, args.python)
    try:
        print(f"engine written to {run_build(config, args.python)}")
    except BuildToolsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except subprocess.CalledProcessError as error:
        print(f"error: step failed with exit code {error.returncode}: {shlex.join(error.cmd)}", file=sys.stderr)
        return error.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
