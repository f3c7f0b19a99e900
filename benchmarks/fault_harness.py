"""Processes and probes shared by the fault tests (``tests/integration/test_faults.py``), ``benchmarks/faults.py``
and ``benchmarks/soak.py``: a profile service in its own process (so it can be ``kill -9``-ed), the Python-backend
stub children of a tritonserver, resident memory of a process tree, and counts of stored events by ``event_id``.

Everything here reads ``/proc`` (Linux) and the artifact copy's SQLite files; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc

from recllm.serving.stub_watchdog import descendants_of

REPO_ROOT = Path(__file__).resolve().parents[1]
SHM_PREFIX = "triton_python_backend_shm_region_"


# -- /proc (the stub helpers are the watchdog's own) -------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` plus all its descendants (tritonserver + its Python-backend stubs)."""
    return sum(rss_bytes(p) for p in [pid, *descendants_of(pid)])


def wait_until(predicate, timeout_s: float, poll_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def shm_regions() -> set[str]:
    try:
        return {name for name in os.listdir("/dev/shm") if name.startswith(SHM_PREFIX)}
    except OSError:
        return set()


# -- the profile service in its own process ---------------------------------------------------------------------------
class ProfileServiceProcess:
    """``python -m recllm.profile_service.server`` on an artifact folder, in a child process that can be killed."""

    def __init__(self, artifact_dir: Path, port: int, refresh_mode: str = "async", log_path: Path | None = None,
                 profile_url: str | None = None):
        self.artifact_dir, self.port, self.refresh_mode = Path(artifact_dir), port, refresh_mode
        self.profile_url = profile_url
        self.log_path = Path(log_path) if log_path else self.artifact_dir.parent / f"profile_service_{port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ProfileServiceProcess:
        command = [sys.executable, "-m", "recllm.profile_service.server", "--artifact-dir", str(self.artifact_dir),
                   "--port", str(self.port), "--refresh-mode", self.refresh_mode]
        if self.profile_url:
            command += ["--profile-url", self.profile_url]
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        channel = grpc.insecure_channel(self.address)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"profile service exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    return self
                except grpc.FutureTimeoutError:
                    continue
            raise RuntimeError(f"profile service not listening after {timeout_s:.0f} s:\n{self.log_tail()}")
        finally:
            channel.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()

    def __enter__(self) -> ProfileServiceProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# -- the store, read after the run ------------------------------------------------------------------------------------
def stored_event_counts(profile_db: Path, event_ids: set[str] | None = None, prefix: str | None = None
                        ) -> dict[str, int]:
    """How many rows the profile database holds per ``event_id`` (only ids in ``event_ids`` or with ``prefix``)."""
    conn = sqlite3.connect(f"file:{profile_db}?mode=ro", uri=True, timeout=30)
    try:
        if prefix is not None:
            rows = conn.execute("SELECT event_id, COUNT(*) FROM events WHERE event_id LIKE ? GROUP BY event_id",
                                (prefix.replace("%", r"\%") + "%",)).fetchall()
        else:
            rows = conn.execute("SELECT event_id, COUNT(*) FROM events WHERE event_id IS NOT NULL "
                                "GROUP BY event_id").fetchall()
    finally:
        conn.close()
    counts = {event_id: n for event_id, n in rows}
    return {k: v for k, v in counts.items() if event_ids is None or k in event_ids}


def integrity_check(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return ";".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def linear_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var


# -- traffic that survives a server going away ------------------------------------------------------------------------
class EventSource:
    """Valid events (existing users, in-stock items, stamped with the store's newest time), each with a fresh
    ``event_id`` ``<prefix>-<n>`` so what was stored can be counted by id afterwards."""

    def __init__(self, artifact_dir: Path, prefix: str, seed: int = 0):
        import numpy as np

        from recllm.catalog.product_catalog import Catalog
        from recllm.profile.sqlite_store import ProfileStore

        catalog = Catalog.load_jsonl(Path(artifact_dir) / "catalog.jsonl")
        store = ProfileStore(Path(artifact_dir) / "profile.sqlite", read_only=True)
        self.users = store.user_ids()
        self.now_ts = int(store.latest_timestamp())
        self.items = [i for i in catalog.items if i.in_stock and not catalog.is_sensitive(i)]
        self.rng = np.random.default_rng(seed)
        self.prefix = prefix
        self.count = 0

    def next(self):
        from recllm.profile.events import Event

        self.count += 1
        user = self.users[int(self.rng.integers(len(self.users)))]
        item = self.items[int(self.rng.integers(len(self.items)))]
        kind = "purchase" if self.rng.random() < 0.5 else "view"
        basket = f"{self.prefix}-b{self.count}" if kind == "purchase" else None
        return Event(user, item.service, item.item_id, kind, self.now_ts, basket, float(item.price), 1, "moscow",
                     "web", event_id=f"{self.prefix}-{self.count}")


class ResilientIngester:
    """Streams events to the profile service in small streams; whatever was sent and not acknowledged (the stream
    broke, the service died, the event was not stored) is sent again, with the same ``event_id``, until acknowledged.

    ``acked`` holds every id acknowledged as accepted, ``sent`` how often each id was sent."""

    def __init__(self, address: str, keyring, source: EventSource, events_per_stream: int = 16,
                 pause_s: float = 0.0, timeout_s: float = 30.0):
        self.address, self.keyring, self.source = address, keyring, source
        self.events_per_stream, self.pause_s, self.timeout_s = events_per_stream, pause_s, timeout_s
        self.events: dict[str, object] = {}
        self.sent: dict[str, int] = {}
        self.acked: set[str] = set()
        self.duplicates = 0
        self.errors: list[str] = []          # stream-level errors (service unreachable, stream broken)
        self.rejections: list[str] = []      # per-event errors in acks
        self.ack_latencies: list[tuple[float, float]] = []  # (wall time, seconds from stream start to the ack)

    def unacked(self) -> list[str]:
        return [event_id for event_id in self.sent if event_id not in self.acked]

    def send_round(self, new_events: int | None = None) -> int:
        """One stream: first the unacknowledged ids, then ``new_events`` new ones; returns acks received."""
        from recllm_client.profile_client import ProfileClient, ProfileClientError, event_message

        ids = self.unacked()[: self.events_per_stream]
        for _ in range(self.events_per_stream - len(ids) if new_events is None else new_events):
            event = self.source.next()
            self.events[event.event_id] = event
            ids.append(event.event_id)
        if not ids:
            return 0
        messages = []
        for sequence, event_id in enumerate(ids):
            self.sent[event_id] = self.sent.get(event_id, 0) + 1
            messages.append(event_message(self.events[event_id], sequence=sequence))
        received = 0
        started = time.perf_counter()
        try:
            with ProfileClient(self.address, timeout_s=self.timeout_s, keyring=self.keyring) as client:
                for ack in client.ingest(messages, timeout_s=self.timeout_s):
                    received += 1
                    if ack.accepted:
                        self.acked.add(ack.event_id)
                        self.duplicates += int(ack.duplicate)
                        self.ack_latencies.append((time.time(), time.perf_counter() - started))
                    else:
                        self.rejections.append(ack.error)
        except ProfileClientError as error:
            self.errors.append(str(error))
        return received

    def run(self, stop, new_events: bool = True) -> None:
        """Send rounds until ``stop`` (a threading.Event) is set; a failed round is retried after a short pause."""
        while not stop.is_set():
            before = len(self.errors)
            self.send_round(None if new_events else 0)
            if len(self.errors) > before:
                stop.wait(0.2)
            elif self.pause_s:
                stop.wait(self.pause_s)

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Resend until every id sent so far is acknowledged (no new events); False if ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self.unacked() and time.monotonic() < deadline:
            before = len(self.errors)
            self.send_round(0)
            if len(self.errors) > before:
                time.sleep(0.2)
        return not self.unacked()


def session_state(sessions_db: Path, session_id: str) -> dict | None:
    """The chat session's saved dialogue state (``chat_state``), as the chat engine persisted it."""
    import json

    conn = sqlite3.connect(f"file:{sessions_db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT state FROM chat_state WHERE session_id = ?", (session_id,)).fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row else None
