"""Latency of one recommendation turn: through Triton over gRPC vs the same pipeline in-process, side by side.

Measures, on held-out synthetic requests of the built artifacts:
* ``ensemble``: the ``recllm`` ensemble (encoder → retriever → reranker → generator) round trip;
* ``chat``: a streamed ``recllm_chat`` turn — time to first token and full turn;
at concurrency 1 and 4, and the same two paths called in-process (one thread), then prints p50/p95/p99 and the
Triton/in-process ratio, the profile reads one request makes (counted on the in-process pipeline), and the ratios
against the previous recorded run (the JSON this run replaces). Writes ``benchmarks/results/serving_latency.{json,md}``
with machine info and the command.

    python -m benchmarks.serving_latency [--artifact-dir artifacts/default] [--requests 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.dialogue.chat_engine import ChatEngine, InProcessChatStages, TextChunk
from recllm.dialogue.session_store import SessionStore
from recllm.pipeline import RecPipeline
from recllm.rag.rec_request import parse_request
from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port
from recllm_client import RecLLMClient
from recllm_proto.user_token import Keyring, load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_P95_MS = 500.0  # the product's: a full chat turn in well under a second
# the generator's own goals on this 2-core machine (the LLM issue): turn p95, time to first token p95 at
# concurrency 1, and more throughput at concurrency 4 than at 1
GENERATOR_GOALS_MS = {"triton_chat_full_turn_c1": 300.0, "triton_chat_first_token_c1": 80.0}


@dataclass
class BenchConfig:
    artifact_dir: Path = Path("artifacts/default")
    requests: int = 60
    warmup: int = 5
    concurrencies: tuple[int, ...] = (1, 4)
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.warmup < 0:
            raise ValueError(f"BenchConfig.requests must be > 0 and warmup >= 0, got {self.requests}, {self.warmup}")


def load_workload(layout: ArtifactLayout, n: int) -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in layout.eval_queries.read_text(encoding="utf-8").splitlines()]
    workload = [(r["user_id"], r["text"], r["service"]) for r in rows]
    return [workload[i % len(workload)] for i in range(n)]


def percentiles(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_ms": round(float(ms.mean()), 1)}


def run_concurrent(fn, workload, concurrency: int) -> tuple[list, float]:
    """Run ``fn(request)`` over the workload with ``concurrency`` threads; (results, wall seconds)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(fn, workload))
    return results, time.perf_counter() - started


def triton_measurements(url: str, workload, config: BenchConfig, keyring: Keyring) -> dict:
    """``keyring``: the server's, so each call carries a freshly signed user token like a real backend's."""
    local = threading.local()

    def client() -> RecLLMClient:
        if not hasattr(local, "client"):
            local.client = RecLLMClient(url, timeout_s=120, keyring=keyring)
        return local.client

    def ensemble_call(request):
        started = time.perf_counter()
        client().recommend(request[0], request[1], config.top_k, request[2])
        return time.perf_counter() - started

    def chat_call(request):
        turn = client().chat(f"bench-{uuid.uuid4().hex}", request[0], request[1], config.top_k, request[2])
        return turn.first_token_s or turn.total_s, turn.total_s

    run_concurrent(ensemble_call, workload[: config.warmup], 1)
    run_concurrent(chat_call, workload[: config.warmup], 1)
    results = {}
    for concurrency in config.concurrencies:
        latencies, wall = run_concurrent(ensemble_call, workload, concurrency)
        results[f"triton_ensemble_c{concurrency}"] = percentiles(latencies) | {"throughput_rps": round(len(workload) / wall, 2)}
        turns, wall = run_concurrent(chat_call, workload, concurrency)
        results[f"triton_chat_first_token_c{concurrency}"] = percentiles([t[0] for t in turns])
        results[f"triton_chat_full_turn_c{concurrency}"] = percentiles([t[1] for t in turns]) | {
            "throughput_rps": round(len(workload) / wall, 2)}
    return results


def in_process_measurements(layout: ArtifactLayout, workload, config: BenchConfig, tmp: Path) -> dict:
    pipeline = RecPipeline.load(layout.root)
    engine = ChatEngine(SessionStore(tmp / "bench_sessions.sqlite"), InProcessChatStages(pipeline))

    def ensemble_call(request):
        started = time.perf_counter()
        pipeline.recommend(request[0], request[1], config.top_k, request[2])
        return time.perf_counter() - started

    def chat_call(request):
        started, first = time.perf_counter(), None
        for chunk in engine.turn(f"bench-{uuid.uuid4().hex}", request[0], request[1], config.top_k, request[2]):
            if first is None and isinstance(chunk, TextChunk):
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        return first or total, total

    run_concurrent(ensemble_call, workload[: config.warmup], 1)
    ensemble, _ = run_concurrent(ensemble_call, workload, 1)
    turns, _ = run_concurrent(chat_call, workload, 1)
    return {"in_process_ensemble_c1": percentiles(ensemble),
            "in_process_chat_first_token_c1": percentiles([t[0] for t in turns]),
            "in_process_chat_full_turn_c1": percentiles([t[1] for t in turns])}


class CountingProfile:
    """The profile storage with every call counted by method name (what one request reads)."""

    def __init__(self, store):
        self.store, self.calls = store, Counter()

    def __getattr__(self, name):
        attribute = getattr(self.store, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)
        return counted


def profile_reads_per_request(layout: ArtifactLayout, workload) -> dict:
    """Profile-store calls per request of retrieve → rank (the Triton ensemble's retriever and reranker)."""
    pipeline = RecPipeline.load(layout.root)
    retriever_profile = CountingProfile(pipeline.retriever.profile)
    ranking_profile = CountingProfile(pipeline.ranking.profile)
    pipeline.retriever.profile, pipeline.ranking.profile = retriever_profile, ranking_profile
    for user_id, text, service in workload:
        pipeline.retrieve_and_rank(parse_request(user_id, text, 5, service))
    n = max(len(workload), 1)
    return {"requests": len(workload),
            "retriever": {k: round(v / n, 2) for k, v in sorted(retriever_profile.calls.items())},
            "reranker": {k: round(v / n, 2) for k, v in sorted(ranking_profile.calls.items())},
            "total_per_request": round((sum(retriever_profile.calls.values()) + sum(ranking_profile.calls.values())) / n, 2)}


def against_previous(results: dict, previous: dict | None) -> dict:
    """current / previous p50 and p95 per measurement both runs have (and throughput where recorded)."""
    if not previous:
        return {}
    rows = {}
    for name, row in results.items():
        old = previous.get("results", {}).get(name)
        if not old:
            continue
        rows[name] = {"p50": round(row["p50_ms"] / old["p50_ms"], 2), "p95": round(row["p95_ms"] / old["p95_ms"], 2)}
        if row.get("throughput_rps") and old.get("throughput_rps"):
            rows[name]["throughput"] = round(row["throughput_rps"] / old["throughput_rps"], 2)
    return {"previous_commit": previous.get("machine", {}).get("git_commit"), "ratios": rows}


def ratios(results: dict) -> dict:
    pairs = {"ensemble": ("triton_ensemble_c1", "in_process_ensemble_c1"),
             "chat_first_token": ("triton_chat_first_token_c1", "in_process_chat_first_token_c1"),
             "chat_full_turn": ("triton_chat_full_turn_c1", "in_process_chat_full_turn_c1")}
    return {name: round(results[t]["p50_ms"] / results[i]["p50_ms"], 2) for name, (t, i) in pairs.items()}


def generator_goals(results: dict) -> list[dict]:
    goals = [{"what": f"{name} p95 ms", "value": results[name]["p95_ms"], "goal": f"< {limit:.0f}",
              "met": results[name]["p95_ms"] < limit} for name, limit in GENERATOR_GOALS_MS.items()]
    for path in ("ensemble", "chat_full_turn"):
        c1, c4 = (results.get(f"triton_{path}_c{c}", {}).get("throughput_rps") for c in (1, 4))
        if c1 and c4:
            goals.append({"what": f"triton {path} throughput c4 / c1", "value": f"{c4} / {c1} rps",
                          "goal": "c4 > c1", "met": c4 > c1})
    return goals


def markdown(report: dict) -> str:
    lines = ["| measurement | n | p50 ms | p95 ms | p99 ms | throughput rps |", "|---|---|---|---|---|---|"]
    for name, row in report["results"].items():
        lines.append(f"| {name} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                     f"{row.get('throughput_rps', '')} |")
    lines.append("")
    lines.append("Triton / in-process p50 ratio (concurrency 1): " +
                 ", ".join(f"{k} {v}x" for k, v in report["triton_over_in_process_p50"].items()))
    lines.append(f"Goal: full chat turn p95 < {GOAL_P95_MS:.0f} ms at concurrency 1 — "
                 f"{'met' if report['goal_met'] else 'not met'}.")
    lines += ["", "The generator's goals on this machine:", ""] + [
        f"- {goal['what']}: {goal['value']} (goal {goal['goal']}) — {'met' if goal['met'] else 'NOT met'}"
        for goal in report.get("generator_goals", [])]
    reads = report.get("profile_reads")
    if reads:
        lines += ["", f"Profile reads per request (retrieve → rank, in-process, {reads['requests']} requests): "
                  f"{reads['total_per_request']} — retriever {reads['retriever']}, reranker {reads['reranker']}."]
    previous = report.get("against_previous")
    if previous and previous.get("ratios"):
        lines += ["", f"This run / the previous recorded run (commit {previous['previous_commit']}), lower latency "
                  "ratio is better:", "", "| measurement | p50 | p95 | throughput |", "|---|---|---|---|"]
        for name, row in previous["ratios"].items():
            lines.append(f"| {name} | {row['p50']}x | {row['p95']}x | {str(row['throughput']) + 'x' if 'throughput' in row else ''} |")
    return "\n".join(lines)


def run(config: BenchConfig, previous: dict | None = None) -> dict:
    layout = ArtifactLayout(config.artifact_dir)
    layout.require_built()
    workload = load_workload(layout, config.requests)
    info = machine_info()
    server_config = TritonServerConfig(artifact_dir=layout.root, grpc_port=free_port(), http_port=free_port(),
                                       metrics_port=free_port())
    with TritonServer(server_config) as server:
        results = triton_measurements(server.config.grpc_url, workload, config,
                                      load_keyring(server.config.keyring_path).backend_view())
    results |= in_process_measurements(layout, workload, config, layout.root)
    reads = profile_reads_per_request(layout, workload)
    report = {"machine": info, "artifacts": layout.read_manifest(), "config": {
        "requests": config.requests, "concurrencies": list(config.concurrencies), "top_k": config.top_k},
        "results": results, "triton_over_in_process_p50": ratios(results),
        "goal_met": results["triton_chat_full_turn_c1"]["p95_ms"] < GOAL_P95_MS,
        "generator_goals": generator_goals(results),
        "profile_reads": reads, "against_previous": against_previous(results, previous)}
    return report


def main(argv: list[str] | None = None) -> None:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--output", type=Path, default=RESULTS / "serving_latency")
    args = parser.parse_args(argv)
    previous_path = args.output.with_suffix(".json")
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() else None
    report = run(BenchConfig(artifact_dir=args.artifact_dir, requests=args.requests), previous)
    command = "python -m benchmarks.serving_latency " + " ".join(argv if argv is not None else sys.argv[1:])
    report["command"] = command.strip()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    table = markdown(report)
    args.output.with_suffix(".md").write_text(f"# Serving latency\n\nCommand: `{report['command']}`\n\n"
                                              f"Machine: {json.dumps(report['machine'])}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
