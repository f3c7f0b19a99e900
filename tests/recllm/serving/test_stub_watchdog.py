"""The stub watchdog against real child processes standing in for stubs (a Python interpreter linked under the stub's
name, with a stub's command line; their models are named fake_*: a session's real tritonserver may be a child of
this test process too, with stubs of the real models) and a real HTTP endpoint that records the repository calls; the watchdog against
a real tritonserver is ``tests/integration/test_faults.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recllm.serving.stub_watchdog import (
    ADMIN_HEADER, RELOAD_PARAMETER, ModelRepositoryApi, RepositoryApiError, cmdline, Stub, StubWatchdog, StubWatchdogConfig, instances_by_model, is_running,
    status_field,
    missing_instances, python_stubs, redacted, stub_from_cmdline,
)

REAL_CMDLINE = ["/rt/backends/python/triton_python_backend_stub", "/repo/reranker/1/model.py",
                "triton_python_backend_shm_region_1", "1048576", "1048576", "20249", "/rt/backends/python", "336",
                "reranker_0_1", "DEFAULT"]


def test_a_stub_command_line_names_its_model_and_instance():
    assert stub_from_cmdline(7, REAL_CMDLINE) == Stub(7, "reranker", "reranker_0_1")
    assert stub_from_cmdline(7, ["/usr/bin/python3", "/repo/reranker/1/model.py"]) is None  # not a stub
    assert stub_from_cmdline(7, REAL_CMDLINE[:5]) == Stub(7, "reranker", "")  # too short for the instance
    assert stub_from_cmdline(7, []) is None


def test_missing_instances_per_model():
    expected = {"fake_reranker": {"fake_reranker_0_0", "fake_reranker_0_1"}, "fake_retriever": {"fake_retriever_0_0"}}
    running = [Stub(1, "fake_reranker", "fake_reranker_0_0"), Stub(2, "fake_retriever", "fake_retriever_0_0")]
    assert missing_instances(expected, running) == {"fake_reranker": {"fake_reranker_0_1"}}
    assert missing_instances(expected, running + [Stub(3, "fake_reranker", "fake_reranker_0_1")]) == {}
    # a lingering old stub beside the new ones (seen for ~45 s after a reload) hides nothing
    assert missing_instances(expected, running * 2 + [Stub(3, "fake_reranker", "fake_reranker_0_1")]) == {}
    assert instances_by_model(running) == {"fake_reranker": {"fake_reranker_0_0"}, "fake_retriever": {"fake_retriever_0_0"}}


def test_the_admin_key_never_reaches_a_log_line():
    assert redacted(["tritonserver", "--http-restricted-api=model-repository:k=SECRET"], "SECRET") == \
        ["tritonserver", "--http-restricted-api=model-repository:k=***"]


def test_config_rejects_non_positive_intervals():
    with pytest.raises(ValueError, match="interval_s"):
        StubWatchdogConfig(interval_s=0)
    with pytest.raises(ValueError, match="max_backoff_s"):
        StubWatchdogConfig(max_backoff_s=-1)
    with pytest.raises(ValueError, match="old_stub_grace_s"):
        StubWatchdogConfig(old_stub_grace_s=-1)


def fake_expected() -> dict[str, set[str]]:
    """The fake models' running instances (a real server's stubs, children of this process too, left out)."""
    return {model: names for model, names in instances_by_model(python_stubs(os.getpid())).items()
            if model.startswith("fake_")}


class FakeStubs:
    """Child processes of this test whose command lines are a stub's: a Python interpreter linked as
    ``triton_python_backend_stub`` sleeping, with the model.py path and instance name where Triton puts them."""

    def __init__(self, tmp_path: Path):
        self.binary = tmp_path / "triton_python_backend_stub"
        self.binary.symlink_to(sys.executable)
        self.processes: dict[str, subprocess.Popen] = {}  # the latest per instance
        self.started: list[subprocess.Popen] = []

    def start(self, model: str, instance: str) -> subprocess.Popen:
        code = "import time; time.sleep(600)"
        args = [str(self.binary), "-c", code, f"/repo/{model}/1/model.py", "shm", "1", "1", str(os.getpid()), "/b",
                "336", instance, "DEFAULT"]
        process = subprocess.Popen(args)
        self.processes[instance] = process
        self.started.append(process)
        for _ in range(500):  # until the child has exec'ed: before that its command line is still this process's
            if stub_from_cmdline(process.pid, cmdline(process.pid)) is not None:
                break
            time.sleep(0.01)
        return process

    def start_all(self, instances: dict[str, list[str]]) -> None:
        for model, names in instances.items():
            for name in names:
                self.start(model, name)
        self.wait_visible(sum(map(len, instances.values())))

    def kill(self, instance: str) -> None:
        self.processes[instance].kill()
        self.processes[instance].wait()

    def wait_visible(self, count: int) -> None:
        for _ in range(200):
            if sum(map(len, fake_expected().values())) >= count:
                return
            threading.Event().wait(0.02)
        raise AssertionError(f"expected {count} stubs, saw {python_stubs(os.getpid())}")

    def stop(self) -> None:
        for process in self.started:
            process.kill()
            process.wait()


class RepositoryEndpoint:
    """An HTTP server that answers a model's config, records repository calls and, on a load whose config differs
    from the model's, starts the model's stubs again (as Triton does); it answers 403 to a repository call without
    the admin header and 400 to a load while ``failing`` is set."""

    def __init__(self, stubs: FakeStubs, instances: dict[str, list[str]], admin_key: str):
        self.calls: list[tuple[str, str]] = []
        self.loaded_configs: list[dict] = []
        self.failing = False
        self.live = True
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server protocol
                if self.path == "/v2/health/live":
                    return self.answer(200 if endpoint.live else 400, {})
                _, _, _, model, _ = self.path.split("/")  # /v2/models/<model>/config
                endpoint.calls.append(("config", model))
                return self.answer(200, {"name": model, "backend": "python", "parameters": {"k": {"string_value": "v"}}})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.headers.get(ADMIN_HEADER) != admin_key:
                    return self.answer(403, {"error": "This API is restricted"})
                _, _, _, _, model, action = self.path.split("/")
                endpoint.calls.append((action, model))
                if action == "load":
                    endpoint.loaded_configs.append(json.loads(body["parameters"]["config"]))
                if endpoint.failing and action == "load":
                    return self.answer(400, {"error": f"failed to load '{model}'"})
                if action == "load":
                    for instance in instances[model]:
                        stubs.start(model, instance)
                return self.answer(200, {})

            def answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stubs(tmp_path):
    fake = FakeStubs(tmp_path)
    yield fake
    fake.stop()


def eventually(predicate, timeout_s: float = 20.0) -> bool:
    """Whether ``predicate()`` comes true within ``timeout_s`` (polled)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_killed_stub_is_brought_back_by_reloading_its_model(stubs):
    instances = {"fake_reranker": ["fake_reranker_0_0", "fake_reranker_0_1"], "fake_retriever": ["fake_retriever_0_0"]}
    stubs.start_all(instances)
    endpoint = RepositoryEndpoint(stubs, instances, admin_key="key")
    try:
        watchdog = StubWatchdog(os.getpid(), ModelRepositoryApi(endpoint.url, "key", timeout_s=10),
                                StubWatchdogConfig(interval_s=0.05, old_stub_grace_s=0))
        watchdog.expected = fake_expected()
        assert watchdog.check() == [] and endpoint.calls == []  # all there: nothing to do
        survivor = stubs.processes["fake_reranker_0_0"]

        victim = stubs.processes["fake_reranker_0_1"]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert not is_running(victim.pid)
        assert watchdog.check() == []  # one look: a suspect only (/proc's children lists may miss a live child)
        (recovery,) = watchdog.check()
        assert (recovery.model, recovery.missing, recovery.error) == ("fake_reranker", ("fake_reranker_0_1",), "")
        assert endpoint.calls == [("config", "fake_reranker"), ("load", "fake_reranker")]  # in place: never unloaded
        (loaded,) = endpoint.loaded_configs
        assert loaded["parameters"]["k"] == {"string_value": "v"}  # the model's own config, one parameter added
        assert set(loaded["parameters"]) == {"k", RELOAD_PARAMETER}
        # the reloaded stub shows in /proc once it has exec'ed and its parent's children list has it (seconds on a
        # loaded machine: a fresh clone's full suite once saw it missing at once)
        assert eventually(lambda: missing_instances(watchdog.expected, python_stubs(os.getpid())) == {})
        assert is_running(survivor.pid)  # the old version's live stub: Triton would keep it
        watchdog.end_old_stubs(now=float("-inf"))  # inside the grace: left alone
        assert is_running(survivor.pid)
        assert watchdog.check() == []  # back: no second reload; the grace (0 here) is over: the old stub is ended
        assert survivor.wait(timeout=10) == -signal.SIGKILL and recovery.old_stubs_ended == 1
        fake_reranker_stubs = [s for s in python_stubs(os.getpid()) if s.model == "fake_reranker"]
        assert sorted(s.instance for s in fake_reranker_stubs) == ["fake_reranker_0_0", "fake_reranker_0_1"]
        assert survivor.pid not in {s.pid for s in fake_reranker_stubs}

        stubs.kill("fake_retriever_0_0")
        watchdog.check()
        (again,) = watchdog.check()
        assert again.model == "fake_retriever" and again.error == ""
        # every reload's config is new (an unchanged config would make Triton's load a no-op)
        assert endpoint.loaded_configs[0]["parameters"][RELOAD_PARAMETER] != \
            endpoint.loaded_configs[1]["parameters"][RELOAD_PARAMETER]
    finally:
        endpoint.close()


def test_a_failing_reload_is_recorded_and_retried_after_a_backoff(stubs):
    stubs.start_all({"fake_retriever": ["fake_retriever_0_0"]})
    endpoint = RepositoryEndpoint(stubs, {"fake_retriever": ["fake_retriever_0_0"]}, admin_key="key")
    try:
        watchdog = StubWatchdog(os.getpid(), ModelRepositoryApi(endpoint.url, "key", timeout_s=10))
        watchdog.expected = fake_expected()
        stubs.kill("fake_retriever_0_0")
        endpoint.failing = True
        watchdog.check()
        (failed,) = watchdog.check()
        assert "HTTP 400" in failed.error and "failed to load 'fake_retriever'" in failed.error
        assert watchdog.check() == []  # backing off: not hammered every look
        watchdog._retry_at["fake_retriever"] = 0.0  # the backoff has passed
        endpoint.failing = False
        (recovered,) = watchdog.check()
        assert recovered.error == "" and [r.model for r in watchdog.recoveries] == ["fake_retriever", "fake_retriever"]
    finally:
        endpoint.close()


def test_the_repository_api_needs_the_admin_key(stubs):
    endpoint = RepositoryEndpoint(stubs, {"fake_retriever": []}, admin_key="right")
    try:
        with pytest.raises(RepositoryApiError, match="HTTP 403"):
            ModelRepositoryApi(endpoint.url, "wrong", timeout_s=5).reload("fake_retriever")
        assert endpoint.calls == [("config", "fake_retriever")]  # read, never loaded
        ModelRepositoryApi(endpoint.url, "right", timeout_s=5).reload("fake_retriever")  # the client sends the header
        assert endpoint.calls[-1] == ("load", "fake_retriever")
    finally:
        endpoint.close()


def test_no_reload_while_the_server_is_not_live_or_when_every_instance_vanished(stubs):
    instances = {"fake_reranker": ["fake_reranker_0_0", "fake_reranker_0_1"]}
    stubs.start_all(instances)
    endpoint = RepositoryEndpoint(stubs, instances, admin_key="key")
    try:
        watchdog = StubWatchdog(os.getpid(), ModelRepositoryApi(endpoint.url, "key", timeout_s=10))
        watchdog.expected = fake_expected()
        stubs.kill("fake_reranker_0_1")
        endpoint.live = False  # the server is going down
        assert watchdog.check() == [] and watchdog.check() == [] and endpoint.calls == []
        stubs.kill("fake_reranker_0_0")
        endpoint.live = True
        assert watchdog.check() == [] and watchdog.check() == []  # every instance gone at once: a shutdown
        assert ("load", "fake_reranker") not in endpoint.calls
    finally:
        endpoint.close()


def test_a_crash_looping_model_backs_off(stubs):
    stubs.start_all({"fake_retriever": ["fake_retriever_0_0"]})
    endpoint = RepositoryEndpoint(stubs, {"fake_retriever": ["fake_retriever_0_0"]}, admin_key="key")
    try:
        watchdog = StubWatchdog(os.getpid(), ModelRepositoryApi(endpoint.url, "key", timeout_s=10),
                                StubWatchdogConfig(crash_loop_reloads=2))
        watchdog.expected = fake_expected()
        for reload in range(3):
            stubs.kill("fake_retriever_0_0")
            watchdog.check()
            done = watchdog.check()
            if reload < 2:
                assert [r.model for r in done] == ["fake_retriever"]
            else:
                assert done == []  # the second reload within the window set a backoff
        assert endpoint.calls.count(("load", "fake_retriever")) == 2
    finally:
        endpoint.close()


def test_the_thread_notices_a_dead_stub_by_itself(stubs):
    stubs.start_all({"fake_generator": ["fake_generator_0_0"]})
    endpoint = RepositoryEndpoint(stubs, {"fake_generator": ["fake_generator_0_0"]}, admin_key="key")
    watchdog = StubWatchdog(os.getpid(), ModelRepositoryApi(endpoint.url, "key", timeout_s=10),
                            StubWatchdogConfig(interval_s=0.05)).start()
    try:
        assert watchdog.expected["fake_generator"] == {"fake_generator_0_0"}
        stubs.kill("fake_generator_0_0")
        for _ in range(200):
            if watchdog.recoveries:
                break
            threading.Event().wait(0.05)
        assert [(r.model, r.error) for r in watchdog.recoveries] == [("fake_generator", "")]
    finally:
        watchdog.stop()
        endpoint.close()


def test_status_field_reads_this_process_and_none_for_a_gone_one():
    assert status_field(os.getpid(), "State") in ("R", "S") and int(status_field(os.getpid(), "VmRSS")) > 1000
    assert status_field(os.getpid(), "NoSuchField") is None
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert status_field(gone.pid, "State") is None and not is_running(gone.pid)
