"""The single writer: group commit of what is queued, refresh after commit, tasks in order, clean stop."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from recllm.profile_service.config import IngestPolicy
from recllm.profile_service.event_writer import EventWriter, WriterStoppedError, load_profile_refresh, rebuild_fragments
from recllm.profile.sqlite_store import ProfileStore

from .conftest import purchase


@pytest.fixture
def writer_parts(profile_artifacts, catalog, random_item_vectors):
    return profile_artifacts.profile_db, catalog, random_item_vectors


def blocked(writer: EventWriter) -> threading.Event:
    """Hold the writer thread on a task until the returned event is set (so submissions pile up)."""
    gate = threading.Event()
    writer.call(lambda store: gate.wait(30))
    return gate


def test_what_is_queued_commits_as_one_batch_up_to_the_limit(writer_parts, samokat_item):
    for limit, expected_batches in ((512, 1), (10, 5)):
        writer = EventWriter(*writer_parts, IngestPolicy(max_batch_events=limit)).start()
        gate = blocked(writer)
        futures = [writer.submit(purchase(f"group-{limit}", samokat_item, f"b{i}")) for i in range(50)]
        gate.set()
        assert all(f.result(30) is True for f in futures)
        writer.stop()
        assert (writer.committed_batches, writer.committed_events) == (expected_batches, 50)


def test_refresh_runs_after_the_commit_once_per_user_per_batch(writer_parts, samokat_item):
    seen = []

    def recording_refresh(store, catalog, item_vectors, user_id, now_ts):
        seen.append((user_id, len(store.events_of(user_id)), now_ts))
        rebuild_fragments(store, catalog, item_vectors, user_id, now_ts)

    writer = EventWriter(*writer_parts, IngestPolicy(), clock=lambda: 1_800_000_000.5, refresh=recording_refresh)
    writer.start()
    gate = blocked(writer)
    futures = [writer.submit(purchase(user, samokat_item, f"{user}-{i}")) for i in range(3) for user in ("ra", "rb")]
    gate.set()
    assert all(f.result(30) for f in futures)
    writer.stop()
    assert seen == [("ra", 3, 1_800_000_000), ("rb", 3, 1_800_000_000)]
    assert ProfileStore(writer_parts[0], read_only=True).fragments_of("ra")


def test_a_failing_refresh_does_not_fail_committed_events(writer_parts, samokat_item):
    def broken_refresh(*_args):
        raise RuntimeError("refresh exploded")

    writer = EventWriter(*writer_parts, IngestPolicy(), refresh=broken_refresh).start()
    assert writer.submit(purchase("rc", samokat_item, "b")).result(30) is True
    writer.stop()
    assert len(ProfileStore(writer_parts[0], read_only=True).events_of("rc")) == 1


def test_the_ingest_connection_fsyncs_every_commit(writer_parts):
    for level, code in (("FULL", 2), ("EXTRA", 3)):
        writer = EventWriter(*writer_parts, IngestPolicy(synchronous=level)).start()
        assert writer.call(lambda store: store.connection().execute("PRAGMA synchronous").fetchone()[0]).result() == code
        assert writer.call(lambda store: store.connection().execute("PRAGMA journal_mode").fetchone()[0]).result() == "wal"
        writer.stop()


def test_tasks_run_in_queue_order_with_events(writer_parts, samokat_item):
    writer = EventWriter(*writer_parts, IngestPolicy()).start()
    gate = blocked(writer)
    first = writer.submit(purchase("order", samokat_item, "b1"))
    count = writer.call(lambda store: len(store.events_of("order")))
    second = writer.submit(purchase("order", samokat_item, "b2"))
    gate.set()
    assert first.result(30) and second.result(30)
    assert count.result(30) == 1  # the task saw the event queued before it, not the one after
    writer.stop()


def test_a_stopped_writer_refuses_and_a_task_error_reaches_the_caller(writer_parts, samokat_item):
    writer = EventWriter(*writer_parts, IngestPolicy()).start()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        writer.call(lambda store: store.connection().execute("SELECT * FROM nowhere")).result(30)
    assert writer.submit(purchase("rd", samokat_item, "b")).result(30) is True  # still running
    writer.stop()
    with pytest.raises(WriterStoppedError, match="stopped"):
        writer.submit(purchase("rd", samokat_item, "late"))


def test_refresh_uses_profile_refresh_when_that_module_exists():
    refresh = load_profile_refresh()
    try:
        import recllm.profile.refresh as module  # noqa: PLC0415
    except ModuleNotFoundError:
        assert refresh is None
    else:
        assert refresh is module.refresh_user_profile


@pytest.mark.parametrize("change,words", [
    (dict(max_batch_events=0), "max_batch_events must be an int >= 1"),
    (dict(max_queued_events=-1), "max_queued_events must be an int >= 1"),
    (dict(max_batch_wait_ms=-1), "max_batch_wait_ms must be a number in 0..1000"),
    (dict(synchronous="NORMAL"), "synchronous must be one of FULL, EXTRA"),
    (dict(refresh_mode="later"), "refresh_mode must be one of sync, async, got 'later'"),
    (dict(max_dirty_users=0), "max_dirty_users must be an int >= 1"),
])
def test_policy_names_the_bad_field(change, words):
    with pytest.raises(ValueError, match=words):
        IngestPolicy(**change)
