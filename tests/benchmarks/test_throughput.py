"""benchmarks.throughput helpers that need no server: the per-stage CPU time read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from benchmarks.throughput import (
    SERVER_PROCESS, process_cpu_ms, process_cpu_seconds, process_rss_mib, stage_cpu_seconds, stage_delta,
)

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


# A stand-in server: starts a chat stub of its own group (the stub's command line names the model file, the
# server's does not), then burns.
SERVER = textwrap.dedent("""
    import os, subprocess, sys
    stub = subprocess.Popen([sys.executable, "-c", sys.argv[1], os.environ["STUB_MODEL_FILE"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    stub.stdout.readline()
    exec(sys.argv[1])
    stub.stdin.close()
    stub.wait()
""")


def test_process_cpu_seconds_names_each_model_s_stubs_and_the_server_itself(tmp_path):
    model = tmp_path / "recllm_chat" / "1" / "model.py"
    server = subprocess.Popen([sys.executable, "-c", SERVER, BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True, env={**os.environ, "STUB_MODEL_FILE": str(model)})
    try:
        assert server.stdout.readline().strip() == "ready"
        seconds = process_cpu_seconds(server.pid)
        assert set(seconds) == {SERVER_PROCESS, "recllm_chat"}
        assert 0.19 <= seconds["recllm_chat"] < 0.38 and 0.19 <= seconds[SERVER_PROCESS] < 0.38
        rss = process_rss_mib(server.pid)  # two Python interpreters: a few MiB each, far from a GiB
        assert set(rss) == {SERVER_PROCESS, "recllm_chat"} and all(1 < mib < 1024 for mib in rss.values())
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def test_process_cpu_ms_is_per_request_and_keeps_only_what_ran():
    before = {"recllm_chat": 1.0, SERVER_PROCESS: 2.0, "reranker": 3.0}
    after = {"recllm_chat": 1.5, SERVER_PROCESS: 2.1, "reranker": 3.0, "generator_stream": 0.2}
    assert process_cpu_ms(before, after, 10) == {"generator_stream": 20.0, "recllm_chat": 50.0, SERVER_PROCESS: 10.0}


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
