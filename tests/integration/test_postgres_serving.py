"""The product served on PostgreSQL: ``recllm build --profile-url`` then ``recllm serve --profile-url``, with a real
tritonserver and the profile service both on a throw-away PostgreSQL server.

``recllm build --profile-url`` is the artifact build followed by ``publish_profile``; the build here is the test
session's one (rebuilding it would take minutes), published into a fresh database. The served folder links the
session build's catalog and models but has neither its ``profile.sqlite`` nor its chat sessions, so the server
cannot read the profile anywhere but in PostgreSQL. Only the ``recllm`` ensemble and the four models it is made of
are loaded (explicit model control), which keeps the second tritonserver's start short.
"""

from __future__ import annotations

import psycopg
import pytest

from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.explanation.causal_explanations import cold_start_explanation
from recllm.profile.events import Event
from recllm.profile.profile_copy import PROFILE_TABLES
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port
from recllm_cli.main import publish_profile
from recllm_client import RecLLMClient
from recllm_client.profile_client import ProfileClient
from tests.postgres_server import postgres_server  # noqa: F401 (session fixture)

pytestmark = pytest.mark.integration

NEW_USER = "zz-postgres-serving-it"
COLD_EXPLANATION = cold_start_explanation("samokat", "ru")
NOT_LINKED = ("profile.sqlite", "sessions.sqlite", "triton_runtime")  # and their -wal/-shm files


@pytest.fixture(scope="module")
def pg_url(postgres_server, test_artifacts) -> str:  # noqa: F811
    url = postgres_server.new_database("served_product")
    publish_profile(test_artifacts, url, rebuilt=True)
    return url


@pytest.fixture(scope="module")
def served_folder(test_artifacts, tmp_path_factory) -> ArtifactLayout:
    folder = tmp_path_factory.mktemp("postgres_served") / "build"
    folder.mkdir()
    for entry in test_artifacts.root.iterdir():
        if not entry.name.startswith(NOT_LINKED):
            (folder / entry.name).symlink_to(entry.resolve())
    layout = ArtifactLayout(folder)
    assert not layout.profile_db.exists()
    return layout


@pytest.fixture(scope="module")
def pg_triton(served_folder, pg_url, tmp_path_factory):
    config = TritonServerConfig(artifact_dir=served_folder.root, grpc_port=free_port(), http_port=free_port(),
                                metrics_port=free_port(), runtime_dir=tmp_path_factory.mktemp("pg_triton_runtime"),
                                profile_url=pg_url,
                                load_models=("recllm",))
    with TritonServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def pg_profile_service(served_folder, pg_url, pg_triton):
    # sync refresh: the ack waits for the derived profile, which the recommendation right after it reads
    config = ProfileServiceConfig(artifact_dir=served_folder.root, profile_url=pg_url, port=0, stop_grace_s=1.0,
                                  keyring_path=pg_triton.config.keyring_path, ingest=IngestPolicy(refresh_mode="sync"))
    with ProfileServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def rec_client(pg_triton):
    with RecLLMClient(pg_triton.config.grpc_url, timeout_s=120, keyring=pg_triton.config.keyring_path) as client:
        yield client


@pytest.fixture(scope="module")
def profile_client(pg_profile_service):
    with ProfileClient(pg_profile_service.address, timeout_s=60,
                       keyring=pg_profile_service.keyring_path) as client:
        yield client


def rows_of(url: str, user_id: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f'SELECT count(*) FROM "{table}" WHERE user_id = %s',  # noqa: S608
                                    (user_id,)).fetchone()[0]
                for table, columns in PROFILE_TABLES.items() if "user_id" in columns}


def samokat_buyer(test_artifacts) -> str:
    """The user with most samokat purchases in the build (read from the build's SQLite file, never served)."""
    row = ProfileStore(test_artifacts.profile_db, read_only=True).connection().execute(
        "SELECT user_id FROM events WHERE service = 'samokat' AND kind = 'purchase' GROUP BY user_id "
        "ORDER BY COUNT(*) DESC, user_id LIMIT 1").fetchone()
    return row[0]


def test_recommendations_ingest_and_forget_run_on_postgres(rec_client, profile_client, pg_url, test_artifacts):
    user_id = samokat_buyer(test_artifacts)
    query = "что приготовить на ужин?"
    before = rec_client.recommend(user_id, query, top_k=5, service="samokat")
    assert before.items and before.reply
    assert any(item.explanation.startswith("Вы") for item in before.items), before.items  # the user's history
    assert rows_of(pg_url, user_id)["events"] > 0

    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    item = next(i for i in catalog.in_service("samokat") if i.in_stock and not catalog.is_sensitive(i))
    with psycopg.connect(pg_url) as conn:
        now_ts = conn.execute("SELECT max(ts) FROM events").fetchone()[0]
    event = Event(NEW_USER, "samokat", item.item_id, "purchase", now_ts, "pg-it-basket", float(item.price), 1,
                  "moscow", "android", event_id="pg-it-1")
    acks = list(profile_client.ingest([event]))
    assert [a.accepted for a in acks] == [True], [a.error for a in acks]
    assert rows_of(pg_url, NEW_USER)["events"] == 1 and rows_of(pg_url, NEW_USER)["fragments"] >= 1
    seen = rec_client.recommend(NEW_USER, item.name, top_k=5, service="samokat")
    bought = [i for i in seen.items if i.item_id == item.item_id]
    assert bought and bought[0].explanation != COLD_EXPLANATION, seen.items

    stored = rows_of(pg_url, user_id)
    removed = profile_client.forget(user_id)
    assert removed["events"] == stored["events"] > 0 and removed["fragments"] == stored["fragments"] > 0
    assert not any(rows_of(pg_url, user_id).values())
    # the build's SQLite file still holds the user: the served recommendation below can only come from PostgreSQL
    assert ProfileStore(test_artifacts.profile_db, read_only=True).events_of(user_id)
    after = rec_client.recommend(user_id, query, top_k=5, service="samokat")
    assert after.items and {i.explanation for i in after.items} == {COLD_EXPLANATION}
    assert profile_client.forget(NEW_USER)["events"] == 1 and not any(rows_of(pg_url, NEW_USER).values())
