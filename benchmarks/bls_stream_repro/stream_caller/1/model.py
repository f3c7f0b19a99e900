"""The calling side of the decoupled-BLS repro (benchmarks/bls_stream_release.py), standing in for ``recllm_chat``:
reads a stream from ``stream_source`` through decoupled BLS, then runs ordinary Python (regex and small objects, as
the chat model's privacy filter does after a reply), and answers how many strings it read.

MODE 0 reads the stream with the plain loop of the Python backend's documentation; MODE 1 through
``recllm.serving.bls_stream.DecoupledBlsStreams``, as the product's models do."""

import faulthandler
import re
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

from recllm.serving.bls_stream import DecoupledBlsStreams

WORD = re.compile(r"\w+")
TEXT_AFTER = "слово word " * 40


def strings_in(response) -> int:
    tensor = pb_utils.get_output_tensor_by_name(response, "TEXT")
    return 0 if tensor is None else len(tensor.as_numpy())


def python_work() -> int:
    """What a model does next, in plain Python: allocates and frees many small objects."""
    total = 0
    for _ in range(30):
        words = [match.group(0) for match in WORD.finditer(TEXT_AFTER)]
        table = {str(i): (i, str(i) * 2) for i in range(100)}
        total += len(words) + len(table)
    return total


class TritonPythonModel:
    def initialize(self, args):
        faulthandler.enable(file=sys.stderr, all_threads=True)  # a crash leaves its Python stacks in the log
        self.streams = DecoupledBlsStreams()

    def read_stream(self, request, count, mode) -> int:
        bls = pb_utils.InferenceRequest(model_name="stream_source", requested_output_names=["TEXT"],
                                        inputs=[pb_utils.Tensor("N", np.array([count], dtype=np.int32))])
        if mode == 0:
            return sum(strings_in(response) for response in bls.exec(decoupled=True))
        return sum(strings_in(response) for response in self.streams.responses(bls, request))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            count = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy().reshape(-1)[0])
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy().reshape(-1)[0])
            strings = self.read_stream(request, count, mode)
            python_work()
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("STRINGS", np.array([strings], np.int32))]),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
