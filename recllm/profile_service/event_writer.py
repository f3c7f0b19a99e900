"""The profile service's single writer: group commit of validated events, then the users' profiles are refreshed.

Every change to the profile database made by the service runs on one thread, in arrival order: event batches,
``forget`` and TTL cleanup. Serialising them means a forget can never be overtaken by an older event still in the
queue, and SQLite (one writer at a time) never makes two of our writes wait on each other.

Durability contract: a submitted event's future resolves only after the transaction holding it has committed on
a connection with ``PRAGMA synchronous=FULL`` — in WAL mode the WAL is fsynced at every commit, so neither
``kill -9`` nor a power cut loses it — (on PostgreSQL: ``synchronous_commit = on``) and the retriever, which reads
raw events live, sees it from then on. The service acknowledges an event only when its future has resolved.

Idempotence: an event carrying a client ``event_id`` is stored at most once per user (a unique index on
``(user_id, event_id)``). A client that lost an ack resends the event; the writer finds it stored, writes nothing
and resolves the future with False, which the stream acknowledges as accepted + duplicate. What is derived from the events (fragments,
history, histograms, the DP release: ``recllm.profile.refresh``) is rebuilt per user after the commit:
``IngestPolicy.refresh_mode == "sync"`` does it on this thread before resolving the futures; ``"async"`` (default)
resolves them at once and leaves the commit's users to ``profile_refresher`` (one refresh per user however many of
their events arrived; ``wait_refreshed`` waits for it to catch up). Either way the commit's users are recorded in
the ``pending_refresh`` table in the same transaction as their events, so a crash before a refresh is caught up at
the next start.

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
from typing import Any, Callable, Sequence

import numpy as np

from recllm.catalog.product_catalog import Catalog
from recllm.profile.fragments import build_fragments
from recllm.profile_service.config import IngestPolicy
from recllm.profile_service.profile_refresher import ProfileRefresher
from recllm.profile.storage import ProfileStorage, open_profile_storage

log = logging.getLogger(__name__)

REFRESH_MODULE = "recllm.profile.refresh"

ProfileRefresh = Callable[[ProfileStorage, Catalog, np.ndarray, str, int], None]


class WriterStoppedError(RuntimeError):
    """The writer is stopped (or stopping): nothing more can be queued."""


def load_profile_refresh() -> ProfileRefresh | None:
    """``recllm.profile.refresh.refresh_user_profile`` when that module exists, else None (fragments only)."""
    try:
        from recllm.profile.refresh import refresh_user_profile  # noqa: PLC0415 - optional, written separately
    except ModuleNotFoundError as error:
        if error.name != REFRESH_MODULE:
            raise  # the module exists but one of its own imports is missing: a real error
        return None
    return refresh_user_profile


def rebuild_fragments(store: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, user_id: str,
                      now_ts: int) -> None:
    """Fallback refresh: the user's fragments rebuilt from their whole event log (as retention does)."""
    del now_ts  # fragments depend on the events only
    store.replace_fragments(user_id, build_fragments(user_id, store.events_of(user_id), catalog, item_vectors))


@dataclass
class _Task:
    """Work other than an event batch, run on the writer thread with the writer's store."""

    run: Callable[[ProfileStorage], Any]
    future: Future


@dataclass
class _Pending:
    event: Any
    future: Future


_STOP = object()


class EventWriter:
    """The writer thread over one profile store: ``submit(event)`` → Future resolved after the durable commit
    (and, in "sync" refresh mode, the refresh of the commit's users).

    ``profile`` is what ``open_profile_storage`` opens: the SQLite file (the artifact's ``profile.sqlite``) or a
    ``postgresql://`` URL."""

    def __init__(self, profile: str | Path, catalog: Catalog, item_vectors: np.ndarray, policy: IngestPolicy,
                 clock: Callable[[], float] = time.time, refresh: ProfileRefresh | None = None):
        self.profile = profile
        self.catalog = catalog
        self.item_vectors = item_vectors
        self.policy = policy
        self.clock = clock
        self.refresh = refresh or load_profile_refresh() or rebuild_fragments
        self.store = open_profile_storage(profile)
        self.committed_events = 0
        self.duplicate_events = 0  # retried events found already stored (acked as duplicates, nothing written)
        self.committed_batches = 0
        self.refresher = ProfileRefresher(self.store, self._refresh_user, policy.max_dirty_users,
                                          policy.busy_timeout_ms)
        self._commit_seq = 0  # numbers commits for the pending marks; continues from what the table holds
        self._recovered: list[tuple[str, int]] = []
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
        self.refresher.start()
        if self._recovered:
            log.info("profile refresh: %d users were pending at the last stop; refreshing them", len(self._recovered))
            for user_id, commit_seq in self._recovered:
                self.refresher.mark([user_id], commit_seq, bounded=False)
        self._accepting.set()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, finish everything already queued, refresh what waits (within ``timeout_s``), end."""
        if not self.is_alive():
            self.refresher.stop(0)
            return
        self._accepting.clear()
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("profile writer did not finish its queue in %.0f s", timeout_s)
            return
        self._fail_leftovers()  # a submitter that raced with stop() gets an error, not a future that never resolves
        self.refresher.stop(timeout_s)

    def wait_refreshed(self, timeout_s: float | None = None) -> bool:
        """Block until every committed event's user has been refreshed; False if ``timeout_s`` passed first."""
        return self.refresher.wait_refreshed(timeout_s)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submitting ------------------------------------------------------------------------------------------------
    def submit(self, event: Any) -> Future:
        """Queue one validated event; blocks while the queue is full. The future's result, once durable, is True
        (stored now) or False (its ``(user_id, event_id)`` was stored by an earlier delivery: nothing written)."""
        future: Future = Future()
        self._put(_Pending(event, future))
        return future

    def call(self, run: Callable[[ProfileStorage], Any]) -> Future:
        """Run ``run(store)`` on the writer thread after everything queued before it; the future holds its result."""
        future: Future = Future()
        self._put(_Task(run, future))
        return future

    def forget(self, user_id: str, erase: Callable[[ProfileStorage], Any]) -> Future:
        """Run ``erase(store)`` for ``user_id`` on the writer thread, first dropping any refresh still queued for
        them, so no refresh can write rows for the user after the erase. ``erase`` must include the store's
        ``forget_user``, which removes the user's pending-refresh mark with their other rows (securely, on SQLite);
        a mark it left is dropped afterwards."""
        def forget_task(store: ProfileStorage) -> Any:
            self.refresher.dirty.discard(user_id)  # under ``exclusive``: no refresh of theirs is running
            removed = erase(store)
            store.clear_pending_refresh(user_id)
            return removed
        return self.call(forget_task)

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
            # This thread's connection ingests: fsync at commit; the refresh thread writes too (busy timeout).
            self.store.tune_connection(self.policy.synchronous, self.policy.busy_timeout_ms)
            self._recovered = self.store.pending_refreshes()
            self._commit_seq = max((seq for _, seq in self._recovered), default=0)
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
        commit_seq = self._commit_seq + 1
        try:
            stored = self.store.ingest_events([p.event for p in batch], commit_seq)
        except Exception as error:  # noqa: BLE001 - the batch fails, the writer keeps running
            log.exception("could not commit %d events", len(batch))
            for pending in batch:
                pending.future.set_exception(error)
            return
        self._commit_seq = commit_seq
        self.committed_events += sum(stored)
        self.duplicate_events += len(batch) - sum(stored)
        self.committed_batches += 1
        user_ids = sorted({p.event.user_id for p, new in zip(batch, stored) if new})  # duplicates changed nothing
        if user_ids and self.policy.refresh_mode == "sync":
            self._refresh_now(user_ids, commit_seq)
        elif user_ids:
            self.refresher.mark(user_ids, commit_seq)  # blocks while the dirty set is full: backpressure
        for pending, new in zip(batch, stored):
            pending.future.set_result(new)

    def _refresh_now(self, user_ids: Sequence[str], commit_seq: int) -> None:
        with self.refresher.exclusive:  # a recovered user may be refreshing on the refresh thread
            for user_id in user_ids:
                try:
                    self._refresh_user(self.store, user_id)
                    self.store.clear_pending_refresh(user_id, commit_seq)
                except Exception:  # noqa: BLE001 - the events are committed; a stale profile is logged, not fatal
                    log.exception("profile refresh failed for user %s after commit", user_id)

    def _refresh_user(self, store: ProfileStorage, user_id: str) -> None:
        self.refresh(store, self.catalog, self.item_vectors, user_id, int(self.clock()))

    def _run_task(self, task: _Task) -> None:
        try:
            with self.refresher.exclusive:  # tasks (forget, TTL cleanup) never interleave with a user's refresh
                result = task.run(self.store)
            task.future.set_result(result)
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
