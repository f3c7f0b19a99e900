"""Throughput and tail latency of the served paths, side by side with the naive FastAPI stack, in one run.

One run on one machine, so load from neighbours hits both sides alike; the report gives ratios:

* ``recllm_rank`` (encoder → retriever → reranker, batched stages) and the full ``recllm`` ensemble through the real
  tritonserver, and a streamed ``recllm_chat`` turn, each closed-loop at every concurrency for a fixed time;
* the naive stack (``benchmarks/naive_stack.py``: one uvicorn process, the same stages called directly,
  ``transformers`` ``generate()`` for the reply) on ``/rank`` and ``/recommend`` at the same concurrencies;
* per stage, from Triton's statistics API (``get_inference_statistics``) around each level: requests, executions
  (so the mean dynamic batch), queue and compute time per request;
* a cProfile of the stage with the most compute per request, run in-process on the same requests;
* ``recllm_rank`` again on a second server whose retriever keeps no profile reads (``$RECLLM_CONTEXT_CACHE_USERS``
  0), so the profile cache's effect is a ratio in the same run (``--no-cache-off`` skips it). The workload cycles
  over the held-out users, and every server (naive included) serves each user once before the levels start, so the
  levels measure returning users (the profile cache hits while nothing of the user changed); the cache-off rows give
  what every request costs when it reads the profile (a first visit, or a user whose profile just changed).

    python -m benchmarks.throughput --artifact-dir DIR [--seconds 8] [--concurrency 1 4 16]

Writes ``benchmarks/results/throughput.{md,json}`` and ``throughput.png`` (latency vs throughput).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import pstats
import re
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.pipeline import CONTEXT_CACHE_USERS_ENV, CONTINUOUS_BATCHING_ENV, JUMP_FORWARD_ENV
from recllm.serving.stub_watchdog import status_field
from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port
from recllm_client import RecLLMClient
from recllm_proto.user_token import Keyring, load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("query_encoder", "retriever", "reranker", "generator")
GOALS = {"rank_p95_c1_ms": 20.0, "rank_rps_c16": 150.0, "full_vs_naive": 2.0}


# serving switches a run can also measure flipped from their default, side by side: name -> (the environment variable
# the server reads, the value that flips it)
REPLY_SWITCHES = {"jump-forward": (JUMP_FORWARD_ENV, "off"), "continuous batching": (CONTINUOUS_BATCHING_ENV, "on")}


@dataclass
class ThroughputConfig:
    artifact_dir: Path = Path("artifacts/default")
    seconds: float = 8.0                     # per path and concurrency level (closed loop)
    concurrency: tuple[int, ...] = (1, 4, 16)
    full_concurrency: tuple[int, ...] = (1, 4, 16)
    top_k: int = 5
    naive: bool = True
    profile_requests: int = 200
    compare_cache_off: bool = True           # also recllm_rank with the retriever's profile cache off
    # also the reply paths with these serving switches flipped (``REPLY_SWITCHES``), each on a server of its own
    switches: tuple[str, ...] = ()
    work_dir: Path = Path("/tmp/recllm_throughput")
    results_dir: Path = RESULTS

    def __post_init__(self):
        if self.seconds <= 0 or not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"ThroughputConfig: seconds must be > 0 and concurrency >= 1, got {self.seconds}, "
                             f"{self.concurrency}")
        unknown = [s for s in self.switches if s not in REPLY_SWITCHES]
        if unknown:
            raise ValueError(f"ThroughputConfig.switches: unknown {unknown}, known {sorted(REPLY_SWITCHES)}")


@dataclass
class Level:
    path: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    stages: dict = field(default_factory=dict)
    error_kinds: Counter = field(default_factory=Counter)  # "ExceptionType: first line" -> count
    process_cpu_ms: dict = field(default_factory=dict)     # process kind -> CPU ms per request (Triton levels)

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms or [np.nan])
        return {"path": self.path, "concurrency": self.concurrency, "requests": len(self.latencies_ms),
                "errors": self.errors, "error_kinds": dict(self.error_kinds.most_common(3)),
                "rps": round(len(self.latencies_ms) / self.elapsed_s, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
                "p99_ms": round(float(np.percentile(lat, 99)), 1), "stages": self.stages,
                "process_cpu_ms": self.process_cpu_ms}


def load_workload(layout: ArtifactLayout) -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in layout.eval_queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["user_id"], r["text"], r.get("service") or "") for r in rows]


def closed_loop(path: str, concurrency: int, seconds: float, make_call, workload,
                max_requests: int | None = None) -> Level:
    """``concurrency`` threads, each sending its next request as soon as the previous one returns, for ``seconds``
    or until ``max_requests`` requests (the workload's first ones: two runs compared side by side then serve the same
    requests, not whichever prefix each got through in the time)."""
    level = Level(path, concurrency)
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        call = make_call()
        k = index
        while time.perf_counter() < stop and (max_requests is None or k < max_requests):
            user, query, service = workload[k % len(workload)]
            k += concurrency
            started = time.perf_counter()
            error = None
            try:
                call(user, query, service)
            except Exception as exc:  # noqa: BLE001 - counted and named, the run goes on
                error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if error is None:
                    level.latencies_ms.append(elapsed)
                else:
                    level.errors += 1
                    level.error_kinds[error] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level.elapsed_s = time.perf_counter() - started
    return level


SERVER_PROCESS = "tritonserver"  # the server's own process (gRPC, scheduling, ensembles, BLS hand-offs)
STUB_MODEL_RE = re.compile(rb"/([^/]+)/1/model\.py$")


def server_processes(server_pid: int):
    """``(proc entry, process kind, stat fields from field 3)`` of every process of the server: each model's
    Python-backend stubs (kind: the model) and the server itself. The stubs are in the server's process group
    (``TritonServer`` starts it in a session of its own); a stub is told apart by the ``<model>/1/model.py`` it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state): pgrp is field 5, utime 14, stime 15
        if int(fields[2]) != server_pid:
            continue
        model = next((m.group(1).decode() for m in map(STUB_MODEL_RE.search, args) if m),
                     SERVER_PROCESS if int(entry.name) == server_pid else None)
        if model is not None:
            yield entry, model, fields


def process_cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of every model's Python-backend stubs (all its instances) and of the server
    itself, from ``/proc``: each process's own work, which the neighbours' load does not inflate the way it inflates
    wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for _, model, fields in server_processes(server_pid):
        out[model] = out.get(model, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def process_rss_mib(server_pid: int) -> dict[str, float]:
    """Resident memory now (MiB) of each process kind of the server, all its processes together."""
    out: dict[str, float] = {}
    for entry, model, _ in server_processes(server_pid):
        kib = status_field(int(entry.name), "VmRSS")
        if kib is not None:
            out[model] = round(out.get(model, 0.0) + int(kib) / 1024, 1)
    return out


def stage_cpu_seconds(server_pid: int, models=STAGES) -> dict[str, float]:
    """``process_cpu_seconds`` of the batched stages (0 for one not running)."""
    seconds = process_cpu_seconds(server_pid)
    return {model: seconds.get(model, 0.0) for model in models}


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float], name: str, requests: int) -> float:
    """CPU ms per request of one process kind between two ``process_cpu_seconds`` readings."""
    return round((after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / max(requests, 1), 2)


def process_cpu_ms(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU ms per client request of each process kind between two ``process_cpu_seconds`` readings (those that
    ran)."""
    return {name: cpu_ms_per_request(before, after, name, requests) for name in sorted(after)
            if after[name] > before.get(name, 0.0)}


def stage_stats(grpc) -> dict:
    out = {}
    for model in STAGES:
        s = grpc.get_inference_statistics(model, as_json=True)["model_stats"][0]
        inf = s.get("inference_stats", {})
        out[model] = {"inferences": int(s.get("inference_count", 0)), "executions": int(s.get("execution_count", 0)),
                      **{k: int(inf.get(k, {}).get("ns", 0)) for k in
                         ("queue", "compute_input", "compute_infer", "compute_output", "success")}}
    return out


def stage_delta(before: dict, after: dict, cpu_before: dict | None = None, cpu_after: dict | None = None) -> dict:
    rows = {}
    for model in STAGES:
        d = {k: after[model][k] - before[model][k] for k in after[model]}
        n = max(d["inferences"], 1)
        rows[model] = {"requests": d["inferences"], "mean_batch": round(d["inferences"] / max(d["executions"], 1), 2),
                       "queue_ms": round(d["queue"] / n / 1e6, 2),
                       "compute_ms": round(sum(d[k] for k in ("compute_input", "compute_infer", "compute_output"))
                                           / n / 1e6, 2),
                       "infer_ms_per_exec": round(d["compute_infer"] / max(d["executions"], 1) / 1e6, 2)}
        if cpu_before is not None and cpu_after is not None:  # per request the stage served
            rows[model]["cpu_ms"] = cpu_ms_per_request(cpu_before, cpu_after, model, n)
    return rows


def triton_levels(url: str, config: ThroughputConfig, workload, keyring: Keyring,
                  server_pid: int | None = None, paths: tuple[str, ...] | None = None, label: str = "") -> list[Level]:
    """``keyring``: the server's; every client signs a fresh user token per call, as a real backend does.
    ``server_pid``: the server's, to read its stage processes' CPU time per level (``stage_cpu_seconds``).
    ``paths``: only these (all three when None); ``label`` is appended to each path's name."""
    levels = []
    served = {
        "triton recllm_rank": (lambda c: lambda u, q, s: c.rank(u, q, config.top_k, s), config.concurrency),
        "triton recllm": (lambda c: lambda u, q, s: c.recommend(u, q, config.top_k, s), config.full_concurrency),
        "triton recllm_chat turn": (lambda c: lambda u, q, s: c.chat(f"tp-{uuid.uuid4().hex[:12]}", u, q,
                                                                     config.top_k, s), config.full_concurrency),
    }
    with RecLLMClient(url, timeout_s=120, keyring=keyring) as probe:
        for u, q, s in workload[:3]:  # warm every model once
            probe.rank(u, q, config.top_k, s), probe.recommend(u, q, config.top_k, s)
            probe.chat(f"tp-warm-{uuid.uuid4().hex[:8]}", u, q, config.top_k, s)
        for u, q, s in workload:  # every user seen once: the levels measure returning users (see the module doc)
            probe.rank(u, q, config.top_k, s)
        for path, (factory, concurrencies) in served.items():
            if paths is not None and path not in paths:
                continue
            path += label
            for c in concurrencies:
                clients: list[RecLLMClient] = []

                def make_call(factory=factory):
                    client = RecLLMClient(url, timeout_s=120, keyring=keyring)
                    clients.append(client)
                    return factory(client)

                cpu_before = process_cpu_seconds(server_pid) if server_pid else None
                before = stage_stats(probe.grpc)
                level = closed_loop(path, c, config.seconds, make_call, workload)
                cpu_after = process_cpu_seconds(server_pid) if server_pid else None
                level.stages = stage_delta(before, stage_stats(probe.grpc), cpu_before, cpu_after)
                if server_pid:
                    level.process_cpu_ms = process_cpu_ms(cpu_before, cpu_after, len(level.latencies_ms))
                for client in clients:
                    client.close()
                print(json.dumps({k: v for k, v in level.summary().items() if k != "stages"}), flush=True)
                levels.append(level)
    return levels


def naive_levels(url: str, config: ThroughputConfig, workload) -> list[Level]:
    import httpx  # noqa: PLC0415

    levels = []
    for path, endpoint, concurrencies in (("naive /rank", "/rank", config.concurrency),
                                          ("naive /recommend", "/recommend", config.full_concurrency)):
        def make_call(endpoint=endpoint):
            client = httpx.Client(base_url=url, timeout=120)

            def call(user, query, service):
                r = client.post(endpoint, json={"user_id": user, "query": query, "top_k": config.top_k,
                                                "service": service})
                r.raise_for_status()
            return call

        warm = make_call()
        for u, q, s in (workload if endpoint == "/rank" else workload[:2]):  # as the Triton side: users seen once
            warm(u, q, s)
        for c in concurrencies:
            level = closed_loop(path, c, config.seconds, make_call, workload)
            print(json.dumps(level.summary()), flush=True)
            levels.append(level)
    return levels


def profile_stage(stage: str, layout: ArtifactLayout, workload, n: int) -> str:
    """cProfile of one stage called in-process on ``n`` requests (top functions by own + callee time)."""
    from recllm.pipeline import load_ranking_stage, load_retriever  # noqa: PLC0415
    from recllm.rag.query_encoder import QueryEncoder  # noqa: PLC0415
    from recllm.rag.rec_request import parse_request  # noqa: PLC0415

    import faiss  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from recllm.serving.backend_adapter import TORCH_THREADS  # noqa: PLC0415

    torch.set_num_threads(TORCH_THREADS)  # as in the server's stage processes: threads spin on a loaded machine
    faiss.omp_set_num_threads(TORCH_THREADS)
    encoder = QueryEncoder.load(layout.query_encoder_dir)
    retriever = load_retriever(layout)
    ranking = load_ranking_stage(layout)
    jobs = []
    for user, query, service in (workload * (n // max(len(workload), 1) + 1))[:n]:
        request = parse_request(user, query, 5, service)
        vector = encoder.encode([request.query])[0]
        jobs.append((request, vector, retriever.retrieve(request, vector)))
    calls = {
        "query_encoder": lambda job: encoder.encode([job[0].query]),
        "retriever": lambda job: retriever.retrieve(job[0], job[1]),
        "reranker": lambda job: ranking.item_arrays(ranking.rank(job[0], job[2].service, job[2].candidate_ids,
                                                                  job[2].candidate_scores, job[2].context)),
    }
    call = calls[stage]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for job in jobs:
        call(job)
    profiler.disable()
    per_request = (time.perf_counter() - started) / len(jobs) * 1000
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(18)
    text = buffer.getvalue()
    body = text[text.find("   ncalls"):] if "   ncalls" in text else text
    return f"{stage}: {per_request:.2f} ms per request in-process under cProfile ({len(jobs)} requests)\n\n{body}"


def equal_p95_ratio(ours: list[dict], naive: list[dict]) -> list[dict]:
    """For each naive level: its throughput vs the best Triton throughput whose p95 is not above naive's p95."""
    rows = []
    for n in naive:
        fitting = [o for o in ours if o["p95_ms"] <= n["p95_ms"] and o["requests"]]
        best = max(fitting, key=lambda o: o["rps"]) if fitting else None
        ratio = round(best["rps"] / n["rps"], 2) if best and n["rps"] else None
        rows.append({"naive": n, "ours": best, "ratio": ratio})
    return rows


def plot(summaries: list[dict], target: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for path in dict.fromkeys(s["path"] for s in summaries):
        rows = [s for s in summaries if s["path"] == path]
        ax.plot([r["rps"] for r in rows], [r["p95_ms"] for r in rows], marker="o", label=path)
        for r in rows:
            ax.annotate(f"c{r['concurrency']}", (r["rps"], r["p95_ms"]), fontsize=7)
    ax.set_xlabel("throughput, requests/s")
    ax.set_ylabel("p95 latency, ms")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Rec-LLM: p95 latency vs throughput (2-core CPU, loopback)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def run(config: ThroughputConfig) -> dict:
    layout = ArtifactLayout(config.artifact_dir)
    layout.require_built()
    workload = load_workload(layout)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    server_config = TritonServerConfig(artifact_dir=config.artifact_dir, grpc_port=free_port(), http_port=free_port(),
                                       metrics_port=free_port(), runtime_dir=config.work_dir / "triton_runtime")
    with TritonServer(server_config, log_path=config.work_dir / "tritonserver.log") as server:
        levels = triton_levels(server.config.grpc_url, config, workload,
                               load_keyring(server.config.keyring_path).backend_view(), server.process.pid)
    if config.compare_cache_off:  # the same rank levels with every request reading the profile, for the ratio
        cache_off = dataclasses.replace(server_config, grpc_port=free_port(), http_port=free_port(),
                                        metrics_port=free_port(), extra_env={CONTEXT_CACHE_USERS_ENV: "0"})
        with TritonServer(cache_off, log_path=config.work_dir / "tritonserver_cache_off.log") as server:
            levels += triton_levels(server.config.grpc_url, config, workload,
                                    load_keyring(server.config.keyring_path).backend_view(), server.process.pid,
                                    paths=("triton recllm_rank",), label=" (profile cache off)")
    for switch in config.switches:  # the reply paths with one serving switch flipped, for the ratio
        env, value = REPLY_SWITCHES[switch]
        flipped = dataclasses.replace(server_config, grpc_port=free_port(), http_port=free_port(),
                                      metrics_port=free_port(), extra_env={**server_config.extra_env, env: value})
        log_name = f"tritonserver_{switch.replace(' ', '_')}_{value}.log"
        with TritonServer(flipped, log_path=config.work_dir / log_name) as server:
            levels += triton_levels(server.config.grpc_url, config, workload,
                                    load_keyring(server.config.keyring_path).backend_view(), server.process.pid,
                                    paths=REPLY_PATHS, label=f" ({switch} {value})")
    naive = []
    if config.naive:
        from benchmarks.naive_stack import NaiveServer  # noqa: PLC0415

        with NaiveServer(config.artifact_dir, free_port(), config.work_dir / "naive.log") as stack:
            naive = naive_levels(stack.url, config, workload)
    summaries = [lvl.summary() for lvl in levels + naive]
    rank = [s for s in summaries if s["path"] == "triton recllm_rank"]
    hottest = max(("query_encoder", "retriever", "reranker"),
                  key=lambda m: sum(s["stages"][m]["compute_ms"] for s in rank))
    return {"summaries": summaries, "hottest": hottest,
            "profile": profile_stage(hottest, layout, workload, config.profile_requests)}


def markdown(report: dict, config: ThroughputConfig, info: dict, command: str) -> str:
    s = report["summaries"]
    by = lambda path: [r for r in s if r["path"] == path]  # noqa: E731
    lines = ["# Throughput: batched Triton stages vs the naive FastAPI stack", "",
             f"Command: `{command}`  ", f"Machine: {info.get('cpu')}, {info.get('cores')} cores, "
             f"load average at start {info.get('load_average_at_start')}; git {info.get('git_commit')}.  ",
             f"Artifacts: `{config.artifact_dir}`; closed loop, {config.seconds:g} s per path and concurrency, "
             f"top_k {config.top_k}, held-out requests from `eval_queries.jsonl`; both stacks in the same run.", "",
             "| path | c | requests | errors | req/s | p50 ms | p95 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s:
        lines.append(f"| {r['path']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']} | "
                     f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    failed = [r for r in s if r.get("error_kinds")]
    if failed:
        lines += ["", "Errors by kind (up to three per level):", ""]
        lines += [f"- {r['path']} c{r['concurrency']}: " + "; ".join(f"{n} × `{kind}`" for kind, n in
                                                                  r["error_kinds"].items()) for r in failed]
    rank = by("triton recllm_rank")
    lines += ["", "## Goals", ""]
    c1 = next((r for r in rank if r["concurrency"] == 1), None)
    c16 = next((r for r in rank if r["concurrency"] == 16), None)
    if c1:
        lines.append(f"- recllm_rank p95 at c1: {c1['p95_ms']} ms (goal < {GOALS['rank_p95_c1_ms']:g} ms)")
    if c16:
        lines.append(f"- recllm_rank throughput at c16: {c16['rps']} req/s (goal >= {GOALS['rank_rps_c16']:g})")
    for switch in config.switches:
        value = REPLY_SWITCHES[switch][1]
        for path in REPLY_PATHS:
            for base, flip in zip(by(path), by(f"{path} ({switch} {value})")):
                cpu_base, cpu_flip = (sum(r.get("process_cpu_ms", {}).values()) for r in (base, flip))
                lines.append(f"- {path} at c{base['concurrency']}, as served vs {switch} {value}: {base['rps']} vs "
                             f"{flip['rps']} req/s (**{round(base['rps'] / max(flip['rps'], 1e-9), 2)}x**), p95 "
                             f"{base['p95_ms']} vs {flip['p95_ms']} ms, CPU {round(cpu_base, 1)} vs "
                             f"{round(cpu_flip, 1)} ms per request")
    for on, off in zip(rank, by("triton recllm_rank (profile cache off)")):
        lines.append(f"- recllm_rank at c{on['concurrency']}, profile cache on vs off (every request reads the "
                     f"profile): {on['rps']} vs {off['rps']} req/s (**{round(on['rps'] / max(off['rps'], 1e-9), 2)}x**),"
                     f" p95 {on['p95_ms']} vs {off['p95_ms']} ms")
    for ours_path, naive_path in (("triton recllm_rank", "naive /rank"), ("triton recllm", "naive /recommend"),
                                  ("triton recllm_chat turn", "naive /recommend")):
        for row in equal_p95_ratio(by(ours_path), by(naive_path)):
            n, o = row["naive"], row["ours"]
            if o:
                lines.append(f"- {ours_path} vs {naive_path} at p95 <= {n['p95_ms']} ms (naive c{n['concurrency']}, "
                             f"{n['rps']} req/s): ours c{o['concurrency']} {o['rps']} req/s → **{row['ratio']}x**")
            else:
                lines.append(f"- {ours_path} vs {naive_path} at naive c{n['concurrency']} (p95 {n['p95_ms']} ms): "
                             f"no Triton level that low")
    lines += ["", "## Per-stage time (Triton statistics API, per request, during each level)", "",
              "compute ms is wall time inside the stage (it grows when the stage waits for a core); cpu ms is the CPU "
              "time its processes used per request (`/proc`), what the stage itself costs.", "",
              "| path | c | stage | requests | mean batch | queue ms | compute ms | cpu ms | infer ms per execution |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in s:
        for stage, st in r["stages"].items():
            if st["requests"]:
                lines.append(f"| {r['path']} | {r['concurrency']} | {stage} | {st['requests']} | {st['mean_batch']} | "
                             f"{st['queue_ms']} | {st['compute_ms']} | {st.get('cpu_ms', '')} | "
                             f"{st['infer_ms_per_exec']} |")
    with_cpu = [r for r in s if r.get("process_cpu_ms")]
    if with_cpu:
        kinds = sorted({k for r in with_cpu for k in r["process_cpu_ms"]})
        lines += ["", "## CPU per request by process (`/proc`, every process of the server, per served request)", "",
                  "Each model's Python stubs (all instances) and the server itself: what one request of the path costs "
                  "in CPU, wherever it ran (a chat turn's BLS calls land in the stages it calls). 2 cores at full load "
                  "give 2,000 CPU ms per second, so 2,000 / total is the throughput the path's cost allows.", "",
                  "| path | c | " + " | ".join(kinds) + " | total |", "|---|---:|" + "---:|" * (len(kinds) + 1)]
        for r in with_cpu:
            cpu = r["process_cpu_ms"]
            lines.append(f"| {r['path']} | {r['concurrency']} | " + " | ".join(str(cpu.get(k, "")) for k in kinds)
                         + f" | {round(sum(cpu.values()), 1)} |")
    lines += ["", f"## Where the time goes: cProfile of the hottest stage (`{report['hottest']}`), in-process", "",
              "```", report["profile"].strip(), "```", "", "## Machine", "", "```json",
              json.dumps(info, ensure_ascii=False, indent=1), "```", ""]
    return "\n".join(lines)


# Serving variants on this node: the committed 2-core profile against the alternatives it was chosen over
# (``--variants rank``: recllm_rank under the ranking stages' variants; ``--variants reply``: the full ``recllm``
# ensemble and a streamed chat turn under the reply's variants; ``--variants chat``: a streamed chat turn under the
# chat model's instances and the reply stream's send interval).
RANK_PATHS = ("triton recllm_rank",)
REPLY_PATHS = ("triton recllm", "triton recllm_chat turn")
CHAT_PATHS = ("triton recllm_chat turn",)
VARIANT_RESULTS = {"rank": "throughput_variants.md", "reply": "throughput_reply_variants.md",
                   "chat": "throughput_chat_variants.md"}
VARIANT_PATHS = {"rank": RANK_PATHS, "reply": REPLY_PATHS, "chat": CHAT_PATHS}


def variant_profiles(kind: str = "rank"):
    from dataclasses import replace  # noqa: PLC0415

    from ensemble import pipeline_graph as graph  # noqa: PLC0415

    base = graph.cpu_profile(2)
    if kind == "chat":
        def chat(chats: int, turns: int, interval_us: int):
            return replace(base, chat_instances=chats, chat_turns_per_instance=turns,
                           stream_send_interval_us=interval_us)
        # the turns the chat instances hold at once bound what the reply streams can batch; every delta of a reply
        # crosses two stubs and the server twice
        return {
            "committed": base,
            "4 instances x 1 turn, every delta sent (committed before)": chat(4, 1, 0),
            "2 instances x 8 turns, every delta sent": chat(2, 8, 0),
            "2 instances x 8 turns, deltas every 20 ms": chat(2, 8, 20_000),
            "1 instance x 16 turns, deltas every 20 ms": chat(1, 16, 20_000),
            "4 instances x 8 turns, deltas every 20 ms": chat(4, 8, 20_000),
            "2 instances x 8 turns, deltas every 50 ms": chat(2, 8, 50_000),
        }
    if kind == "reply":
        def reply(generators: int, streams: int, chats: int):
            # as measured then: one turn per chat instance, every delta sent (``--variants chat`` took those on)
            return replace(base, generator=replace(base.generator, instances=generators), stream_instances=streams,
                           chat_instances=chats, chat_turns_per_instance=1, stream_send_interval_us=0)
        # the recllm ensemble reads the generator count only, a chat turn the reply streams and chat instances only
        return {
            "2 generators, 2 reply streams, 4 chat instances (committed then)": reply(2, 2, 4),
            "1 generator, 1 reply stream, 2 chat instances": reply(1, 1, 2),
            "2 generators, 1 reply stream, 2 chat instances": reply(2, 1, 2),
            "1 generator, 1 reply stream, 4 chat instances": reply(1, 1, 4),
            "1 generator, 2 reply streams, 4 chat instances": reply(1, 2, 4),
        }
    unbatched = graph.StageServing(max_batch_size=32, dynamic_batching=False)
    return {
        "committed": base,
        "no dynamic batching": replace(base, encoder=unbatched, retriever=unbatched, reranker=unbatched),
        "reranker 1 instance": replace(base, reranker=replace(base.reranker, instances=1)),
        "queue delay 0 (batch only what is already waiting)": replace(
            base, **{s: replace(getattr(base, s), queue_delay_us=0) for s in ("encoder", "retriever", "reranker")}),
        "queue delay 2000 us": replace(base, **{s: replace(getattr(base, s), queue_delay_us=2000)
                                                 for s in ("encoder", "retriever", "reranker")}),
    }


def run_variants(config: ThroughputConfig, kind: str = "rank", only: tuple[str, ...] = ()) -> list[dict]:
    """Every variant on a server of its own, one after another: recllm_rank (``kind`` rank) or the full ensemble and
    a chat turn (``kind`` reply) at each concurrency; the rows carry the stages' statistics and CPU time."""
    from ensemble import pipeline_graph as graph  # noqa: PLC0415
    from recllm_cli.main import profiled_repository  # noqa: PLC0415 - copies the adapters beside the configs

    layout = ArtifactLayout(config.artifact_dir)
    workload = load_workload(layout)
    paths = VARIANT_PATHS[kind]
    rows = []
    chosen = {n: p for n, p in variant_profiles(kind).items() if not only or any(o in n for o in only)}
    for index, (name, profile) in enumerate(chosen.items()):
        repository = profiled_repository(2, config.work_dir / f"variant{index}")
        graph.write_configs(repository, profile)
        server_config = TritonServerConfig(artifact_dir=config.artifact_dir, model_repository=repository,
                                           grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                                           runtime_dir=config.work_dir / "triton_runtime")
        with TritonServer(server_config, log_path=config.work_dir / f"variant{index}.log") as server:
            keyring = load_keyring(server.config.keyring_path).backend_view()
            levels = triton_levels(server.config.grpc_url, config, workload, keyring, server_pid=server.process.pid,
                                   paths=paths)
            rss = process_rss_mib(server.process.pid)  # after the load: what the variant's processes hold
        for level in levels:
            rows.append(level.summary() | {"variant": name, "server_rss_mib": round(sum(rss.values())),
                                           "rss_mib": rss})
    return rows


def variants_markdown(rows: list[dict], config: ThroughputConfig, info: dict, command: str,
                      kind: str = "rank") -> str:
    if kind == "chat":
        return chat_variants_markdown(rows, config, info, command)
    title = ("recllm_rank under serving variants" if kind == "rank" else
             "The full recllm ensemble and a streamed chat turn under the reply's serving variants")
    shown = ("query_encoder", "retriever", "reranker") if kind == "rank" else ("generator",)
    lines = [f"# {title} (2 cores): what the committed profile was chosen over", "",
             f"Command: `{command}`  ", f"Machine: {info.get('cpu')}, {info.get('cores')} cores, load average at "
             f"start {info.get('load_average_at_start')}; git {info.get('git_commit')}; artifacts "
             f"`{config.artifact_dir}`; closed loop {config.seconds:g} s per level; variants one after another, "
             "each on a server of its own.", "",
             f"| variant | path | c | req/s | p50 ms | p95 ms | p99 ms | mean batch {'/'.join(shown)} | "
             f"CPU ms per request {'/'.join(shown)} |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        batches = "/".join(str(r["stages"][m]["mean_batch"]) for m in shown)
        cpu = "/".join(str(r["stages"][m].get("cpu_ms", "")) for m in shown)
        lines.append(f"| {r['variant']} | {r['path']} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | "
                     f"{r['p95_ms']} | {r['p99_ms']} | {batches} | {cpu} |")
    return "\n".join(lines + [""])


def chat_variants_markdown(rows: list[dict], config: ThroughputConfig, info: dict, command: str) -> str:
    """A chat turn per variant, with the CPU each process kind spent per turn (``/proc``: the decoupled reply stream
    and chat model report no batch statistics) and the server's peak memory."""
    kinds = ("generator_stream", "recllm_chat", "tritonserver")
    lines = ["# A streamed chat turn under the chat model's instances, their turns at once and the reply stream's send "
             "interval (2 cores)", "",
             f"Command: `{command}`  ", f"Machine: {info.get('cpu')}, {info.get('cores')} cores, load average at "
             f"start {info.get('load_average_at_start')}; git {info.get('git_commit')}; artifacts "
             f"`{config.artifact_dir}`; closed loop {config.seconds:g} s per level; variants one after another, "
             "each on a server of its own. CPU ms per turn by process kind (all its processes, `/proc`); total is "
             "every process of the server.", "",
             "| variant | c | turns/s | p50 ms | p95 ms | p99 ms | " + " | ".join(f"CPU {k}" for k in kinds)
             + " | CPU total | server RSS MiB |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(kinds) + 2)]
    for r in rows:
        cpu = r.get("process_cpu_ms", {})
        lines.append(f"| {r['variant']} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | " + " | ".join(str(cpu.get(k, "")) for k in kinds)
                     + f" | {round(sum(cpu.values()), 1)} | {r.get('server_rss_mib', '')} |")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> None:
    defaults = ThroughputConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(defaults.concurrency))
    parser.add_argument("--full-concurrency", type=int, nargs="+", default=list(defaults.full_concurrency))
    parser.add_argument("--no-naive", dest="naive", action="store_false")
    parser.add_argument("--jump-forward-off", dest="switches", action="append_const", const="jump-forward",
                        help="also serve the reply paths with jump-forward off (a forward per token), side by side")
    parser.add_argument("--continuous-batching-on", dest="switches", action="append_const",
                        const="continuous batching",
                        help="also serve the reply paths with continuous batching on (a streamed turn arriving "
                             "mid-decode joins the running batch), side by side")
    parser.add_argument("--no-cache-off", dest="compare_cache_off", action="store_false",
                        help="skip the recllm_rank levels with the profile cache off")
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    parser.add_argument("--variants", choices=sorted(VARIANT_RESULTS),
                        help="the serving variants instead: rank (recllm_rank, throughput_variants.md), reply "
                             "(recllm and a chat turn, throughput_reply_variants.md) or chat (a chat turn under the "
                             "chat instances and the reply stream's send interval, throughput_chat_variants.md)")
    parser.add_argument("--only", nargs="*", default=(), help="with --variants: variants whose name contains one")
    args = parser.parse_args(argv)
    config = ThroughputConfig(artifact_dir=args.artifact_dir, seconds=args.seconds,
                              concurrency=tuple(args.concurrency), full_concurrency=tuple(args.full_concurrency),
                              naive=args.naive, results_dir=args.results_dir,
                              compare_cache_off=args.compare_cache_off,
                              switches=tuple(dict.fromkeys(args.switches or ())))
    info = machine_info()
    command = "python -m benchmarks.throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.variants:
        rows = run_variants(config, args.variants, tuple(args.only))
        text = variants_markdown(rows, config, info, command, args.variants)
        config.results_dir.mkdir(parents=True, exist_ok=True)
        (config.results_dir / VARIANT_RESULTS[args.variants]).write_text(text, encoding="utf-8")
        print(text)
        return
    report = run(config)
    config.results_dir.mkdir(parents=True, exist_ok=True)
    (config.results_dir / "throughput.json").write_text(
        json.dumps({"command": command, "machine": info, **report}, ensure_ascii=False, indent=1), encoding="utf-8")
    text = markdown(report, config, info, command)
    (config.results_dir / "throughput.md").write_text(text, encoding="utf-8")
    plot(report["summaries"], config.results_dir / "throughput.png")
    print(text)


if __name__ == "__main__":
    main()
