"""The client library: typed calls over Triton's gRPC API for the ``recllm`` ensemble and ``recllm_chat`` stream.

``RecLLMClient`` is the trusted calling backend: it holds the keyring (or a token provider) and signs a short-lived
user token per call, so its methods take a user id while the server only ever sees the signed token.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recllm_proto import tensors as T
from recllm_proto.user_token import Keyring, load_keyring

ENSEMBLE_MODEL = T.ENSEMBLE_MODEL
CHAT_MODEL = T.CHAT_MODEL
RANK_MODEL = T.RANK_MODEL
ITEM_FIELDS = tuple(spec.client_name for spec in T.ITEM_OUTPUTS)


class RecLLMClientError(RuntimeError):
    """The server refused or failed a request; the message is the server's."""


@dataclass(frozen=True)
class RecItem:
    item_id: int
    name: str
    service: str
    price: float
    score: float
    explanation: str


@dataclass
class Recommendation:
    service: str
    items: list[RecItem]
    reply: str
    spelled_query: str = ""  # the query as the server read it: typos corrected to the catalog's words


@dataclass
class Ranked:
    """``recllm_rank``: the ranked items with their explanations, and the profile facts behind them; no reply."""

    service: str
    items: list[RecItem]
    profile_facts: list[str]
    spelled_query: str = ""  # the query as the server read it: typos corrected to the catalog's words


@dataclass
class ChatTurnResult:
    service: str = ""
    items: list[RecItem] = field(default_factory=list)
    reply: str = ""
    first_token_s: float | None = None  # time from send to the first text delta
    total_s: float = 0.0
    chunks: int = 0


def text_tensor(spec: T.TensorSpec, value: str | bytes, signature: T.StageSignature = T.CHAT) -> grpcclient.InferInput:
    shape = signature.wire_shape(spec)
    tensor = grpcclient.InferInput(spec.client_name, shape, spec.dtype)
    data = np.array([value.encode("utf-8") if isinstance(value, str) else value], dtype=np.object_)
    tensor.set_data_from_numpy(data.reshape(shape))
    return tensor


def int_tensor(spec: T.TensorSpec, value: int, signature: T.StageSignature = T.CHAT) -> grpcclient.InferInput:
    shape = signature.wire_shape(spec)
    tensor = grpcclient.InferInput(spec.client_name, shape, spec.dtype)
    tensor.set_data_from_numpy(np.array([value], dtype=np.int32).reshape(shape))
    return tensor


def decode(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def items_from(result) -> list[RecItem]:
    arrays = {name: result.as_numpy(name) for name in ITEM_FIELDS}
    ids, prices, scores = (arrays[spec.client_name] for spec in (T.ITEM_IDS, T.ITEM_PRICES, T.ITEM_SCORES))
    if ids is None:
        return []
    prices, scores = prices.reshape(-1), scores.reshape(-1)  # the ensembles answer one row: [1, K]
    names, services, why = (decode(arrays[spec.client_name])
                            for spec in (T.ITEM_NAMES, T.ITEM_SERVICES, T.ITEM_EXPLANATIONS))
    return [RecItem(int(i), names[k], services[k], float(prices[k]), float(scores[k]), why[k])
            for k, i in enumerate(ids.reshape(-1))]


def spelled_from(result) -> str:
    """The SPELLED_QUERY the ensembles return ("" from a server that does not)."""
    spelled = result.as_numpy(T.SPELLED_QUERY.client_name)
    return decode(spelled)[0] if spelled is not None else ""


TOKEN_TTL_S = 60.0  # long enough for a streamed turn, short enough that a leaked token soon stops working


def token_provider_for(keyring: Keyring | str | Path | None,
                       ttl_s: float = TOKEN_TTL_S) -> Callable[[str], str] | None:
    """user id -> a fresh signed token, from a keyring or the path of a keyring file."""
    if keyring is None:
        return None
    keys = keyring if isinstance(keyring, Keyring) else load_keyring(keyring)
    return lambda user_id: keys.sign(user_id, ttl_s=ttl_s)


class RecLLMClient:
    """``keyring`` (a ``Keyring`` or the path of its file) or ``token_provider`` (user id -> token) signs each call's
    user token; ``root_cert`` (PEM file) turns on TLS against a server started with ``recllm serve --tls``."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float = 30.0,
                 keyring: Keyring | str | Path | None = None, token_provider: Callable[[str], str] | None = None,
                 root_cert: str | Path | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self.token_provider = token_provider or token_provider_for(keyring)
        tls = {"ssl": True, "root_certificates": str(root_cert)} if root_cert else {}
        self.grpc = grpcclient.InferenceServerClient(url=url, **tls)

    def user_token(self, user_id: str) -> str:
        if self.token_provider is None:
            raise RecLLMClientError("no keyring or token provider: the server needs a signed user token per call")
        try:
            return self.token_provider(user_id)
        except ValueError as exc:
            raise RecLLMClientError(f"cannot sign a token for this user: {exc}") from None

    def close(self) -> None:
        self.grpc.close()

    def __enter__(self) -> "RecLLMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            return self.grpc.is_server_ready() and self.grpc.is_model_ready(ENSEMBLE_MODEL)
        except InferenceServerException:
            return False

    def ensemble_inputs(self, user_id, query, top_k, service, signature: T.StageSignature = T.CHAT
                        ) -> list[grpcclient.InferInput]:
        return [text_tensor(T.USER_TOKEN, self.user_token(user_id), signature), text_tensor(T.QUERY, query, signature),
                int_tensor(T.TOP_K, top_k, signature), text_tensor(T.SERVICE, service, signature)]

    def _infer(self, model: str, signature: T.StageSignature, user_id, query, top_k, service):
        # every output the model has (none named): a server older than an output (spelled_query) still answers
        try:
            return self.grpc.infer(model, self.ensemble_inputs(user_id, query, top_k, service, signature),
                                   client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise RecLLMClientError(exc.message() or str(exc)) from exc

    def recommend(self, user_id: str, query: str | bytes, top_k: int = 5, service: str = "") -> Recommendation:
        """One round trip through the ``recllm`` ensemble."""
        result = self._infer(ENSEMBLE_MODEL, T.ENSEMBLE, user_id, query, top_k, service)
        return Recommendation(decode(result.as_numpy(T.RESOLVED_SERVICE.client_name))[0], items_from(result),
                              decode(result.as_numpy(T.REPLY.client_name))[0], spelled_from(result))

    def rank(self, user_id: str, query: str | bytes, top_k: int = 5, service: str = "") -> Ranked:
        """One round trip through ``recllm_rank``: items, scores and explanations without generating a reply."""
        result = self._infer(RANK_MODEL, T.RANK, user_id, query, top_k, service)
        facts = result.as_numpy(T.PROFILE_FACTS.client_name)
        return Ranked(decode(result.as_numpy(T.RESOLVED_SERVICE.client_name))[0], items_from(result),
                      decode(facts) if facts is not None else [], spelled_from(result))

    def chat_stream(self, session_id: str, user_id: str, message: str | bytes, top_k: int = 5,
                    service: str = "") -> Iterator[tuple[str, object]]:
        """Stream one chat turn: yields ("items", (service, [RecItem])) then ("text", delta) chunks."""
        responses: queue.Queue = queue.Queue()
        inputs = [text_tensor(T.SESSION_ID, session_id)] + self.ensemble_inputs(user_id, message, top_k, service)
        try:
            self.grpc.start_stream(callback=lambda result, error: responses.put((result, error)))
        except InferenceServerException as exc:
            raise RecLLMClientError(exc.message() or str(exc)) from exc
        finished = False
        try:
            try:
                self.grpc.async_stream_infer(CHAT_MODEL, inputs, enable_empty_final_response=True)
            except InferenceServerException as exc:  # the stream broke before the request went out (server gone)
                raise RecLLMClientError(exc.message() or str(exc)) from exc
            yield from self._drain(responses)
            finished = True
        finally:
            # A timeout, an error or a consumer that stopped early cancels the turn instead of waiting it out.
            self.grpc.stop_stream(cancel_requests=not finished)

    def _drain(self, responses: queue.Queue) -> Iterator[tuple[str, object]]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                result, error = responses.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty as exc:
                raise RecLLMClientError(f"no response from {CHAT_MODEL} within {self.timeout_s:.0f} s") from exc
            if error is not None:
                raise RecLLMClientError(error.message() if hasattr(error, "message") else str(error))
            response = result.get_response()
            if result.as_numpy(T.ITEM_IDS.client_name) is not None:
                yield "items", (decode(result.as_numpy(T.RESOLVED_SERVICE.client_name))[0], items_from(result))
            if result.as_numpy(T.TEXT_DELTA.client_name) is not None:
                yield "text", decode(result.as_numpy(T.TEXT_DELTA.client_name))[0]
            final = response.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return

    def chat(self, session_id: str, user_id: str, message: str | bytes, top_k: int = 5, service: str = "",
             on_text: Callable[[str], None] | None = None) -> ChatTurnResult:
        """A whole streamed turn, with time to first token; ``on_text`` sees each delta as it arrives."""
        started = time.perf_counter()
        turn = ChatTurnResult()
        for kind, payload in self.chat_stream(session_id, user_id, message, top_k, service):
            turn.chunks += 1
            if kind == "items":
                turn.service, turn.items = payload
                continue
            if turn.first_token_s is None:
                turn.first_token_s = time.perf_counter() - started
            turn.reply += payload
            if on_text:
                on_text(payload)
        turn.total_s = time.perf_counter() - started
        return turn
