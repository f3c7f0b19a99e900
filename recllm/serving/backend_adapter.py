"""Glue shared by the thin ``model.py`` adapters in ``model_repository/``.

The Triton Python backend module (``triton_python_backend_utils``) exists only inside the server, so it is
passed in rather than imported: the same functions run under a faked module in the unit tests. Each request is
handled on its own and its exception becomes that request's error response; the server and the other requests in
the batch are unaffected.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Callable, TypeVar

import faiss
import numpy as np
import torch
from recllm_proto import tensors

from recllm.artifacts import ARTIFACT_DIR_ENV, KEYRING_ENV, ArtifactLayout
from recllm.catalog.product_catalog import SERVICES
from recllm_proto.text_arrays import decode_utf8_array
from recllm_proto.user_token import Keyring, KeyringFile, TokenError
from recllm.profile.storage import PROFILE_URL_ENV
from recllm.profile.user_context import DecodedBodies, UserContext, UserContextError
from recllm.rag.rec_request import LANGUAGES, RecRequest, RequestError, decode_text, with_session_constraints

log = logging.getLogger(__name__)
Parsed = TypeVar("Parsed")

# One intra-op thread (torch and FAISS/OpenMP) per model process by default: the stages run in separate processes
# on a 2-core machine, and oversubscribed threads spin (a flat FAISS search took 18 ms with default threads, 1 ms
# with one). A generated config may say otherwise (``intra_op_threads``, ensemble/pipeline_graph.py ServingProfile).
TORCH_THREADS = 1
_threads_set = threading.Lock()


def positive_int_parameter(args: dict | None, name: str, default: int, minimum: int = 1) -> int:
    """Parameter ``name`` of the model config Triton passes to ``initialize`` (``default`` when the config or the
    parameter is absent); anything but an integer >= ``minimum`` (a positive one by default) is a clear error."""
    parameters = json.loads(args["model_config"]).get("parameters", {}) if args and "model_config" in args else {}
    value = parameters.get(name, {}).get("string_value", str(default))
    if not value.isdigit() or int(value) < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"model config parameter {name} must be {kind}, got {value!r}")
    return int(value)


def intra_op_threads(args: dict | None) -> int:
    """``intra_op_threads`` from the model config (``TORCH_THREADS`` if unset)."""
    return positive_int_parameter(args, "intra_op_threads", TORCH_THREADS)


def artifact_layout(args: dict | None = None) -> ArtifactLayout:
    """The artifact build the server was started on (set by ``recllm serve``); sets this process's threads."""
    root = os.environ.get(ARTIFACT_DIR_ENV)
    if not root:
        raise RuntimeError(f"{ARTIFACT_DIR_ENV} is not set: start the server with `recllm serve`")
    layout = ArtifactLayout(Path(root))
    # recllm serve --profile-url: the profile is read from that store, the folder's profile.sqlite is not needed
    layout.require_built(needs_profile_file=not os.environ.get(PROFILE_URL_ENV, "").strip())
    threads = intra_op_threads(args)
    with _threads_set:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    return layout


def enable_crash_traces() -> None:
    """Called first in every model's ``initialize``: a native crash of the stub (a segfault, an abort) writes every
    Python thread's stack to the stub's stderr, which is the server's log, before the process dies. The chat stub
    has segfaulted inside libpython under the soak's load a few times without a trace of where."""
    for stream in (sys.stderr, sys.__stderr__):  # a replaced stderr may have no file descriptor
        try:
            faulthandler.enable(file=stream, all_threads=True)
            return
        except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError and a ValueError
            continue


def freeze_loaded_state() -> int:
    """Called at the end of ``initialize``: what the model loaded (catalog items, indexes, tensors: ~240k objects in
    the retriever on the default build) goes to the collector's permanent generation, so the collections that
    per-request garbage triggers no longer walk it (each full one did, on some request, in that request's time).
    Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


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


def server_keyring(layout: ArtifactLayout) -> KeyringFile:
    """The keyring this server verifies tokens and seals stage values with (``RECLLM_KEYRING``, else the build's
    default path); re-read when the file changes, so a key rotation needs no restart."""
    path = Path(os.environ.get(KEYRING_ENV) or layout.keyring)
    if not path.exists():
        raise RuntimeError(f"no keyring at {path}: start the server with `recllm serve`, which creates it")
    keys = KeyringFile(path)
    if not keys.current().stage_keys:
        raise RuntimeError(f"the keyring at {path} has no stage keys: it is a backend's copy, not the server's")
    return keys


def verified_user_id(keyring: Keyring, token) -> str:
    """The user id of a valid user token; a refused token is a request error that names the reason only."""
    try:
        return keyring.verify(bytes(token) if not isinstance(token, str) else token).subject
    except TokenError as exc:
        raise RequestError(str(exc)) from None


def request_user_id(pb_utils, request, keyring: Keyring) -> str:
    """The verified user of a request (its USER_TOKEN input)."""
    return verified_user_id(keyring, input_scalar(pb_utils, request, tensors.USER_TOKEN.name))


def sealed_context(keyring: Keyring, context: UserContext) -> np.ndarray:
    """The USER_CONTEXT tensor: the context sealed with the stage key, for the reranker alone to open."""
    return np.array([keyring.seal(context.to_bytes())], dtype=np.object_)


# This process's decoded context bodies: a user at the same profile version sends the same body on every request.
DECODED_CONTEXT_BODIES = DecodedBodies()


def user_context_input(pb_utils, request, user_id: str, keyring: Keyring) -> UserContext:
    """The USER_CONTEXT the retriever read and sealed for this request's user; an unsealed, forged, expired or
    another user's context is refused."""
    try:
        data = keyring.unseal(bytes(input_scalar(pb_utils, request, tensors.USER_CONTEXT.name)))
        return UserContext.from_bytes(data, user_id, DECODED_CONTEXT_BODIES)
    except (TokenError, UserContextError) as exc:
        raise RequestError(str(exc)) from None


def optional_user_context(pb_utils, request, user_id: str, keyring: Keyring) -> UserContext | None:
    """The generator's optional USER_CONTEXT (the retriever's sealed read, passed on by the ensembles and the chat
    model), checked like the reranker's; None when the caller sent none (the user layers then read the profile)."""
    if pb_utils.get_input_tensor_by_name(request, tensors.USER_CONTEXT.name) is None:
        return None
    return user_context_input(pb_utils, request, user_id, keyring)


def input_scalar(pb_utils, request, name: str):
    """The single element of a [1]-shaped input (bytes for strings)."""
    array = input_array(pb_utils, request, name)
    if array.size != 1:
        raise RequestError(f"input {name} must hold exactly one element, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def input_strings(pb_utils, request, name: str) -> list[str]:
    """Every string of an input; invalid UTF-8 is a request error naming the input."""
    try:
        return decode_utf8_array(input_array(pb_utils, request, name))
    except UnicodeDecodeError as exc:
        raise RequestError(f"input {name} is not valid UTF-8 (byte {exc.start})") from None


def input_text(pb_utils, request, name: str) -> str:
    """The text of a [1]-shaped string input; invalid UTF-8 is a request error naming the input."""
    return decode_text(name, input_scalar(pb_utils, request, name))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def input_service(pb_utils, request, name: str = tensors.RESOLVED_SERVICE.name) -> str:
    """A stage input naming the service the request was resolved to: one of the known services, never empty."""
    service = input_text(pb_utils, request, name)
    if service not in SERVICES:
        raise RequestError(f"{name} must be one of {', '.join(SERVICES)}, got {_shown(service)}")
    return service


def checked_language(name: str, language: str) -> str:
    if language not in LANGUAGES:
        raise RequestError(f"{name} must be one of {', '.join(LANGUAGES)}, got {_shown(language)}")
    return language


def input_item_ids(pb_utils, request, name: str, num_items: int) -> np.ndarray:
    """An input of catalog item ids ([K] int64): every id must name a catalog item (0..num_items-1)."""
    ids = input_array(pb_utils, request, name).astype(np.int64).reshape(-1)
    unknown = ids[(ids < 0) | (ids >= num_items)]
    if unknown.size:
        raise RequestError(f"input {name} has ids that name no catalog item: {unknown[:3].tolist()} "
                           f"(valid ids are 0..{num_items - 1})")
    return ids


def finite_floats(pb_utils, request, name: str, size: int, expected: str) -> np.ndarray:
    """A float input of exactly ``size`` finite values (``expected`` words the size in the error)."""
    values = input_array(pb_utils, request, name).astype(np.float32).reshape(-1)
    if values.size != size:
        raise RequestError(f"input {name} must hold {expected}, got {values.size}")
    if not np.isfinite(values).all():
        raise RequestError(f"input {name} holds NaN or infinite values")
    return values


def input_scores(pb_utils, request, name: str, length: int) -> np.ndarray:
    """A float input with one finite value per item (``length``)."""
    return finite_floats(pb_utils, request, name, length, f"one value per item ({length})")


def input_vector(pb_utils, request, name: str, dim: int) -> np.ndarray:
    """A float vector input of exactly ``dim`` finite values."""
    return finite_floats(pb_utils, request, name, dim, f"{dim} values")


def make_response(pb_utils, outputs: dict[str, np.ndarray]):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()])


def error_response(pb_utils, model_name: str, exc: BaseException):
    if isinstance(exc, RequestError):
        message = str(exc)
    else:
        log.exception("%s failed on a request", model_name)
        message = f"{model_name}: internal error ({type(exc).__name__}: {exc})"
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


def as_row(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One request's outputs of a batched model: each array gets the leading batch dim of its one row."""
    return {name: np.asarray(array)[None, ...] for name, array in outputs.items()}


def execute_each(pb_utils, model_name: str, requests, handle_one: Callable[[object], dict[str, np.ndarray]],
                 batched: bool = True) -> list:
    """Run ``handle_one`` per request; a failing request gets its own error response. ``batched``: the model has
    ``max_batch_size > 0``, so each response carries its request's one row ([1, *dims])."""
    responses = []
    for request in requests:
        try:
            outputs = handle_one(request)
            responses.append(make_response(pb_utils, as_row(outputs) if batched else outputs))
        except Exception as exc:  # noqa: BLE001 - every failure must become this request's error
            responses.append(error_response(pb_utils, model_name, exc))
    return responses


def execute_together(pb_utils, model_name: str, requests, parse_one: Callable[[object], Parsed],
                     run_many: Callable[[list[Parsed]], list[dict[str, np.ndarray]]]) -> list:
    """Requests that Triton batched into one ``execute`` computed in one call, each answered with its own row.

    ``parse_one`` reads and validates one request (its error is that request's alone); ``run_many`` computes all
    parsed requests at once and returns their outputs in order. Should the joint call fail, each request is run
    alone, so an error still reaches only the request that causes it."""
    responses: list = [None] * len(requests)
    parsed: dict[int, Parsed] = {}
    for i, request in enumerate(requests):
        try:
            parsed[i] = parse_one(request)
        except Exception as exc:  # noqa: BLE001 - every failure must become this request's error
            responses[i] = error_response(pb_utils, model_name, exc)
    try:
        joint = dict(zip(parsed, run_many(list(parsed.values())))) if parsed else {}
    except Exception:  # noqa: BLE001 - fall back to one call per request to find whose input fails
        log.warning("%s: joint call over %d requests failed; running them one by one", model_name, len(parsed))
        joint = {}
    for i, item in parsed.items():
        try:
            outputs = joint[i] if i in joint else run_many([item])[0]
            responses[i] = make_response(pb_utils, as_row(outputs))
        except Exception as exc:  # noqa: BLE001
            responses[i] = error_response(pb_utils, model_name, exc)
    return responses
