"""Real-time path end to end: an event ingested through the profile service changes the very next Triton request.

The profile service writes the same artifact profile database the running tritonserver reads (read-only, per
request). The events use the database's newest timestamp, so the recency clock every other test ranks with is
unchanged, and a user id that sorts after every synthetic user, so fixtures that take "the first user" are unaffected.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from recllm.catalog.product_catalog import Catalog
from recllm.explanation.causal_explanations import cold_start_explanation
from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.events import Event
from recllm_client import RecLLMClient
from recllm_client.profile_client import ProfileClient

pytestmark = pytest.mark.integration

LIVE_USER = "zz-live-profile-it"
COLD_EXPLANATION = cold_start_explanation("samokat", "ru")


@pytest.fixture(scope="module")
def profile_client(test_artifacts):
    # sync refresh: the ack waits for the derived profile (fragments → PROFILE_FACTS), which this test reads right
    # after the ack; the default async mode is covered by tests/recllm/profile_service/test_profile_refresher.py.
    config = ProfileServiceConfig(artifact_dir=test_artifacts.root, port=0, stop_grace_s=1.0,
                                  ingest=IngestPolicy(refresh_mode="sync"))
    with ProfileServer(config) as server, ProfileClient(server.address, timeout_s=60,
                                                         keyring=server.keyring_path) as client:
        yield client


@pytest.fixture(scope="module")
def rec_client(triton_server):
    with RecLLMClient(triton_server.config.grpc_url, timeout_s=60, keyring=triton_server.config.keyring_path) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(test_artifacts):
    return Catalog.load_jsonl(test_artifacts.catalog)


def text_input(name: str, value: str) -> grpcclient.InferInput:
    """One request's [1]-shaped string input as a batch of one row (the stages use Triton dynamic batching)."""
    tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=np.object_))
    return tensor


def triton_retrieval(rec_client: RecLLMClient, user_id: str, query: str) -> tuple[list[int], list[str]]:
    """Triton's own query_encoder → retriever models: (candidate item ids, profile facts) for one request."""
    encoded = rec_client.grpc.infer("query_encoder", [text_input("QUERY", query)])
    embedding = encoded.as_numpy("QUERY_EMBEDDING").astype(np.float32)
    vector = grpcclient.InferInput("QUERY_EMBEDDING", list(embedding.shape), "FP32")
    vector.set_data_from_numpy(embedding)
    top_k = grpcclient.InferInput("TOP_K", [1, 1], "INT32")
    top_k.set_data_from_numpy(np.array([[5]], dtype=np.int32))
    inputs = [text_input("USER_TOKEN", rec_client.user_token(user_id)), text_input("QUERY", query), top_k, text_input("SERVICE", "samokat"),
              vector]
    result = rec_client.grpc.infer("retriever", inputs)
    facts = [f.decode() for f in result.as_numpy("PROFILE_FACTS").reshape(-1)]
    return [int(i) for i in result.as_numpy("CANDIDATE_ITEM_IDS").reshape(-1)], facts


def test_an_ingested_purchase_is_seen_by_the_next_triton_request_and_forget_undoes_it(
        profile_client, rec_client, catalog, test_artifacts):
    store = ProfileStore(test_artifacts.profile_db, read_only=True)
    now_ts = store.latest_timestamp()
    item = next(i for i in catalog.in_service("samokat") if i.in_stock and not catalog.is_sensitive(i))
    query = item.name

    candidates, facts = triton_retrieval(rec_client, LIVE_USER, query)
    assert facts == []
    before = rec_client.recommend(LIVE_USER, query, top_k=5, service="samokat")
    assert {i.explanation for i in before.items} == {COLD_EXPLANATION}

    events = [Event(LIVE_USER, "samokat", item.item_id, "purchase", now_ts - days * 86_400, f"it-basket-{days}",
                    float(item.price), 1, "moscow", "android") for days in (14, 7, 0)]
    acks = list(profile_client.ingest(events))
    assert [a.accepted for a in acks] == [True, True, True], [a.error for a in acks]

    candidates, facts = triton_retrieval(rec_client, LIVE_USER, query)
    category = catalog.categories[item.category_id]
    assert item.item_id in candidates
    assert any(category.name_ru in fact for fact in facts), facts
    after = rec_client.recommend(LIVE_USER, query, top_k=5, service="samokat")
    bought = [i for i in after.items if i.item_id == item.item_id]
    assert bought and bought[0].explanation != COLD_EXPLANATION and bought[0].explanation.startswith("Вы")
    assert store.latest_timestamp() == now_ts

    removed = profile_client.forget(LIVE_USER)
    assert removed["events"] == 3 and removed["fragments"] >= 1
    assert triton_retrieval(rec_client, LIVE_USER, query)[1] == []
    again = rec_client.recommend(LIVE_USER, query, top_k=5, service="samokat")
    assert {i.explanation for i in again.items} == {COLD_EXPLANATION}
