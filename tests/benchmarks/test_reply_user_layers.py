"""benchmarks/reply_user_layers on the session's test build (in-process section; the Triton section needs two
server starts and is run by hand)."""

from __future__ import annotations

from benchmarks.machine_info import machine_info
from benchmarks.reply_user_layers import ReplyLayersBenchConfig, markdown, run

import pytest


def test_in_process_on_off_and_the_report(test_artifacts, tmp_path):
    config = ReplyLayersBenchConfig(artifact_dir=test_artifacts.root, requests=8, batch=4, triton=False,
                                    results_dir=tmp_path)
    report = run(config)
    for batch in ("batch 1", "batch 4"):
        row = report["in_process"][batch]
        assert row["replies"] == 8
        assert row["on"]["wall_p50_ms"] > 0 and row["off"]["wall_p50_ms"] > 0
        assert row["ratio"]["wall_p95_ms_on/off"] > 0
        assert row["on"]["forwards_per_reply"] >= 2 and row["on"]["cpu_ms_per_forward"] > 0
    assert report["in_process"]["u_reads"] == 0  # as served: u from the retriever's read, no profile read of its own
    assert set(report["in_process"]["variants"]) == {"norm only", "norm + prefix", "LoRA mixture only"}
    assert set(report["in_process"]["citations"]) == {"off", "on", "norm only", "norm + prefix", "LoRA mixture only"}
    text = markdown(report, config, machine_info(), "python -m benchmarks.reply_user_layers")
    assert "| base |" in text and "## In-process generation" in text and "Chat turn through Triton" not in text
    assert "| all (served) |" in text and "CPU ms per forward off / on" in text


def test_config_is_checked():
    with pytest.raises(ValueError):
        ReplyLayersBenchConfig(requests=2, batch=4)
