"""Glue shared by the thin ``model.py`` adapters in ``model_repository/``.

The Triton Python backend module (``triton_python_backend_utils``) exists only inside the server, so it is
passed in rather than imported: the same functions run under a faked module in the unit tests. Each request is
handled on its own and its exception becomes that request's error response; the server and the other requests in
the batch are unaffected.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

import faiss
import numpy as np
import torch
from recllm_proto import tensors

from recllm.artifacts import ARTIFACT_DIR_ENV, ArtifactLayout
from recllm_proto.text_arrays import decode_utf8_array
from recllm.profile.user_context import UserContext, UserContextError
from recllm.rag.rec_request import RecRequest, RequestError, with_session_constraints

log = logging.getLogger(__name__)

# One intra-op thread (torch and FAISS/OpenMP) per model process: the stages run in separate processes on a
# 2-core machine, and oversubscribed threads spin (a flat FAISS search took 18 ms with default threads, 1 ms with one).
TORCH_THREADS = 1
_threads_set = threading.Lock()


def artifact_layout() -> ArtifactLayout:
    """The artifact build the server was started on (set by ``recllm serve``)."""
    root = os.environ.get(ARTIFACT_DIR_ENV)
    if not root:
        raise RuntimeError(f"{ARTIFACT_DIR_ENV} is not set: start the server with `recllm serve`")
    layout = ArtifactLayout(Path(root))
    layout.require_built()
    with _threads_set:
        torch.set_num_threads(TORCH_THREADS)
        faiss.omp_set_num_threads(TORCH_THREADS)
    return layout


def input_array(pb_utils, request, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"missing input tensor {name}")
    return tensor.as_numpy()


def optional_array(pb_utils, request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def session_constraints(pb_utils, request, parsed: RecRequest) -> RecRequest:
    """The chat model's optional MAX_PRICE / LANGUAGE inputs applied over the parsed request."""
    language = optional_array(pb_utils, request, tensors.LANGUAGE.name)
    return with_session_constraints(parsed, optional_array(pb_utils, request, tensors.MAX_PRICE.name),
                                    None if language is None else language.reshape(-1)[0])


def user_context_input(pb_utils, request, user_id: str) -> UserContext:
    """The USER_CONTEXT the retriever read for this request's user; another user's context is refused."""
    try:
        return UserContext.from_bytes(bytes(input_scalar(pb_utils, request, tensors.USER_CONTEXT.name)), user_id)
    except UserContextError as exc:
        raise RequestError(str(exc)) from exc


def input_scalar(pb_utils, request, name: str):
    """The single element of a [1]-shaped input (bytes for strings)."""
    array = input_array(pb_utils, request, name)
    if array.size != 1:
        raise RequestError(f"input {name} must hold exactly one element, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def input_strings(pb_utils, request, name: str) -> list[str]:
    return decode_utf8_array(input_array(pb_utils, request, name))


def make_response(pb_utils, outputs: dict[str, np.ndarray]):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()])


def error_response(pb_utils, model_name: str, exc: BaseException):
    if isinstance(exc, RequestError):
        message = str(exc)
    else:
        log.exception("%s failed on a request", model_name)
        message = f"{model_name}: internal error ({type(exc).__name__}: {exc})"
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


def execute_each(pb_utils, model_name: str, requests, handle_one: Callable[[object], dict[str, np.ndarray]]) -> list:
    """Run ``handle_one`` per request; a failing request gets its own error response."""
    responses = []
    for request in requests:
        try:
            responses.append(make_response(pb_utils, handle_one(request)))
        except Exception as exc:  # noqa: BLE001 - every failure must become this request's error
            responses.append(error_response(pb_utils, model_name, exc))
    return responses
