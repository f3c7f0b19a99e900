"""Triton adapter: ranked items + profile facts -> reply text (recllm.generator, our Qwen2 + decode loop).

The user is the subject of the verified USER_TOKEN; the build's user layers (conditional norms, prefix, segment or
user LoRA mixed by the MoE gate: recllm.user_layers.reply_personalizer) apply per row of a batch of different users;
their ``u`` comes from the retriever's sealed USER_CONTEXT when the caller passes it on (the ``recllm`` ensemble
does), else from a profile read.

All requests of one ``execute`` (several when the model config enables dynamic batching) are decoded together, one
forward per step (``GenerationStage.generate_turns``); a bad request gets its own error. Reply-check counts
(``recllm.generator.reply_check.ReplyCheckCounters``) are exported as Prometheus counters
(``recllm.serving.custom_metrics``) where the backend has custom metrics.
"""

import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.pipeline import ReplyTurn, load_generation_stage
from recllm.rag.rec_request import detect_language, validate_query
from recllm.serving.backend_adapter import (
    artifact_layout, as_row, error_response, enable_crash_traces, freeze_loaded_state, input_item_ids, input_scalar,
    input_service, input_strings, make_response, optional_user_context, request_user_id, server_keyring,
)
from recllm.serving.custom_metrics import ReplyCheckMetrics
from recllm_proto.text_arrays import utf8_array


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout()
        self.generation = load_generation_stage(layout)
        self.keys = server_keyring(layout)
        self.metrics = ReplyCheckMetrics.attach(pb_utils, self.generation.counters)
        freeze_loaded_state()

    def turn(self, request):
        user_id = request_user_id(pb_utils, request, self.keys.current())
        query = validate_query(input_scalar(pb_utils, request, T.QUERY.name))
        service = input_service(pb_utils, request)
        item_ids = input_item_ids(pb_utils, request, T.ITEM_IDS.name, len(self.generation.catalog))
        facts = input_strings(pb_utils, request, T.PROFILE_FACTS.name)
        context = optional_user_context(pb_utils, request, user_id, self.keys.current())
        return ReplyTurn(service, detect_language(query), query, tuple(item_ids.tolist()), tuple(facts),
                         user_id=user_id, user_context=context)

    def execute(self, requests):
        responses = [None] * len(requests)
        turns = []
        for i, request in enumerate(requests):
            try:
                turns.append((i, self.turn(request)))
            except Exception as exc:  # noqa: BLE001 - a bad request is that request's error
                responses[i] = error_response(pb_utils, "generator", exc)
        try:
            replies = self.generation.generate_turns([t for _, t in turns])
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: each request gets the error
            replies = [exc] * len(turns)
        for (i, _), reply in zip(turns, replies):
            if isinstance(reply, Exception):
                responses[i] = error_response(pb_utils, "generator", reply)
            else:
                responses[i] = make_response(pb_utils, as_row({T.REPLY.name: utf8_array([reply])}))
        return responses

    def finalize(self):
        if getattr(self, "metrics", None) is not None:  # (None too when initialize failed before it)
            self.metrics.close()  # before the stub tears down, or it segfaults on its way out (custom_metrics.py)
