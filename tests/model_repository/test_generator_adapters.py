"""The generator adapters under a faked Triton Python backend: ``generator`` decodes the requests of a dynamic batch
together, ``generator_stream`` (decoupled) batches concurrent reply streams itself; each request is answered as if
it came alone (greedy), and a bad request's error stays its own."""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from recllm.catalog.product_catalog import Catalog
from recllm.pipeline import ReplyTurn

import fake_pb_utils  # noqa: E402 - on sys.path via this folder's conftest
from recllm_proto.user_token import save_keyring
from signed_tokens import KEYRING, token  # noqa: E402 - on sys.path via this folder's conftest

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
FINAL = fake_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
WINDOW_US = 300_000  # long enough that separate execute calls of one test surely meet in one batch


def text(value: str) -> np.ndarray:
    return np.array([value.encode()], dtype=np.object_)


def texts(values) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_)


def load(name, args):
    spec = importlib.util.spec_from_file_location(f"adapter_{name}_gen", REPOSITORY / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize(args)
    return model


@pytest.fixture(scope="module")
def models(test_artifacts, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils)
    mp.setenv("RECLLM_ARTIFACT_DIR", str(test_artifacts.root))
    mp.setenv("RECLLM_KEYRING", str(save_keyring(tmp_path_factory.mktemp("keys") / "keyring.json", KEYRING)))
    stream_config = {"parameters": {"max_batch": {"string_value": "8"},
                                    "batch_window_us": {"string_value": str(WINDOW_US)}}}
    loaded = {"generator": load("generator", {"model_name": "generator"}),
              "generator_stream": load("generator_stream", {"model_name": "generator_stream",
                                                            "model_config": json.dumps(stream_config)})}
    yield loaded
    loaded["generator_stream"].finalize()
    mp.undo()


@pytest.fixture(scope="module")
def items(test_artifacts):
    return [item.item_id for item in Catalog.load_jsonl(test_artifacts.catalog).in_service("samokat")]


TURNS = (  # query, number of items, facts, act
    ("что приготовить на ужин, чтобы было полезно?", 3, ["вы часто берёте кефир"], "recommend"),
    ("а подешевле?", 2, [], "refine"),
    ("healthy snacks for the office", 5, ["you often buy nuts", "you prefer low sugar"], None),
)


@pytest.fixture(scope="module")
def users(test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    return ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()


def generator_request(query, item_ids, facts, user="u-test"):
    return fake_pb_utils.FakeRequest(dict(USER_TOKEN=token(user)[None], QUERY=text(query)[None],
                                          RESOLVED_SERVICE=text("samokat")[None],
                                          ITEM_IDS=np.array([item_ids], np.int64), PROFILE_FACTS=texts(facts)[None]))


def test_generator_mixed_batch_is_one_decode_and_matches_single_requests(models, items, monkeypatch):
    requests = [generator_request(q, items[k:k + n], facts) for k, (q, n, facts, _) in enumerate(TURNS)]
    requests.insert(1, generator_request("   ", items[:2], []))                 # empty query: refused on parse
    requests.append(generator_request(TURNS[0][0], [10 ** 9], []))             # no such item: refused on parse
    generator = models["generator"]
    batch_sizes = []
    real = generator.generation.generator.generate_batch
    monkeypatch.setattr(generator.generation.generator, "generate_batch",
                        lambda reqs, name: batch_sizes.append(len(reqs)) or real(reqs, name))
    batched = generator.execute(requests)
    assert batch_sizes[0] == len(requests) - 2  # every parsed request in one decode
    assert [r.has_error() for r in batched] == [False, True, False, False, True]
    assert "query" in batched[1].error().message() and "no catalog item" in batched[4].error().message()
    replies = [r.outputs()["REPLY"].reshape(-1)[0].decode() for r in batched if not r.has_error()]
    assert all(reply.strip() for reply in replies) and len(set(replies)) == len(replies)
    for request, response in zip(requests, batched):
        alone = generator.execute([request])[0]
        assert alone.has_error() == response.has_error()
        if alone.has_error():
            assert alone.error().message() == response.error().message()
        else:
            assert alone.outputs()["REPLY"].tolist() == response.outputs()["REPLY"].tolist()


def test_generator_counts_reply_checks_as_metrics_and_releases_them_at_finalize(models, items):
    """A metric family alive when the stub tears down segfaults the real stub at the server's stop."""
    def live():
        return sorted(f.name for f in fake_pb_utils.LIVE_FAMILIES)

    before = live()
    generator = load("generator", {"model_name": "generator"})
    assert len(live()) == len(before) + 2
    checked = ("recllm_reply_check_total", (("event", "checked"),))
    counted = fake_pb_utils.METRIC_VALUES.get(checked, 0)
    assert not generator.execute([generator_request(TURNS[0][0], items[:3], [])])[0].has_error()
    assert fake_pb_utils.METRIC_VALUES[checked] > counted
    generator.finalize()
    gc.collect()
    assert live() == before  # released by finalize itself, the model object still alive


def stream_request(query, item_ids, facts, act=None, language=None, cls=fake_pb_utils.FakeRequest, user="u-test"):
    tensors = dict(USER_TOKEN=token(user), QUERY=text(query), RESOLVED_SERVICE=text("samokat"), ITEM_IDS=np.array(item_ids, np.int64),
                   PROFILE_FACTS=texts(facts))
    if act is not None:
        tensors["REPLY_ACT"] = text(act)
    if language is not None:
        tensors["LANGUAGE"] = text(language)
    return cls(tensors)


def collect(request, timeout_s=120):
    """(text deltas, error message or None) once the request's final flag arrived."""
    deltas, error = [], None
    for response in request.sender.responses(timeout_s):
        if response.has_error():
            error = response.error().message()
        elif response.outputs():
            deltas.append(response.outputs()["TEXT_DELTA"].reshape(-1)[0].decode())
    assert request.sender.sent[-1][1] == FINAL
    return deltas, error


def test_stream_batches_concurrent_turns_and_each_equals_its_in_process_stream(models, items):
    stream = models["generator_stream"]
    requests = [stream_request(q, items[k:k + n], facts, act) for k, (q, n, facts, act) in enumerate(TURNS)]
    unknown_item = stream_request(TURNS[0][0], [10 ** 9], [])
    before = len(stream.batcher.batch_sizes)
    assert stream.execute(requests[:2]) is None
    assert stream.execute([requests[2], unknown_item]) is None  # another execute, same window: same batch
    results = [collect(r) for r in (*requests, unknown_item)]
    assert stream.batcher.batch_sizes[before:] == [3]  # the unknown item was refused before the batcher
    generation = stream.generation
    for (query, n, facts, act), request, (deltas, error) in zip(TURNS, requests, results):
        k = TURNS.index((query, n, facts, act))
        language = "en" if query.startswith("healthy") else "ru"
        plain = generation.plain(ReplyTurn("samokat", language, query, tuple(items[k:k + n]), tuple(facts), act))
        # streamed item by item, not one block (unless the model's reply failed the check: the plain one, whole)
        assert error is None and (len(deltas) >= 2 or "".join(deltas) == plain)
        expected = "".join(generation.stream("samokat", language, query, items[k:k + n], facts, act=act,
                                             user_id="u-test"))
        assert "".join(deltas) == expected
    assert results[3][0] == [] and "no catalog item" in results[3][1]


def test_stream_refuses_bad_requests_at_once_with_the_final_flag(models, items):
    stream = models["generator_stream"]
    empty = stream_request("  ", items[:2], [])
    bad_act = stream_request("молоко без лактозы", items[:2], [], act="sell_everything")
    missing = fake_pb_utils.FakeRequest(dict(USER_TOKEN=token("u-test"), QUERY=text("молоко"),
                                             RESOLVED_SERVICE=text("samokat")))
    stream.execute([empty, bad_act, missing])
    for request, needle in ((empty, "query"), (bad_act, "REPLY_ACT"), (missing, "ITEM_IDS")):
        assert len(request.sender.sent) == 1  # answered inside execute, before any decoding
        response, flags = request.sender.sent[0]
        assert flags == FINAL and needle in response.error().message()


class CancelledAfterFirstDelta(fake_pb_utils.FakeRequest):
    def is_cancelled(self):
        return any(r is not None and r.outputs() for r, _ in self.sender.sent)


def test_a_cancelled_stream_is_finished_and_the_other_completes(models, items):
    stream = models["generator_stream"]
    gone = stream_request(TURNS[0][0], items[:3], [], "recommend", cls=CancelledAfterFirstDelta)
    stays = stream_request(TURNS[2][0], items[3:8], [], None)
    stream.execute([gone, stays])
    gone_deltas, gone_error = collect(gone)
    stays_deltas, stays_error = collect(stays)
    assert gone_error is None and len(gone_deltas) == 1
    expected = "".join(stream.generation.stream("samokat", "en", TURNS[2][0], items[3:8], [], act=None,
                                                user_id="u-test"))
    assert stays_error is None and "".join(stays_deltas) == expected
    # the batcher thread is free for the next turn
    later = stream_request(TURNS[1][0], items[:2], [], "refine")
    stream.execute([later])
    assert collect(later)[1] is None


def test_config_parameters_are_validated(models):
    batcher_config = type(models["generator_stream"]).initialize.__globals__["batcher_config"]
    bad = {"model_config": json.dumps({"parameters": {"max_batch": {"string_value": "-3"}}})}
    with pytest.raises(ValueError, match="max_batch"):
        batcher_config(bad)
    assert batcher_config({}).max_batch == 8
    with pytest.raises(ValueError, match="send_interval_us"):
        batcher_config({"model_config": json.dumps({"parameters": {"send_interval_us": {"string_value": "0.5"}}})})
    chosen = {"send_interval_us": {"string_value": "25000"}, "batch_window_us": {"string_value": "1000"}}
    config = batcher_config({"model_config": json.dumps({"parameters": chosen})})
    assert config.send_interval_s == 0.025 and config.window_s == 0.001


def test_stage_inputs_are_checked_by_name_before_decoding(models, items):
    """Found by benchmarks/fuzz.py: unknown services and languages were served, invalid UTF-8 was an internal error."""
    good = dict(USER_TOKEN=token("u-test")[None], QUERY=text("молоко")[None], RESOLVED_SERVICE=text("samokat")[None],
                ITEM_IDS=np.array([items[:2]], np.int64), PROFILE_FACTS=texts(["вы часто берёте кефир"])[None])
    cases = (("RESOLVED_SERVICE", dict(RESOLVED_SERVICE=text("ozon")[None])),
             ("RESOLVED_SERVICE", dict(RESOLVED_SERVICE=np.array([[b"\xff"]], dtype=np.object_))),
             ("PROFILE_FACTS", dict(PROFILE_FACTS=np.array([[b"\xfe\xff"]], dtype=np.object_))),
             ("ITEM_IDS", dict(ITEM_IDS=np.array([[-1]], np.int64))))
    responses = models["generator"].execute([fake_pb_utils.FakeRequest(good | change) for _, change in cases])
    for (needle, _), response in zip(cases, responses):
        assert response.has_error(), needle
        assert needle in response.error().message() and "internal error" not in response.error().message()
    stream_good = {name: array[0] for name, array in good.items()}
    bad = [stream_good | {"LANGUAGE": text("de")}, stream_good | {"LANGUAGE": text("ru\x00")},
           stream_good | {"RESOLVED_SERVICE": text("")},
           stream_good | {"REPLY_ACT": np.array([b"\xff"], dtype=np.object_)}]
    requests = [fake_pb_utils.FakeRequest(tensors) for tensors in bad]
    models["generator_stream"].execute(requests)
    for request, needle in zip(requests, ("LANGUAGE", "LANGUAGE", "RESOLVED_SERVICE", "REPLY_ACT")):
        assert len(request.sender.sent) == 1
        response, flags = request.sender.sent[0]
        assert flags == FINAL and needle in response.error().message()
        assert "internal error" not in response.error().message()


def test_users_of_one_batch_each_get_their_own_user_layers(models, items, users):
    """Different users in one dynamic batch: each reply equals that user's reply decoded alone and the in-process
    reply with their user layers; a token that is not signed is refused before decoding."""
    generator = models["generator"]
    stage = generator.generation
    assert stage.generator.personalizer is not None  # the build trained user layers and serving plugged them in
    query, n, facts, _ = TURNS[0]
    chosen = users[:3]
    requests = [generator_request(query, items[:n], facts, user=u) for u in chosen]
    forged = generator_request(query, items[:n], facts)
    forged.tensors["USER_TOKEN"] = fake_pb_utils.Tensor("USER_TOKEN", text(chosen[0])[None])
    batched = generator.execute(requests + [forged])
    assert batched[-1].has_error() and "user token refused" in batched[-1].error().message()
    for user, request, response in zip(chosen, requests, batched):
        reply = response.outputs()["REPLY"].reshape(-1)[0].decode()
        assert reply == generator.execute([request])[0].outputs()["REPLY"].reshape(-1)[0].decode()
        assert reply == stage.generate("samokat", "ru", query, items[:n], facts, user_id=user)


def test_the_retriever_s_sealed_context_feeds_the_user_layers_and_a_foreign_one_is_refused(models, items, users,
                                                                                         test_artifacts):
    """The ensemble and the chat model pass the retriever's sealed USER_CONTEXT on: the reply is the same as with a
    profile read of the generator's own, no read happens, and another user's or an unsealed context is refused."""
    from recllm.pipeline import load_retriever
    from recllm.serving.backend_adapter import sealed_context

    retriever = load_retriever(test_artifacts)
    query, n, facts, _ = TURNS[0]
    user, other = users[3], users[4]
    personalizer = models["generator"].generation.generator.personalizer
    personalizer.cache.forget(user)
    reads = personalizer.cache.reads
    with_context = generator_request(query, items[:n], facts, user=user)
    with_context.tensors["USER_CONTEXT"] = fake_pb_utils.Tensor(
        "USER_CONTEXT", sealed_context(KEYRING, retriever.read_context(user))[None])
    foreign = generator_request(query, items[:n], facts, user=user)
    foreign.tensors["USER_CONTEXT"] = fake_pb_utils.Tensor(
        "USER_CONTEXT", sealed_context(KEYRING, retriever.read_context(other))[None])
    unsealed = generator_request(query, items[:n], facts, user=user)
    unsealed.tensors["USER_CONTEXT"] = fake_pb_utils.Tensor(
        "USER_CONTEXT", np.array([retriever.read_context(user).to_bytes()], dtype=np.object_)[None])
    replies = models["generator"].execute([with_context, foreign, unsealed])
    assert personalizer.cache.reads == reads  # u came from the context
    assert "another user" in replies[1].error().message()
    assert replies[2].has_error() and "internal error" not in replies[2].error().message()
    personalizer.cache.forget(user)
    read_itself = models["generator"].execute([generator_request(query, items[:n], facts, user=user)])[0]
    assert personalizer.cache.reads == reads + 1
    assert replies[0].outputs()["REPLY"].reshape(-1)[0] == read_itself.outputs()["REPLY"].reshape(-1)[0]
