"""benchmarks.throughput helpers that need no server: the per-stage CPU time read from /proc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from benchmarks.throughput import stage_cpu_seconds, stage_delta

# Burns CPU until its own CPU clock shows 0.2 s (so the reading below has something to find), then waits.
BURN = textwrap.dedent("""
    import sys, time
    while time.process_time() < 0.2:
        pass
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_stage_cpu_seconds_counts_the_stage_processes_of_the_server_group(tmp_path):
    model = tmp_path / "reranker" / "1" / "model.py"  # a stub's command line names the model file it runs
    stage = subprocess.Popen([sys.executable, "-c", BURN, str(model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    outsider = subprocess.Popen([sys.executable, "-c", BURN, str(model)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert stage.stdout.readline().strip() == "ready" and outsider.stdout.readline().strip() == "ready"
        mine = stage_cpu_seconds(stage.pid)  # the stub leads its own group here, as tritonserver leads the real one
        # its own ~0.2 s, not the outsider's as well (that would make it >= 0.38 s)
        assert 0.19 <= mine["reranker"] < 0.38 and mine["retriever"] == 0.0
    finally:
        for process in (stage, outsider):
            process.stdin.close()
            process.wait(timeout=10)


def test_stage_delta_turns_cpu_seconds_into_ms_per_request():
    counters = ("queue", "compute_input", "compute_infer", "compute_output", "success")
    before = {m: {"inferences": 0, "executions": 0, **dict.fromkeys(counters, 0)} for m in
              ("query_encoder", "retriever", "reranker", "generator")}
    after = {m: dict(v, inferences=10, executions=5) for m, v in before.items()}
    cpu = dict.fromkeys(before, 0.0)
    rows = stage_delta(before, after, cpu, dict(cpu, reranker=0.05))
    assert rows["reranker"]["cpu_ms"] == 5.0 and rows["retriever"]["cpu_ms"] == 0.0
    assert "cpu_ms" not in stage_delta(before, after)["reranker"]


def test_closed_loop_with_max_requests_serves_exactly_the_workload_prefix():
    from benchmarks.throughput import closed_loop

    seen = []
    workload = [(f"u{i}", "q", "") for i in range(10)]
    level = closed_loop("prefix", 2, 30.0, lambda: (lambda user, query, service: seen.append(user)), workload,
                        max_requests=5)
    assert sorted(seen) == [f"u{i}" for i in range(5)] and len(level.latencies_ms) == 5 and level.errors == 0
