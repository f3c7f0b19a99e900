"""Triton adapter: user + query embedding -> candidate items and profile facts (recllm.retriever)."""

import numpy as np
import triton_python_backend_utils as pb_utils

from recllm.pipeline import load_retriever
from recllm.request_validation import parse_request
from recllm.text_arrays import utf8_array
from recllm.serving.backend_adapter import (
    artifact_layout, execute_each, input_array, input_scalar, optional_array, session_constraints,
)


class TritonPythonModel:
    def initialize(self, args):
        self.retriever = load_retriever(artifact_layout())

    def handle(self, request):
        rec = parse_request(*(input_scalar(pb_utils, request, n) for n in ("USER_ID", "QUERY", "TOP_K", "SERVICE")))
        query_vector = input_array(pb_utils, request, "QUERY_EMBEDDING").astype(np.float32).reshape(-1)
        rec = session_constraints(pb_utils, request, rec)
        exclude = optional_array(pb_utils, request, "EXCLUDE_ITEM_IDS")
        exclude_ids = frozenset(int(i) for i in exclude.reshape(-1)) if exclude is not None else frozenset()
        retrieval = self.retriever.retrieve(rec, query_vector, exclude_ids)
        return {
            "CANDIDATE_ITEM_IDS": retrieval.candidate_ids.astype(np.int64),
            "CANDIDATE_SCORES": retrieval.candidate_scores.astype(np.float32),
            "RESOLVED_SERVICE": utf8_array([retrieval.service]),
            "PROFILE_FACTS": utf8_array([f.text(rec.language) for f, _ in retrieval.fragments]),
        }

    def execute(self, requests):
        return execute_each(pb_utils, "retriever", requests, self.handle)
