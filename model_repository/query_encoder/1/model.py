"""Triton adapter: QUERY text -> QUERY_EMBEDDING and SPELLED_QUERY (recllm.rag.query_encoder over the query with its
typos corrected to the catalog's words, recllm.catalog.spelling); a dynamic batch is one encode call. The ensembles'
later stages read SPELLED_QUERY in place of QUERY (ensemble/pipeline_graph.py)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.query_spelling import load_spelling, spelled_query
from recllm.serving.backend_adapter import (
    artifact_layout, execute_together, enable_crash_traces, freeze_loaded_state, input_scalar,
)
from recllm_proto.text_arrays import utf8_array


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout(args)
        self.encoder = QueryEncoder.load(layout.query_encoder_dir)
        self.spelling = load_spelling(layout)
        freeze_loaded_state()

    def parse(self, request) -> str:
        return spelled_query(self.spelling, input_scalar(pb_utils, request, T.QUERY.name))

    def encode(self, queries: list[str]) -> list[dict]:
        vectors = self.encoder.encode(queries).astype(np.float32)  # [B, D]
        return [{T.QUERY_EMBEDDING.name: vector, T.SPELLED_QUERY.name: utf8_array([query])}
                for vector, query in zip(vectors, queries)]

    def execute(self, requests):
        return execute_together(pb_utils, "query_encoder", requests, self.parse, self.encode)
