"""The product on PostgreSQL: the built profile published into a throw-away PostgreSQL server, then the profile
service (idempotent ingest, refresh, GetProfile, Forget, TTL cleanup) and the served read paths (the retriever and
ranking loaders the Triton models use) run on it. The full ``recllm build`` is too slow for a unit test: the
artifact folder here is the profile service's small one (test ecosystem, random item vectors), published with the
same ``publish_profile`` step that ``recllm build --profile-url`` runs after a build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.pipeline import load_retriever
from recllm.profile.postgres_store import PostgresProfileStore
from recllm.profile.profile_copy import PROFILE_TABLES
from recllm.profile.retention import RetentionConfig
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.storage import PROFILE_URL_ENV, open_profile_storage, profile_location
from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.profile_service.ttl_cleanup import PeriodicTtlCleanup
from recllm.rag.rec_request import RecRequest
from recllm.serving.triton_server import TritonServerConfig, server_environment
from recllm_cli.main import build_parser, profile_service_config, publish_profile, server_config
from recllm_client.profile_client import ProfileClient, event_message
from tests.postgres_server import postgres_server  # noqa: F401 (session fixture)

from .conftest import purchase

WAIT_S = 60


@pytest.fixture
def pg_url(postgres_server, profile_artifacts) -> str:  # noqa: F811
    url = postgres_server.new_database("served")
    publish_profile(profile_artifacts, url, rebuilt=True)
    return url


@pytest.fixture
def pg_store(pg_url):
    with open_profile_storage(pg_url) as store:
        yield store


@pytest.fixture
def pg_server(profile_artifacts, pg_url):
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, profile_url=pg_url, port=0, stop_grace_s=1.0,
                                  ingest=IngestPolicy(refresh_mode="sync"))
    with ProfileServer(config) as server:
        yield server


def rows_mentioning(store: PostgresProfileStore, needle: str) -> dict[str, int]:
    conn = store.connection()
    return {table: n for table in PROFILE_TABLES
            if (n := conn.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s',  # noqa: S608
                                  (f"%{needle}%",)).fetchone()[0])}


def test_the_published_profile_equals_the_built_one(profile_artifacts, pg_store, ecosystem):
    built = ProfileStore(profile_artifacts.profile_db, read_only=True)
    users = [u.user_id for u in ecosystem.users]
    assert pg_store.user_ids() == built.user_ids()
    for user_id in users:
        assert pg_store.events_of(user_id) == built.events_of(user_id)  # same order, ties included
        assert pg_store.demographics_of(user_id) == built.demographics_of(user_id)
        assert [(f.fragment_key, f.sensitive, f.weight, f.vector.tobytes()) for f in pg_store.fragments_of(user_id)] \
            == [(f.fragment_key, f.sensitive, f.weight, f.vector.tobytes()) for f in built.fragments_of(user_id)]
        assert pg_store.history_of(user_id) == built.history_of(user_id)
        assert pg_store.temporal_histograms_of(user_id) == built.temporal_histograms_of(user_id)
        assert pg_store.privacy_ledger_of(user_id) == built.privacy_ledger_of(user_id)
        mine, theirs = pg_store.released_preferences_of(user_id), built.released_preferences_of(user_id)
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine[:9] == theirs[:9] and mine.pref_long.tobytes() == theirs.pref_long.tobytes()
    assert pg_store.item_popularity() == built.item_popularity()
    assert pg_store.privacy_secret() == built.privacy_secret()


def test_publishing_again_replaces_a_rebuilt_profile_and_keeps_an_unchanged_one(profile_artifacts, pg_url, pg_store,
                                                                               samokat_item, capsys):
    pg_store.add_events([purchase("pg-extra", samokat_item, "b")])
    publish_profile(profile_artifacts, pg_url, rebuilt=False)  # unchanged build: live events are kept
    assert "kept" in capsys.readouterr().out and len(pg_store.events_of("pg-extra")) == 1
    publish_profile(profile_artifacts, pg_url, rebuilt=True)
    assert pg_store.events_of("pg-extra") == []
    with pytest.raises(ValueError, match="must be a postgresql:// URL"):
        publish_profile(profile_artifacts, "sqlite:///tmp/x.db", rebuilt=True)


def test_the_service_on_postgres_ingests_once_refreshes_reads_and_forgets(pg_server, pg_store, profile_artifacts,
                                                                         samokat_item):
    events = [event_message(purchase("pg-live", samokat_item, f"b{i}"), sequence=i, event_id=f"pg-e{i}")
              for i in range(12)]
    with ProfileClient(pg_server.address, keyring=pg_server.keyring_path, timeout_s=WAIT_S) as client:
        first = list(client.ingest(events[:8]))
        retry = list(client.ingest(events))  # the acks of the first 8 were "lost": all 12 are resent
        assert [(a.accepted, a.duplicate) for a in first] == [(True, False)] * 8
        assert [(a.accepted, a.duplicate) for a in retry] == [(True, True)] * 8 + [(True, False)] * 4
        assert [r.basket_id for r in pg_store.events_of("pg-live")] == [f"b{i}" for i in range(12)]
        assert ProfileStore(profile_artifacts.profile_db, read_only=True).events_of("pg-live") == []  # not SQLite

        profile = client.get_profile("pg-live", recent_events=3)
        assert profile.found and profile.events.total == 12 and profile.events.kinds[0].kind == "purchase"
        assert [e.basket_id for e in profile.recent_events] == ["b11", "b10", "b9"]
        assert len(profile.fragments) == len(pg_store.fragments_of("pg-live")) > 0  # refreshed before the ack
        assert profile.privacy_ledger and profile.HasField("preference_release")
        assert pg_store.pending_refreshes() == []

        removed = client.forget("pg-live")
        assert removed["events"] == 12 and removed["fragments"] > 0 and removed["privacy_ledger"] == 1
        assert rows_mentioning(pg_store, "pg-live") == {}
        assert not client.get_profile("pg-live").found

    # the build's SQLite copy (what `recllm build --profile-url` published from) forgets a built user too
    built = ProfileStore(profile_artifacts.profile_db, read_only=True)
    someone = next(u for u in built.user_ids() if built.events_of(u))
    with ProfileClient(pg_server.address, keyring=pg_server.keyring_path, timeout_s=WAIT_S) as client:
        removed = client.forget(someone)
    assert removed["build_copy.events"] > 0
    assert ProfileStore(profile_artifacts.profile_db, read_only=True).events_of(someone) == []


def test_ttl_cleanup_on_postgres_expires_events_and_rebuilds_the_users(pg_server, pg_store, ecosystem):
    now = max(e.timestamp for e in ecosystem.events)
    week = RetentionConfig(ttl_days={"samokat": 7, "kuper": 7, "megamarket": 7})
    before = {u: len(pg_store.events_of(u)) for u in pg_store.user_ids()}
    cleanup = PeriodicTtlCleanup(pg_server.writer, week, interval_s=3600, clock=lambda: now)
    deleted = cleanup.run_once()  # on the service's writer, as the periodic thread runs it
    after = {u: len(pg_store.events_of(u)) for u in before}
    assert deleted == sum(before.values()) - sum(after.values()) > 0
    for user_id in before:
        events = pg_store.events_of(user_id)
        assert all(e.timestamp >= now - 7 * 86_400 for e in events)
        bought = {e.service for e in events if e.kind == "purchase"}
        assert {f.service for f in pg_store.fragments_of(user_id)} <= bought


def test_served_read_paths_open_the_profile_named_by_the_environment(profile_artifacts, pg_url, monkeypatch,
                                                                     ecosystem, random_item_vectors):
    assert profile_location(profile_artifacts.profile_db, {}) == profile_artifacts.profile_db
    on_sqlite = load_retriever(profile_artifacts)
    monkeypatch.setenv(PROFILE_URL_ENV, pg_url)
    on_postgres = load_retriever(profile_artifacts)
    assert isinstance(on_postgres.profile, PostgresProfileStore) and on_postgres.profile.config.read_only
    rng = np.random.default_rng(3)
    for user in ecosystem.users[:25]:
        query = rng.standard_normal(random_item_vectors.shape[1]).astype(np.float32)
        request = RecRequest(user.user_id, "что-нибудь", 10, "", "ru", None)
        got, want = on_postgres.retrieve(request, query), on_sqlite.retrieve(request, query)
        np.testing.assert_array_equal(got.candidate_ids, want.candidate_ids)  # released vectors were copied too
        assert [(f.fragment_key, s) for f, s in got.fragments] == [(f.fragment_key, s) for f, s in want.fragments]
    on_postgres.profile.close()


def test_profile_url_flags_reach_the_build_the_profile_service_and_triton(tmp_path, monkeypatch):
    monkeypatch.delenv(PROFILE_URL_ENV, raising=False)
    url = "postgresql://recllm@127.0.0.1:5432/profile"
    assert build_parser().parse_args(["build", "--profile-url", url]).profile_url == url
    assert build_parser().parse_args(["build"]).profile_url is None
    args = build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path), "--profile-url", url])
    assert profile_service_config(args, server_config(args)).profile_url == url
    assert server_config(args).profile_url == url  # the Triton models read it as $RECLLM_PROFILE_URL
    assert server_environment(server_config(args))[PROFILE_URL_ENV] == url
    default = build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path)])
    assert profile_service_config(default, server_config(default)).profile_url is None
    assert server_config(default).profile_url is None
    assert PROFILE_URL_ENV not in server_environment(server_config(default))
    with pytest.raises(ValueError, match="profile_url must be None") as refused:
        TritonServerConfig(profile_url="mysql://me:secret@h/db")
    assert "secret" not in str(refused.value)
    with pytest.raises(ValueError, match="profile_url must be None"):
        ProfileServiceConfig(profile_url="mysql://h/db")
    for malformed in ("postgres:/me:secret@h/db", "mysql://me:secret@h/db"):
        with pytest.raises(ValueError, match="me@h/db") as refused:
            ProfileServiceConfig(profile_url=malformed)
        assert "secret" not in str(refused.value)


def test_users_pending_at_a_crash_are_refreshed_at_the_next_start_on_postgres(pg_url, pg_store, catalog,
                                                                             random_item_vectors, samokat_item):
    from recllm.profile_service.event_writer import EventWriter  # noqa: PLC0415

    # Events committed with their pending mark, then the process died before the refresh: no derived rows yet.
    assert pg_store.ingest_events([purchase("pg-crash", samokat_item, "b1", event_id="c1")], commit_seq=7) == [True]
    assert pg_store.fragments_of("pg-crash") == [] and pg_store.pending_refreshes() == [("pg-crash", 7)]
    writer = EventWriter(pg_url, catalog, random_item_vectors, IngestPolicy()).start()
    try:
        assert writer.wait_refreshed(WAIT_S)
        assert pg_store.fragments_of("pg-crash") and pg_store.pending_refreshes() == []
        assert writer.submit(purchase("pg-crash", samokat_item, "b1", event_id="c1")).result(WAIT_S) is False
    finally:
        writer.stop()
        writer.store.close()
    assert len(pg_store.events_of("pg-crash")) == 1


def test_recllm_build_with_a_profile_url_publishes_after_the_build(profile_artifacts, pg_url, pg_store, monkeypatch,
                                                                   samokat_item, capsys):
    import builders.build_artifacts as build_artifacts  # noqa: PLC0415
    from recllm_cli.main import main  # noqa: PLC0415

    builds = []

    def fake_build(config):  # the artifact build itself is tested elsewhere (and takes minutes)
        builds.append(config)
        if config.force:
            manifest = profile_artifacts.read_manifest() or {}
            profile_artifacts.manifest.write_text(json.dumps({**manifest, "build": len(builds)}))
        return profile_artifacts

    monkeypatch.setattr(build_artifacts, "build", fake_build)
    pg_store.add_events([purchase("pg-live-since", samokat_item, "b")])
    argv = ["build", "--artifact-dir", str(profile_artifacts.root), "--profile-url", pg_url]
    assert main(argv) == 0  # nothing rebuilt: the store keeps what was ingested since
    assert "kept" in capsys.readouterr().out and len(pg_store.events_of("pg-live-since")) == 1
    assert main(argv + ["--force"]) == 0  # rebuilt: the store gets the new build's profile
    assert "profile published" in capsys.readouterr().out and pg_store.events_of("pg-live-since") == []
    assert pg_store.user_ids() == ProfileStore(profile_artifacts.profile_db, read_only=True).user_ids()
