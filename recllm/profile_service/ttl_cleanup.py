"""Periodic TTL cleanup for the running profile service: ``expire_stale_events`` every ``interval_s`` seconds.

The cleanup runs as a task on the service's writer thread (``EventWriter.call``), so it is ordered with ingest and
forget and never contends with them for SQLite's write lock; this thread only keeps time.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from recllm.profile.retention import RetentionConfig, expire_stale_events
from recllm.profile_service.event_writer import EventWriter, WriterStoppedError

log = logging.getLogger(__name__)


class PeriodicTtlCleanup:
    """A daemon thread that expires stale events on a fixed interval until ``stop``."""

    def __init__(self, writer: EventWriter, retention: RetentionConfig, interval_s: float,
                 clock: Callable[[], float]):
        if not interval_s > 0:
            raise ValueError(f"PeriodicTtlCleanup interval_s must be > 0 seconds, got {interval_s!r}")
        self.writer = writer
        self.retention = retention
        self.interval_s = interval_s
        self.clock = clock
        self.runs = 0
        self.events_expired = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profile-ttl-cleanup", daemon=True)

    def start(self) -> PeriodicTtlCleanup:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self) -> int:
        """Expire now (on the writer thread); returns the number of events deleted."""
        now_ts = int(self.clock())
        writer = self.writer
        deleted = writer.call(
            lambda store: expire_stale_events(store, writer.catalog, writer.item_vectors, now_ts, self.retention)
        ).result()
        self.runs += 1
        self.events_expired += deleted
        return deleted

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                deleted = self.run_once()
            except WriterStoppedError:
                return
            except Exception:  # noqa: BLE001 - one failed pass is logged; the next interval tries again
                log.exception("TTL cleanup failed")
                continue
            log.info("TTL cleanup expired %d events", deleted)
