"""The model.py adapters under a faked Triton Python backend: real stages, fake transport; user tokens signed with
the server keyring these tests create (what ``recllm serve`` does)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from recllm.catalog.product_catalog import Catalog

import fake_pb_utils  # noqa: E402 - on sys.path via this folder's conftest
from recllm_proto.user_token import Keyring, SigningKey, save_keyring
from signed_tokens import KEYRING, text, token  # noqa: E402 - on sys.path via this folder's conftest

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
STAGES = ("query_encoder", "retriever", "reranker", "generator", "generator_stream", "recllm_chat")
QUERY = "что приготовить на ужин, чтобы было полезно?"


@pytest.fixture(scope="module")
def models(test_artifacts, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils)
    mp.setenv("RECLLM_ARTIFACT_DIR", str(test_artifacts.root))
    mp.setenv("RECLLM_KEYRING", str(save_keyring(tmp_path_factory.mktemp("keys") / "keyring.json", KEYRING)))
    loaded = {}
    for name in STAGES:
        spec = importlib.util.spec_from_file_location(f"adapter_{name}", REPOSITORY / name / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize({"model_name": name})
        loaded[name] = fake_pb_utils.MODELS[name] = model
    yield loaded
    fake_pb_utils.MODELS.clear()
    mp.undo()


@pytest.fixture(scope="module")
def warm_user(test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    return ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()[0]


def run(model, **tensors):
    return model.execute([fake_pb_utils.FakeRequest(tensors)])[0]


def test_query_encoder_returns_unit_vector(models):
    response = run(models["query_encoder"], QUERY=text(QUERY))
    assert not response.has_error()
    vector = response.outputs()["QUERY_EMBEDDING"]
    assert vector.dtype == np.float32 and vector.shape[0] == 1 and vector.ndim == 2  # one request, one row
    vector = vector[0]
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)


def test_query_encoder_spells_the_query_and_encodes_it_as_spelled(models):
    """«кифир» (a typo) is read as «кефир» by every later stage of the ensembles: the encoder returns SPELLED_QUERY
    and encodes that; a word it does not know stays as written, and so does a correct query."""
    typo, spelled = (run(models["query_encoder"], QUERY=text(q)).outputs()
                     for q in ("кифир на завтрак", "кефир на завтрак"))
    assert typo["SPELLED_QUERY"].shape == (1, 1) and typo["SPELLED_QUERY"][0, 0].decode() == "кефир на завтрак"
    assert spelled["SPELLED_QUERY"].tolist() == typo["SPELLED_QUERY"].tolist()
    np.testing.assert_array_equal(typo["QUERY_EMBEDDING"], spelled["QUERY_EMBEDDING"])
    assert run(models["query_encoder"], QUERY=text("Маша, привет")).outputs()["SPELLED_QUERY"][0, 0].decode() == \
        "Маша, привет"


def test_each_request_in_a_batch_gets_its_own_answer(models):
    good = fake_pb_utils.FakeRequest({"QUERY": text(QUERY)})
    bad = fake_pb_utils.FakeRequest({"QUERY": text("   ")})
    responses = models["query_encoder"].execute([good, bad, good])
    assert [r.has_error() for r in responses] == [False, True, False]
    assert "query is empty" in responses[1].error().message()


def test_missing_tensor_is_a_request_error(models):
    response = run(models["query_encoder"])
    assert response.has_error() and "missing input tensor QUERY" in response.error().message()


def retrieve(models, user_id, **extra):
    vector = run(models["query_encoder"], QUERY=text(QUERY)).outputs()["QUERY_EMBEDDING"]
    tensors = dict(USER_TOKEN=token(user_id), QUERY=text(QUERY), TOP_K=np.array([5], np.int32),
                   SERVICE=text("samokat"), QUERY_EMBEDDING=vector) | extra
    return run(models["retriever"], **{name: array for name, array in tensors.items() if array is not None})


def test_retriever_honours_session_exclusions_and_price_cap(models, warm_user, test_artifacts):
    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    plain = retrieve(models, warm_user).outputs()["CANDIDATE_ITEM_IDS"][0]
    excluded = plain[:3].astype(np.int64)
    capped = retrieve(models, warm_user, EXCLUDE_ITEM_IDS=excluded, MAX_PRICE=np.array([150.0], np.float32))
    ids = capped.outputs()["CANDIDATE_ITEM_IDS"][0]
    assert not set(excluded.tolist()) & set(ids.tolist())
    assert all(catalog.get(int(i)).price <= 150.0 for i in ids)
    bad = retrieve(models, warm_user, MAX_PRICE=np.array([-1.0], np.float32))
    assert bad.has_error() and "MAX_PRICE" in bad.error().message()
    # +inf: the session dropped the budget the text states («кофе до 100 рублей» → «давай без ограничения»)
    stated = run(models["retriever"], USER_TOKEN=token(warm_user), QUERY=text("кофе до 100 рублей"),
                 TOP_K=np.array([5], np.int32), SERVICE=text("samokat"),
                 QUERY_EMBEDDING=run(models["query_encoder"], QUERY=text("кофе")).outputs()["QUERY_EMBEDDING"])
    dropped = run(models["retriever"], USER_TOKEN=token(warm_user), QUERY=text("кофе до 100 рублей"),
                  TOP_K=np.array([5], np.int32), SERVICE=text("samokat"), MAX_PRICE=np.array([np.inf], np.float32),
                  QUERY_EMBEDDING=run(models["query_encoder"], QUERY=text("кофе")).outputs()["QUERY_EMBEDDING"])
    assert all(catalog.get(int(i)).price <= 100.0 for i in stated.outputs()["CANDIDATE_ITEM_IDS"][0])
    assert any(catalog.get(int(i)).price > 100.0 for i in dropped.outputs()["CANDIDATE_ITEM_IDS"][0])


def test_retriever_takes_the_held_categories_and_refuses_unknown_ones(models, warm_user, test_artifacts):
    """CATEGORY_IDS (the kinds the chat holds a goal to: a present's interest, a need's shelf) are where every
    candidate comes from; an id the catalog lacks is the request's error, and the server stays up."""
    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    shelves = np.array([b"home/kitchenware", b"books/cookbooks"], dtype=np.object_)
    held = retrieve(models, warm_user, SERVICE=text("megamarket"), CATEGORY_IDS=shelves)
    ids = held.outputs()["CANDIDATE_ITEM_IDS"][0]
    assert len(ids) and {catalog.get(int(i)).category_id for i in ids} <= {"home/kitchenware", "books/cookbooks"}
    bad = retrieve(models, warm_user, CATEGORY_IDS=text("home/no_such_shelf"))
    assert bad.has_error() and "CATEGORY_IDS" in bad.error().message()
    assert not retrieve(models, warm_user).has_error()


def test_reranker_and_generator_chain(models, warm_user):
    candidates = retrieve(models, warm_user).outputs()
    ranked = run(models["reranker"], USER_TOKEN=token(warm_user), QUERY=text(QUERY), TOP_K=np.array([4], np.int32),
                 RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"],
                 CANDIDATE_ITEM_IDS=candidates["CANDIDATE_ITEM_IDS"], CANDIDATE_SCORES=candidates["CANDIDATE_SCORES"],
                 USER_CONTEXT=candidates["USER_CONTEXT"])
    outputs = ranked.outputs()
    assert outputs["ITEM_IDS"].shape == (1, 4)
    assert set(outputs["ITEM_IDS"][0].tolist()) <= set(candidates["CANDIDATE_ITEM_IDS"][0].tolist())
    assert all(e for e in outputs["ITEM_EXPLANATIONS"][0])
    # the query is Russian: the Russian copy is the list's explanations, the English one says the same in English
    assert outputs["ITEM_EXPLANATIONS_RU"][0].tolist() == outputs["ITEM_EXPLANATIONS"][0].tolist()
    english = [e.decode() for e in outputs["ITEM_EXPLANATIONS_EN"][0]]
    assert len(english) == 4 and all(english) and english != [e.decode() for e in outputs["ITEM_EXPLANATIONS"][0]]
    reply = run(models["generator"], USER_TOKEN=token(warm_user)[None], QUERY=text(QUERY),
                RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], ITEM_IDS=outputs["ITEM_IDS"],
                PROFILE_FACTS=candidates["PROFILE_FACTS"])
    assert reply.outputs()["REPLY"].reshape(-1)[0].decode().strip()
    unsigned = run(models["generator"], USER_TOKEN=text(warm_user)[None], QUERY=text(QUERY),
                   RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], ITEM_IDS=outputs["ITEM_IDS"],
                   PROFILE_FACTS=candidates["PROFILE_FACTS"])
    assert unsigned.has_error() and "user token refused" in unsigned.error().message()


def test_reranker_refuses_a_missing_or_foreign_user_context(models, warm_user, test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    other = next(u for u in ProfileStore(test_artifacts.profile_db, read_only=True).user_ids() if u != warm_user)
    candidates = retrieve(models, warm_user).outputs()
    inputs = dict(USER_TOKEN=token(other), QUERY=text(QUERY), TOP_K=np.array([4], np.int32),
                  RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], CANDIDATE_ITEM_IDS=candidates["CANDIDATE_ITEM_IDS"],
                  CANDIDATE_SCORES=candidates["CANDIDATE_SCORES"])
    missing = run(models["reranker"], **inputs)
    assert missing.has_error() and "USER_CONTEXT" in missing.error().message()
    foreign = run(models["reranker"], **inputs, USER_CONTEXT=candidates["USER_CONTEXT"])
    assert foreign.has_error() and "another user" in foreign.error().message()


def refusal(response) -> str:
    assert response.has_error()
    return response.error().message()


def test_retriever_refuses_a_missing_forged_or_expired_token(models, warm_user):
    assert "missing input tensor USER_TOKEN" in refusal(retrieve(models, warm_user, USER_TOKEN=None))
    unknown_key = Keyring.generate().sign(warm_user)
    same_kid = Keyring((SigningKey(KEYRING.token_keys[-1].kid, b"x" * 32),)).sign(warm_user)
    expired = KEYRING.sign(warm_user, ttl_s=1, now=1_000_000)
    for bad, reason in ((unknown_key, "unknown key id"), (same_kid, "bad signature"), (expired, "expired"),
                        ("not-a-token", "malformed"), (warm_user, "malformed")):
        message = refusal(retrieve(models, warm_user, USER_TOKEN=text(bad)))
        assert f"user token refused: {reason}" in message
        assert warm_user not in message and bad not in message  # no user id, no token in the error
    assert "scope admin" in refusal(retrieve(models, warm_user, USER_TOKEN=token("ops", scope="admin")))


def test_another_users_token_cannot_read_this_users_data(models, warm_user, test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    other = next(u for u in ProfileStore(test_artifacts.profile_db, read_only=True).user_ids() if u != warm_user)
    mine = retrieve(models, warm_user).outputs()
    theirs = retrieve(models, other).outputs()
    # Only the token decides whose profile is read: the other user's token yields the other user's facts/context.
    assert mine["PROFILE_FACTS"].tolist() != theirs["PROFILE_FACTS"].tolist()
    assert warm_user.encode() in mine["USER_CONTEXT"].reshape(-1)[0]
    assert warm_user.encode() not in theirs["USER_CONTEXT"].reshape(-1)[0]
    # Their token with my sealed context: refused by the reranker (the context is not theirs).
    ranked = run(models["reranker"], USER_TOKEN=token(other), QUERY=text(QUERY), TOP_K=np.array([4], np.int32),
                 RESOLVED_SERVICE=mine["RESOLVED_SERVICE"], CANDIDATE_ITEM_IDS=mine["CANDIDATE_ITEM_IDS"],
                 CANDIDATE_SCORES=mine["CANDIDATE_SCORES"], USER_CONTEXT=mine["USER_CONTEXT"])
    assert "another user" in refusal(ranked)


def test_reranker_refuses_an_unsigned_or_forged_context(models, warm_user):
    from recllm.profile.user_context import UserContext

    candidates = retrieve(models, warm_user).outputs()
    sealed = bytes(candidates["USER_CONTEXT"].reshape(-1)[0])
    inputs = dict(USER_TOKEN=token(warm_user), QUERY=text(QUERY), TOP_K=np.array([4], np.int32),
                  RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], CANDIDATE_ITEM_IDS=candidates["CANDIDATE_ITEM_IDS"],
                  CANDIDATE_SCORES=candidates["CANDIDATE_SCORES"])
    plain = sealed.split(b".", 4)[4]
    assert UserContext.from_bytes(plain, warm_user).user_id == warm_user  # what a caller could try to send
    forged_content = sealed.replace(b'"num_purchases":', b'"num_purchases":1', 1)
    backend_sealed = Keyring(KEYRING.token_keys, (SigningKey(KEYRING.stage_keys[-1].kid, b"y" * 32),)).seal(plain)
    for context, reason in ((plain, "not sealed by the retriever"), (forged_content, "bad signature"),
                            (backend_sealed, "bad signature"), (KEYRING.seal(plain, ttl_s=1, now=1_000_000), "expired")):
        message = refusal(run(models["reranker"], **inputs, USER_CONTEXT=np.array([context], dtype=np.object_)))
        assert f"user context refused: {reason}" in message and warm_user not in message
    assert not run(models["reranker"], **inputs, USER_CONTEXT=candidates["USER_CONTEXT"]).has_error()


def chat(models, session, user, message):
    request = fake_pb_utils.FakeRequest(dict(session_id=text(session), user_token=user, query=text(message),
                                             top_k=np.array([5], np.int32), service=text("samokat")))
    assert models["recllm_chat"].execute([request]) is None  # decoupled: everything goes through the sender
    return request.sender.finished()  # sent from the instance's turn thread


def test_chat_streams_items_then_text_then_final_flag(models, warm_user):
    sent = chat(models, "adapter-chat-1", token(warm_user), QUERY)
    responses, flags = [r for r, _ in sent], [f for _, f in sent]
    assert flags[-1] == fake_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL and responses[-1] is None
    assert all(f == 0 for f in flags[:-1])
    assert "item_ids" in responses[0].outputs()
    deltas = [r.outputs()["text_delta"][0].decode() for r in responses[1:-1]]
    assert len(deltas) >= 2 and "".join(deltas).strip()


def test_chat_turns_of_one_execute_are_served_at_once_each_on_its_own_stream(models, warm_user, monkeypatch):
    """One instance holds several turns in progress (each on a turn thread): four turns handed over together — one
    of them bad — are all inside their BLS calls at the same time, and each gets its own items, text and final flag,
    the bad one its own error."""
    inside, most = [0], [0]
    lock = threading.Lock()
    real = fake_pb_utils.InferenceRequest.exec

    def slow_exec(self, *args, **kwargs):  # a stage that takes a while: the turns overlap in it
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(fake_pb_utils.InferenceRequest, "exec", slow_exec)
    messages = (QUERY, "хочу что-нибудь к чаю", "", "что взять на завтрак?")
    requests = [fake_pb_utils.FakeRequest(dict(session_id=text(f"adapter-many-{i}"), user_token=token(warm_user),
                                               query=text(m), top_k=np.array([3], np.int32),
                                               service=text("samokat")))
                for i, m in enumerate(messages)]
    assert models["recllm_chat"].execute(requests) is None
    for message, request in zip(messages, requests):
        sent = request.sender.finished()
        assert sent[-1] == (None, fake_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if not message:
            assert len(sent) == 2 and "query is empty" in sent[0][0].error().message()
        else:
            assert not any(r.has_error() for r, _ in sent[:-1]) and "item_ids" in sent[0][0].outputs()
    assert most[0] >= 2


def test_chat_error_goes_to_the_stream_and_is_final(models, warm_user):
    sent = chat(models, "adapter-chat-2", token(warm_user), "")
    assert len(sent) == 2
    assert sent[0][0].has_error() and "query is empty" in sent[0][0].error().message()
    assert sent[1] == (None, fake_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def test_chat_refuses_a_forged_token_and_passes_the_callers_own_on(models, warm_user, monkeypatch):
    forged = text(Keyring.generate().sign(warm_user))
    sent = chat(models, "adapter-chat-3", forged, QUERY)
    assert len(sent) == 2 and "user token refused: unknown key id" in sent[0][0].error().message()
    seen = []
    real = fake_pb_utils.InferenceRequest.exec
    monkeypatch.setattr(fake_pb_utils.InferenceRequest, "exec",
                        lambda self: seen.append(self.request.tensors.get("USER_TOKEN")) or real(self))
    mine = token(warm_user)
    assert chat(models, "adapter-chat-4", mine, QUERY)[0][0].outputs()["item_ids"].size
    passed = [t.as_numpy().reshape(-1)[0] for t in seen if t is not None]
    assert len(passed) == 2 and set(passed) == {mine[0]}  # retriever and reranker got the caller's own token


# --- dynamic batches: several requests in one execute, each answered as if it came alone ---------------------------
QUERIES = ("что приготовить на ужин, чтобы было полезно?", "нужен подарок сыну на 7 лет", "молоко без лактозы",
           "healthy snacks for the office under 500 rubles")


def row(array: np.ndarray) -> np.ndarray:
    """A request of a batched model as Triton delivers it: one row, [1, *dims]."""
    return np.asarray(array)[None, ...]


def assert_same_outputs(batched, alone):
    assert batched.has_error() == alone.has_error()
    if alone.has_error():
        assert batched.error().message() == alone.error().message()
        return
    a, b = batched.outputs(), alone.outputs()
    assert a.keys() == b.keys()
    for name in a:
        if name == "USER_CONTEXT":  # the seal holds its expiry (the second it was made): compare what it seals
            def sealed(v):
                return [bytes(x).split(b".", 4)[-1] for x in v.ravel()]

            assert sealed(a[name]) == sealed(b[name]), name
        elif a[name].dtype == np.object_:
            assert a[name].tolist() == b[name].tolist(), name
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_encoder_batch_is_one_call_and_matches_single_requests(models, monkeypatch):
    encoder = models["query_encoder"]
    requests = [fake_pb_utils.FakeRequest({"QUERY": row(text(q))}) for q in (*QUERIES, "   ")]
    calls = []
    real = encoder.encoder.encode
    monkeypatch.setattr(encoder.encoder, "encode", lambda texts: calls.append(len(texts)) or real(texts))
    batched = encoder.execute(requests)
    assert calls == [len(QUERIES)]  # the empty query is refused before the joint call
    for request, response in zip(requests, batched):
        assert_same_outputs(response, encoder.execute([request])[0])
    assert batched[-1].has_error() and "query is empty" in batched[-1].error().message()


def retriever_request(models, user, query, service, **extra):
    vector = run(models["query_encoder"], QUERY=row(text(query))).outputs()["QUERY_EMBEDDING"]
    tensors = dict(USER_TOKEN=row(token(user)), QUERY=row(text(query)), TOP_K=row(np.array([5], np.int32)),
                   SERVICE=row(text(service)), QUERY_EMBEDDING=vector) | extra
    return fake_pb_utils.FakeRequest(tensors)


def test_retriever_mixed_batch_matches_single_requests(models, warm_user, test_artifacts, monkeypatch):
    from recllm.profile.sqlite_store import ProfileStore

    users = ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()[:3]
    retriever = models["retriever"]
    requests = [
        retriever_request(models, users[0], QUERIES[0], "samokat"),
        retriever_request(models, users[1], QUERIES[1], ""),                       # service inferred
        retriever_request(models, "never-seen-user-7", QUERIES[2], "kuper"),       # cold start
        retriever_request(models, users[2], QUERIES[3], "samokat",
                          EXCLUDE_ITEM_IDS=row(np.array([1, 2, 3], np.int64)),
                          MAX_PRICE=row(np.array([300.0], np.float32))),
        retriever_request(models, users[0], QUERIES[0], "ozon"),                   # refused: unknown service
        retriever_request(models, users[1], QUERIES[3], "megamarket"),
    ]
    searches = []
    real = retriever.retriever.index.search
    monkeypatch.setattr(retriever.retriever.index, "search",
                        lambda service, vectors, k: searches.append(len(vectors)) or real(service, vectors, k))
    batched = retriever.execute(requests)
    # One probe per service for all five valid requests, then one pool search per requested service, except for
    # requests that name a kind («молоко без лактозы» on kuper, "healthy snacks" on samokat and megamarket): samokat
    # and megamarket each search for their one other request, kuper not at all.
    assert searches[:3] == [5, 5, 5] and len(searches) == 3 + 2
    for request, response in zip(requests, batched):
        assert_same_outputs(response, retriever.execute([request])[0])
    assert batched[4].has_error() and "unknown service" in batched[4].error().message()
    assert batched[1].outputs()["RESOLVED_SERVICE"].reshape(-1)[0] == b"megamarket"


def test_reranker_mixed_batch_matches_single_requests(models, test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    users = ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()[:3]
    requests = []
    for k, (user, query) in enumerate(zip(users, QUERIES)):
        candidates = models["retriever"].execute([retriever_request(models, user, query, "samokat")])[0].outputs()
        requests.append(fake_pb_utils.FakeRequest(dict(
            USER_TOKEN=row(token(user)), QUERY=row(text(query)), TOP_K=row(np.array([3 + k], np.int32)),
            RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], CANDIDATE_ITEM_IDS=candidates["CANDIDATE_ITEM_IDS"],
            CANDIDATE_SCORES=candidates["CANDIDATE_SCORES"], USER_CONTEXT=candidates["USER_CONTEXT"])))
    batched = models["reranker"].execute(requests)
    shapes = [r.outputs()["ITEM_IDS"].shape for r in batched]
    assert shapes[:2] == [(1, 3), (1, 4)] and shapes[2][0] == 1 and shapes[2][1] <= 5  # ragged: each its own row
    for request, response in zip(requests, batched):
        assert_same_outputs(response, models["reranker"].execute([request])[0])


def test_stage_inputs_that_would_give_garbage_are_refused_by_name(models, warm_user):
    """Found by benchmarks/fuzz.py: a NaN query embedding was served, out-of-range candidate ids were an internal
    error (negative ones wrapped around), an unknown RESOLVED_SERVICE was not checked by name."""
    vector = run(models["query_encoder"], QUERY=text(QUERY)).outputs()["QUERY_EMBEDDING"]
    nan = vector.copy()
    nan[0, 3] = np.nan
    for bad, needle in ((nan, "NaN"), (vector[:, :-1], "must hold"), (np.concatenate([vector] * 2, 1), "must hold")):
        response = retrieve(models, warm_user, QUERY_EMBEDDING=bad)
        assert response.has_error() and "QUERY_EMBEDDING" in response.error().message()
        assert needle in response.error().message()
    candidates = retrieve(models, warm_user).outputs()
    good = dict(USER_TOKEN=token(warm_user), QUERY=text(QUERY), TOP_K=np.array([4], np.int32),
                RESOLVED_SERVICE=candidates["RESOLVED_SERVICE"], CANDIDATE_ITEM_IDS=candidates["CANDIDATE_ITEM_IDS"],
                CANDIDATE_SCORES=candidates["CANDIDATE_SCORES"], USER_CONTEXT=candidates["USER_CONTEXT"])
    assert not run(models["reranker"], **good).has_error()
    ids, scores = candidates["CANDIDATE_ITEM_IDS"], candidates["CANDIDATE_SCORES"]
    nan_scores = scores.copy()
    nan_scores[0, 0] = np.inf
    cases = ((dict(CANDIDATE_ITEM_IDS=-ids - 1), "CANDIDATE_ITEM_IDS"),
             (dict(CANDIDATE_ITEM_IDS=ids + 10**9), "CANDIDATE_ITEM_IDS"),
             (dict(CANDIDATE_SCORES=nan_scores), "CANDIDATE_SCORES"),
             (dict(CANDIDATE_SCORES=scores[:, :-1]), "CANDIDATE_SCORES"),
             (dict(RESOLVED_SERVICE=text("ozon")), "RESOLVED_SERVICE"),
             (dict(RESOLVED_SERVICE=text(b"\xff")), "RESOLVED_SERVICE"))
    for change, needle in cases:
        response = run(models["reranker"], **(good | change))
        assert response.has_error(), change
        assert needle in response.error().message() and "internal error" not in response.error().message()
