"""A stand-in for ``triton_python_backend_utils`` with just what our adapters use, so model.py files run in tests.

BLS calls (``InferenceRequest.exec``) are routed to adapter instances registered in ``MODELS``.
"""

from __future__ import annotations

import threading
import weakref

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
        self._changed = threading.Condition()

    def send(self, response=None, flags: int = 0) -> None:
        with self._changed:
            self.sent.append((response, flags))
            self._changed.notify_all()

    def finished(self, timeout_s: float = 120.0) -> list[tuple[InferenceResponse | None, int]]:
        """``sent`` once the final flag was sent (a decoupled model may send it after ``execute`` returned)."""
        with self._changed:
            if not self._changed.wait_for(
                    lambda: any(f & TRITONSERVER_RESPONSE_COMPLETE_FINAL for _, f in self.sent), timeout_s):
                raise TimeoutError("no final flag within the timeout")
            return list(self.sent)

    def responses(self, timeout_s: float = 120.0):
        """What a decoupled BLS caller iterates: each response as it is sent (possibly from another thread), then
        an empty one for a final flag sent alone, until the final flag."""
        seen = 0
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: len(self.sent) > seen, timeout_s):
                    raise TimeoutError("no response within the timeout")
                response, flags = self.sent[seen]
            seen += 1
            yield response if response is not None else InferenceResponse()
            if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                return


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

    def exec(self, decoupled: bool = False):
        if decoupled:  # the model answers through the request's sender, maybe after execute returned
            assert MODELS[self.model_name].execute([self.request]) is None
            return self.request.sender.responses()
        return MODELS[self.model_name].execute([self.request])[0]


def get_input_tensor_by_name(request: FakeRequest, name: str):
    return request.tensors.get(name)


def get_output_tensor_by_name(response: InferenceResponse, name: str):
    for tensor in response.output_tensors:
        if tensor.name() == name:
            return tensor
    return None


class MetricFamily:
    """Custom metrics: a metric's count is in ``METRIC_VALUES`` by (family name, labels); ``LIVE_FAMILIES`` holds the
    families not yet released (a family alive when the stub tears down crashes the real one)."""
    COUNTER = "counter"
    GAUGE = "gauge"

    def __init__(self, name: str, description: str, kind: str):
        self.name, self.description, self.kind = name, description, kind
        LIVE_FAMILIES.add(self)

    def Metric(self, labels: dict):  # noqa: N802 - the backend's spelling
        return Metric(self.name, labels)


class Metric:
    def __init__(self, family: str, labels: dict):
        self.key = (family, tuple(sorted(labels.items())))

    def increment(self, by: float) -> None:
        METRIC_VALUES[self.key] = METRIC_VALUES.get(self.key, 0) + by


LIVE_FAMILIES: weakref.WeakSet = weakref.WeakSet()
METRIC_VALUES: dict = {}
