"""Lost acks through the real gRPC service: the client drops the stream after the server committed, retries the same
events on a new stream, and nothing is stored twice (the retried events are acknowledged as accepted duplicates)."""

from __future__ import annotations

import sqlite3
import threading
import time

import grpc

from recllm_client.profile_client import event_message
from recllm_proto import profile_pb2_grpc as pb_grpc
from recllm_proto.user_token import bearer_metadata, load_keyring

from .conftest import purchase

WAIT_S = 60


def stored(layout, user_id: str) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(layout.profile_db)
    rows = conn.execute("SELECT basket_id, event_id FROM events WHERE user_id = ? ORDER BY rowid",
                        (user_id,)).fetchall()
    conn.close()
    return rows


def wait_for_rows(layout, user_id: str, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(stored(layout, user_id)) < count:
        assert time.monotonic() < deadline, f"the server never committed {count} events of {user_id}"
        time.sleep(0.02)


def messages(user_id: str, item, count: int, start: int = 0) -> list:
    return [event_message(purchase(user_id, item, f"{user_id}-b{i}"), sequence=i, event_id=f"{user_id}-e{i}")
            for i in range(start, start + count)]


def send_then_lose_the_acks(address: str, sent: list, committed_before_drop: int, layout, user_id: str,
                            hold_back: list = ()) -> None:
    """Stream ``sent`` (then block before ``hold_back``), never read an ack, and cancel the call once the server
    has committed ``committed_before_drop`` events: the acks of those events are lost on the way back."""
    release = threading.Event()

    def requests():
        yield from sent
        release.wait(WAIT_S)  # the stream stays open: the server cannot tell the client is about to vanish
        yield from hold_back

    with grpc.insecure_channel(address) as channel:
        token = load_keyring(layout.keyring).sign("lossy-backend", scope="service")
        call = pb_grpc.ProfileServiceStub(channel).IngestEvents(requests(), timeout=WAIT_S,
                                                                metadata=bearer_metadata(token))
        wait_for_rows(layout, user_id, committed_before_drop)
        call.cancel()
        release.set()


def test_a_retry_after_lost_acks_stores_nothing_twice(profile_server, profile_client, profile_artifacts,
                                                      samokat_item):
    first = messages("retry-1", samokat_item, 30)
    send_then_lose_the_acks(profile_server.address, first, 30, profile_artifacts, "retry-1")
    assert len(stored(profile_artifacts, "retry-1")) == 30

    fresh = messages("retry-1", samokat_item, 10, start=30)
    acks = list(profile_client.ingest(first + fresh))

    assert [(a.event_id, a.accepted, a.duplicate) for a in acks] == (
        [(m.event_id, True, True) for m in first] + [(m.event_id, True, False) for m in fresh])
    rows = stored(profile_artifacts, "retry-1")
    assert rows == [(f"retry-1-b{i}", f"retry-1-e{i}") for i in range(40)]  # each once, in first-delivery order
    assert profile_server.writer.duplicate_events == 30


def test_a_stream_dropped_midway_is_retried_whole_and_each_event_lands_once(profile_server, profile_client,
                                                                          profile_artifacts, samokat_item):
    batch = messages("retry-2", samokat_item, 24)
    # 16 events reach the server and commit; the client dies before sending the other 8 and before any ack.
    send_then_lose_the_acks(profile_server.address, batch[:16], 16, profile_artifacts, "retry-2",
                            hold_back=batch[16:])
    assert len(stored(profile_artifacts, "retry-2")) == 16

    acks = list(profile_client.ingest(batch))  # the client cannot know which landed: it resends them all

    assert [a.accepted for a in acks] == [True] * 24
    assert [a.duplicate for a in acks] == [True] * 16 + [False] * 8
    assert [basket for basket, _ in stored(profile_artifacts, "retry-2")] == [f"retry-2-b{i}" for i in range(24)]
    assert list(profile_client.ingest(batch[:4])) and len(stored(profile_artifacts, "retry-2")) == 24


def test_events_without_an_id_cannot_be_deduplicated(profile_client, profile_artifacts, samokat_item):
    plain = [event_message(purchase("retry-3", samokat_item, "same"), sequence=i) for i in range(2)]
    assert [(a.accepted, a.duplicate) for a in profile_client.ingest(plain)] == [(True, False)] * 2
    assert [(a.accepted, a.duplicate) for a in profile_client.ingest(plain)] == [(True, False)] * 2
    assert len(stored(profile_artifacts, "retry-3")) == 4


def test_the_same_id_from_another_user_is_another_event(profile_client, profile_artifacts, samokat_item):
    shared = [event_message(purchase(user, samokat_item, "b"), event_id="order-1") for user in ("retry-4", "retry-5")]
    assert [(a.accepted, a.duplicate) for a in profile_client.ingest(shared)] == [(True, False)] * 2
    assert len(stored(profile_artifacts, "retry-4")) == len(stored(profile_artifacts, "retry-5")) == 1


def test_an_oversized_event_id_is_rejected_by_name(profile_client, profile_artifacts, samokat_item):
    message = event_message(purchase("retry-6", samokat_item, "b"), event_id="x" * 129)
    (ack,) = profile_client.ingest([message])
    assert not ack.accepted and ack.field == "event_id" and "oversized" in ack.error
    assert stored(profile_artifacts, "retry-6") == []
