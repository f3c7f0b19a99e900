"""Through the real tritonserver: the ``recllm_rank`` ensemble, and the dynamic batcher answering each request
of a concurrent burst with its own rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient

from recllm.catalog.product_catalog import Catalog
from recllm_client import RecLLMClient, RecLLMClientError

pytestmark = pytest.mark.integration

GOOD_QUERY = "что приготовить на ужин, чтобы было полезно?"
REQUESTS = [
    ("что приготовить на ужин, чтобы было полезно?", 5, "samokat"),
    ("нужен подарок сыну на 7 лет, игрушка или конструктор", 3, ""),
    ("хочу что-нибудь вкусное", 4, "kuper"),
    ("healthy snacks for the office under 500 rubles", 6, "samokat"),
    ("молоко без лактозы", 2, "samokat"),
]


@pytest.fixture(scope="module")
def client(triton_server):
    with RecLLMClient(triton_server.config.grpc_url, timeout_s=60, keyring=triton_server.config.keyring_path) as c:
        yield c


@pytest.fixture(scope="module")
def users(test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    return ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()[:len(REQUESTS)]


def test_rank_returns_items_and_explanations_without_a_reply(client, users, test_artifacts):
    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    ranked = client.rank(users[0], GOOD_QUERY, top_k=5, service="samokat")
    assert ranked.service == "samokat" and len(ranked.items) == 5
    assert all(catalog.get(i.item_id).service == "samokat" and i.explanation.strip() for i in ranked.items)
    full = client.recommend(users[0], GOOD_QUERY, top_k=5, service="samokat")
    assert [i.item_id for i in ranked.items] == [i.item_id for i in full.items]  # the same ranking steps
    with pytest.raises(RecLLMClientError, match="unknown service"):
        client.rank(users[0], GOOD_QUERY, top_k=5, service="ozon")


def test_concurrent_burst_each_request_gets_its_own_answer(client, users, triton_server):
    alone = [client.rank(user, *request) for user, request in zip(users, REQUESTS)]
    burst = [(user, request) for _ in range(6) for user, request in zip(users, REQUESTS)]
    before = batch_counts(client.grpc)
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        answers = list(pool.map(lambda job: client.rank(job[0], *job[1]), burst))
    for k, answer in enumerate(answers):
        expected = alone[k % len(REQUESTS)]
        assert answer.service == expected.service
        pairs = lambda result: [(i.item_id, i.explanation) for i in result.items]  # noqa: E731
        assert pairs(answer) == pairs(expected)
        assert [i.score for i in answer.items] == pytest.approx([i.score for i in expected.items], abs=1e-5)
    after = batch_counts(client.grpc)
    executions = {m: after[m][0] - before[m][0] for m in after}
    inferences = {m: after[m][1] - before[m][1] for m in after}
    assert all(inferences[m] == len(burst) for m in after), inferences
    # The dynamic batcher joined requests: fewer executions than requests on at least one stage.
    assert any(executions[m] < inferences[m] for m in after), (executions, inferences)


def batch_counts(grpc: grpcclient.InferenceServerClient) -> dict[str, tuple[int, int]]:
    counts = {}
    for model in ("query_encoder", "retriever", "reranker"):
        stats = grpc.get_inference_statistics(model, as_json=True)["model_stats"][0]
        counts[model] = (int(stats.get("execution_count", 0)), int(stats.get("inference_count", 0)))
    return counts
