"""Triton adapter: candidates + the retriever's user context -> top_k ranked items with explanations
(recllm.rag.reranker, recllm.explanation.item_explanations).

The user is the subject of the verified USER_TOKEN; the context must carry the retriever's seal and be that user's."""

import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.pipeline import load_ranking_stage
from recllm.rag.rec_request import parse_request
from recllm.serving.backend_adapter import (
    artifact_layout, execute_each, enable_crash_traces, freeze_loaded_state, input_item_ids, input_scalar,
    input_scores, input_service, request_user_id, server_keyring, session_constraints, user_context_input,
)


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout(args)
        self.ranking = load_ranking_stage(layout)
        self.keys = server_keyring(layout)
        freeze_loaded_state()

    def handle(self, request):
        keyring = self.keys.current()
        user_id = request_user_id(pb_utils, request, keyring)
        rec = parse_request(user_id, *(input_scalar(pb_utils, request, t.name) for t in (T.QUERY, T.TOP_K)))
        rec = session_constraints(pb_utils, request, rec)
        service = input_service(pb_utils, request)
        candidate_ids = input_item_ids(pb_utils, request, T.CANDIDATE_ITEM_IDS.name, len(self.ranking.catalog))
        candidate_scores = input_scores(pb_utils, request, T.CANDIDATE_SCORES.name, candidate_ids.size)
        context = user_context_input(pb_utils, request, rec.user_id, keyring)
        return self.ranking.item_arrays(self.ranking.rank(rec, service, candidate_ids, candidate_scores, context))

    def execute(self, requests):
        return execute_each(pb_utils, "reranker", requests, self.handle)
