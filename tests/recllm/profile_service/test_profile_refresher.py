"""Async profile refresh: acks before the refresh, coalescing per user, forget ordering, pending marks on disk."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from recllm.profile.fragments import build_fragments
from recllm.profile_service.config import IngestPolicy
from recllm.profile_service.event_writer import EventWriter, rebuild_fragments
from recllm.profile_service.profile_refresher import PENDING_TABLE, DirtyUsers
from recllm.profile.sqlite_store import ProfileStore

from .conftest import purchase

WAIT_S = 60  # generous upper bounds for waits that end as soon as the condition holds; nothing is timed


class GatedRefresh:
    """A refresh that records each call and, for the users in ``hold``, waits for ``gate`` between reading the
    user's events and writing what it derived (the window in which a forget could slip in)."""

    def __init__(self, hold: set[str]):
        self.hold = hold
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[tuple[str, int]] = []

    def __call__(self, store, catalog, item_vectors, user_id, now_ts):
        events = store.events_of(user_id)
        self.calls.append((user_id, len(events)))
        if user_id in self.hold:
            self.started.set()
            assert self.gate.wait(WAIT_S)
        # From the events read above, as ``refresh_user_profile`` does: a forget in between would be undone.
        store.replace_fragments(user_id, build_fragments(user_id, events, catalog, item_vectors))


@pytest.fixture
def writer_parts(profile_artifacts, catalog, random_item_vectors):
    return profile_artifacts.profile_db, catalog, random_item_vectors


def rows_of(profile_db, user_id: str) -> dict[str, int]:
    """Rows per table that hold ``user_id`` in a ``user_id`` column (every table of the profile database)."""
    conn = sqlite3.connect(profile_db)
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
              if any(col[1] == "user_id" for col in conn.execute(f'PRAGMA table_info("{name}")'))]
    counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}" WHERE user_id = ?', (user_id,)).fetchone()[0]  # noqa: S608
              for t in tables}
    conn.close()
    return {table: count for table, count in counts.items() if count}


def pending_marks(profile_db) -> dict[str, int]:
    conn = sqlite3.connect(profile_db)
    marks = dict(conn.execute(f"SELECT user_id, commit_seq FROM {PENDING_TABLE}"))  # noqa: S608
    conn.close()
    return marks


def test_async_acks_come_before_the_refresh_and_raw_events_are_already_visible(writer_parts, samokat_item):
    refresh = GatedRefresh(hold={"async-1"})
    writer = EventWriter(*writer_parts, IngestPolicy(refresh_mode="async"), refresh=refresh).start()
    reader = ProfileStore(writer_parts[0], read_only=True)
    try:
        assert writer.submit(purchase("async-1", samokat_item, "b1")).result(WAIT_S) is True
        assert refresh.started.wait(WAIT_S)  # the refresh is running and held: the ack did not wait for it
        assert [e.basket_id for e in reader.events_of("async-1")] == ["b1"]
        assert reader.fragments_of("async-1") == []
        assert pending_marks(writer_parts[0]) == {"async-1": 1}  # on disk until the refresh finishes
        refresh.gate.set()
        assert writer.wait_refreshed(WAIT_S)
        assert reader.fragments_of("async-1") and pending_marks(writer_parts[0]) == {}
        assert writer.refresher.refreshed == 1 and len(writer.refresher.lags_s) == 1
    finally:
        refresh.gate.set()
        writer.stop()


def test_sync_mode_acks_only_after_the_refresh(writer_parts, samokat_item):
    refresh = GatedRefresh(hold={"sync-1"})
    writer = EventWriter(*writer_parts, IngestPolicy(refresh_mode="sync"), refresh=refresh).start()
    try:
        future = writer.submit(purchase("sync-1", samokat_item, "b1"))
        assert refresh.started.wait(WAIT_S)
        assert not future.done()  # the refresh is held, so the ack is too
        refresh.gate.set()
        assert future.result(WAIT_S) is True
        assert ProfileStore(writer_parts[0], read_only=True).fragments_of("sync-1")
        assert pending_marks(writer_parts[0]) == {}
    finally:
        refresh.gate.set()
        writer.stop()


def test_many_events_of_one_user_coalesce_into_one_refresh_after_the_running_one(writer_parts, samokat_item):
    """50 commits of one user while their refresh runs: exactly one more refresh, which sees all 51 events."""
    refresh = GatedRefresh(hold={"hot"})
    writer = EventWriter(*writer_parts, IngestPolicy(max_batch_events=1), refresh=refresh).start()
    try:
        assert writer.submit(purchase("hot", samokat_item, "first")).result(WAIT_S)
        assert refresh.started.wait(WAIT_S)
        refresh.hold.clear()
        futures = [writer.submit(purchase("hot", samokat_item, f"b{i}")) for i in range(50)]
        assert all(f.result(WAIT_S) for f in futures)
        assert writer.committed_batches == 51
        refresh.gate.set()
        assert writer.wait_refreshed(WAIT_S)
        assert refresh.calls == [("hot", 1), ("hot", 51)]
    finally:
        refresh.gate.set()
        writer.stop()


def test_forget_drops_a_refresh_still_queued_for_the_user(writer_parts, samokat_item):
    refresh = GatedRefresh(hold=set())
    writer = EventWriter(*writer_parts, IngestPolicy(), refresh=refresh)
    paused, resume = threading.Event(), threading.Event()
    wait_for_work = writer.refresher.dirty.wait_for_work

    def held_wait_for_work(timeout_s):  # the refresh thread stops short of taking a user until ``resume``
        paused.set()
        resume.wait(WAIT_S)
        return wait_for_work(timeout_s)

    writer.refresher.dirty.wait_for_work = held_wait_for_work
    writer.start()
    try:
        assert paused.wait(WAIT_S)
        assert writer.submit(purchase("gone-1", samokat_item, "b1")).result(WAIT_S)
        assert len(writer.refresher.dirty) == 1  # queued, not yet taken
        removed = writer.forget("gone-1", lambda store: store.forget_user("gone-1")).result(WAIT_S)
        assert removed["events"] == 1
        resume.set()
        assert writer.wait_refreshed(WAIT_S)
        assert refresh.calls == []  # the queued refresh was dropped, not run on an empty log
        assert rows_of(writer_parts[0], "gone-1") == {}
    finally:
        resume.set()
        writer.stop()


def test_forget_waits_for_a_running_refresh_so_it_cannot_recreate_rows(writer_parts, samokat_item):
    """The refresh read the user's events before the forget; its writes must not land after the erase."""
    refresh = GatedRefresh(hold={"gone-2"})
    writer = EventWriter(*writer_parts, IngestPolicy(), refresh=refresh).start()
    try:
        assert writer.submit(purchase("gone-2", samokat_item, "b1")).result(WAIT_S)
        assert refresh.started.wait(WAIT_S)  # events read, derived rows not yet written
        forgotten = writer.forget("gone-2", lambda store: store.forget_user("gone-2"))
        refresh.gate.set()
        assert forgotten.result(WAIT_S)["events"] == 1
        assert writer.wait_refreshed(WAIT_S)
        assert refresh.calls == [("gone-2", 1)]
        assert rows_of(writer_parts[0], "gone-2") == {}
    finally:
        refresh.gate.set()
        writer.stop()


def test_users_pending_at_a_crash_are_refreshed_at_the_next_start(writer_parts):
    profile_db = writer_parts[0]
    store = ProfileStore(profile_db)
    user = store.user_ids()[0]
    store.replace_fragments(user, [])  # derived data behind the events, as after a crash before the refresh
    writer = EventWriter(*writer_parts, IngestPolicy()).start()  # creates the pending table
    writer.stop()
    conn = sqlite3.connect(profile_db)
    with conn:
        conn.execute(f"INSERT INTO {PENDING_TABLE} VALUES (?, 7)", (user,))  # noqa: S608
    conn.close()

    writer = EventWriter(*writer_parts, IngestPolicy()).start()
    try:
        assert writer.wait_refreshed(WAIT_S)
        assert store.fragments_of(user) and pending_marks(profile_db) == {}
    finally:
        writer.stop()


def test_a_failing_async_refresh_is_logged_and_the_thread_goes_on(writer_parts, samokat_item):
    def refresh(store, catalog, item_vectors, user_id, now_ts):
        if user_id == "broken":
            raise RuntimeError("refresh exploded")
        rebuild_fragments(store, catalog, item_vectors, user_id, now_ts)

    writer = EventWriter(*writer_parts, IngestPolicy(), refresh=refresh).start()
    try:
        assert writer.submit(purchase("broken", samokat_item, "b1")).result(WAIT_S)
        assert writer.wait_refreshed(WAIT_S)
        assert writer.submit(purchase("fine", samokat_item, "b1")).result(WAIT_S)
        assert writer.wait_refreshed(WAIT_S)
        assert (writer.refresher.failed, writer.refresher.refreshed) == (1, 1)
        assert writer.refresher.is_alive()
        assert pending_marks(writer_parts[0]) == {"broken": 1}  # retried at the next start
    finally:
        writer.stop()


def test_the_dirty_set_is_bounded_and_a_waiting_user_never_blocks():
    dirty = DirtyUsers(capacity=2)
    dirty.add(["a", "b"], 1)
    dirty.add(["a"], 2)  # already waiting: updated in place
    added = threading.Event()
    adder = threading.Thread(target=lambda: (dirty.add(["c"], 3), added.set()))
    adder.start()
    assert not added.wait(0.3)  # full: the third user waits for room
    assert dirty.take()[:2] == ("a", 2)
    assert added.wait(WAIT_S)
    adder.join()
    dirty.done()
    assert [dirty.take()[0], dirty.take()[0]] == ["b", "c"]
