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

import http.client
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
    # hundred MB). The grace lets requests already on them finish (longer than a chat turn's client timeout).
    old_stub_grace_s: float = 90.0
    # A model reloaded this many times within crash_window_s is crash-looping: further reloads back off
    crash_loop_reloads: int = 3
    crash_window_s: float = 600.0

    def __post_init__(self) -> None:
        require_above(self, "interval_s", 0)
        require_above(self, "old_stub_grace_s", 0, inclusive=True)
        require_above(self, "crash_loop_reloads", 0)
        require_above(self, "crash_window_s", 0)
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


def status_field(pid: int, name: str) -> str | None:
    """The first word of ``name``'s line in ``/proc/<pid>/status`` ("State" → "S", "VmRSS" → kB); None when the
    process is gone or has no such line."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((line.split()[1] for line in status.splitlines() if line.startswith(name + ":")), None)


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    return status_field(pid, "State") not in (None, "Z", "X")


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
            try:
                text = exc.read()[:300].decode(errors="replace")
            except (OSError, http.client.HTTPException):
                text = ""
            raise RepositoryApiError(f"{method} {path}: HTTP {exc.code} {text}") from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeouts, a cut-off answer
            raise RepositoryApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def is_live(self) -> bool:
        try:
            self.request("GET", "/v2/health/live")
        except RepositoryApiError:
            return False
        return True

    def reload(self, model: str) -> None:
        """Load ``model`` again in place: new stubs for every instance while the old ones keep serving until the new
        are ready, so ensembles over it never go unavailable (an unload + load took the ensembles down for the ~7 s
        of the load). A plain load of a loaded model is a no-op; a load with a config that differs (here one
        parameter, a fresh value each time) is a reload."""
        try:
            config = json.loads(self.request("GET", f"/v2/models/{model}/config"))
        except ValueError as exc:
            raise RepositoryApiError(f"GET /v2/models/{model}/config: not JSON ({exc})") from exc
        if not isinstance(config, dict) or not isinstance(config.setdefault("parameters", {}), dict):
            raise RepositoryApiError(f"GET /v2/models/{model}/config: not a model config")
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
    # each old stub's whole command line (its shared-memory region's name is unique): a reused pid is not it
    old_cmdlines: tuple[tuple[str, ...], ...] = field(default=(), repr=False)


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
        self._known: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}  # (model, instance) -> pid, cmdline
        self._suspects: set[tuple[str, str]] = set()  # missing at the last look (a reload needs two looks)
        self._reloads: dict[str, list[float]] = {}    # model -> monotonic times of its recent reloads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StubWatchdog:
        stubs = python_stubs(self.server_pid)
        self.expected = instances_by_model(stubs)
        self.remember(stubs)
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

    def remember(self, stubs: list[Stub]) -> None:
        for stub in stubs:
            self._known[(stub.model, stub.instance)] = (stub.pid, tuple(cmdline(stub.pid)))

    def still_running(self, model: str, instance: str) -> Stub | None:
        """The instance's last known stub when that very process still runs (``/proc/<pid>/task/*/children`` may
        miss a child of a running process, the process itself is not missed)."""
        pid, args = self._known.get((model, instance), (0, ()))
        if pid and is_running(pid) and tuple(cmdline(pid)) == args:
            return Stub(pid, model, instance)
        return None

    def gone(self, stubs: list[Stub]) -> tuple[dict[str, set[str]], int]:
        """Per model, the instances missing at this look and the last one (two looks, ``interval_s`` apart), and how
        many are missing at this look."""
        missing = missing_instances(self.expected, stubs)
        now = {(model, name) for model, names in missing.items() for name in names
               if self.still_running(model, name) is None}
        confirmed, self._suspects = now & self._suspects, now
        out: dict[str, set[str]] = {}
        for model, name in confirmed:
            out.setdefault(model, set()).add(name)
        return out, len(now)

    def check(self) -> list[Recovery]:
        """Reload every model with an instance missing at two looks in a row (unless its reloads are backing off);
        end the old stubs of earlier reloads whose grace is over. Nothing is reloaded while the server is not live
        or when every instance vanished at once (the server is shutting down)."""
        self.end_old_stubs()
        stubs = python_stubs(self.server_pid)
        self.remember(stubs)
        gone, missing_now = self.gone(stubs)
        every = sum(map(len, self.expected.values()))
        if not gone or (every > 1 and missing_now == every):
            return []
        done = []
        for model, names in sorted(gone.items()):
            if self._stop.is_set() or time.monotonic() < self._retry_at.get(model, 0.0):
                continue
            if not is_running(self.server_pid) or not self.repository.is_live():
                break
            done.append(self.recover(model, names, [s for s in stubs if s.model == model]))
            self._suspects -= {(model, name) for name in names}
        return done

    def end_old_stubs(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        due = [recovery for ends_at, recovery in self._retiring if ends_at <= now]
        self._retiring = [(ends_at, recovery) for ends_at, recovery in self._retiring if ends_at > now]
        for recovery in due:
            for pid, args in zip(recovery.old_stubs, recovery.old_cmdlines):
                if not is_running(pid) or tuple(cmdline(pid)) != args:  # gone, or the pid is another process now
                    continue
                stub = stub_from_cmdline(pid, list(args))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                recovery.old_stubs_ended += 1
                log.info("stub watchdog: ended %s's old stub %s (pid %d)", recovery.model, stub.instance, pid)

    def back_off_a_crash_loop(self, model: str) -> None:
        """After ``crash_loop_reloads`` reloads of one model within ``crash_window_s``, its next reload waits
        (doubling up to ``max_backoff_s``): a stub that dies on every start is not restarted every few seconds."""
        now = time.monotonic()
        recent = [t for t in self._reloads.get(model, []) if now - t < self.config.crash_window_s] + [now]
        self._reloads[model] = recent
        excess = len(recent) - self.config.crash_loop_reloads
        if excess >= 0:
            wait = min(2.0 ** (excess + 1), self.config.max_backoff_s)
            self._retry_at[model] = now + wait
            log.error("stub watchdog: %s reloaded %d times in %.0f s; the next reload waits %.0f s", model,
                      len(recent), self.config.crash_window_s, wait)

    def recover(self, model: str, missing: set[str], old_stubs: list[Stub] = ()) -> Recovery:
        recovery = Recovery(model, tuple(sorted(missing)), time.time(), old_stubs=tuple(s.pid for s in old_stubs),
                            old_cmdlines=tuple(tuple(cmdline(s.pid)) for s in old_stubs))
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
            self.back_off_a_crash_loop(model)
            if recovery.old_stubs:
                self._retiring.append((time.monotonic() + self.config.old_stub_grace_s, recovery))
        recovery.seconds = round(time.perf_counter() - started, 2)
        if not recovery.error:
            log.warning("stub watchdog: %s reloaded in %.1f s", model, recovery.seconds)
        self.recoveries.append(recovery)
        return recovery
