"""Faults against the real stack on a private copy of the test build: ``kill -9`` of tritonserver and of the profile
service mid-traffic, a Python-backend stub killed, and the profile database locked or full.

Every test copies the build (``benchmarks.profile_ingest.copy_artifacts``) so what it breaks is its own.
``RECLLM_FAULTS_ARTIFACTS=<dir>`` reuses an already built test-preset folder instead of the session build (it is
copied too, never written).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.fault_harness import (
    EventSource, ProfileServiceProcess, ResilientIngester, integrity_check, session_state, stored_event_counts,
    wait_until,
)
from benchmarks.profile_ingest import copy_artifacts
from recllm.artifacts import ArtifactLayout
from recllm.serving.stub_watchdog import is_running, python_stubs
from recllm.serving.triton_server import TritonServer, TritonServerConfig, crash_traces, free_port
from recllm_client import RecLLMClient
from recllm_client.triton_client import RecLLMClientError
from recllm_proto.user_token import load_keyring

pytestmark = pytest.mark.integration

GOAL = "что приготовить на ужин, чтобы было полезно?"
FOLLOW_UP = "подешевле"


@pytest.fixture(scope="module")
def source_artifacts(request) -> Path:
    prebuilt = os.environ.get("RECLLM_FAULTS_ARTIFACTS")
    if prebuilt:
        return Path(prebuilt)
    return request.getfixturevalue("test_artifacts").root


@pytest.fixture
def copy(source_artifacts, tmp_path) -> ArtifactLayout:
    return copy_artifacts(ArtifactLayout(source_artifacts), tmp_path / "build")


def triton_config(layout: ArtifactLayout, runtime: Path, **ports) -> TritonServerConfig:
    return TritonServerConfig(artifact_dir=layout.root, grpc_port=ports.get("grpc", free_port()),
                              http_port=ports.get("http", free_port()), metrics_port=ports.get("metrics", free_port()),
                              runtime_dir=runtime)


def chat_items(client: RecLLMClient, session: str, user: str, message: str) -> list[int]:
    turn = client.chat(session, user, message, top_k=4, service="samokat")
    assert turn.reply.strip()
    return [item.item_id for item in turn.items]


def test_kill9_of_tritonserver_and_profile_service_mid_traffic(copy, tmp_path):
    """Acknowledged events survive, retried ones are stored once, chat sessions continue their goal."""
    keyring = load_keyring(copy.keyring).backend_view() if copy.keyring.exists() else None
    config = triton_config(copy, tmp_path / "runtime")
    profile = ProfileServiceProcess(copy.root, free_port(), log_path=tmp_path / "profile.log")
    server = TritonServer(config, log_path=tmp_path / "triton-1.log").start()
    try:
        profile.start()
        keyring = load_keyring(copy.keyring).backend_view()
        users = EventSource(copy.root, "seed").users
        sessions = {f"fault-session-{k}": users[k] for k in range(3)}
        with RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
            first_items = {s: chat_items(client, s, u, GOAL) for s, u in sessions.items()}

        ingester = ResilientIngester(profile.address, keyring, EventSource(copy.root, "kill9"), events_per_stream=8)
        stop = threading.Event()
        chat_errors: list[str] = []
        chat_done = [0]

        def background_chat():
            with RecLLMClient(config.grpc_url, timeout_s=30, keyring=config.keyring_path) as client:
                k = 0
                while not stop.is_set():
                    try:
                        client.chat(f"fault-bg-{k}", users[(k + 3) % len(users)], GOAL, top_k=4, service="samokat")
                        chat_done[0] += 1
                    except RecLLMClientError as error:
                        chat_errors.append(str(error))
                        stop.wait(0.2)
                    k += 1

        threads = [threading.Thread(target=ingester.run, args=(stop,)), threading.Thread(target=background_chat)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(ingester.acked) >= 40 and chat_done[0] >= 1, 60)

        stubs = python_stubs(server.process.pid)
        assert {s.model for s in stubs} >= {"retriever", "reranker", "recllm_chat"}, stubs
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        server.stop()
        # Stubs that did not exit with their parent are killed with the server's process group by stop().
        assert wait_until(lambda: not any(is_running(s.pid) for s in stubs), 60), \
            [s for s in stubs if is_running(s.pid)]
        acked_before_profile_kill = len(ingester.acked)
        assert wait_until(lambda: len(ingester.acked) >= acked_before_profile_kill + 16, 30)  # ingest goes on
        profile.kill9()
        acked_at_kill = set(ingester.acked)
        time.sleep(0.5)
        profile.start()
        server = TritonServer(config, log_path=tmp_path / "triton-2.log").start()
        assert wait_until(lambda: len(ingester.acked) >= len(acked_at_kill) + 16, 60)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert ingester.drain(60), ingester.unacked()[:5]

        counts = stored_event_counts(copy.profile_db, prefix="kill9-")
        retried = [i for i, n in ingester.sent.items() if n > 1]
        assert acked_at_kill and all(counts.get(i) == 1 for i in acked_at_kill), "an acknowledged event was lost"
        assert set(counts) == set(ingester.sent) and set(counts.values()) == {1}, "an event stored twice or never"
        assert ingester.errors, "the kill was not seen by the ingest client"
        assert not ingester.rejections, ingester.rejections[:3]
        print(f"\nacked {len(ingester.acked)}, acked before the profile kill {len(acked_at_kill)}, retried "
              f"{len(retried)} (duplicates acked {ingester.duplicates}), stream errors {len(ingester.errors)}, "
              f"chat errors {len(chat_errors)}")

        # Sessions resume: the next turn keeps the goal, the service, and never shows an item shown before.
        with RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
            for session, user in sessions.items():
                before = session_state(copy.sessions_db, session)
                assert before["goal"] == GOAL and set(first_items[session]) <= set(before["shown"])
                items = chat_items(client, session, user, FOLLOW_UP)
                after = session_state(copy.sessions_db, session)
                assert after["turns"] == before["turns"] + 1
                assert after["goal"] == GOAL and after["service"] == before["service"]
                assert not set(items) & set(before["shown"]), (items, before["shown"])
                assert set(after["shown"]) >= set(before["shown"])
    finally:
        server.stop()
        profile.stop()
    assert integrity_check(copy.profile_db) == "ok"
    assert integrity_check(copy.sessions_db) == "ok"
    # The restarted server's stop: no stub crashed, serving or tearing down (custom metrics are released first).
    assert (tmp_path / "triton-2.log").stat().st_size > 0
    assert crash_traces(tmp_path / "triton-2.log") == {"serving": [], "shutdown": []}


# -- the profile database locked or full ------------------------------------------------------------------------------
@pytest.fixture
def profile_server(copy):
    from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
    from recllm.profile_service.server import ProfileServer

    # A short busy timeout so a lock held by another process turns into an error within the test.
    config = ProfileServiceConfig(artifact_dir=copy.root, port=0, stop_grace_s=1.0,
                                  ingest=IngestPolicy(busy_timeout_ms=1500))
    with ProfileServer(config) as server:
        yield server


def hold_exclusive_lock(db: Path) -> subprocess.Popen:
    """Another process takes SQLite's exclusive lock on ``db`` and keeps it until its stdin gets a line."""
    code = ("import sqlite3, sys\n"
            f"conn = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "conn.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "conn.execute('ROLLBACK')\n")
    locker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    return locker


def release(locker: subprocess.Popen) -> None:
    locker.stdin.write("\n")
    locker.stdin.flush()
    assert locker.wait(30) == 0


def test_profile_database_locked_by_another_process(profile_server, copy):
    from recllm_client.profile_client import ProfileClient, ProfileClientError

    keyring = load_keyring(profile_server.keyring_path)
    ingester = ResilientIngester(profile_server.address, keyring.backend_view(), EventSource(copy.root, "locked"),
                                 events_per_stream=10)
    ingester.send_round()
    assert len(ingester.acked) == 10 and not ingester.rejections

    locker = hold_exclusive_lock(copy.profile_db)
    try:
        ingester.send_round()
        # Every event of the stream is answered, each with the reason; none is acknowledged as stored.
        assert len(ingester.acked) == 10 and len(ingester.rejections) == 10
        assert all("not stored" in e and "database is locked" in e for e in ingester.rejections), \
            ingester.rejections[:2]
        user = ingester.events["locked-1"].user_id
        with ProfileClient(profile_server.address, timeout_s=30, keyring=keyring) as client:
            assert client.get_profile(user).found  # WAL: readers are not blocked by the writer's lock
            with pytest.raises(ProfileClientError) as refused:
                client.forget(user)
        assert refused.value.code.name == "UNAVAILABLE" and "locked" in str(refused.value), str(refused.value)
        assert profile_server.is_healthy()
    finally:
        release(locker)

    assert ingester.drain(30) and not ingester.unacked()  # the same event ids, resent after the lock is gone
    assert ingester.duplicates == 0  # none of the refused events had been stored
    counts = stored_event_counts(copy.profile_db, prefix="locked-")
    assert set(counts) == set(ingester.sent) and set(counts.values()) == {1}
    assert profile_server.wait_refreshed(60) and profile_server.is_healthy()
    assert integrity_check(copy.profile_db) == "ok"


def test_profile_database_full(profile_server, copy):
    """SQLITE_FULL (the database may not grow: ``max_page_count`` on the writer's connection, as a full disk
    behaves): the events are refused with the reason, nothing half-written, and ingest resumes once there is room."""
    keyring = load_keyring(profile_server.keyring_path).backend_view()
    writer = profile_server.writer

    def cap(pages_over: int | None):
        def run(store):
            conn = store.connection()
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return conn.execute(f"PRAGMA max_page_count = {pages + pages_over if pages_over is not None else 2**31}"
                                ).fetchone()[0]
        return writer.call(run).result()

    cap(0)
    ingester = ResilientIngester(profile_server.address, keyring, EventSource(copy.root, "full"),
                                 events_per_stream=200)
    ingester.send_round()
    assert ingester.rejections, "the capped database took every event"
    assert all("not stored" in e and "full" in e for e in ingester.rejections), ingester.rejections[:2]
    assert profile_server.is_healthy()
    cap(None)
    assert ingester.drain(30)
    counts = stored_event_counts(copy.profile_db, prefix="full-")
    assert set(counts) == set(ingester.sent) and set(counts.values()) == {1}
    assert profile_server.wait_refreshed(60) and profile_server.is_healthy()
    assert integrity_check(copy.profile_db) == "ok"


# -- a Python-backend stub killed -------------------------------------------------------------------------------------
def test_a_killed_python_stub_is_brought_back_by_the_watchdog(copy, tmp_path):
    """Triton 2.51 neither restarts a dead stub nor reports its model unready; the watchdog ``TritonServer`` runs
    (``recllm/serving/stub_watchdog.py``) notices the missing instance and reloads its model. Requests meanwhile fail
    with a clear error, the server stays up, and then the same client is served again, without a restart; clients
    cannot use the repository API the watchdog reloads through."""
    from tritonclient.utils import InferenceServerException

    config = triton_config(copy, tmp_path / "runtime")
    user = EventSource(copy.root, "stub").users[0]
    with TritonServer(config, log_path=tmp_path / "triton.log") as server, \
            RecLLMClient(config.grpc_url, timeout_s=60, keyring=config.keyring_path) as client:
        assert client.rank(user, "молоко", 3).items
        with pytest.raises(InferenceServerException, match="restricted"):
            client.grpc.unload_model("retriever")
        victim = next(s for s in python_stubs(server.process.pid) if s.model == "retriever")  # one instance
        os.kill(victim.pid, signal.SIGKILL)
        errors, served = [], None
        deadline = time.monotonic() + 180
        while served is None and time.monotonic() < deadline:
            try:
                served = client.rank(user, "молоко", 3)
            except RecLLMClientError as error:
                errors.append(str(error))
                time.sleep(0.2)
        print(f"\n{len(errors)} requests failed before the watchdog's reload; first: {errors[:1]}; "
              f"recoveries: {server.watchdog.recoveries}")
        assert served is not None and served.items, errors[-3:]
        # clear: the failing stage is named; the ensemble never goes unavailable (the reload is in place)
        assert errors and all("Stub process 'retriever_0_0' is not healthy" in e for e in errors), errors
        assert client.grpc.is_server_live()
        (recovery,) = server.watchdog.recoveries
        assert (recovery.model, recovery.missing, recovery.error) == ("retriever", ("retriever_0_0",), "")
        (revived,) = [s for s in python_stubs(server.process.pid) if s.model == "retriever"]
        assert revived.pid != victim.pid and revived.instance == "retriever_0_0"
        assert client.chat("stub-session", user, GOAL, top_k=3, service="samokat").items  # the ensembles too
        assert recovery.old_stubs == ()  # the retriever's only instance was the dead one: nothing old left running
