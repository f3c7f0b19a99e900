"""Bring back a Python-backend stub that died: the watchdog beside the tritonserver we start.

Triton 2.51 does not restart a dead ``triton_python_backend_stub``: the model stays reported ready, every request
routed to the dead instance fails with ``Stub process '<instance>' is not healthy.``, and it stays so until the
server restarts (seen in the soak: a chat stub segfaulted inside libpython and 194 chat turns failed after it). The
watchdog notes every stub instance the server runs once it is ready (the instance name is on the stub's command
line), looks at the server's child processes every ``interval_s`` and, when an instance is missing, loads its model
again in place through the repository API (the old instances serve until the new ones are ready). That needs ``--model-control-mode=explicit --load-model=*``; the repository
API is then restricted to a per-start secret header (``--http-restricted-api``/``--grpc-restricted-protocol``), so
clients cannot unload models. Everything is read from ``/proc`` (Linux).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from recllm.config.field_checks import require_above

log = logging.getLogger(__name__)

STUB_NAME = "triton_python_backend_stub"
ADMIN_HEADER = "recllm-admin-key"  # lowercase: gRPC metadata keys must be
# The stub's command line: <stub> <model.py> <shm region> <shm size> <shm growth> <parent pid> <backend dir>
# <ipc control size> <instance name> <runtime modeldir>: the instance name comes 7 arguments after model.py
INSTANCE_AFTER_MODEL_PY = 7


@dataclass
class StubWatchdogConfig:
    """How often the watchdog looks and how long a reload may take."""

    interval_s: float = 2.0
    reload_timeout_s: float = 300.0  # one load request (a generator loads in ~10 s here)
    max_backoff_s: float = 60.0      # a failing reload is retried after 2, 4, … up to this many seconds
    # The model's stubs from before a reload that still run this long after it are ended: Triton routes nothing to
    # the old version once the new one is loaded, yet kept its live stubs until shutdown (seen: > 80 s, each a few
    # hundred MB). The grace lets requests already on them finish.
    old_stub_grace_s: float = 30.0

    def __post_init__(self) -> None:
        require_above(self, "interval_s", 0)
        require_above(self, "old_stub_grace_s", 0, inclusive=True)
        require_above(self, "reload_timeout_s", 0)
        require_above(self, "max_backoff_s", 0)


def model_control_flags(admin_key: str, load_models: tuple[str, ...] = ("*",)) -> tuple[str, ...]:
    """tritonserver flags the watchdog needs: explicit model control with ``load_models`` loaded at start (every
    model by default), and the repository API (load/unload/index) only for requests carrying the admin header."""
    restricted = f"model-repository:{ADMIN_HEADER}={admin_key}"
    return ("--model-control-mode=explicit", *(f"--load-model={name}" for name in load_models),
            f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}")


def new_admin_key() -> str:
    return secrets.token_urlsafe(32)


def redacted(command: list[str], admin_key: str) -> list[str]:
    """The command line for logs, the admin key replaced."""
    return [arg.replace(admin_key, "***") for arg in command]


# -- /proc ------------------------------------------------------------------------------------------------------------
def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children list)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def descendants_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "X")
    return state not in ("Z", "X")


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str     # the model folder the stub runs (``model_repository/<model>/1/model.py``)
    instance: str  # Triton's instance name, e.g. ``reranker_0_1``; "" when the command line has none


def stub_from_cmdline(pid: int, args: list[str]) -> Stub | None:
    """The stub a command line starts, or None when it is not a Python-backend stub's."""
    if not args or not args[0].endswith(STUB_NAME):
        return None
    at = next((i for i, a in enumerate(args) if i and a.endswith("model.py")), None)
    if at is None:
        return Stub(pid, "", "")
    instance_at = at + INSTANCE_AFTER_MODEL_PY
    return Stub(pid, Path(args[at]).parent.parent.name, args[instance_at] if instance_at < len(args) else "")


def python_stubs(server_pid: int) -> list[Stub]:
    """The running Python-backend stub processes of a tritonserver, with the model and instance each serves."""
    stubs = []
    for pid in descendants_of(server_pid):
        stub = stub_from_cmdline(pid, cmdline(pid))
        if stub is not None and is_running(pid):
            stubs.append(stub)
    return stubs


def instances_by_model(stubs: list[Stub]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for stub in stubs:
        found.setdefault(stub.model, set()).add(stub.instance)
    return found


def missing_instances(expected: dict[str, set[str]], stubs: list[Stub]) -> dict[str, set[str]]:
    """Per model, the expected instances no running stub serves (models with none missing are left out)."""
    running = instances_by_model(stubs)
    missing = {model: names - running.get(model, set()) for model, names in expected.items()}
    return {model: names for model, names in missing.items() if names}


# -- the repository API -----------------------------------------------------------------------------------------------
class RepositoryApiError(RuntimeError):
    """The server refused or failed a repository request."""


RELOAD_PARAMETER = "recllm_stub_reload"  # a config parameter no model reads: it only makes the config new


@dataclass
class ModelRepositoryApi:
    """Triton's HTTP model-repository API with the admin header."""

    http_url: str  # http://host:port
    admin_key: str = field(repr=False)
    timeout_s: float = 300.0

    def request(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(f"{self.http_url}{path}", data=data, method=method,
                                         headers={ADMIN_HEADER: self.admin_key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300].decode(errors="replace")
            raise RepositoryApiError(f"{method} {path}: HTTP {exc.code} {text}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise RepositoryApiError(f"{method} {path}: {exc}") from exc

    def reload(self, model: str) -> None:
        """Load ``model`` again in place: new stubs for every instance while the old ones keep serving until the new
        are ready, so ensembles over it never go unavailable (an unload + load took the ensembles down for the ~7 s
        of the load). A plain load of a loaded model is a no-op; a load with a config that differs (here one
        parameter, a fresh value each time) is a reload."""
        try:
            config = json.loads(self.request("GET", f"/v2/models/{model}/config"))
        except json.JSONDecodeError as exc:
            raise RepositoryApiError(f"GET /v2/models/{model}/config: not JSON ({exc})") from exc
        config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": str(time.time_ns())}
        self.request("POST", f"/v2/repository/models/{model}/load", {"parameters": {"config": json.dumps(config)}})


# -- the watchdog -----------------------------------------------------------------------------------------------------
@dataclass
class Recovery:
    """One reload of a model whose stub instances were missing."""

    model: str
    missing: tuple[str, ...]
    noticed_at: float     # time.time()
    seconds: float = 0.0  # the reload request
    error: str = ""       # empty when the reload succeeded
    old_stubs: tuple[int, ...] = ()  # pids of the model's stubs from before the reload, ended after the grace
    old_stubs_ended: int = 0         # how many of them still ran when the grace was over


class StubWatchdog:
    """Reloads a model as soon as one of its stub instances is gone.

    ``start()`` after the server is ready (it records the instances to keep); ``check()`` is one look, also called by
    the thread every ``interval_s``; ``recoveries`` lists what it did."""

    def __init__(self, server_pid: int, repository: ModelRepositoryApi, config: StubWatchdogConfig | None = None):
        self.server_pid = server_pid
        self.repository = repository
        self.config = config or StubWatchdogConfig()
        self.expected: dict[str, set[str]] = {}
        self.recoveries: list[Recovery] = []
        self._retry_at: dict[str, float] = {}  # model -> monotonic time before which a failed reload is not retried
        self._failures: dict[str, int] = {}
        self._retiring: list[tuple[float, Recovery]] = []  # (monotonic time the grace ends, the reload)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StubWatchdog:
        self.expected = instances_by_model(python_stubs(self.server_pid))
        log.info("stub watchdog: %d Python-backend instances of %d models", sum(map(len, self.expected.values())),
                 len(self.expected))
        self._thread = threading.Thread(target=self._run, name="stub-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)  # a reload in flight ends with the server (the thread is a daemon)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            if not is_running(self.server_pid):
                return  # the server is gone: nothing to watch (its owner reports the exit)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watchdog outlives any one failure
                log.exception("stub watchdog: check failed")

    def check(self) -> list[Recovery]:
        """Reload every model with a missing instance (unless a failed reload of it is backing off); end the old
        stubs of earlier reloads whose grace is over."""
        self.end_old_stubs()
        done = []
        stubs = python_stubs(self.server_pid)
        for model, names in sorted(missing_instances(self.expected, stubs).items()):
            if self._stop.is_set() or time.monotonic() < self._retry_at.get(model, 0.0):
                continue
            done.append(self.recover(model, names, [s for s in stubs if s.model == model]))
        return done

    def end_old_stubs(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        due = [recovery for ends_at, recovery in self._retiring if ends_at <= now]
        self._retiring = [(ends_at, recovery) for ends_at, recovery in self._retiring if ends_at > now]
        for recovery in due:
            for pid in recovery.old_stubs:
                stub = stub_from_cmdline(pid, cmdline(pid))  # still that model's stub (not a reused pid)?
                if stub is None or stub.model != recovery.model or not is_running(pid):
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                recovery.old_stubs_ended += 1
                log.info("stub watchdog: ended %s's old stub %s (pid %d)", recovery.model, stub.instance, pid)

    def recover(self, model: str, missing: set[str], old_stubs: list[Stub] = ()) -> Recovery:
        recovery = Recovery(model, tuple(sorted(missing)), time.time(), old_stubs=tuple(s.pid for s in old_stubs))
        log.warning("stub watchdog: %s stub(s) %s gone; reloading %s", model, ", ".join(recovery.missing), model)
        started = time.perf_counter()
        try:
            self.repository.reload(model)
        except RepositoryApiError as exc:
            recovery.error = str(exc)
            failures = self._failures[model] = self._failures.get(model, 0) + 1
            self._retry_at[model] = time.monotonic() + min(2.0 ** failures, self.config.max_backoff_s)
            log.error("stub watchdog: reloading %s failed (%s); retrying later", model, exc)
        else:
            self._failures.pop(model, None)
            self._retry_at.pop(model, None)
            if recovery.old_stubs:
                self._retiring.append((time.monotonic() + self.config.old_stub_grace_s, recovery))
        recovery.seconds = round(time.perf_counter() - started, 2)
        if not recovery.error:
            log.warning("stub watchdog: %s reloaded in %.1f s", model, recovery.seconds)
        self.recoveries.append(recovery)
        return recovery
