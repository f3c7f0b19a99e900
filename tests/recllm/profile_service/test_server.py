"""The profile service over real gRPC on loopback: acks, rejections, visibility, profile reads, forget, streams."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time

import grpc
import pytest

from recllm.rag.catalog_index import CatalogIndex
from recllm_proto import profile_pb2 as pb
from recllm_client.profile_client import event_message
from recllm.profile_service.config import ProfileServiceConfig
from recllm.profile_service.server import ProfileServer, ProfileServiceError
from recllm.profile.sqlite_store import ProfileStore
from recllm.rag.rec_request import parse_request
from recllm.rag.retriever import Retriever, RetrieverConfig
from recllm_client.profile_client import ProfileClient, ProfileClientError

from .conftest import purchase


def stored_baskets(layout, user_id: str) -> list[str]:
    conn = sqlite3.connect(layout.profile_db)
    rows = conn.execute("SELECT basket_id FROM events WHERE user_id = ? ORDER BY rowid", (user_id,)).fetchall()
    conn.close()
    return [row[0] for row in rows]


def test_each_event_gets_one_ack_in_send_order_with_its_sequence_and_id(profile_client, profile_artifacts,
                                                                       samokat_item):
    events = [event_message(purchase("live-1", samokat_item, f"b{i}"), sequence=100 + i, event_id=f"e-{i}")
              for i in range(25)]
    acks = list(profile_client.ingest(events))
    assert [(a.sequence, a.event_id, a.accepted) for a in acks] == [(100 + i, f"e-{i}", True) for i in range(25)]
    assert all(a.error == "" and a.field == "" for a in acks)
    assert stored_baskets(profile_artifacts, "live-1") == [f"b{i}" for i in range(25)]


def bad_events(item, other_service_item) -> list[tuple[pb.Event, str, str]]:
    """(message, field named in the error, words of the error) for each kind of bad input."""
    good = event_message(purchase("live-2", item, "bad"))
    no_item = pb.Event()
    no_item.CopyFrom(good)
    no_item.ClearField("item_id")
    cases = [
        (dict(service="ozon"), "service", "unknown"),
        (dict(item_id=10**9), "item_id", "not in the catalog"),
        (dict(item_id=other_service_item.item_id), "item_id", "is sold in"),
        (dict(price=-3.0), "price", "finite number > 0"),
        (dict(timestamp=int(time.time()) + 86_400), "timestamp", "in the future"),
        (dict(user_id="u" * 10_000), "user_id", "oversized"),
        (dict(user_id=""), "user_id", "malformed"),
        (dict(region="r" * 5_000), "region", "coarse region"),
        (dict(kind="teleport"), "kind", "unknown"),
        (dict(quantity=0), "quantity", "1.."),
    ]
    built = []
    for change, field, words in cases:
        message = pb.Event()
        message.CopyFrom(good)
        for name, value in change.items():
            setattr(message, name, value)
        built.append((message, field, words))
    built.append((no_item, "item_id", "missing"))
    return built


def test_bad_events_are_rejected_with_the_reason_write_nothing_and_the_stream_goes_on(
        profile_client, profile_artifacts, samokat_item, catalog):
    other = next(i for i in catalog.items if i.service == "megamarket")
    cases = bad_events(samokat_item, other)
    stream = [event_message(purchase("live-2", samokat_item, "first"))]
    stream += [message for message, _, _ in cases]
    stream += [event_message(purchase("live-2", samokat_item, "last"))]
    for sequence, message in enumerate(stream):
        message.sequence = sequence

    acks = list(profile_client.ingest(stream))

    assert len(acks) == len(stream) and [a.sequence for a in acks] == list(range(len(stream)))
    assert acks[0].accepted and acks[-1].accepted
    for ack, (_, field, words) in zip(acks[1:-1], cases):
        assert not ack.accepted
        assert ack.field == field and f"field {field!r}" in ack.error and words in ack.error, ack.error
    assert stored_baskets(profile_artifacts, "live-2") == ["first", "last"]
    assert profile_client.get_profile("live-2").events.total == 2  # the server is up and wrote only those


def test_an_acked_event_is_already_visible_to_the_retriever_reading_the_same_file(
        profile_server, profile_client, profile_artifacts, samokat_item, catalog, random_item_vectors):
    """What Triton's retriever does per request: a read-only store on the same SQLite file, opened before."""
    retriever = Retriever(catalog, CatalogIndex(random_item_vectors, catalog),
                          ProfileStore(profile_artifacts.profile_db, read_only=True), RetrieverConfig())
    request = parse_request("live-3", "что-нибудь", 5, "samokat")
    query = random_item_vectors[samokat_item.item_id]
    before = retriever.retrieve(request, query)
    assert before.fragments == [] and retriever.read_context("live-3").purchases == []

    acks = list(profile_client.ingest([purchase("live-3", samokat_item, "b1"), purchase("live-3", samokat_item, "b2")]))
    assert all(a.accepted for a in acks)

    purchases = retriever.read_context("live-3").purchases
    assert [e.item_id for e in purchases] == [samokat_item.item_id] * 2  # raw events: at the ack

    assert profile_server.wait_refreshed(60)  # derived data: after the async refresh
    after = retriever.retrieve(request, query)
    context = retriever.read_context("live-3")
    purchases, signals = context.purchases, context.signals
    assert signals.pref_long is not None
    assert [f.category_id for f, _ in after.fragments] == [samokat_item.category_id]
    assert samokat_item.item_id in retriever.repeat_candidates("samokat", purchases)


def test_profile_read_returns_that_users_data_only(profile_client, profile_artifacts):
    store = ProfileStore(profile_artifacts.profile_db, read_only=True)
    user, other = store.user_ids()[:2]
    events = store.events_of(user)

    profile = profile_client.get_profile(user, recent_events=5)

    assert profile.found and profile.user_id == user
    assert profile.events.total == len(events) < len(events) + len(store.events_of(other))
    assert profile.events.first_ts == events[0].timestamp and profile.events.last_ts == events[-1].timestamp
    by_service = {s.service: s for s in profile.services}
    for service in {e.service for e in events}:
        mine = [e for e in events if e.service == service]
        assert by_service[service].events == len(mine)
        assert by_service[service].purchases == sum(e.kind == "purchase" for e in mine)
    age_band, region = store.connection().execute(
        "SELECT age_band, region FROM users WHERE user_id = ?", (user,)).fetchone()
    assert (profile.demographics.age_band, profile.demographics.region) == (age_band, region)
    assert [f.fragment_key for f in profile.fragments] == [f.fragment_key for f in store.fragments_of(user)]
    newest = list(reversed(events))[:5]  # events_of orders by ts, ties in insertion order
    assert [(e.item_id, e.timestamp) for e in profile.recent_events] == [(e.item_id, e.timestamp) for e in newest]


def test_profile_of_an_unknown_user_is_empty_and_a_bad_user_id_is_refused(profile_client):
    empty = profile_client.get_profile("nobody-here")
    assert not empty.found and empty.events.total == 0 and not empty.HasField("demographics")
    with pytest.raises(ProfileClientError, match="INVALID_ARGUMENT: user_id is malformed"):
        profile_client.get_profile("bad user!")
    with pytest.raises(ProfileClientError, match="INVALID_ARGUMENT: user_id is oversized"):
        profile_client.forget("x" * 500)


def rows_mentioning(path, needle: str) -> list:
    conn = sqlite3.connect(path)
    found = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        found += [(table, row) for row in conn.execute(f"SELECT * FROM {table}")  # noqa: S608
                  if any(isinstance(v, str) and needle in v for v in row)]
    conn.close()
    return found


def test_forget_removes_everything_of_the_user_and_reports_rows_per_table(profile_server, profile_client,
                                                                         profile_artifacts, samokat_item):
    store = ProfileStore(profile_artifacts.profile_db, read_only=True)
    user, other = store.user_ids()[:2]
    assert all(a.accepted for a in profile_client.ingest([purchase(user, samokat_item, "live")]))
    assert profile_server.wait_refreshed(60)
    events, fragments = len(store.events_of(user)), len(store.fragments_of(user))
    other_events = len(store.events_of(other))

    removed = profile_client.forget(user)

    assert removed["events"] == events and removed["fragments"] == fragments and removed["users"] == 1
    assert not profile_client.get_profile(user).found
    assert rows_mentioning(profile_artifacts.profile_db, user) == []
    assert rows_mentioning(profile_artifacts.sessions_db, user) == []
    assert len(store.events_of(other)) == other_events
    assert profile_client.forget(user)["events"] == 0


def test_concurrent_streams_each_get_their_own_acks_and_all_events_are_stored(profile_server, profile_artifacts,
                                                                             samokat_item):
    streams, per_stream = 4, 60
    results: dict[int, list] = {}

    def run(stream: int) -> None:
        with ProfileClient(profile_server.address, keyring=profile_server.keyring_path) as client:
            events = [purchase(f"conc-{stream}", samokat_item, f"s{stream}-{i}") for i in range(per_stream)]
            results[stream] = [(a.sequence, a.accepted) for a in client.ingest(events)]

    threads = [threading.Thread(target=run, args=(s,)) for s in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for stream in range(streams):
        assert results[stream] == [(i, True) for i in range(per_stream)]
        assert stored_baskets(profile_artifacts, f"conc-{stream}") == [f"s{stream}-{i}" for i in range(per_stream)]
    assert profile_server.writer.committed_events == streams * per_stream


def test_an_oversized_message_ends_only_its_own_stream(profile_artifacts, samokat_item):
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=0, max_message_bytes=4096)
    with ProfileServer(config) as server, ProfileClient(server.address, keyring=server.keyring_path) as client:
        huge = event_message(purchase("live-4", samokat_item, "huge"))
        huge.event_id = "x" * 10_000
        with pytest.raises(ProfileClientError, match="RESOURCE_EXHAUSTED"):
            list(client.ingest([huge]))
        assert [a.accepted for a in client.ingest([purchase("live-4", samokat_item, "ok")])] == [True]


def test_a_storage_failure_is_a_rejected_ack_not_a_crash(profile_server, profile_client, samokat_item):
    profile_server.writer.call(lambda store: store.connection().execute("ALTER TABLE events RENAME TO moved")).result()
    [ack] = profile_client.ingest([purchase("live-5", samokat_item, "b")])
    assert not ack.accepted and "event was not stored" in ack.error and "events" in ack.error
    profile_server.writer.call(lambda store: store.connection().execute("ALTER TABLE moved RENAME TO events")).result()
    assert [a.accepted for a in profile_client.ingest([purchase("live-5", samokat_item, "b2")])] == [True]


def test_a_taken_port_and_missing_artifacts_are_clear_errors(profile_server, profile_artifacts, tmp_path):
    taken = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=profile_server.port)
    with pytest.raises(ProfileServiceError, match=f"port {profile_server.port} .* already in use"):
        ProfileServer(taken).start()
    with pytest.raises(FileNotFoundError, match="run `recllm build`"):
        ProfileServer(ProfileServiceConfig(artifact_dir=tmp_path / "nothing", port=0)).start()


@pytest.mark.parametrize("change,words", [
    (dict(port=70_000), "port must be 0..65535"),
    (dict(ttl_cleanup_interval_s=0), "ttl_cleanup_interval_s must be > 0"),
    (dict(max_workers=0), "max_workers must be an int >= 1"),
    (dict(stop_grace_s=-1), "stop_grace_s must be >= 0"),
])
def test_config_names_the_bad_field(change, words):
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(ProfileServiceConfig(), **change)


def test_ttl_cleanup_runs_on_its_interval_and_expires_stale_events(profile_artifacts, ecosystem):
    """The clock is set a year past the synthetic history, so samokat's 180-day TTL expires all of it."""
    future = max(e.timestamp for e in ecosystem.events) + 365 * 86_400
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=0, ttl_cleanup_interval_s=0.05)
    store = ProfileStore(profile_artifacts.profile_db, read_only=True)
    samokat_before = store.connection().execute("SELECT COUNT(*) FROM events WHERE service = 'samokat'").fetchone()[0]
    assert samokat_before > 0
    with ProfileServer(config, clock=lambda: future) as server:
        deadline = time.monotonic() + 60
        while server.cleanup.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.cleanup.runs >= 1 and server.cleanup.events_expired >= samokat_before
    assert store.connection().execute("SELECT COUNT(*) FROM events WHERE service = 'samokat'").fetchone()[0] == 0
    assert not [f for u in store.user_ids() for f in store.fragments_of(u) if f.service == "samokat"]


def test_stop_finishes_queued_events_and_refuses_new_ones(profile_artifacts, samokat_item):
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=0)
    server = ProfileServer(config).start()
    writer = server.writer
    futures = [writer.submit(purchase("live-6", samokat_item, f"b{i}")) for i in range(30)]
    server.stop()
    assert all(f.result() is True for f in futures)
    assert len(stored_baskets(profile_artifacts, "live-6")) == 30
    with pytest.raises(RuntimeError, match="stopped"):
        writer.submit(purchase("live-6", samokat_item, "late"))


def test_profile_read_includes_what_the_refresh_derived(profile_server, profile_client, samokat_item):
    acks = list(profile_client.ingest([purchase("derived-1", samokat_item, f"b{i}") for i in range(3)]))
    assert all(a.accepted for a in acks)
    assert profile_server.wait_refreshed(60)
    profile = profile_client.get_profile("derived-1")
    [temporal] = profile.temporal
    assert temporal.service == "samokat" and sum(temporal.hours) == sum(temporal.weekdays) == 3
    assert len(temporal.hours) == 24 and len(temporal.weekdays) == 7
    assert {level.level for level in profile.history} == {"session", "day", "long_term"}
    assert [w.releases for w in profile.privacy_ledger] == [1]
    assert profile.HasField("preference_release")
    assert profile.preference_release.epsilon == pytest.approx(profile.privacy_ledger[0].epsilon_spent)
