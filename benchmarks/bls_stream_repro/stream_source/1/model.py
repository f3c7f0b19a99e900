"""The streaming side of the decoupled-BLS repro (benchmarks/bls_stream_release.py): for a request with N, N
responses of 32 strings each (a string tensor: the caller's stub holds it as an object array of Python bytes), then
the final flag. Stands in for ``generator_stream``."""

import numpy as np
import triton_python_backend_utils as pb_utils

STRINGS_PER_RESPONSE = 32


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            count = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy().reshape(-1)[0])
            for step in range(count):
                strings = np.array([f"delta {step}.{i}".encode() for i in range(STRINGS_PER_RESPONSE)], np.object_)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TEXT", strings)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
