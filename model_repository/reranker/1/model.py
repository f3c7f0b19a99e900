"""Triton adapter: candidates -> top_k ranked items with explanations (recllm.reranker, recllm.explanations)."""

import numpy as np
import triton_python_backend_utils as pb_utils

from recllm.pipeline import load_ranking_stage
from recllm.request_validation import parse_request
from recllm.serving.backend_adapter import artifact_layout, execute_each, input_array, input_scalar, session_constraints


class TritonPythonModel:
    def initialize(self, args):
        self.ranking = load_ranking_stage(artifact_layout())

    def handle(self, request):
        rec = parse_request(*(input_scalar(pb_utils, request, n) for n in ("USER_ID", "QUERY", "TOP_K")))
        rec = session_constraints(pb_utils, request, rec)
        service = input_scalar(pb_utils, request, "RESOLVED_SERVICE").decode("utf-8")
        candidate_ids = input_array(pb_utils, request, "CANDIDATE_ITEM_IDS").astype(np.int64).reshape(-1)
        candidate_scores = input_array(pb_utils, request, "CANDIDATE_SCORES").astype(np.float32).reshape(-1)
        ranking = self.ranking.rank(rec, service, candidate_ids, candidate_scores)
        return {name.upper(): array for name, array in self.ranking.item_arrays(ranking).items()}

    def execute(self, requests):
        return execute_each(pb_utils, "reranker", requests, self.handle)
