"""The profile service's single writer: group commit of validated events, then the users' profiles are refreshed.

Every change to the profile database made by the service runs on one thread, in arrival order: event batches,
``forget`` and TTL cleanup. Serialising them means a forget can never be overtaken by an older event still in the
queue, and SQLite (one writer at a time) never makes two of our writes wait on each other.

Durability contract: a submitted event's future resolves only after (1) the transaction holding it has committed on
a connection with ``PRAGMA synchronous=FULL`` — in WAL mode the WAL is fsynced at every commit, so neither
``kill -9`` nor a power cut loses it — and (2) its user's profile (fragments, and whatever
``recllm.profile_refresh`` maintains once it exists) was rebuilt, so the next retrieval sees the event. The service
acknowledges an event only when its future has resolved.

Group commit: the writer takes whatever is queued (up to ``IngestPolicy.max_batch_events``, optionally lingering
``max_batch_wait_ms`` for more) into one transaction, so one fsync covers many events under load.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from recllm.catalog import Catalog
from recllm.profile_fragments import build_fragments
from recllm.profile_service.config import IngestPolicy
from recllm.profile_store import ProfileStore

log = logging.getLogger(__name__)

REFRESH_MODULE = "recllm.profile_refresh"

ProfileRefresh = Callable[[ProfileStore, Catalog, np.ndarray, str, int], None]


class WriterStoppedError(RuntimeError):
    """The writer is stopped (or stopping): nothing more can be queued."""


def load_profile_refresh() -> ProfileRefresh | None:
    """``recllm.profile_refresh.refresh_user_profile`` when that module exists, else None (fragments only)."""
    try:
        from recllm.profile_refresh import refresh_user_profile  # noqa: PLC0415 - optional, written separately
    except ModuleNotFoundError as error:
        if error.name != REFRESH_MODULE:
            raise  # the module exists but one of its own imports is missing: a real error
        return None
    return refresh_user_profile


def rebuild_fragments(store: ProfileStore, catalog: Catalog, item_vectors: np.ndarray, user_id: str,
                      now_ts: int) -> None:
    """Fallback refresh: the user's fragments rebuilt from their whole event log (as retention does)."""
    del now_ts  # fragments depend on the events only
    store.replace_fragments(user_id, build_fragments(user_id, store.events_of(user_id), catalog, item_vectors))


@dataclass
class _Task:
    """Work other than an event batch, run on the writer thread with the writer's store."""

    run: Callable[[ProfileStore], Any]
    future: Future


@dataclass
class _Pending:
    event: Any
    future: Future


_STOP = object()


class EventWriter:
    """The writer thread over one profile database: ``submit(event)`` → Future resolved after commit + refresh."""

    def __init__(self, profile_db: Path, catalog: Catalog, item_vectors: np.ndarray, policy: IngestPolicy,
                 clock: Callable[[], float] = time.time, refresh: ProfileRefresh | None = None):
        self.profile_db = Path(profile_db)
        self.catalog = catalog
        self.item_vectors = item_vectors
        self.policy = policy
        self.clock = clock
        self.refresh = refresh or load_profile_refresh() or rebuild_fragments
        self.store = ProfileStore(self.profile_db)
        self.committed_events = 0
        self.committed_batches = 0
        self._queue: queue.Queue = queue.Queue(maxsize=policy.max_queued_events)
        self._carry: _Task | object | None = None  # a task met while gathering a batch: runs right after it
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> EventWriter:
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="profile-writer", daemon=True)
        self._thread.start()
        ready.result()  # raises here if the database could not be opened
        self._accepting.set()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, finish everything already queued, then end the thread."""
        if not self.is_alive():
            return
        self._accepting.clear()
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("profile writer did not finish its queue in %.0f s", timeout_s)
            return
        self._fail_leftovers()  # a submitter that raced with stop() gets an error, not a future that never resolves

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submitting ------------------------------------------------------------------------------------------------
    def submit(self, event: Any) -> Future:
        """Queue one validated event; blocks while the queue is full. The future's result is True once durable."""
        future: Future = Future()
        self._put(_Pending(event, future))
        return future

    def call(self, run: Callable[[ProfileStore], Any]) -> Future:
        """Run ``run(store)`` on the writer thread after everything queued before it; the future holds its result."""
        future: Future = Future()
        self._put(_Task(run, future))
        return future

    def _put(self, entry: _Pending | _Task) -> None:
        while True:
            if not self._accepting.is_set():
                raise WriterStoppedError("the profile writer is stopped; the event was not stored")
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- the writer thread -----------------------------------------------------------------------------------------
    def _run(self, ready: Future) -> None:
        try:
            conn = self.store.connection()  # this thread's connection: the only one that writes
            conn.execute(f"PRAGMA synchronous={self.policy.synchronous}")
        except BaseException as error:  # noqa: BLE001 - reported to start()
            ready.set_exception(error)
            return
        ready.set_result(None)
        while True:
            entry = self._next_entry()
            if entry is _STOP:
                break
            if isinstance(entry, _Task):
                self._run_task(entry)
            else:
                self._commit_batch(self._gather_batch(entry))
        self._fail_leftovers()

    def _next_entry(self):
        if self._carry is not None:
            entry, self._carry = self._carry, None
            return entry
        return self._queue.get()

    def _gather_batch(self, first: _Pending) -> list[_Pending]:
        """``first`` plus whatever events are queued behind it (group commit); a task or stop ends the batch."""
        batch = [first]
        deadline = time.monotonic() + self.policy.max_batch_wait_ms / 1000
        while len(batch) < self.policy.max_batch_events:
            timeout = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(entry, _Pending):
                self._carry = entry
                break
            batch.append(entry)
        return batch

    def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            self.store.add_events([p.event for p in batch])  # one transaction, fsynced at commit
        except Exception as error:  # noqa: BLE001 - the batch fails, the writer keeps running
            log.exception("could not commit %d events", len(batch))
            for pending in batch:
                pending.future.set_exception(error)
            return
        self.committed_events += len(batch)
        self.committed_batches += 1
        self._refresh_users(p.event.user_id for p in batch)
        for pending in batch:
            pending.future.set_result(True)

    def _refresh_users(self, user_ids: Iterable[str]) -> None:
        now_ts = int(self.clock())
        for user_id in sorted(set(user_ids)):
            try:
                self.refresh(self.store, self.catalog, self.item_vectors, user_id, now_ts)
            except Exception:  # noqa: BLE001 - the events are committed; a stale profile is logged, not fatal
                log.exception("profile refresh failed for user %s after commit", user_id)

    def _run_task(self, task: _Task) -> None:
        try:
            task.future.set_result(task.run(self.store))
        except BaseException as error:  # noqa: BLE001 - the caller gets the error, the writer keeps running
            task.future.set_exception(error)

    def _fail_leftovers(self) -> None:
        """Entries queued after the stop marker (a race with ``stop``) are failed, never silently dropped."""
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(entry, (_Pending, _Task)):
                entry.future.set_exception(WriterStoppedError("the profile writer stopped before this entry ran"))
