"""validate_on_gpu.sh is not run here (no GPU): check its syntax and that every flag it passes exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from builders.trtllm import build_engine
from ensemble import gpu_repository

SCRIPT = Path(build_engine.__file__).with_name("validate_on_gpu.sh")


def test_script_parses_with_bash_n():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    subprocess.run([bash, "-n", str(SCRIPT)], check=True)


def test_header_says_it_was_not_run_here():
    header = SCRIPT.read_text().split("set -euo pipefail")[0]
    assert "NOT RUN HERE" in header


def test_build_flags_are_accepted_by_the_builder(tmp_path):
    text = SCRIPT.read_text()
    flags = re.search(r"BUILD_ARGS=\((.*?)\)\n", text, re.S).group(1)
    argv = re.sub(r'"\$[A-Z_]+"', "X", flags).replace("\\\n", " ").split()
    argv = [str(tmp_path) if a == "X" else a for a in argv]
    argv[argv.index("--gpu-memory-gib") + 1] = "80"
    config = build_engine.config_from_args(build_engine.parse_args(argv))
    assert (config.preset, config.tp, config.quant, config.max_lora_rank) == ("0.5b", 1, "bf16", 8)


def test_repository_flags_generate_a_loadable_repository(tmp_path):
    gpu_repository.main(["--repository", str(tmp_path), "--preset", "0.5b", "--gpu-memory-gib", "139.0",
                         "--engine-dir", "/w/engine/engine", "--tokenizer-dir", "/ckpt", "--adapter-dir", "/w/users",
                         "--lora-prefetch-dir", "/w/prefetch", "--guided-decoding-backend", ""])
    config = text_format.Parse((tmp_path / "tensorrt_llm/config.pbtxt").read_text(), mc.ModelConfig())
    assert config.parameters["gpt_model_path"].string_value == "/w/engine/engine"
    assert "guided_decoding_backend" not in config.parameters
    assert config.max_batch_size == 64
    # Every flag of the script's repository step exists in the generator's CLI.
    step = SCRIPT.read_text().split("ensemble.gpu_repository")[1].split("\ncp ")[0]
    for flag in re.findall(r"(--[a-z-]+)", step):
        assert flag in {"--repository", "--preset", "--gpu-memory-gib", "--engine-dir", "--tokenizer-dir",
                        "--adapter-dir", "--lora-prefetch-dir", "--guided-decoding-backend"}, flag
