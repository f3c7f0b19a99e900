"""Through the real tritonserver over gRPC: ensemble, streaming chat, cold start, bad input."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recllm.catalog.product_catalog import Catalog
from recllm_client import RecLLMClient, RecLLMClientError

pytestmark = pytest.mark.integration

GOOD_QUERY = "что приготовить на ужин, чтобы было полезно?"


@pytest.fixture(scope="module")
def client(triton_server):
    with RecLLMClient(triton_server.config.grpc_url, timeout_s=60, keyring=triton_server.config.keyring_path) as c:
        yield c


@pytest.fixture(scope="module")
def catalog(test_artifacts):
    return Catalog.load_jsonl(test_artifacts.catalog)


@pytest.fixture(scope="module")
def warm_user(test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    store = ProfileStore(test_artifacts.profile_db, read_only=True)
    return store.user_ids()[0]


def assert_sellable(items, catalog, service):
    assert items, "no items returned"
    for item in items:
        real = catalog.get(item.item_id)
        assert real.service == service and real.in_stock
        assert item.name == real.name and item.price == pytest.approx(real.price, rel=1e-5)
        assert item.explanation.strip()


def test_ensemble_round_trip(client, catalog, warm_user):
    result = client.recommend(warm_user, GOOD_QUERY, top_k=5, service="samokat")
    assert result.service == "samokat"
    assert len(result.items) == 5
    assert_sellable(result.items, catalog, "samokat")
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)
    assert result.reply.strip()
    assert "<item_" not in result.reply


def test_ensemble_infers_service_when_not_given(client, catalog, warm_user):
    result = client.recommend(warm_user, "нужен подарок сыну на 7 лет, игрушка или конструктор", top_k=3)
    assert result.service == "megamarket"
    assert_sellable(result.items, catalog, "megamarket")


def test_unknown_user_gets_cold_start_recommendations(client, catalog, test_artifacts):
    from recllm.explanation.causal_explanations import cold_start_explanation
    from recllm.profile.sqlite_store import ProfileStore

    result = client.recommend("never-seen-user-42", "хочу что-нибудь вкусное", top_k=4, service="samokat")
    assert_sellable(result.items, catalog, "samokat")
    # no history to cite: popularity in the service, said plainly (recllm.explanation.causal_explanations)
    assert all(i.explanation == cold_start_explanation("samokat", "ru") for i in result.items)
    popularity = ProfileStore(test_artifacts.profile_db, read_only=True).item_popularity()
    assert max(popularity.get(i.item_id, 0) for i in result.items) > 0


def test_streaming_chat_sends_items_then_text_then_final(client, catalog, warm_user):
    kinds = [kind for kind, _ in client.chat_stream("it-stream-1", warm_user, GOOD_QUERY, 5, "samokat")]
    assert kinds[0] == "items"
    assert kinds.count("text") >= 2
    turn = client.chat("it-stream-2", warm_user, GOOD_QUERY, 5, "samokat")
    assert turn.reply.strip() and turn.first_token_s is not None and turn.first_token_s <= turn.total_s
    assert_sellable(turn.items, catalog, "samokat")


def test_chat_follow_up_changes_the_list_and_keeps_the_session(client, warm_user):
    first = client.chat("it-session-1", warm_user, GOOD_QUERY, 5, "samokat")
    second = client.chat("it-session-1", warm_user, "подешевле", 5, "")
    assert second.service == "samokat"
    assert not {i.item_id for i in first.items} & {i.item_id for i in second.items}
    assert max(i.price for i in second.items) < sorted(i.price for i in first.items)[len(first.items) // 2]


def test_session_of_another_user_is_refused(client, warm_user):
    client.chat("it-session-owner", warm_user, GOOD_QUERY, 3, "samokat")
    with pytest.raises(RecLLMClientError, match="another user"):
        client.chat("it-session-owner", "someone-else", "подешевле", 3, "")


BAD_INPUTS = [
    ({"query": ""}, "query is empty"),
    ({"query": "   \t "}, "query is empty"),
    ({"query": b"\xff\xfe\xfd"}, "not valid UTF-8"),
    ({"query": "а" * 100_000}, "too long"),
    ({"user_id": "bad user id!"}, "malformed user_id"),
    ({"user_id": ""}, "cannot sign a token"),
    ({"top_k": 0}, "top_k must be between"),
    ({"top_k": -3}, "top_k must be between"),
    ({"top_k": 10**9}, "top_k must be between"),
    ({"service": "ozon"}, "unknown service"),
]


@pytest.mark.parametrize("change,message", BAD_INPUTS)
def test_bad_input_gets_a_clear_error_and_the_server_stays_up(client, warm_user, change, message):
    request = {"user_id": warm_user, "query": GOOD_QUERY, "top_k": 3, "service": "samokat"} | change
    with pytest.raises(RecLLMClientError, match=message):
        client.recommend(**request)
    assert client.recommend(warm_user, GOOD_QUERY, 3, "samokat").items


def test_bad_chat_input_errors_on_the_stream_only(client, warm_user):
    with pytest.raises(RecLLMClientError, match="query is empty"):
        client.chat("it-bad-chat", warm_user, "  ", 3, "samokat")
    with pytest.raises(RecLLMClientError, match="malformed session_id"):
        client.chat("bad session!", warm_user, GOOD_QUERY, 3, "samokat")
    assert client.chat("it-good-after-bad", warm_user, GOOD_QUERY, 3, "samokat").items


def raw_inputs(**tensors):
    inputs = []
    for name, (dtype, array) in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def test_missing_tensor_and_wrong_dtype_are_rejected(client, warm_user):
    text = lambda s: ("BYTES", np.array([[s.encode()]], dtype=np.object_))  # noqa: E731 - one row: [1, 1]
    with pytest.raises(InferenceServerException, match="top_k"):
        client.grpc.infer("recllm", raw_inputs(user_token=text(client.user_token(warm_user)), query=text(GOOD_QUERY), service=text("")))
    with pytest.raises(InferenceServerException, match="(?i)data.?type|datatype|FP32"):
        client.grpc.infer("recllm", raw_inputs(user_token=text(client.user_token(warm_user)), query=text(GOOD_QUERY), service=text(""),
                                               top_k=("FP32", np.array([[3.0]], dtype=np.float32))))
    assert client.recommend(warm_user, GOOD_QUERY, 3, "samokat").items


def test_metrics_endpoint_counts_requests(triton_server, client, warm_user):
    client.recommend(warm_user, GOOD_QUERY, 3, "samokat")
    url = f"http://{triton_server.config.bind_address}:{triton_server.config.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'nv_inference_request_success{model="recllm"' in body


def test_nothing_fits_gives_an_empty_list_and_a_reply_not_an_error(client, warm_user):
    result = client.recommend(warm_user, "хочу что-нибудь вкусное дешевле 1 рубля", top_k=5, service="samokat")
    assert result.items == []
    assert result.reply.strip() and "<item_" not in result.reply
    # a first request: nothing «already shown»; its budget is what can be relaxed
    assert "бюджет" in result.reply and "показал" not in result.reply, result.reply
    turn = client.chat("it-nothing-fits", warm_user, "хочу что-нибудь вкусное дешевле 1 рубля", 5, "samokat")
    assert turn.items == [] and turn.reply.strip()


def test_a_typo_is_read_as_the_catalog_s_word_by_every_stage_and_returned(client, warm_user):
    typo, right = (client.rank(warm_user, query, 5, "samokat") for query in ("кифир", "кефир"))
    assert typo.spelled_query == right.spelled_query == "кефир"
    assert [i.item_id for i in typo.items] == [i.item_id for i in right.items] and typo.items
    typo, right = (client.recommend(warm_user, query, 3, "samokat") for query in ("кифир", "кефир"))
    assert typo.spelled_query == "кефир" and (typo.items, typo.reply) == (right.items, right.reply)
    assert client.rank(warm_user, "Маша", 3, "samokat").spelled_query == "Маша"  # a name stays as written


def test_english_request_gets_english_explanations_within_budget(client, warm_user):
    result = client.recommend(warm_user, "healthy snacks for the office under 500 rubles", top_k=5, service="samokat")
    assert result.items and all(i.price <= 500 for i in result.items)
    assert all(i.explanation.isascii() for i in result.items)


def test_internal_stages_refuse_forged_tokens_and_contexts_through_the_live_server(client, warm_user):
    """A direct call to the retriever with a forged token, and to the reranker with a forged context, is refused."""
    from recllm_proto.user_token import Keyring

    text = lambda s: ("BYTES", np.array([[s.encode() if isinstance(s, str) else s]], dtype=np.object_))  # noqa: E731
    embedding = client.grpc.infer("query_encoder", raw_inputs(QUERY=text(GOOD_QUERY))).as_numpy("QUERY_EMBEDDING")
    base = dict(QUERY=text(GOOD_QUERY), TOP_K=("INT32", np.array([[5]], np.int32)), SERVICE=text("samokat"),
                QUERY_EMBEDDING=("FP32", embedding.astype(np.float32)))
    forged = Keyring.generate().sign(warm_user)
    with pytest.raises(InferenceServerException, match="user token refused: unknown key id") as caught:
        client.grpc.infer("retriever", raw_inputs(USER_TOKEN=text(forged), **base))
    assert warm_user not in str(caught.value) and forged not in str(caught.value)
    with pytest.raises(InferenceServerException, match="user token refused"):
        client.grpc.infer("retriever", raw_inputs(USER_TOKEN=text(warm_user), **base))  # a bare user id
    real = client.grpc.infer("retriever", raw_inputs(USER_TOKEN=text(client.user_token(warm_user)), **base))
    sealed = real.as_numpy("USER_CONTEXT").reshape(-1)[0]
    rerank = dict(USER_TOKEN=text(client.user_token(warm_user)), QUERY=text(GOOD_QUERY),
                  TOP_K=("INT32", np.array([[3]], np.int32)), RESOLVED_SERVICE=text("samokat"),
                  CANDIDATE_ITEM_IDS=("INT64", real.as_numpy("CANDIDATE_ITEM_IDS")),
                  CANDIDATE_SCORES=("FP32", real.as_numpy("CANDIDATE_SCORES")))
    for context, reason in ((sealed.split(b".", 4)[4], "not sealed by the retriever"),
                            (sealed.replace(b'"num_purchases":', b'"num_purchases":9', 1), "bad signature")):
        with pytest.raises(InferenceServerException, match=f"user context refused: {reason}"):
            client.grpc.infer("reranker", raw_inputs(USER_CONTEXT=text(context), **rerank))
    ranked = client.grpc.infer("reranker", raw_inputs(USER_CONTEXT=text(sealed), **rerank))
    assert ranked.as_numpy("ITEM_IDS").size == 3
    assert client.recommend(warm_user, GOOD_QUERY, 3, "samokat").items  # the server stays up
