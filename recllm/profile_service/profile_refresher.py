"""Asynchronous profile refresh: a coalescing set of users whose derived profile lags their events, and the thread
that catches them up.

With ``IngestPolicy.refresh_mode == "async"`` the writer acknowledges an event right after its durable commit (the
retriever reads raw events live, so the event is already visible) and only marks the commit's users dirty here. One
refresh thread rebuilds each dirty user's derived data (fragments, history, histograms, DP release). A user is
refreshed once however many of their events arrived meanwhile; a user marked again while being refreshed is refreshed
again afterwards (the mark is taken out before the refresh reads the events).

Why a separate thread with its own SQLite connection (and not refreshes on the writer thread when its queue is
empty): with WAL, readers never block the writer and there is one writer at a time. Every refresh transaction takes
the write lock at its first write without holding an older read snapshot (``replace_*`` start with a DELETE,
``charge_mechanism`` with ``BEGIN IMMEDIATE``), so a busy handler (``busy_timeout``) simply waits out the writer's
commit instead of failing with SQLITE_BUSY_SNAPSHOT; the ingest commit in turn waits at most one short refresh
transaction (milliseconds), not a whole 85 ms user refresh, and a sustained ingest stream cannot starve refreshes
the way "only when the queue is empty" would. The refresh connection uses ``synchronous=NORMAL``: its rows are
derived and the pending mark is removed after them on the same connection, so WAL order never keeps the removal
without the rows it vouches for.

Ordering with forget and TTL: every writer-thread task (forget, TTL cleanup) runs holding ``exclusive``, which the
refresh thread holds for the whole of one user's refresh, and the user is taken out of the dirty set under that lock.
So a refresh either finished before the forget or is dropped by it; it can never read a forgotten user's events and
write rows for them afterwards.

Crash safety: the dirty set is mirrored in the store's ``pending_refresh`` table, written in the same transaction as
the events (``ProfileStorage.ingest_events``), and cleared per user after their refresh only up to the commit it
covered (``clear_pending_refresh``). After a
crash the service starts by refreshing whoever is still pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Iterable

from recllm.profile.storage import ProfileStorage

log = logging.getLogger(__name__)

PENDING_TABLE = "pending_refresh"  # the store's table of users pending a refresh (both backends create it)
RECENT_LAGS = 100_000  # refresh lags kept for ``lags_s`` (the benchmark reads them)


# -- the in-memory dirty set -------------------------------------------------------------------------------------------
class DirtyUsers:
    """Users waiting for a refresh: user → (latest commit seq, when first marked since their last refresh).

    Bounded: ``add`` blocks while ``capacity`` users wait (a user already waiting is only updated, never blocks).
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: dict[str, tuple[int, float]] = {}
        self._in_flight = 0
        self._closed = False
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            return len(self._entries)

    def add(self, user_ids: Iterable[str], commit_seq: int, bounded: bool = True) -> None:
        now = time.monotonic()
        with self._changed:
            for user_id in user_ids:
                if user_id in self._entries:
                    self._entries[user_id] = (commit_seq, self._entries[user_id][1])
                    continue
                while bounded and len(self._entries) >= self.capacity and not self._closed:
                    self._changed.wait(0.1)
                self._entries[user_id] = (commit_seq, now)
            self._changed.notify_all()

    def take(self) -> tuple[str, int, float] | None:
        """The longest-waiting user (now in flight until ``done``), or None when nobody waits."""
        with self._changed:
            if not self._entries:
                return None
            user_id = next(iter(self._entries))
            commit_seq, marked_at = self._entries.pop(user_id)
            self._in_flight += 1
            self._changed.notify_all()
            return user_id, commit_seq, marked_at

    def done(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def discard(self, user_id: str) -> bool:
        with self._changed:
            found = self._entries.pop(user_id, None) is not None
            self._changed.notify_all()
            return found

    def wait_for_work(self, timeout_s: float) -> bool:
        """True when somebody waits and the set is open; False on timeout or close."""
        with self._changed:
            self._changed.wait_for(lambda: self._entries or self._closed, timeout_s)
            return bool(self._entries) and not self._closed

    def wait_drained(self, timeout_s: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._entries and self._in_flight == 0, timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


# -- the refresh thread ------------------------------------------------------------------------------------------------
class ProfileRefresher:
    """One daemon thread refreshing dirty users on its own connection to ``store``'s database."""

    def __init__(self, store: ProfileStorage, refresh_user: Callable[[ProfileStorage, str], None], capacity: int,
                 busy_timeout_ms: int):
        self.store = store
        self.refresh_user = refresh_user
        self.busy_timeout_ms = busy_timeout_ms
        self.dirty = DirtyUsers(capacity)
        self.exclusive = threading.Lock()  # one user's refresh, or one writer task (forget, TTL), at a time
        self.refreshed = 0
        self.failed = 0
        self.lags_s: deque[float] = deque(maxlen=RECENT_LAGS)  # first mark → refreshed, per refresh
        self._thread: threading.Thread | None = None

    def start(self) -> ProfileRefresher:
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="profile-refresh", daemon=True)
        self._thread.start()
        ready.result()
        return self

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def mark(self, user_ids: Iterable[str], commit_seq: int, bounded: bool = True) -> None:
        self.dirty.add(user_ids, commit_seq, bounded)

    def wait_refreshed(self, timeout_s: float | None = None) -> bool:
        """Block until no user waits or is being refreshed; False if ``timeout_s`` passed first."""
        return self.dirty.wait_drained(timeout_s)

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Refresh what waits (up to ``drain_timeout_s``), then end the thread; leftovers stay pending on disk."""
        if not self.is_alive():
            return
        if not self.wait_refreshed(drain_timeout_s):
            log.warning("profile refresh: %d users still pending at stop; refreshed at next start", len(self.dirty))
        self.dirty.close()
        self._thread.join(drain_timeout_s + 5)

    def _run(self, ready: Future) -> None:
        try:
            self.store.tune_connection("NORMAL", self.busy_timeout_ms)  # this thread's own connection
        except BaseException as error:  # noqa: BLE001 - reported to start()
            ready.set_exception(error)
            return
        ready.set_result(None)
        while not self.dirty.closed:  # at stop, whatever still waits stays pending on disk
            if not self.dirty.wait_for_work(1.0):
                continue
            with self.exclusive:
                taken = self.dirty.take()
                if taken is None:
                    continue
                try:
                    self._refresh(*taken)
                finally:
                    self.dirty.done()

    def _refresh(self, user_id: str, commit_seq: int, marked_at: float) -> None:
        try:
            self.refresh_user(self.store, user_id)
            self.store.clear_pending_refresh(user_id, commit_seq)
        except Exception:  # noqa: BLE001 - the events are committed; a stale profile is logged, not fatal
            self.failed += 1
            log.exception("async profile refresh failed for user %s", user_id)
            return
        self.refreshed += 1
        self.lags_s.append(time.monotonic() - marked_at)
