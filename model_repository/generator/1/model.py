"""Triton adapter: ranked items + profile facts -> reply text (recllm.generator, Qwen2 architecture)."""

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.pipeline import load_generation_stage
from recllm.rag.rec_request import detect_language, validate_query
from recllm.serving.backend_adapter import artifact_layout, execute_each, input_array, input_scalar, input_strings
from recllm_proto.text_arrays import utf8_array


class TritonPythonModel:
    def initialize(self, args):
        self.generation = load_generation_stage(artifact_layout())

    def handle(self, request):
        query = validate_query(input_scalar(pb_utils, request, T.QUERY.name))
        service = input_scalar(pb_utils, request, T.RESOLVED_SERVICE.name).decode("utf-8")
        item_ids = input_array(pb_utils, request, T.ITEM_IDS.name).astype(np.int64).reshape(-1)
        facts = input_strings(pb_utils, request, T.PROFILE_FACTS.name)
        reply = self.generation.generate(service, detect_language(query), query, item_ids.tolist(), facts)
        return {T.REPLY.name: utf8_array([reply])}

    def execute(self, requests):
        return execute_each(pb_utils, "generator", requests, self.handle)
