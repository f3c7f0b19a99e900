"""Triton adapter for streaming chat (decoupled): BLS through query_encoder → retriever → reranker, then the
generator's tokens streamed in-process; the turn logic is recllm.chat_engine."""

import numpy as np
import triton_python_backend_utils as pb_utils

from recllm.chat_engine import CandidateSet, ChatEngine, ItemsChunk
from recllm.chat_session import SessionStore
from recllm.pipeline import load_generation_stage
from recllm.request_validation import RequestError
from recllm.serving.backend_adapter import artifact_layout, error_response, input_scalar, make_response
from recllm.text_arrays import decode_utf8_array, utf8_array

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def call_model(model_name, inputs, output_names):
    request = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=output_names,
        inputs=[pb_utils.Tensor(name, array) for name, array in inputs.items()],
    )
    response = request.exec()
    if response.has_error():
        raise RequestError(response.error().message())
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names}


def request_tensors(request):
    """What every stage needs to see of the session's request; MAX_PRICE/LANGUAGE override the text's own."""
    tensors = {
        "USER_ID": utf8_array([request.user_id]),
        "QUERY": utf8_array([request.query]),
        "TOP_K": np.array([request.top_k], dtype=np.int32),
        "LANGUAGE": utf8_array([request.language]),
    }
    if request.max_price is not None:
        tensors["MAX_PRICE"] = np.array([request.max_price], dtype=np.float32)
    return tensors


class BlsStages:
    """recllm.chat_engine.ChatStages over BLS calls to the other models."""

    def __init__(self, generation):
        self.generation = generation

    def encode(self, query):
        return call_model("query_encoder", {"QUERY": utf8_array([query])}, ["QUERY_EMBEDDING"])["QUERY_EMBEDDING"]

    def retrieve(self, request, query_vector, exclude_item_ids):
        inputs = request_tensors(request) | {
            "SERVICE": utf8_array([request.service]),
            "QUERY_EMBEDDING": query_vector.astype(np.float32),
            "EXCLUDE_ITEM_IDS": np.array(sorted(exclude_item_ids), dtype=np.int64),
        }
        names = ["CANDIDATE_ITEM_IDS", "CANDIDATE_SCORES", "RESOLVED_SERVICE", "PROFILE_FACTS"]
        out = call_model("retriever", inputs, names)
        return CandidateSet(out["CANDIDATE_ITEM_IDS"], out["CANDIDATE_SCORES"],
                            decode_utf8_array(out["RESOLVED_SERVICE"])[0], decode_utf8_array(out["PROFILE_FACTS"]))

    def rank(self, request, candidates):
        inputs = request_tensors(request) | {
            "RESOLVED_SERVICE": utf8_array([candidates.service]),
            "CANDIDATE_ITEM_IDS": candidates.candidate_ids.astype(np.int64),
            "CANDIDATE_SCORES": candidates.candidate_scores.astype(np.float32),
        }
        names = ["ITEM_IDS", "ITEM_SCORES", "ITEM_NAMES", "ITEM_PRICES", "ITEM_SERVICES", "ITEM_EXPLANATIONS"]
        return {name.lower(): array for name, array in call_model("reranker", inputs, names).items()}

    def stream_reply(self, request, service, item_ids, facts):
        return self.generation.stream(service, request.language, request.query, item_ids, facts)


class TritonPythonModel:
    def initialize(self, args):
        layout = artifact_layout()
        self.engine = ChatEngine(SessionStore(layout.sessions_db), BlsStages(load_generation_stage(layout)))

    def run_turn(self, request, sender):
        fields = ("session_id", "user_id", "query", "top_k", "service")
        chunks = self.engine.turn(*(input_scalar(pb_utils, request, name) for name in fields))
        for chunk in chunks:
            if request.is_cancelled():  # the client went away: free this instance for the next turn
                chunks.close()
                return
            if isinstance(chunk, ItemsChunk):
                sender.send(make_response(pb_utils, chunk.arrays | {"resolved_service": utf8_array([chunk.service])}))
            else:
                sender.send(make_response(pb_utils, {"text_delta": utf8_array([chunk.text])}))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self.run_turn(request, sender)
            except Exception as exc:  # noqa: BLE001 - the turn's failure goes to its own stream
                sender.send(error_response(pb_utils, "recllm_chat", exc))
            sender.send(flags=FINAL)
        return None
