"""Soak: mixed load for N minutes against a real tritonserver and profile service on a private build copy.

``--concurrency`` client threads run for ``--minutes``: streamed chat sessions (``recllm_chat``, three turns each:
a goal, «подешевле», «покажи ещё»), recommendations (``recllm_rank`` and the full ``recllm`` ensemble) and event ingest
(profile service streams of events with ``event_id``; whatever is not acknowledged is resent with the same id).
Reported per minute: p50/p95/p99 latency and errors per kind; resident memory of tritonserver with all its
Python-backend stubs and of the profile service, sampled every ``--sample-s`` seconds, with a least-squares slope;
events acknowledged vs stored (counted by id in the database afterwards); the privacy ledger read after the run
(every user's ``epsilon_spent`` against the window budget). The run always ends with a report, also when requests
fail or a server dies: failures are counted and shown, never raised.

    .venv/bin/recllm build --preset test --artifact-dir /tmp/soak_art
    .venv/bin/python -m benchmarks.soak --artifact-dir /tmp/soak_art --minutes 10 --concurrency 16

Writes ``benchmarks/results/soak.md`` (``--output``) and a JSON of the raw figures beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.fault_harness import (
    EventSource, ProfileServiceProcess, ResilientIngester, integrity_check, linear_slope, rss_bytes, stored_event_counts,
    tree_rss_bytes,
)
from benchmarks.machine_info import machine_info
from benchmarks.profile_ingest import copy_artifacts
from recllm.artifacts import ArtifactLayout
from recllm.profile.differential_privacy import PrivacyConfig
from recllm.serving.stub_watchdog import is_running, python_stubs
from recllm.serving.triton_server import TritonServer, TritonServerConfig, crash_traces, free_port
from recllm_client import RecLLMClient
from recllm_proto.user_token import load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("chat", "rank", "recommend", "ingest")
# Of every 8 client threads: 3 chat, 2 rank, 1 recommend (full ensemble, generator reply), 2 ingest.
ROLE_CYCLE = ("chat", "rank", "ingest", "chat", "recommend", "rank", "chat", "ingest")
GOALS = ("что приготовить на ужин, чтобы было полезно?", "хочу что-нибудь вкусное", "перекусы для офиса",
         "нужен подарок сыну на 7 лет, игрушка или конструктор", "молоко и хлеб на завтрак")
FOLLOW_UPS = ("подешевле", "покажи ещё")
QUERIES = ("молоко", "сыр к вину", "овощи для салата", "конструктор", "шампунь", "кофе в зёрнах", "фрукты")
SERVICES = ("samokat", "kuper", "megamarket", "")
CALL_TIMEOUT_S = 60.0


@dataclass
class Op:
    kind: str
    end: float      # seconds since the start of the load
    latency_s: float
    ok: bool
    error: str = ""


@dataclass
class Soak:
    minutes: float
    concurrency: int
    sample_s: float
    seed: int
    ops: list[Op] = field(default_factory=list)
    # (t, triton tree, stubs, profile, {model or "tritonserver": RSS of its process(es)})
    rss: list[tuple[float, int, int, int, dict[str, int]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    notes: list[str] = field(default_factory=list)

    def record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)


def timed(soak: Soak, t0: float, kind: str, call) -> bool:
    started = time.perf_counter()
    try:
        call()
        ok, error = True, ""
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error of the soak
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    end = time.perf_counter()
    soak.record(Op(kind, end - t0, end - started, ok, error))
    return ok


def chat_worker(soak, t0, stop, url, keyring_path, users, worker):
    rng = np.random.default_rng(soak.seed + worker)
    with RecLLMClient(url, timeout_s=CALL_TIMEOUT_S, keyring=keyring_path) as client:
        session = 0
        while not stop.is_set():
            session_id, user = f"soak-{worker}-{session}", users[int(rng.integers(len(users)))]
            for message in (GOALS[int(rng.integers(len(GOALS)))], *FOLLOW_UPS):
                if stop.is_set():
                    break
                def turn(message=message):
                    result = client.chat(session_id, user, message, top_k=4)
                    if not result.reply.strip():
                        raise RuntimeError("empty chat reply")
                if not timed(soak, t0, "chat", turn):
                    stop.wait(0.5)
                    break
            session += 1


def rank_worker(soak, t0, stop, url, keyring_path, users, worker, kind):
    rng = np.random.default_rng(soak.seed + 1000 + worker)
    with RecLLMClient(url, timeout_s=CALL_TIMEOUT_S, keyring=keyring_path) as client:
        method = client.rank if kind == "rank" else client.recommend
        while not stop.is_set():
            user = users[int(rng.integers(len(users)))]
            query, service = QUERIES[int(rng.integers(len(QUERIES)))], SERVICES[int(rng.integers(len(SERVICES)))]
            if not timed(soak, t0, kind, lambda: method(user, query, 5, service)):
                stop.wait(0.5)


def ingest_worker(soak, t0, stop, ingester: ResilientIngester):
    while not stop.is_set():
        errors, rejections = len(ingester.errors), len(ingester.rejections)

        def one_stream():
            ingester.send_round()
            if len(ingester.errors) > errors:
                raise RuntimeError(ingester.errors[-1])
            if len(ingester.rejections) > rejections:
                raise RuntimeError(ingester.rejections[-1])
        if not timed(soak, t0, "ingest", one_stream):
            stop.wait(0.5)


def rss_by_model(triton_pid: int, stubs) -> dict[str, int]:
    """RSS of the tritonserver process itself and of each model's ``stubs`` (all its instances together)."""
    by_model = {"tritonserver": rss_bytes(triton_pid)}
    for stub in stubs:
        by_model[stub.model] = by_model.get(stub.model, 0) + rss_bytes(stub.pid)
    return by_model


def sample_rss(soak, t0, stop, server: TritonServer, profile: ProfileServiceProcess):
    while True:
        triton_pid = server.process.pid
        running = is_running(triton_pid)
        stubs = python_stubs(triton_pid) if running else []
        soak.rss.append((time.perf_counter() - t0, tree_rss_bytes(triton_pid) if running else 0, len(stubs),
                         rss_bytes(profile.process.pid), rss_by_model(triton_pid, stubs) if running else {}))
        if stop.wait(soak.sample_s):
            return


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    ms = np.array(latencies) * 1000
    return {"n": len(ms), **{f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}}


def per_minute(soak: Soak) -> list[dict]:
    minutes = max(1, math.ceil(soak.minutes))
    rows = []
    for minute in range(minutes):
        row = {"minute": minute + 1}
        for kind in KINDS:
            ops = [o for o in soak.ops if o.kind == kind and minute * 60 <= o.end < (minute + 1) * 60]
            row[kind] = {**percentiles([o.latency_s for o in ops if o.ok]), "errors": sum(not o.ok for o in ops)}
        rows.append(row)
    return rows


def ledger_check(profile_db: Path, config: PrivacyConfig) -> dict:
    conn = sqlite3.connect(f"file:{profile_db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT user_id, window_start, epsilon_spent, delta_spent FROM privacy_ledger").fetchall()
        mechanisms = conn.execute("SELECT COUNT(*) FROM privacy_mechanisms").fetchone()[0]
    finally:
        conn.close()
    cap = config.epsilon_per_window * (1 + 1e-9)
    over = [(w, e) for _, w, e, _ in rows if e > cap]
    return {"rows": len(rows), "users": len({r[0] for r in rows}), "mechanisms": mechanisms,
            "max_epsilon_spent": max((r[2] for r in rows), default=0.0), "cap": config.epsilon_per_window,
            "max_delta_spent": max((r[3] for r in rows), default=0.0), "delta_cap": config.delta_per_window,
            "over_cap": len(over)}


def run(args) -> dict:
    soak = Soak(args.minutes, args.concurrency, args.sample_s, args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="recllm-soak-"))
    result: dict = {"minutes": args.minutes, "concurrency": args.concurrency, "artifact_dir": str(args.artifact_dir)}
    server = profile = None
    stop = threading.Event()
    ingesters: list[ResilientIngester] = []
    t0 = time.perf_counter()
    try:
        layout = copy_artifacts(ArtifactLayout(args.artifact_dir), scratch / "build")
        result["preset"] = (layout.read_manifest() or {}).get("preset", "unknown")
        config = TritonServerConfig(artifact_dir=layout.root, grpc_port=free_port(), http_port=free_port(),
                                    metrics_port=free_port(), runtime_dir=scratch / "runtime")
        started = time.perf_counter()
        server = TritonServer(config).start()
        profile = ProfileServiceProcess(layout.root, free_port(), log_path=scratch / "profile.log").start()
        result["startup_s"] = round(time.perf_counter() - started, 1)
        result["stubs"] = sorted(s.model for s in python_stubs(server.process.pid))
        keyring = load_keyring(layout.keyring).backend_view()
        users = EventSource(layout.root, "users").users
        threads = []
        t0 = time.perf_counter()
        for worker in range(args.concurrency):
            role = ROLE_CYCLE[worker % len(ROLE_CYCLE)]
            if role == "chat":
                target = (chat_worker, (soak, t0, stop, config.grpc_url, config.keyring_path, users, worker))
            elif role in ("rank", "recommend"):
                target = (rank_worker, (soak, t0, stop, config.grpc_url, config.keyring_path, users, worker, role))
            else:
                ingester = ResilientIngester(profile.address, keyring,
                                             EventSource(layout.root, f"soak{worker}", seed=args.seed + worker),
                                             events_per_stream=8, timeout_s=CALL_TIMEOUT_S)
                ingesters.append(ingester)
                target = (ingest_worker, (soak, t0, stop, ingester))
            threads.append(threading.Thread(target=target[0], args=target[1], name=f"soak-{role}-{worker}",
                                            daemon=True))
        result["roles"] = dict(Counter(ROLE_CYCLE[w % len(ROLE_CYCLE)] for w in range(args.concurrency)))
        sampler = threading.Thread(target=sample_rss, args=(soak, t0, stop, server, profile), daemon=True)
        sampler.start()
        for thread in threads:
            thread.start()
        deadline = t0 + args.minutes * 60
        while time.perf_counter() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.perf_counter())))
            done = len(soak.ops)
            print(f"[soak] {time.perf_counter() - t0:6.0f} s  ops {done}  errors "
                  f"{sum(not o.ok for o in soak.ops)}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(CALL_TIMEOUT_S + 10)
        result["threads_still_running"] = sum(t.is_alive() for t in threads)
        sampler.join(10)
        result["load_s"] = round(time.perf_counter() - t0, 1)
        # Whatever was sent and not acknowledged is resent with its id, then acked and stored are counted.
        result["drained"] = all(i.drain(60) for i in ingesters)
        result["server_alive_at_end"] = bool(server.process.poll() is None and server.is_ready())
        result["stub_recoveries"] = [
            {"after_s": round(r.noticed_at - (time.time() - (time.perf_counter() - t0)), 1), "model": r.model,
             "missing": list(r.missing), "reload_s": r.seconds, "error": r.error}
            for r in (server.watchdog.recoveries if server.watchdog else [])]
        result["profile_alive_at_end"] = bool(profile.process.poll() is None)
    except Exception:  # noqa: BLE001 - a soak always ends with a report
        result["fatal"] = traceback.format_exc()[-3000:]
        print(result["fatal"], file=sys.stderr, flush=True)
    finally:
        stop.set()
        for stopper in (profile, server):
            if stopper is not None:
                try:
                    stopper.stop()
                except Exception as exc:  # noqa: BLE001
                    soak.notes.append(f"stopping {type(stopper).__name__}: {exc}")
    try:
        acked = set().union(*(i.acked for i in ingesters)) if ingesters else set()
        sent = {k for i in ingesters for k in i.sent}
        counts = stored_event_counts(scratch / "build" / "profile.sqlite", prefix="soak")
        result["events"] = {"sent": len(sent), "acknowledged": len(acked),
                            "stored": sum(counts.values()), "stored_distinct": len(counts),
                            "acknowledged_not_stored": len(acked - set(counts)),
                            "stored_more_than_once": sum(n > 1 for n in counts.values()),
                            "resent": sum(n > 1 for i in ingesters for n in i.sent.values()),
                            "acked_as_duplicate": sum(i.duplicates for i in ingesters)}
        result["ledger"] = ledger_check(scratch / "build" / "profile.sqlite", PrivacyConfig())
        result["integrity"] = {name: integrity_check(scratch / "build" / name)
                               for name in ("profile.sqlite", "sessions.sqlite")}
    except Exception:  # noqa: BLE001
        result["post_run_error"] = traceback.format_exc()[-2000:]
    result["per_minute"] = per_minute(soak)
    result["totals"] = {kind: {**percentiles([o.latency_s for o in soak.ops if o.kind == kind and o.ok]),
                               "errors": sum(1 for o in soak.ops if o.kind == kind and not o.ok)} for kind in KINDS}
    errors = Counter(o.error for o in soak.ops if not o.ok)
    result["error_examples"] = errors.most_common(8)
    result["rss"] = rss_summary(soak.rss)
    result["notes"] = soak.notes
    if server is not None:
        result["crash_traces"] = crash_traces(server.log_path)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        result["scratch"] = str(scratch)
    return result


def memory_trend(t: list[float], mb: list[float]) -> dict:
    half = len(mb) // 2
    return {"first": round(mb[0], 1), "last": round(mb[-1], 1), "max": round(max(mb), 1),
            "slope_mb_per_min": round(linear_slope(t, mb), 2),
            "slope_second_half_mb_per_min": round(linear_slope(t[half:], mb[half:]), 2)}


def rss_summary(samples: list[tuple]) -> dict:
    """First, last, max and slopes (whole run, second half) of the server tree, the profile service and, where
    the samples have them, each model's stubs and the tritonserver process itself."""
    if not samples:
        return {"samples": 0}
    t = [s[0] / 60 for s in samples]
    mb = lambda values: [v / 2**20 for v in values]  # noqa: E731
    models = sorted({m for s in samples if len(s) > 4 for m in s[4]})
    return {"samples": len(samples), "every_s": round((samples[-1][0] - samples[0][0]) / max(len(samples) - 1, 1), 1),
            "triton_tree_mb": memory_trend(t, mb([s[1] for s in samples])),
            "profile_mb": memory_trend(t, mb([s[3] for s in samples])),
            "by_model_mb": {m: memory_trend(t, mb([s[4].get(m, 0) if len(s) > 4 else 0 for s in samples]))
                            for m in models},
            "stubs": sorted({s[2] for s in samples})}


def fmt(value) -> str:
    return "–" if value is None else f"{value}"


def report(result: dict, command: str, title_note: str) -> str:
    lines = ["# Soak: mixed chat, recommendations and ingest", "", title_note, "",
             f"Command: `{command}`", "", "Machine: " + json.dumps(machine_info(), ensure_ascii=False), "",
             f"Load: {result['concurrency']} client threads for {result['minutes']} min "
             f"(roles {result.get('roles')}), loopback, {result.get('preset', 'a')}-preset build copied from `{result['artifact_dir']}`; "
             f"servers started in {result.get('startup_s')} s; Python-backend stubs: {result.get('stubs')}.", ""]
    if "fatal" in result:
        lines += ["**The run stopped early:**", "", "```", result["fatal"], "```", ""]
    lines += ["## Latency per minute (ms, successful calls) and errors", "",
              "| min | " + " | ".join(f"{k} n | {k} p50 | {k} p95 | {k} p99 | {k} err" for k in KINDS) + " |",
              "|---|" + "---|" * (5 * len(KINDS))]
    for row in result["per_minute"]:
        cells = []
        for kind in KINDS:
            r = row[kind]
            cells += [fmt(r["n"]), fmt(r["p50"]), fmt(r["p95"]), fmt(r["p99"]), fmt(r["errors"])]
        lines.append(f"| {row['minute']} | " + " | ".join(cells) + " |")
    lines += ["", "Whole run:", "", "| kind | n | p50 | p95 | p99 | errors |", "|---|---|---|---|---|---|"]
    for kind, r in result["totals"].items():
        lines.append(f"| {kind} | {r['n']} | {fmt(r['p50'])} | {fmt(r['p95'])} | {fmt(r['p99'])} | {r['errors']} |")
    lines += ["", "chat = one streamed `recllm_chat` turn (first byte to final response); rank = `recllm_rank`; "
              "recommend = `recllm` (with the generator's reply); ingest = one `IngestEvents` stream of 8 events "
              "(signed service token) until its last ack.", ""]
    if result["error_examples"]:
        lines += ["Errors seen (count, message):", ""] + [f"- {n} × `{e}`" for e, n in result["error_examples"]] + [""]
    rss = result["rss"]
    if rss.get("samples"):
        lines += ["## Server memory (RSS)", "",
                  f"{rss['samples']} samples, one every {rss['every_s']} s; tritonserver = the server process and all "
                  f"its Python-backend stubs (stubs seen: {rss['stubs']}); profile service = its own process.", "",
                  "| process | first MB | last MB | max MB | slope MB/min | slope 2nd half MB/min |",
                  "|---|---|---|---|---|---|"]
        rows = [("tritonserver + stubs", rss["triton_tree_mb"]), ("profile service", rss["profile_mb"])]
        rows += [(f"of which {'the server process' if m == 'tritonserver' else f'`{m}` stubs'}", r)
                 for m, r in rss.get("by_model_mb", {}).items()]
        for name, r in rows:
            lines.append(f"| {name} | {r['first']} | {r['last']} | {r['max']} | {r['slope_mb_per_min']} | "
                         f"{r['slope_second_half_mb_per_min']} |")
        lines.append("")
    events = result.get("events", {})
    lines += ["## Events acknowledged vs stored", "", "| " + " | ".join(events) + " |",
              "|" + "---|" * len(events), "| " + " | ".join(str(v) for v in events.values()) + " |", "",
              f"Unacknowledged events resent after the load: drained = {result.get('drained')}.", ""]
    ledger = result.get("ledger", {})
    lines += ["## Privacy ledger after the run", "",
              f"{ledger.get('rows')} ledger rows ({ledger.get('users')} users, {ledger.get('mechanisms')} mechanisms "
              f"recorded); max epsilon_spent {ledger.get('max_epsilon_spent')} against the window budget "
              f"{ledger.get('cap')} (max delta {ledger.get('max_delta_spent')} vs {ledger.get('delta_cap')}); rows "
              f"over the cap: **{ledger.get('over_cap')}**.", "",
              f"SQLite integrity_check afterwards: {result.get('integrity')}; servers alive at the end: "
              f"tritonserver {result.get('server_alive_at_end')}, profile service {result.get('profile_alive_at_end')}"
              f"; client threads still running after stop: {result.get('threads_still_running')}.", ""]
    recoveries = result.get("stub_recoveries")
    if recoveries is not None:
        lines += ["## Python-backend stubs that died (the stub watchdog's reloads)", ""]
        lines += [f"- {r['after_s']} s into the load: {r['model']} ({', '.join(r['missing'])}) reloaded in "
                  f"{r['reload_s']} s{'; error: ' + r['error'] if r['error'] else ''}" for r in recoveries] or ["None."]
        lines.append("")
    traces = result.get("crash_traces") or {}
    for trace in traces.get("serving", ()):
        lines += ["What the crashed stub's faulthandler wrote to the server log:", "", "```", trace, "```", ""]
    if traces.get("shutdown"):
        lines += [f"At the server's stop (after its SIGINT), {len(traces['shutdown'])} stub(s) crashed while tearing "
                  "down; no request was in flight. The first one's trace:", "", "```", traces["shutdown"][0], "```",
                  ""]
    elif "crash_traces" in result:
        lines += ["At the server's stop (after its SIGINT): no stub crashed while tearing down.", ""]
    if result.get("post_run_error"):
        lines += ["Post-run check failed:", "", "```", result["post_run_error"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact-dir", type=Path, required=True, help="a built artifact folder; "
                        "copied, never written")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.md")
    parser.add_argument("--note", default="", help="a line stated at the top of the report")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (logs, databases)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("--minutes must be > 0 and --concurrency >= 1")
    result = run(args)
    command = "python -m benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    note = args.note or f"A {args.minutes:g}-minute run."
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(result, command, note))
    args.output.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    print(f"wrote {args.output}")
    total_errors = sum(r["errors"] for r in result["totals"].values())
    events = result.get("events", {})
    clean = (not total_errors and "fatal" not in result and events.get("acknowledged_not_stored", 1) == 0
             and result.get("ledger", {}).get("over_cap", 1) == 0)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
