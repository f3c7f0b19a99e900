"""Through the real tritonserver: the generator's dynamic batches and the chat model's reply stream from
``generator_stream`` (decoupled BLS) — a concurrent burst answered as if one by one (greedy), chat text equal to the
in-process turn, concurrent turns sharing the stream model, and a cancelled stream freeing its chat instance."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ensemble.pipeline_graph import DEFAULT_PROFILE
from recllm_client import RecLLMClient

pytestmark = pytest.mark.integration

REQUESTS = [
    ("что приготовить на ужин, чтобы было полезно?", 5, "samokat"),
    ("нужен подарок сыну на 7 лет, игрушка или конструктор", 3, ""),
    ("хочу что-нибудь вкусное", 4, "kuper"),
    ("healthy snacks for the office under 500 rubles", 6, "samokat"),
]
CHAT_QUERY = "что приготовить на ужин, чтобы было полезно?"


def connect(server) -> RecLLMClient:
    keyring = getattr(server.config, "keyring_path", None)  # signed user tokens where the server verifies them
    return RecLLMClient(server.config.grpc_url, timeout_s=120, **({"keyring": keyring} if keyring else {}))


@pytest.fixture(scope="module")
def client(triton_server):
    with connect(triton_server) as c:
        yield c


@pytest.fixture(scope="module")
def users(test_artifacts):
    from recllm.profile.sqlite_store import ProfileStore

    return ProfileStore(test_artifacts.profile_db, read_only=True).user_ids()[:len(REQUESTS)]


def counts(client, model):
    stats = client.grpc.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("execution_count", 0)), int(stats.get("inference_count", 0))


def counts_after(client, model, before, inferences, timeout_s=10.0):
    """The model's counts once they hold ``inferences`` more than ``before`` (or after ``timeout_s``): an instance
    reports its statistics after it has sent its responses, so a client that has every answer may read them a
    moment before the last execution is counted (seen with two generator instances)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = counts(client, model)
        if now[1] - before[1] >= inferences or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def test_concurrent_recllm_burst_equals_one_by_one(client, users):
    alone = [client.recommend(user, *request) for user, request in zip(users, REQUESTS)]
    burst = [(user, request) for _ in range(3) for user, request in zip(users, REQUESTS)]
    before = counts(client, "generator")
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        answers = list(pool.map(lambda job: client.recommend(job[0], *job[1]), burst))
    for k, answer in enumerate(answers):
        expected = alone[k % len(REQUESTS)]
        assert [i.item_id for i in answer.items] == [i.item_id for i in expected.items]
        assert answer.reply == expected.reply and answer.reply.strip()
    after = counts_after(client, "generator", before, len(burst))
    executions, inferences = after[0] - before[0], after[1] - before[1]
    assert inferences == len(burst)
    assert executions < inferences, (executions, inferences)  # requests shared a decode


def chat_text(client, session, user, message=CHAT_QUERY):
    items, deltas = None, []
    for kind, value in client.chat_stream(session, user, message, top_k=4, service="samokat"):
        if kind == "items":
            items = [i.item_id for i in value[1]]
        elif kind == "text":
            deltas.append(value)
    return items, deltas


def test_chat_turn_streams_the_in_process_text(client, users, test_artifacts, tmp_path):
    from recllm.dialogue.chat_engine import ChatEngine, InProcessChatStages, ItemsChunk
    from recllm.dialogue.session_store import SessionStore
    from recllm.pipeline import RecPipeline

    from recllm.safety.output_guard import HOLD_CHARS

    items, deltas = chat_text(client, "gen-serving-same-text", users[0])
    engine = ChatEngine(SessionStore(tmp_path / "sessions.db"),
                        InProcessChatStages(RecPipeline.load(test_artifacts.root)))
    chunks = list(engine.turn("gen-serving-same-text", users[0], CHAT_QUERY, 4, "samokat"))
    assert [int(i) for i in chunks[0].arrays["item_ids"]] == items and isinstance(chunks[0], ItemsChunk)
    assert "".join(deltas) == "".join(c.text for c in chunks[1:])
    # streamed in the in-process pieces, consecutive ones joined where the reply stream sent them together (its text
    # after the first delta goes out at most every send_interval_us): every served boundary is an in-process one
    def boundaries(pieces):
        ends, at = set(), 0
        for piece in pieces:
            at += len(piece)
            ends.add(at)
        return ends
    assert boundaries(deltas) <= boundaries([c.text for c in chunks[1:]])
    # streamed: a reply longer than twice the output guard's hold-back comes in pieces (a shorter one may be held
    # whole until it ends: «Посмотрите Картофель мытый Свежий урожай 1 кг.» is one piece, by design)
    assert len(deltas) >= 2 or len("".join(deltas)) <= 2 * HOLD_CHARS, deltas


def test_concurrent_chat_turns_both_complete_through_the_stream_model(client, triton_server, users):
    before = counts(client, "generator_stream")

    def turn(k):  # a tritonclient gRPC client holds one stream at a time: one client per concurrent turn
        with connect(triton_server) as own:
            return chat_text(own, f"gen-serving-concurrent-{k}", users[k])

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(turn, (1, 2)))
    for items, deltas in results:
        assert items and "".join(deltas).strip()
    assert counts_after(client, "generator_stream", before, 2)[1] - before[1] == 2


def test_cancelled_streams_free_their_chat_instances(triton_server, users):
    # As many abandoned turns as there are chat instances: a later turn completes only if they were freed.
    for k in range(DEFAULT_PROFILE.chat_instances):
        with connect(triton_server) as c:
            stream = c.chat_stream(f"gen-serving-cancel-{k}", users[k % len(users)], CHAT_QUERY, top_k=4,
                                   service="samokat")
            assert next(stream)[0] == "items"
            stream.close()  # stops the gRPC stream with cancel_requests=True
    with connect(triton_server) as c:
        items, deltas = chat_text(c, "gen-serving-after-cancel", users[3])
    assert items and "".join(deltas).strip()
