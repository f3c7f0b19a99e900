"""docs/gpu_nodes.md: the builder commands it shows are accepted by the real CLI."""

from __future__ import annotations

import re
from pathlib import Path

from builders.trtllm import build_engine

DOC = Path(__file__).resolve().parents[3] / "docs" / "gpu_nodes.md"


def test_documented_build_commands_parse_and_validate():
    text = DOC.read_text().replace("\\\n", " ")
    commands = re.findall(r"python -m builders\.trtllm\.build_engine ([^\n#]+)", text)
    assert len(commands) >= 2
    for command in commands:
        argv = [{"CKPT": "/ckpt", "OUT": "/out"}.get(a, a) for a in command.split("`")[0].split()]
        config = build_engine.config_from_args(build_engine.parse_args(argv))
        assert config.preset == "72b" and config.tp == 4 and config.quant == "fp8"


def test_doc_has_the_tested_versus_gpu_table():
    assert "## What was tested here and what only a GPU node confirms" in DOC.read_text()
