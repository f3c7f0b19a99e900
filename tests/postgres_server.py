"""A throw-away PostgreSQL cluster on loopback for tests and benchmarks, and the pytest fixture that starts it.

``LocalPostgres`` runs ``initdb`` into a fresh temporary directory, starts ``postgres`` on a free 127.0.0.1 port
(its unix socket in the same directory, trust authentication, loopback only), waits until it accepts connections,
and on exit stops it (fast shutdown) and deletes the directory. PostgreSQL refuses to run as root, so when this
process is root the cluster runs as the ``postgres`` system account that the Debian package creates.

Binaries are looked up in ``$RECLLM_POSTGRES_BIN``, then ``PATH``, then ``/usr/lib/postgresql/<newest>/bin``.
When they are missing the fixture fails, naming ``.ci/ensure_postgres.sh``, unless ``RECLLM_SKIP_POSTGRES=1``
(then the PostgreSQL tests skip, saying why): CI must never pass by silently skipping them.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

SKIP_ENV = "RECLLM_SKIP_POSTGRES"
BIN_ENV = "RECLLM_POSTGRES_BIN"
SYSTEM_ACCOUNT = "postgres"
SUPERUSER = "recllm"
# Durability off for tests: the cluster is deleted afterwards; benchmarks pass {} to measure the defaults.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are not installed (or the cluster cannot run as any account here)."""


def find_bin_dir(env: dict[str, str] | None = None, lib_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory holding initdb and postgres: $RECLLM_POSTGRES_BIN, then PATH, then the newest under lib_root."""
    env = os.environ if env is None else env
    candidates = []
    if env.get(BIN_ENV):
        candidates.append(Path(env[BIN_ENV]))
    initdb = shutil.which("initdb", path=env.get("PATH", ""))
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    candidates.extend(sorted(lib_root.glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                             else 0, reverse=True))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, postgres) not found in ${BIN_ENV}, PATH or {lib_root}/*/bin; "
        f"install them with .ci/ensure_postgres.sh (or set {SKIP_ENV}=1 to skip the PostgreSQL tests on purpose)")


def run_as_account() -> str | None:
    """The account the cluster must run as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_ACCOUNT)
    except KeyError as error:
        raise PostgresUnavailable(f"running as root and there is no {SYSTEM_ACCOUNT!r} account to run PostgreSQL "
                                  "as (initdb refuses root); install the postgresql package or run as a normal "
                                  "user") from error
    return SYSTEM_ACCOUNT


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalPostgres:
    """One temporary cluster. Use as a context manager; ``url`` is valid inside it."""

    settings: dict[str, str] = field(default_factory=lambda: dict(TEST_SETTINGS))
    start_timeout_s: float = 60.0
    bin_dir: Path = field(default_factory=find_bin_dir)
    root: Path | None = None
    port: int | None = None
    process: subprocess.Popen | None = None
    _database_counter: itertools.count = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its URL (one per test keeps tests independent)."""
        name = f"{prefix}_{next(self._database_counter)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def start(self) -> "LocalPostgres":
        account = run_as_account()
        self.root = Path(tempfile.mkdtemp(prefix="recllm-pg-"))
        if account:
            entry = pwd.getpwnam(account)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        try:
            self._initdb(account)
            self._launch(account)
        except BaseException:
            self.stop()
            raise
        return self

    def _run_kwargs(self, account: str | None) -> dict:
        return {"user": account, "group": pwd.getpwnam(account).pw_gid, "extra_groups": []} if account else {}

    def _initdb(self, account: str | None) -> None:
        command = [str(self.bin_dir / "initdb"), "-D", str(self.root / "data"), "-U", SUPERUSER, "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, **self._run_kwargs(account))
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def _launch(self, account: str | None) -> None:
        options = []
        for name, value in self.settings.items():
            options += ["-c", f"{name}={value}"]
        for _attempt in range(3):  # another process may grab the free port before postgres binds it
            self.port = free_loopback_port()
            log = open(self.root / "postgres.log", "wb")  # noqa: SIM115 (closed with the process)
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.root / "data"), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", str(self.root), *options],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                **self._run_kwargs(account))
            log.close()
            if self._wait_ready():
                return
            if "could not bind" not in self.log_tail():
                break
        raise PostgresUnavailable(f"postgres did not start within {self.start_timeout_s}s:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "postgres.log" if self.root else None
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, checkpoint, exit
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_or_explain(make_server=LocalPostgres, env: dict[str, str] | None = None) -> LocalPostgres:
    """Start a cluster for tests; without binaries fail (or skip when RECLLM_SKIP_POSTGRES=1) with the reason."""
    env = os.environ if env is None else env
    try:
        return make_server().start()
    except PostgresUnavailable as error:
        if env.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1: {error}")
        pytest.fail(str(error), pytrace=False)


_shared: dict[str, object] = {"server": None, "users": 0}


@pytest.fixture(scope="session")
def postgres_server():
    """A loopback PostgreSQL for the whole test session (import this fixture into a test module to use it).

    Each module importing the fixture gets its own session-scoped definition; they share one cluster, stopped
    when the last of them is torn down."""
    if _shared["server"] is None:
        _shared["server"] = start_or_explain()
    _shared["users"] += 1
    yield _shared["server"]
    _shared["users"] -= 1
    if _shared["users"] == 0:
        _shared["server"].stop()
        _shared["server"] = None
