"""Triton adapter: user + query embedding -> candidate items, profile facts and the user's context read once
(recllm.rag.retriever, recllm.profile.user_context). A dynamic batch shares its FAISS searches (retrieve_many).

The user is the subject of the verified USER_TOKEN; the context goes out sealed with the stage key, so the
reranker can tell it came from here."""

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.pipeline import load_retriever
from recllm.rag.rec_request import parse_request, with_categories
from recllm.serving.backend_adapter import (
    artifact_layout, execute_together, enable_crash_traces, freeze_loaded_state, input_scalar, input_vector,
    optional_array, request_user_id, sealed_context, server_keyring, session_constraints,
)
from recllm_proto.text_arrays import utf8_array


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout(args)
        self.retriever = load_retriever(layout)
        self.keys = server_keyring(layout)
        self.embedding_dim = int(self.retriever.index.item_vectors.shape[1])
        freeze_loaded_state()

    def parse(self, request):
        user_id = request_user_id(pb_utils, request, self.keys.current())
        rec = parse_request(user_id, *(input_scalar(pb_utils, request, t.name) for t in (T.QUERY, T.TOP_K, T.SERVICE)))
        query_vector = input_vector(pb_utils, request, T.QUERY_EMBEDDING.name, self.embedding_dim)
        rec = self.retriever.check_categories(with_categories(session_constraints(pb_utils, request, rec),
                                                              optional_array(pb_utils, request, T.CATEGORY_IDS.name)))
        exclude = optional_array(pb_utils, request, T.EXCLUDE_ITEM_IDS.name)
        exclude_ids = frozenset(int(i) for i in exclude.reshape(-1)) if exclude is not None else frozenset()
        return rec, query_vector, exclude_ids

    def retrieve(self, parsed):
        requests, vectors, excludes = zip(*parsed)
        retrievals = self.retriever.retrieve_many(requests, np.stack(vectors), excludes)
        return [self.outputs(rec, retrieval) for rec, retrieval in zip(requests, retrievals)]

    def outputs(self, rec, retrieval):
        return {
            T.CANDIDATE_ITEM_IDS.name: retrieval.candidate_ids.astype(np.int64),
            T.CANDIDATE_SCORES.name: retrieval.candidate_scores.astype(np.float32),
            T.RESOLVED_SERVICE.name: utf8_array([retrieval.service]),
            T.PROFILE_FACTS.name: utf8_array([f.text(rec.language) for f, _ in retrieval.fragments]),
            T.USER_CONTEXT.name: sealed_context(self.keys.current(), retrieval.context),
        }

    def execute(self, requests):
        return execute_together(pb_utils, "retriever", requests, self.parse, self.retrieve)
