"""A stand-in for ``triton_python_backend_utils`` with just what our adapters use, so model.py files run in tests.

BLS calls (``InferenceRequest.exec``) are routed to adapter instances registered in ``MODELS``.
"""

from __future__ import annotations

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
MODELS: dict = {}


class TritonError:
    def __init__(self, message: str):
        self._message = message

    def message(self) -> str:
        return self._message


class Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors = list(output_tensors or [])
        self._error = error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error

    def outputs(self) -> dict[str, np.ndarray]:
        return {t.name(): t.as_numpy() for t in self.output_tensors}


class ResponseSender:
    def __init__(self):
        self.sent: list[tuple[InferenceResponse | None, int]] = []

    def send(self, response=None, flags: int = 0) -> None:
        self.sent.append((response, flags))


class FakeRequest:
    def __init__(self, tensors: dict[str, np.ndarray]):
        self.tensors = {name: Tensor(name, array) for name, array in tensors.items()}
        self.sender = ResponseSender()

    def get_response_sender(self) -> ResponseSender:
        return self.sender

    def is_cancelled(self) -> bool:
        return False


class InferenceRequest:
    def __init__(self, model_name: str, requested_output_names, inputs):
        self.model_name = model_name
        self.request = FakeRequest({t.name(): t.as_numpy() for t in inputs})

    def exec(self) -> InferenceResponse:
        return MODELS[self.model_name].execute([self.request])[0]


def get_input_tensor_by_name(request: FakeRequest, name: str):
    return request.tensors.get(name)


def get_output_tensor_by_name(response: InferenceResponse, name: str):
    for tensor in response.output_tensors:
        if tensor.name() == name:
            return tensor
    return None
