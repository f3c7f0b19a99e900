"""Triton adapter: QUERY text -> QUERY_EMBEDDING (recllm.rag.query_encoder); a dynamic batch is one encode call."""

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.rec_request import validate_query
from recllm.serving.backend_adapter import (
    artifact_layout, execute_together, enable_crash_traces, freeze_loaded_state, input_scalar,
)


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        self.encoder = QueryEncoder.load(artifact_layout(args).query_encoder_dir)
        freeze_loaded_state()

    def parse(self, request) -> str:
        return validate_query(input_scalar(pb_utils, request, T.QUERY.name))

    def encode(self, queries: list[str]) -> list[dict]:
        vectors = self.encoder.encode(queries).astype(np.float32)  # [B, D]
        return [{T.QUERY_EMBEDDING.name: vector} for vector in vectors]

    def execute(self, requests):
        return execute_together(pb_utils, "query_encoder", requests, self.parse, self.encode)
