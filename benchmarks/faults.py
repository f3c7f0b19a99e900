"""Faults against the real stack, observed and written down: ``benchmarks/results/faults.md``.

Each scenario runs on its own copy of a built (test-preset) artifact folder:

1. ``kill -9`` of tritonserver, then of the profile service, while events are ingested and chat sessions run; both
   restarted on the same artifacts. Counted: events acknowledged vs stored (by ``event_id``), resent events stored
   once, the chat sessions' next turn (goal kept, no item shown twice), stubs left behind, shared memory left behind.
2. A Python-backend stub killed (``kill -9`` of a ``triton_python_backend_stub``: the retriever's, a reranker's, a
   chat model's) under steady traffic: what clients get, how long until the stub watchdog
   (``recllm/serving/stub_watchdog.py``) has reloaded the model, and that the repository API refuses a client.
3. The profile database locked by another process (``BEGIN EXCLUSIVE``), then released.
4. The profile database full: a real tiny filesystem (tmpfs, where this machine lets us mount one) and SQLite's
   ``max_page_count`` on the writer's connection; then room is made.

    .venv/bin/python -m benchmarks.faults --artifact-dir /tmp/faults_art [--only kill9,stub,lock,full]

The tests in ``tests/integration/test_faults.py`` assert the same behaviour; this script records what was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from benchmarks.fault_harness import (
    SHM_PREFIX, EventSource, ProfileServiceProcess, ResilientIngester, integrity_check, session_state, shm_regions,
    stored_event_counts, tree_rss_bytes, wait_until,
)
from benchmarks.machine_info import machine_info
from benchmarks.profile_ingest import copy_artifacts
from recllm.artifacts import ArtifactLayout
from recllm.serving.stub_watchdog import cmdline, is_running, python_stubs
from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port
from recllm_client import RecLLMClient
from recllm_client.triton_client import RecLLMClientError
from recllm_proto.user_token import load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = "что приготовить на ужин, чтобы было полезно?"
FOLLOW_UP = "подешевле"
SCENARIOS = ("kill9", "stub", "lock", "full")


def triton_config(layout: ArtifactLayout, runtime: Path) -> TritonServerConfig:
    return TritonServerConfig(artifact_dir=layout.root, grpc_port=free_port(), http_port=free_port(),
                              metrics_port=free_port(), runtime_dir=runtime)


def timed_start(server: TritonServer) -> float:
    started = time.perf_counter()
    server.start()
    return round(time.perf_counter() - started, 1)


# -- 1. kill -9 of both servers mid-traffic ---------------------------------------------------------------------------
def scenario_kill9(source: Path, work: Path) -> dict:
    layout = copy_artifacts(ArtifactLayout(source), work / "build")
    config = triton_config(layout, work / "runtime")
    seen: dict = {}
    shm_before = shm_regions()
    server = TritonServer(config, log_path=work / "triton-1.log")
    seen["triton_start_s"] = timed_start(server)
    profile = ProfileServiceProcess(layout.root, free_port(), log_path=work / "profile.log")
    try:
        profile.start()
        keyring = load_keyring(layout.keyring).backend_view()
        users = EventSource(layout.root, "seed").users
        sessions = {f"fault-session-{k}": users[k] for k in range(4)}
        with RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
            for session, user in sessions.items():
                client.chat(session, user, GOAL, top_k=4, service="samokat")
        ingesters = [ResilientIngester(profile.address, keyring, EventSource(layout.root, f"kill9s{k}-", seed=k),
                                       events_per_stream=8) for k in range(2)]
        stop = threading.Event()
        chat = {"done": 0, "errors": []}

        def background_chat():
            with RecLLMClient(config.grpc_url, timeout_s=30, keyring=config.keyring_path) as client:
                k = 0
                while not stop.is_set():
                    try:
                        client.chat(f"fault-bg-{k}", users[(k + 4) % len(users)], GOAL, top_k=4)
                        chat["done"] += 1
                    except RecLLMClientError as error:
                        chat["errors"].append(str(error)[:200])
                        stop.wait(0.2)
                    k += 1

        threads = [threading.Thread(target=i.run, args=(stop,)) for i in ingesters]
        threads += [threading.Thread(target=background_chat) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: sum(len(i.acked) for i in ingesters) >= 80 and chat["done"] >= 2, 120)
        stubs = python_stubs(server.process.pid)
        seen["stubs_before_kill"] = len(stubs)
        killed_at = time.perf_counter()
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        server.stop()
        wait_until(lambda: not any(is_running(s.pid) for s in stubs), 60)
        seen["stubs_exited_after_s"] = round(time.perf_counter() - killed_at, 1)
        seen["stubs_left_running"] = sum(is_running(s.pid) for s in stubs)
        seen["chat_errors_while_triton_down"] = len(chat["errors"])
        acked = sum(len(i.acked) for i in ingesters)
        wait_until(lambda: sum(len(i.acked) for i in ingesters) >= acked + 32, 30)
        seen["acked_while_triton_down"] = sum(len(i.acked) for i in ingesters) - acked
        profile.kill9()
        acked_at_kill = set().union(*(i.acked for i in ingesters))
        sent_at_kill = {k for i in ingesters for k in i.sent}
        seen["profile_kill"] = {"acked_before": len(acked_at_kill), "sent_before": len(sent_at_kill),
                                "sent_not_acked_at_kill": len(sent_at_kill - acked_at_kill)}
        time.sleep(0.5)
        started = time.perf_counter()
        profile.start()
        seen["profile_restart_s"] = round(time.perf_counter() - started, 1)
        server = TritonServer(config, log_path=work / "triton-2.log")
        seen["triton_restart_s"] = timed_start(server)
        seen["leaked_shm_regions_after_kill"] = len(shm_regions() - shm_before - shm_regions_of(server))
        wait_until(lambda: sum(len(i.acked) for i in ingesters) >= len(acked_at_kill) + 32 and
                   chat["done"] >= 4, 90)
        stop.set()
        for thread in threads:
            thread.join(60)
        seen["drained"] = all(i.drain(60) for i in ingesters)
        counts = stored_event_counts(layout.profile_db, prefix="kill9s")
        sent = {k for i in ingesters for k in i.sent}
        acked = set().union(*(i.acked for i in ingesters))
        seen["events"] = {"sent": len(sent), "acknowledged": len(acked), "stored_distinct": len(counts),
                          "acked_before_kill_missing": len(acked_at_kill - set(counts)),
                          "stored_twice": sum(n > 1 for n in counts.values()),
                          "resent": sum(n > 1 for i in ingesters for n in i.sent.values()),
                          "acked_as_duplicate_on_resend": sum(i.duplicates for i in ingesters),
                          "stream_errors_seen_by_clients": sum(len(i.errors) for i in ingesters),
                          "rejected": sum(len(i.rejections) for i in ingesters)}
        seen["stream_error_examples"] = sorted({e[:160] for i in ingesters for e in i.errors})[:4]
        seen["chat"] = {"turns_completed": chat["done"], "errors": len(chat["errors"]),
                        "error_examples": sorted(set(chat["errors"]))[:4]}
        resumed = []
        with RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
            for session, user in sessions.items():
                before = session_state(layout.sessions_db, session)
                turn = client.chat(session, user, FOLLOW_UP, top_k=4, service="samokat")
                after = session_state(layout.sessions_db, session)
                items = [i.item_id for i in turn.items]
                resumed.append({"goal_kept": after["goal"] == before["goal"] == GOAL,
                                "service_kept": after["service"] == before["service"],
                                "turns": f"{before['turns']}→{after['turns']}",
                                "items_shown_again": len(set(items) & set(before["shown"])), "items": len(items)})
        seen["sessions_after_restart"] = resumed
    finally:
        server.stop()
        profile.stop()
    seen["integrity"] = {name: integrity_check(layout.root / name) for name in ("profile.sqlite", "sessions.sqlite")}
    return seen


def shm_regions_of(server: TritonServer) -> set[str]:
    """The shared-memory regions the running server's stubs hold (their names are on the stubs' command lines)."""
    names = set()
    for stub in python_stubs(server.process.pid):
        names |= {a.lstrip("/") for a in cmdline(stub.pid) if SHM_PREFIX in a}
    return names


# -- 2. a Python-backend stub killed ----------------------------------------------------------------------------------
STUB_VICTIMS = ("retriever", "reranker", "recllm_chat")  # 1, 2 and 2 instances; the chat stub is the soak's crash


class SteadyTraffic:
    """One client thread sending requests back to back (``call()``), each outcome timed."""

    def __init__(self, call):
        self.call = call
        self.outcomes: list[tuple[float, str]] = []  # (time.perf_counter(), "ok" or the error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.call()
                self.outcomes.append((time.perf_counter(), "ok"))
            except RecLLMClientError as error:
                self.outcomes.append((time.perf_counter(), str(error)[:200]))
                time.sleep(0.05)

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def kill_and_watch(server: TritonServer, traffic: SteadyTraffic, model: str) -> dict:
    """Kill one stub of ``model`` under ``traffic``; wait for the watchdog's reload and its grace for old stubs."""
    settle_s = server.watchdog.config.old_stub_grace_s + 3 * server.watchdog.config.interval_s
    rss_before = tree_rss_bytes(server.process.pid)
    victim = next(s for s in python_stubs(server.process.pid) if s.model == model)
    before = len(server.watchdog.recoveries)
    killed_at, killed_wall = time.perf_counter(), time.time()
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: len(server.watchdog.recoveries) > before, 300, poll_s=0.2)
    time.sleep(settle_s)
    after = [(t - killed_at, outcome) for t, outcome in traffic.outcomes if t >= killed_at]
    failures = [(t, outcome) for t, outcome in after if outcome != "ok"]
    recovery = server.watchdog.recoveries[before] if len(server.watchdog.recoveries) > before else None
    return {
        "killed": f"{victim.instance} (pid {victim.pid})",
        "watchdog": None if recovery is None else {
            "noticed_after_s": round(recovery.noticed_at - killed_wall, 1),
            "reload_s": recovery.seconds, "missing": list(recovery.missing), "error": recovery.error,
            "old_stubs_ended_after_grace": recovery.old_stubs_ended},
        "requests_after_kill": len(after),
        "failed": len(failures),
        "served_during_outage": sum(1 for t, o in after if o == "ok" and failures and t < failures[-1][0]),
        "last_failure_after_s": round(failures[-1][0], 1) if failures else None,
        "served_after_last_failure": sum(1 for t, o in after if o == "ok" and (not failures or t > failures[-1][0])),
        "errors": sorted({o for _, o in failures}),
        "stubs_now": sorted(s.instance for s in python_stubs(server.process.pid) if s.model == model),
        "server_tree_rss_mib_before_kill_and_now": [round(rss_before / 2**20), round(tree_rss_bytes(server.process.pid)
                                                                                     / 2**20)],
    }


def scenario_stub(source: Path, work: Path) -> dict:
    """Each victim's stub killed in turn under steady traffic (recommendations, or chat turns for the chat model) on
    one server started as ``recllm serve`` starts it (stub watchdog on)."""
    layout = copy_artifacts(ArtifactLayout(source), work / "build")
    user = EventSource(layout.root, "stub").users[0]
    config = triton_config(layout, work / "runtime")
    server = TritonServer(config, log_path=work / "triton.log")
    seen: dict = {"start_s": timed_start(server)}
    try:
        with RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
            try:
                client.grpc.unload_model("retriever")
                seen["repository_api_without_key"] = "accepted"
            except Exception as error:  # noqa: BLE001 - recorded
                seen["repository_api_without_key"] = f"refused: {error}"[:200]
            turns = iter(range(10**9))

            def call_for(model: str):
                if model == "recllm_chat":
                    return lambda: client.chat(f"stub-{next(turns) // 5}", user, GOAL, top_k=3, service="samokat")
                return lambda: client.rank(user, "молоко", 3)

            for model in STUB_VICTIMS:
                with SteadyTraffic(call_for(model)) as traffic:
                    time.sleep(2)  # traffic flowing before the kill
                    seen[model] = kill_and_watch(server, traffic, model)
            seen["server_live"] = client.grpc.is_server_live()
    finally:
        server.stop()
    return seen


# -- 3. and 4. the profile database locked or full --------------------------------------------------------------------
def in_process_profile(layout: ArtifactLayout, busy_timeout_ms: int = 1500, profile_url: str | None = None):
    from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
    from recllm.profile_service.server import ProfileServer

    return ProfileServer(ProfileServiceConfig(artifact_dir=layout.root, port=0, stop_grace_s=1.0,
                                              profile_url=profile_url,
                                              ingest=IngestPolicy(busy_timeout_ms=busy_timeout_ms)))


def scenario_lock(source: Path, work: Path) -> dict:
    from recllm_client.profile_client import ProfileClient, ProfileClientError

    layout = copy_artifacts(ArtifactLayout(source), work / "build")
    seen: dict = {"busy_timeout_ms": 1500}
    with in_process_profile(layout) as server:
        keyring = load_keyring(server.keyring_path)
        ingester = ResilientIngester(server.address, keyring.backend_view(), EventSource(layout.root, "locked"),
                                     events_per_stream=10)
        ingester.send_round()
        code = ("import sqlite3, sys\n"
                f"conn = sqlite3.connect({str(layout.profile_db)!r}, isolation_level=None)\n"
                "conn.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.readline()\n")
        locker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        locker.stdout.readline()
        started = time.perf_counter()
        ingester.send_round()
        seen["ingest_while_locked"] = {"seconds": round(time.perf_counter() - started, 1),
                                       "rejected": len(ingester.rejections),
                                       "ack_error": ingester.rejections[0] if ingester.rejections else None}
        user = ingester.events["locked-1"].user_id
        with ProfileClient(server.address, timeout_s=30, keyring=keyring) as client:
            seen["get_profile_while_locked"] = "ok" if client.get_profile(user).found else "not found"
            try:
                client.forget(user)
                seen["forget_while_locked"] = "succeeded"
            except ProfileClientError as error:
                seen["forget_while_locked"] = str(error)
        seen["service_healthy_while_locked"] = server.is_healthy()
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(30)
        seen["resend_after_release_drained"] = ingester.drain(30)
        counts = stored_event_counts(layout.profile_db, prefix="locked-")
        seen["stored"] = {"distinct": len(counts), "sent": len(ingester.sent),
                          "stored_twice": sum(n > 1 for n in counts.values())}
        seen["refreshed_after"] = server.wait_refreshed(60)
    seen["integrity"] = integrity_check(layout.profile_db)
    return seen


def mount_tmpfs(target: Path, size_bytes: int) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(target)],
                          capture_output=True, text=True)
    return done.returncode == 0


def scenario_full(source: Path, work: Path) -> dict:
    seen: dict = {}
    # (a) a real tiny filesystem: the profile database on a tmpfs with little room left.
    layout = copy_artifacts(ArtifactLayout(source), work / "build-tmpfs")
    tiny = work / "tinyfs"
    db_bytes = sum(p.stat().st_size for p in layout.root.glob("profile.sqlite*"))
    if os.geteuid() == 0 and mount_tmpfs(tiny, db_bytes + 256 * 1024):
        try:
            shutil.copy2(layout.profile_db, tiny / "profile.sqlite")
            with in_process_profile(layout, profile_url=f"sqlite://{tiny / 'profile.sqlite'}") as server:
                keyring = load_keyring(server.keyring_path).backend_view()
                ingester = ResilientIngester(server.address, keyring, EventSource(layout.root, "tmpfs"),
                                             events_per_stream=200)
                rounds = 0
                while not ingester.rejections and rounds < 40:
                    ingester.send_round()
                    rounds += 1
                seen["tmpfs"] = {"size_bytes": db_bytes + 256 * 1024, "acked_before_full": len(ingester.acked),
                                 "rejected": len(ingester.rejections),
                                 "ack_error": ingester.rejections[0] if ingester.rejections else None,
                                 "service_healthy": server.is_healthy()}
                subprocess.run(["mount", "-o", f"remount,size={db_bytes * 4}", str(tiny)], check=True)
                seen["tmpfs"]["drained_after_room_made"] = ingester.drain(30)
                counts = stored_event_counts(tiny / "profile.sqlite", prefix="tmpfs-")
                seen["tmpfs"]["stored"] = {"distinct": len(counts), "sent": len(ingester.sent),
                                           "acked_missing": len(ingester.acked - set(counts)),
                                           "stored_twice": sum(n > 1 for n in counts.values())}
                seen["tmpfs"]["refreshed_after"] = server.wait_refreshed(60)
            seen["tmpfs"]["integrity"] = integrity_check(tiny / "profile.sqlite")
        finally:
            # Lazy: the service's per-thread SQLite connections may still hold the file open after its stop.
            subprocess.run(["umount", "-l", str(tiny)], capture_output=True)
    else:
        seen["tmpfs"] = "not run: mounting a tmpfs needs root (CAP_SYS_ADMIN)"
    # (b) SQLite's max_page_count on the writer's connection (portable; what the tests use).
    layout = copy_artifacts(ArtifactLayout(source), work / "build-pages")
    with in_process_profile(layout) as server:
        def cap(extra):
            def run(store):
                conn = store.connection()
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages + extra if extra is not None else 2**31}")
            server.writer.call(run).result()
        cap(0)
        keyring = load_keyring(server.keyring_path).backend_view()
        ingester = ResilientIngester(server.address, keyring, EventSource(layout.root, "pages"),
                                     events_per_stream=200)
        ingester.send_round()
        seen["max_page_count"] = {"acked": len(ingester.acked), "rejected": len(ingester.rejections),
                                  "ack_error": ingester.rejections[0] if ingester.rejections else None}
        cap(None)
        seen["max_page_count"]["drained_after_room_made"] = ingester.drain(30)
        counts = stored_event_counts(layout.profile_db, prefix="pages-")
        seen["max_page_count"]["stored_twice"] = sum(n > 1 for n in counts.values())
        seen["max_page_count"]["all_stored_once"] = set(counts) == set(ingester.sent)
    seen["max_page_count"]["integrity"] = integrity_check(layout.profile_db)
    return seen


RUNNERS = {"kill9": scenario_kill9, "stub": scenario_stub, "lock": scenario_lock, "full": scenario_full}


def report(results: dict, command: str) -> str:
    lines = ["# Faults: what was done and what was seen", "", f"Command: `{command}`", "",
             "Machine: " + json.dumps(machine_info(), ensure_ascii=False), "",
             "Every scenario ran on its own copy of a test-preset build; the raw observations follow each summary "
             "(JSON, as recorded by `benchmarks/faults.py`). The same behaviour is asserted by "
             "`tests/integration/test_faults.py`.", ""]
    titles = {"kill9": "1. kill -9 of tritonserver and of the profile service mid-traffic, restart on the same build",
              "stub": "2. A Python-backend stub killed under traffic, brought back by the stub watchdog",
              "lock": "3. The profile database locked by another process",
              "full": "4. The profile database full"}
    for name, seen in results.items():
        lines += [f"## {titles[name]}", "", "```json", json.dumps(seen, ensure_ascii=False, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact-dir", type=Path, required=True, help="a built artifact folder (copied)")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--output", type=Path, default=RESULTS / "faults.md")
    args = parser.parse_args(argv)
    results: dict = {}
    for name in [s for s in args.only.split(",") if s]:
        work = Path(tempfile.mkdtemp(prefix=f"recllm-faults-{name}-"))
        print(f"[faults] {name} …", flush=True)
        try:
            results[name] = RUNNERS[name](args.artifact_dir, work)
        except Exception:  # noqa: BLE001 - a scenario that breaks is reported, the others still run
            results[name] = {"failed": traceback.format_exc()[-3000:]}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(results[name], ensure_ascii=False)[:2000], flush=True)
    command = "python -m benchmarks.faults " + " ".join(sys.argv[1:] if argv is None else argv)
    args.output.write_text(report(results, command))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
