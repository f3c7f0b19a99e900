"""Triton adapter for streaming chat (decoupled): BLS through query_encoder → retriever → reranker, then the
reply's tokens streamed from ``generator_stream`` (decoupled BLS: turns of all chat instances decode together
there); the turn logic (moderation, dialogue state, acts, output redaction) is
recllm.dialogue.chat_engine. The user is the subject of the verified user_token, which the BLS calls pass on.

A turn mostly waits on its BLS calls, so ``execute`` hands each request to a thread of the instance's pool
(``turns_per_instance`` threads, from the generated config) and returns at once; the turn sends its responses and
the final flag from there. One instance (one copy of the dialogue models, ~0.5 GiB) serves that many turns at a
time, which is what lets the reply stream batch them: with one turn per instance a node needed an instance per
concurrent turn."""

import logging
import threading
from contextlib import closing

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.dialogue.chat_engine import CandidateSet, ItemsChunk, load_chat_engine
from recllm.rag.rec_request import RequestError
from recllm.serving.backend_adapter import (
    artifact_layout, error_response, enable_crash_traces, freeze_loaded_state, input_scalar, make_response,
    positive_int_parameter, server_keyring, verified_user_id,
)
from recllm.serving.bls_stream import DecoupledBlsStreams
from recllm.serving.turn_threads import TurnThreads
from recllm_proto.text_arrays import decode_utf8_array, utf8_array

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
FINALIZE_WAIT_S = 5.0
log = logging.getLogger(__name__)


def call_model(model_name, inputs, output_names):
    """One BLS request to a batched stage: each input is sent as its one row ([1, *dims]), each output read back
    without that batch dim."""
    request = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=output_names,
        inputs=[pb_utils.Tensor(name, np.asarray(array)[None, ...]) for name, array in inputs.items()],
    )
    response = request.exec()
    if response.has_error():
        raise RequestError(response.error().message())
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy()[0] for name in output_names}


def stream_text(streams, caller_request, model_name, inputs):
    """A decoupled BLS request (unbatched inputs as they are): the TEXT_DELTA of each response as it arrives; an
    error response raises. Closing the generator early stops sending the turn's text; ``streams`` still reads the
    reply's stream to its end (2.51 cannot cancel a BLS stream) and lets go of it only once the backend's stub has
    (``recllm.serving.bls_stream``)."""
    request = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=[T.TEXT_DELTA.name],
        inputs=[pb_utils.Tensor(name, np.asarray(array)) for name, array in inputs.items()],
    )
    with closing(streams.responses(request, caller_request)) as responses:
        for response in responses:
            if response.has_error():
                raise RequestError(response.error().message())
            tensor = pb_utils.get_output_tensor_by_name(response, T.TEXT_DELTA.name)
            if tensor is not None:  # the final flag may come as an empty response
                yield decode_utf8_array(tensor.as_numpy().reshape(-1))[0]


def request_tensors(request, user_token):
    """What every stage needs to see of the session's request; MAX_PRICE/LANGUAGE override the text's own (MAX_PRICE
    always: +inf when the session holds no budget, so a budget the goal's text states but the user dropped — «давай
    без ограничения» — is not read back from the text by the stage)."""
    arrays = {
        T.USER_TOKEN.name: np.array([user_token], dtype=np.object_),
        T.QUERY.name: utf8_array([request.query]),
        T.TOP_K.name: np.array([request.top_k], dtype=np.int32),
        T.LANGUAGE.name: utf8_array([request.language]),
    }
    max_price = np.inf if request.max_price is None else request.max_price
    arrays[T.MAX_PRICE.name] = np.array([max_price], dtype=np.float32)
    return arrays


class BlsStages:
    """recllm.dialogue.chat_engine.ChatStages over BLS calls to the other models. The turn in progress is the
    calling thread's (each turn runs on a thread of its own)."""

    def __init__(self):
        self._turn = threading.local()
        self.streams = DecoupledBlsStreams()

    @property
    def user_token(self) -> bytes:
        """The caller's token for this thread's turn."""
        return getattr(self._turn, "user_token", b"")

    @user_token.setter
    def user_token(self, token: bytes) -> None:
        self._turn.user_token = token

    @property
    def request(self):
        """The chat request of this thread's turn (its is_cancelled is the reply stream's barrier)."""
        return getattr(self._turn, "request", None)

    @request.setter
    def request(self, request) -> None:
        self._turn.request = request

    def encode(self, query):
        out = call_model("query_encoder", {T.QUERY.name: utf8_array([query])}, [T.QUERY_EMBEDDING.name])
        return out[T.QUERY_EMBEDDING.name]

    def retrieve(self, request, query_vector, exclude_item_ids):
        inputs = request_tensors(request, self.user_token) | {
            T.SERVICE.name: utf8_array([request.service]),
            T.QUERY_EMBEDDING.name: query_vector.astype(np.float32),
            T.EXCLUDE_ITEM_IDS.name: np.array(sorted(exclude_item_ids), dtype=np.int64),
        }
        if request.categories:  # the shelves the dialogue holds the goal to
            inputs[T.CATEGORY_IDS.name] = utf8_array(sorted(request.categories))
        out = call_model("retriever", inputs, [spec.name for spec in T.RETRIEVER.outputs])
        return CandidateSet(out[T.CANDIDATE_ITEM_IDS.name], out[T.CANDIDATE_SCORES.name],
                            decode_utf8_array(out[T.RESOLVED_SERVICE.name])[0],
                            decode_utf8_array(out[T.PROFILE_FACTS.name]), out[T.USER_CONTEXT.name])

    def rank(self, request, candidates):
        inputs = request_tensors(request, self.user_token) | {
            T.RESOLVED_SERVICE.name: utf8_array([candidates.service]),
            T.CANDIDATE_ITEM_IDS.name: candidates.candidate_ids.astype(np.int64),
            T.CANDIDATE_SCORES.name: candidates.candidate_scores.astype(np.float32),
            T.USER_CONTEXT.name: candidates.user_context,
        }
        return T.client_arrays(call_model("reranker", inputs, [spec.name for spec in T.RERANKER.outputs]))

    def stream_reply(self, request, service, item_ids, facts, act="recommend", user_context=None):
        inputs = {
            T.USER_TOKEN.name: np.array([self.user_token], dtype=np.object_),
            T.QUERY.name: utf8_array([request.query]),
            T.RESOLVED_SERVICE.name: utf8_array([service]),
            T.ITEM_IDS.name: np.array(item_ids, dtype=np.int64),
            T.PROFILE_FACTS.name: utf8_array(list(facts)),
            T.LANGUAGE.name: utf8_array([request.language]),
            T.REPLY_ACT.name: utf8_array([act]),
        }
        if user_context is not None:  # the retriever's sealed read: the reply's user layers need no second one
            inputs[T.USER_CONTEXT.name] = np.asarray(user_context, dtype=np.object_).reshape(-1)  # unbatched: [1]
        return stream_text(self.streams, self.request, T.GENERATOR_STREAM_MODEL, inputs)


TURNS_PER_INSTANCE = 8  # when the config names none


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout()
        self.keys = server_keyring(layout)
        self.stages = BlsStages()
        # Moderation and request understanding as the build trained them (a clear error if the build has none).
        self.engine = load_chat_engine(layout, self.stages)
        turns = positive_int_parameter(args, "turns_per_instance", TURNS_PER_INSTANCE)
        freeze_loaded_state()  # before the turn threads start allocating
        self.turns = TurnThreads(turns, self.serve_turn, name="chat-turn")

    def run_turn(self, request, sender):
        session_id, token, query, top_k, service = (input_scalar(pb_utils, request, spec.client_name)
                                                   for spec in T.CHAT.inputs)
        user_id = verified_user_id(self.keys.current(), token)
        self.stages.user_token = bytes(token)
        self.stages.request = request
        try:
            chunks = self.engine.turn(session_id, user_id, query, top_k, service)
            for chunk in chunks:
                if request.is_cancelled():  # the client went away: send no more (the reply's stream is read out)
                    chunks.close()
                    return
                if isinstance(chunk, ItemsChunk):
                    service = {T.RESOLVED_SERVICE.client_name: utf8_array([chunk.service])}
                    sender.send(make_response(pb_utils, chunk.arrays | service))
                else:
                    sender.send(make_response(pb_utils, {T.TEXT_DELTA.client_name: utf8_array([chunk.text])}))
        finally:
            self.stages.request = None  # the turn's request is not kept past it

    def execute(self, requests):
        for request in requests:
            # waits while every turn thread has a turn: the instance is busy then, and Triton keeps the next
            # requests in its queue for an instance with a free thread
            self.turns.submit(request)
        return None

    def serve_turn(self, request):
        """One turn on a turn thread: its responses, then the final flag, whatever happened."""
        sender = request.get_response_sender()
        try:
            if request.is_cancelled():  # the client went away while the turn waited: nothing to do for it
                return
            self.run_turn(request, sender)
        except Exception as exc:  # noqa: BLE001 - the turn's failure goes to its own stream
            try:
                sender.send(error_response(pb_utils, "recllm_chat", exc))
            except Exception:  # noqa: BLE001 - the client went away; the final flag still ends the stream
                log.warning("sending a chat turn's error failed", exc_info=True)
        finally:
            sender.send(flags=FINAL)

    def finalize(self):
        # Bounded: the turns in progress finish their streams, unless the server died under them (kill -9)
        self.turns.close(timeout_s=FINALIZE_WAIT_S)
