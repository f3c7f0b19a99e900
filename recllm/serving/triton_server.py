"""Run the real NVIDIA Triton Inference Server on our model repository.

The tritonserver 2.51 binary ships inside the ``nvidia-pytriton`` wheel together with the Python backend and
one backend stub per Python version. This module prepares a private backend directory (the stub must match the
running interpreter), sets the environment the stub needs (the venv's ``bin`` on PATH, the bundled shared
libraries on LD_LIBRARY_PATH) and manages the server process: port checks, readiness, clean shutdown, and (by
default) a watchdog that reloads a model whose Python-backend stub died (``stub_watchdog.py``).

Model adapters in ``model_repository/`` find the built artifacts through ``RECLLM_ARTIFACT_DIR``, the keyring
they verify user tokens with through ``RECLLM_KEYRING`` (created here, mode 0600, if absent) and, when
``TritonServerConfig.profile_url`` is set, the profile store they read through ``RECLLM_PROFILE_URL`` (then the
artifact folder's own ``profile.sqlite`` is neither read nor required).
"""

from __future__ import annotations

import atexit
import filecmp
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from recllm.artifacts import ARTIFACT_DIR_ENV, DEFAULT_ARTIFACT_DIR, KEYRING_ENV, ArtifactLayout
from recllm.config.field_checks import require_above
from recllm.profile.storage import POSTGRES_SCHEMES, PROFILE_URL_ENV, SQLITE_SCHEME
from recllm.serving.stub_watchdog import (
    ModelRepositoryApi, StubWatchdog, StubWatchdogConfig, model_control_flags, new_admin_key, redacted,
)
from recllm.serving.tls import TlsFiles
from recllm_proto.user_token import ensure_keyring

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def kill_leftover_stubs(session_pid: int) -> None:
    """Kill what is left of the server's process group once the server is gone: Python-backend stubs do not always
    exit when tritonserver dies (seen after a kill -9: a stub stayed with its ~500 MB until killed)."""
    try:
        os.killpg(session_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: every stub exited with the server


class TritonServerError(RuntimeError):
    """The server could not be started or did not become ready."""


@dataclass
class TritonServerConfig:
    """Where the server reads models from and where it listens."""

    artifact_dir: Path = DEFAULT_ARTIFACT_DIR
    model_repository: Path = REPO_ROOT / "model_repository"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    bind_address: str = "127.0.0.1"
    runtime_dir: Path | None = None  # defaults to <artifact_dir>/triton_runtime
    startup_timeout_s: float = 300.0
    log_verbose: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    keyring_path: Path | None = None  # defaults to the build's ``ArtifactLayout.keyring`` (beside the folder)
    tls: TlsFiles | None = None       # gRPC over TLS (HTTP and metrics stay plaintext: bind them to loopback)
    # More tritonserver flags, appended as given
    extra_args: tuple[str, ...] = ()
    # Reload a model whose Python-backend stub died (``stub_watchdog.py``); runs the server in explicit model control
    # with the repository API behind a per-start secret. None: model control NONE, a dead stub stays dead.
    stub_watchdog: StubWatchdogConfig | None = field(default_factory=StubWatchdogConfig)
    # What the server loads at start: every model ("*"), or these and what their ensembles need (explicit model
    # control, so it needs the watchdog's mode; tests use it to start only the stages they call)
    load_models: tuple[str, ...] = ("*",)
    # The profile store the models read (``recllm serve --profile-url``): postgresql://… or sqlite://<path>; None:
    # the artifact folder's profile.sqlite. Passed to the model processes as $RECLLM_PROFILE_URL.
    profile_url: str | None = None

    def __post_init__(self) -> None:
        self.artifact_dir = Path(self.artifact_dir)
        self.keyring_path = Path(self.keyring_path or ArtifactLayout(self.artifact_dir).keyring)
        self.model_repository = Path(self.model_repository)
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"TritonServerConfig.{name} must be a port number 1..65535, got {port!r}")
        ports = [self.grpc_port, self.http_port, self.metrics_port]
        if len(set(ports)) != 3:
            raise ValueError(f"TritonServerConfig ports must differ, got grpc/http/metrics = {ports}")
        require_above(self, "startup_timeout_s", 0)
        if self.profile_url is not None and (not isinstance(self.profile_url, str)
                                             or not self.profile_url.startswith((*POSTGRES_SCHEMES, SQLITE_SCHEME))):
            scheme = self.profile_url.split("://", 1)[0] if isinstance(self.profile_url, str) else self.profile_url
            raise ValueError(f"TritonServerConfig.profile_url must be None or a postgresql:// or sqlite:// URL, "
                             f"got scheme {scheme!r}")
        if self.stub_watchdog is not None and any(a.startswith("--model-control-mode") for a in self.extra_args):
            raise ValueError("TritonServerConfig: the stub watchdog sets the model control mode itself; drop "
                             "--model-control-mode from extra_args or set stub_watchdog=None")
        self.load_models = tuple(self.load_models)
        if not self.load_models or (self.load_models != ("*",) and self.stub_watchdog is None):
            raise ValueError("TritonServerConfig.load_models: name at least one model (or \"*\"); loading a subset "
                             "needs explicit model control, which comes with the stub watchdog")
        if self.runtime_dir is None:
            self.runtime_dir = self.artifact_dir / "triton_runtime"
        self.runtime_dir = Path(self.runtime_dir)

    @property
    def grpc_url(self) -> str:
        return f"{self.bind_address}:{self.grpc_port}"


STUB_CRASH = "Fatal Python error"  # what faulthandler (enable_crash_traces) writes first when a stub crashes
SERVER_STOP = "Signal (2) received"  # tritonserver's first line after the SIGINT that stops it


def crash_traces(log_path: Path, max_lines: int = 60) -> dict[str, list[str]]:
    """What ``faulthandler`` wrote to the server log for each stub that crashed natively (from its "Fatal Python
    error" line, up to ``max_lines`` lines or the next server log line), as ``{"serving": [...], "shutdown": [...]}``:
    crashes before the server was told to stop, and those of stubs tearing down after it (no request in flight)."""
    traces: dict[str, list[str]] = {"serving": [], "shutdown": []}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return traces
    phase = "serving"
    for start, line in enumerate(lines):
        if SERVER_STOP in line:
            phase = "shutdown"
        if STUB_CRASH not in line:
            continue
        block = [line]
        for following in lines[start + 1:start + max_lines]:
            if STUB_CRASH in following or SERVER_STOP in following or following[:1] in ("I", "W", "E") \
                    and following[1:5].isdigit():
                break  # the next crash, the stop, or tritonserver's own log line ("I1130 06:05:01 ...")
            block.append(following)
        traces[phase].append("\n".join(block))
    return traces


def pytriton_paths() -> tuple[Path, Path]:
    """(tritonserver dir inside the pytriton wheel, its bundled shared-library dir)."""
    try:
        import pytriton  # noqa: PLC0415 - optional at import time of the library
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TritonServerError("nvidia-pytriton is not installed: it carries the tritonserver binary") from exc
    package_dir = Path(pytriton.__file__).resolve().parent
    return package_dir / "tritonserver", package_dir.parent / "nvidia_pytriton.libs"


def prepare_backend_dir(runtime_dir: Path) -> Path:
    """A backend directory whose Python stub matches the running interpreter (idempotent)."""
    server_dir, _ = pytriton_paths()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonServerError(f"no Triton Python backend stub for Python {version} in {stub.parent.parent}")
    python_backend = runtime_dir / "backends" / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    sources = {name: server_dir / "backends" / "python" / name
               for name in ("libtriton_python.so", "triton_python_backend_utils.py")}
    sources["triton_python_backend_stub"] = stub
    for name, source in sources.items():
        target = python_backend / name
        # Refresh on any difference: a new pytriton or another Python must not run with stale backend files.
        if not target.exists() or not filecmp.cmp(source, target, shallow=True):
            shutil.copy2(source, target)
    return runtime_dir / "backends"


def server_environment(config: TritonServerConfig) -> dict[str, str]:
    """Environment for tritonserver and, through it, the Python backend stubs."""
    _, libs_dir = pytriton_paths()
    env = dict(os.environ)
    lib_path = [str(libs_dir), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        lib_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in lib_path if p)
    # The stub takes its interpreter (and so our venv's packages) from PATH; PYTHONPATH is not honoured.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env[ARTIFACT_DIR_ENV] = str(config.artifact_dir.resolve())
    env[KEYRING_ENV] = str(config.keyring_path.resolve())
    env.setdefault("OMP_NUM_THREADS", "1")
    if config.profile_url is not None:
        env[PROFILE_URL_ENV] = config.profile_url
    env.update(config.extra_env)
    return env


def port_is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def check_ports(config: TritonServerConfig) -> None:
    for name in ("grpc_port", "http_port", "metrics_port"):
        port = getattr(config, name)
        if not port_is_free(config.bind_address, port):
            raise TritonServerError(
                f"{name.replace('_', ' ')} {port} on {config.bind_address} is already in use; "
                f"stop whatever holds it or choose another port (--{name.replace('_', '-')})"
            )


def tls_flags(tls: TlsFiles | None) -> list[str]:
    if tls is None:
        return []
    return ["--grpc-use-ssl=true", f"--grpc-server-cert={tls.cert.resolve()}", f"--grpc-server-key={tls.key.resolve()}"]


def server_command(config: TritonServerConfig, backend_dir: Path, admin_key: str | None = None) -> list[str]:
    """The tritonserver command line; ``admin_key`` (needed with the stub watchdog) guards the repository API."""
    if (config.stub_watchdog is not None) != (admin_key is not None):
        raise ValueError("server_command: an admin key goes with the stub watchdog, and only with it")
    server_dir, _ = pytriton_paths()
    return [
        str(server_dir / "bin" / "tritonserver"),
        f"--model-repository={config.model_repository.resolve()}",
        f"--backend-directory={backend_dir}",
        f"--grpc-address={config.bind_address}",
        f"--grpc-port={config.grpc_port}",
        f"--http-address={config.bind_address}",
        f"--http-port={config.http_port}",
        f"--metrics-address={config.bind_address}",
        f"--metrics-port={config.metrics_port}",
        *tls_flags(config.tls),
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        f"--log-verbose={config.log_verbose}",
        *(model_control_flags(admin_key, config.load_models) if admin_key is not None else ()),
        *config.extra_args,
    ]


class TritonServer:
    """A tritonserver child process: ``with TritonServer(config) as server: ...``."""

    def __init__(self, config: TritonServerConfig, log_path: Path | None = None):
        self.config = config
        self.log_path = Path(log_path) if log_path else config.runtime_dir / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self.watchdog: StubWatchdog | None = None
        self._log_file = None

    def start(self) -> "TritonServer":
        """Serve the product: the build's artifacts and a Rec-LLM model repository are checked first."""
        ArtifactLayout(self.config.artifact_dir).require_built(needs_profile_file=self.config.profile_url is None)
        if not (self.config.model_repository / "recllm" / "config.pbtxt").exists():
            raise TritonServerError(f"{self.config.model_repository} is not a Rec-LLM model repository")
        return self.launch()

    def launch(self) -> "TritonServer":
        """Start tritonserver on ``config.model_repository`` as it is (any repository: benchmarks of the backend
        itself use their own) and wait until it is ready."""
        check_ports(self.config)
        ensure_keyring(self.config.keyring_path)
        backend_dir = prepare_backend_dir(self.config.runtime_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        admin_key = new_admin_key() if self.config.stub_watchdog is not None else None
        command = server_command(self.config, backend_dir, admin_key)
        log.info("starting tritonserver: %s", " ".join(redacted(command, admin_key) if admin_key else command))
        self.process = subprocess.Popen(
            command,
            env=server_environment(self.config),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)  # the server is in its own session: never leave it behind on an exit
        try:
            self.wait_ready()
            if admin_key is not None:
                repository = ModelRepositoryApi(self.http_url, admin_key, self.config.stub_watchdog.reload_timeout_s)
                self.watchdog = StubWatchdog(self.process.pid, repository, self.config.stub_watchdog).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def http_url(self) -> str:
        return f"http://{self.config.bind_address}:{self.config.http_port}"

    def is_ready(self) -> bool:
        url = f"{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self.process.returncode} before becoming ready:\n"
                    f"{self.log_tail()}"
                )
            if self.is_ready():
                log.info("tritonserver ready: grpc %s", self.config.grpc_url)
                return
            time.sleep(0.25)
        raise TritonServerError(
            f"tritonserver not ready after {self.config.startup_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()  # first: stubs exiting with the server are not to be brought back
            self.watchdog = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0f s; killing it", timeout_s)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            kill_leftover_stubs(self.process.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
