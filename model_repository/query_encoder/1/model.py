"""Triton adapter: QUERY text -> QUERY_EMBEDDING (recllm.rag.query_encoder)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.rec_request import validate_query
from recllm.serving.backend_adapter import artifact_layout, execute_each, input_scalar


class TritonPythonModel:
    def initialize(self, args):
        self.encoder = QueryEncoder.load(artifact_layout().query_encoder_dir)

    def handle(self, request):
        query = validate_query(input_scalar(pb_utils, request, T.QUERY.name))
        return {T.QUERY_EMBEDDING.name: self.encoder.encode([query])[0].astype(np.float32)}

    def execute(self, requests):
        return execute_each(pb_utils, "query_encoder", requests, self.handle)
