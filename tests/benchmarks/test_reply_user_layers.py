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


def test_same_reply_split_compares_only_turns_both_servers_answered_alike():
    from benchmarks.reply_user_layers import same_reply_split

    served = {"off": [{0: ("a", 10.0), 1: ("b", 20.0), 2: ("c", 30.0)}, {0: ("a", 12.0), 1: ("b", 22.0)}],
              "on": [{0: ("a", 11.0), 1: ("b longer", 40.0), 2: ("c", 33.0)}, {0: ("a", 13.0), 1: ("b longer", 44.0)}]}
    split = same_reply_split(served)
    assert split["turns"] == 3 and split["same_reply_turns"] == 2  # turns 0 and 2; turn 1's reply changed
    same, changed = split["same reply"], split["changed reply"]
    assert same["off"]["p50_ms"] == 12.0 and same["on"]["p50_ms"] == 13.0  # pooled over rounds: 10, 12, 30 / 11, 13, 33
    assert changed["off"]["mean_reply_chars"] == 1 and changed["on"]["mean_reply_chars"] == len("b longer")
    assert changed["p50_added"] == round(42.0 / 21.0 - 1, 3)
