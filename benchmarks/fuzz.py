"""Fuzz the live product: seeded malformed requests to every Triton model and every profile-service RPC.

    .venv/bin/python -m benchmarks.fuzz --artifact-dir /tmp/fuzz_art --requests 10000 --seed 0

Starts a real tritonserver (``TritonServer``) and the profile service (``ProfileServer``) on a built artifact folder,
records one good request per model and RPC, then sends malformed requests in batches. Each malformed request is
built from that model's good request with one thing broken: a missing input, a wrong dtype or shape, an oversized or
inconsistent batch, an unexpected input, an unknown model or version, a tensor whose bytes do not match its shape,
empty / huge / binary / invalid-UTF-8 strings, NaN / inf, negative and huge top_k, unknown services, bad / expired /
forged / tampered tokens, forged or expired stage contexts, and for the profile service no / bad / another user's
tokens, malformed user ids, invalid events in ingest streams, undecodable messages, unknown methods and services.
Streams that disconnect mid-turn (chat, generator_stream, ingest) are sent between them.

Checks: every malformed request is answered with an error (a success is a finding, with its case), no request hangs,
after every batch tritonserver's process is alive, the server and all eight models are ready and the profile service
is healthy, and each model's good request gives the same answer as before fuzzing. ``benchmarks/results/fuzz.md``
gets the counts per model and per class. ``tests/integration/test_fuzz.py`` runs a small seeded slice.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import random
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recllm_proto import profile_pb2 as pb
from recllm_proto import tensors as T
from recllm_proto.user_token import Keyring, SigningKey, bearer_metadata, load_keyring

GOOD_QUERY = "что приготовить на ужин, чтобы было полезно?"
GOOD_SERVICE = "samokat"
TRITON_MODELS = ("query_encoder", "retriever", "reranker", "generator", "generator_stream", "recllm", "recllm_rank",
                 "recllm_chat")
PROFILE_RPCS = ("GetProfile", "Forget", "IngestEvents", "raw")
PROFILE_SERVICE = "/recllm.profile.v1.ProfileService/"
STREAM_MODELS = ("generator_stream", "recllm_chat")
MAX_BATCH = {"query_encoder": 32, "retriever": 32, "reranker": 32, "generator": 8, "recllm": 8, "recllm_rank": 32}
RESULTS = Path(__file__).resolve().parent / "results"
CASE_TIMEOUT_S = 120.0


# --- tokens an attacker or a broken client may send -------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def swap_part(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def bad_tokens(keys: Keyring, user_id: str, other_user: str, rng: random.Random) -> dict[str, bytes]:
    """Tokens that must be refused for ``user_id``, by kind (bytes as they go on the wire)."""
    real_kid = keys.token_keys[-1].kid
    own = keys.sign(user_id, ttl_s=300)
    collision = Keyring((SigningKey(real_kid, rng.randbytes(32)),))  # the server's key id, the attacker's secret
    tokens = {
        "empty": "",
        "bare_user_id": user_id,
        "expired": keys.sign(user_id, ttl_s=1, now=time.time() - 3600),
        "forged_unknown_key": Keyring((SigningKey(f"k{rng.randrange(10**9)}", rng.randbytes(32)),)).sign(user_id),
        "forged_key_id_collision": collision.sign(user_id),
        "tampered_subject": swap_part(own, 3, _b64(other_user.encode())),
        "tampered_scope_admin": swap_part(own, 2, "admin"),
        "tampered_expiry": swap_part(own, 4, str(int(time.time()) + 10**6)),
        "scope_service": keys.sign(user_id, ttl_s=300, scope="service"),
        "truncated": own[: rng.randrange(1, len(own) - 1)],
        "version_v2": "v2" + own[2:],
        "huge": own + "A" * rng.randrange(1_000, 50_000),
        "bad_signature_chars": own[:-4] + "!!!!",
    }
    wire = {kind: token.encode() for kind, token in tokens.items()}
    wire["invalid_utf8"] = own.encode()[:10] + b"\xff\xfe" + own.encode()[12:]
    wire["non_ascii"] = own.replace(".", "．", 1).encode("utf-8")
    return wire


# --- malformed values per input (each must be refused where the input is read) ------------------------------------

def bad_texts(rng: random.Random) -> dict[str, bytes]:
    huge_n = rng.choice((2_001, 10_000, 100_000, 300_000))
    return {
        "empty": b"",
        "whitespace": b" \t\n  ",
        "control_chars": bytes(rng.choice(range(1, 9)) for _ in range(rng.randrange(1, 40))),
        "invalid_utf8": "ужин".encode()[:3] + b"\xff" + rng.randbytes(rng.randrange(0, 20)),
        "binary": b"\x00\xff" + rng.randbytes(rng.randrange(1, 200)) + b"\xc3",
        "huge": ("а" * huge_n).encode(),
    }


def text_tensor(value: bytes, rows: int = 1, batched: bool = True) -> np.ndarray:
    return np.array([[value]] * rows if batched else [value], dtype=np.object_)


@dataclass
class Request:
    """One Triton request: model, inputs {name: (datatype, array)}, options."""

    model: str
    inputs: dict[str, tuple[str, np.ndarray]]
    version: str = ""
    stream: bool = False
    disconnect_after: int | None = None     # stream: cancel after this many responses (a disconnect mid-turn)
    shape_override: dict[str, list[int]] = field(default_factory=dict)  # declared shape != data (byte-size check)


@dataclass
class ProfileCall:
    """One profile-service call; ``events`` for IngestEvents (each must get a rejected ack)."""

    rpc: str
    message: object = None
    raw: bytes | None = None
    path: str = ""
    metadata: tuple = ()
    events: list = field(default_factory=list)
    cancel_after: int | None = None


@dataclass
class Case:
    target: str          # a Triton model, or profile.<RPC>
    klass: str           # what is broken
    label: str           # the input or detail
    make: Callable       # (Base) -> Request | ProfileCall
    requests: int = 1    # malformed requests this case counts for (events of one ingest stream)
    expect_error: bool = True  # False: a disconnect, which must only be survived


@dataclass
class Outcome:
    errors: int = 0
    successes: int = 0
    timeouts: int = 0
    internal: int = 0
    messages: list[str] = field(default_factory=list)
    leak_text: str = ""   # everything the response carried (for isolation checks)


# --- the good requests the cases are made from ------------------------------------------------------------------

class Base:
    """Good inputs for every model for one warm user, refreshed per batch (tokens and sealed contexts expire)."""

    def __init__(self, client: grpcclient.InferenceServerClient, keys: Keyring, user_id: str, other_user: str,
                 query: str = GOOD_QUERY, service: str = GOOD_SERVICE):
        self.client, self.keys, self.user_id, self.other_user = client, keys, user_id, other_user
        self.query, self.service = query, service
        self.refresh()

    def token(self, user_id: str | None = None) -> bytes:
        return self.keys.sign(user_id or self.user_id, ttl_s=600).encode()

    def refresh(self) -> None:
        q = text_tensor(self.query.encode())
        self.embedding = self.client.infer("query_encoder", _inputs({"QUERY": ("BYTES", q)})).as_numpy(
            "QUERY_EMBEDDING").astype(np.float32)
        self.retrieval = self.retrieve(self.user_id)
        self.other_context = self.retrieve(self.other_user)["USER_CONTEXT"]
        ranked = self.client.infer("reranker", _inputs(self.reranker_inputs()))
        self.item_ids = ranked.as_numpy("ITEM_IDS").astype(np.int64)

    def retrieve(self, user_id: str) -> dict[str, np.ndarray]:
        result = self.client.infer("retriever", _inputs(self.retriever_inputs(user_id)))
        return {name: result.as_numpy(name) for name in
                ("CANDIDATE_ITEM_IDS", "CANDIDATE_SCORES", "RESOLVED_SERVICE", "PROFILE_FACTS", "USER_CONTEXT")}

    def retriever_inputs(self, user_id: str | None = None) -> dict:
        return {"USER_TOKEN": ("BYTES", text_tensor(self.token(user_id))),
                "QUERY": ("BYTES", text_tensor(self.query.encode())),
                "TOP_K": ("INT32", np.array([[5]], np.int32)),
                "SERVICE": ("BYTES", text_tensor(self.service.encode())),
                "QUERY_EMBEDDING": ("FP32", self.embedding)}

    def reranker_inputs(self) -> dict:
        r = self.retrieval
        return {"USER_TOKEN": ("BYTES", text_tensor(self.token())),
                "QUERY": ("BYTES", text_tensor(self.query.encode())),
                "TOP_K": ("INT32", np.array([[5]], np.int32)),
                "RESOLVED_SERVICE": ("BYTES", r["RESOLVED_SERVICE"].astype(np.object_)),
                "CANDIDATE_ITEM_IDS": ("INT64", r["CANDIDATE_ITEM_IDS"].astype(np.int64)),
                "CANDIDATE_SCORES": ("FP32", r["CANDIDATE_SCORES"].astype(np.float32)),
                "USER_CONTEXT": ("BYTES", r["USER_CONTEXT"].astype(np.object_))}

    def generator_inputs(self, batched: bool = True) -> dict:
        facts = self.retrieval["PROFILE_FACTS"].astype(np.object_)
        ids = self.item_ids
        out = {"USER_TOKEN": ("BYTES", text_tensor(self.token(), batched=batched)),
               "QUERY": ("BYTES", text_tensor(self.query.encode(), batched=batched)),
               "RESOLVED_SERVICE": ("BYTES", text_tensor(self.service.encode(), batched=batched)),
               "ITEM_IDS": ("INT64", ids if batched else ids.reshape(-1)),
               "PROFILE_FACTS": ("BYTES", facts if batched else facts.reshape(-1))}
        return out

    def ensemble_inputs(self) -> dict:
        return {"user_token": ("BYTES", text_tensor(self.token())),
                "query": ("BYTES", text_tensor(self.query.encode())),
                "top_k": ("INT32", np.array([[5]], np.int32)),
                "service": ("BYTES", text_tensor(self.service.encode()))}

    def chat_inputs(self, session_id: str) -> dict:
        return {"session_id": ("BYTES", text_tensor(session_id.encode(), batched=False)),
                "user_token": ("BYTES", text_tensor(self.token(), batched=False)),
                "query": ("BYTES", text_tensor(self.query.encode(), batched=False)),
                "top_k": ("INT32", np.array([5], np.int32)),
                "service": ("BYTES", text_tensor(self.service.encode(), batched=False))}

    def good(self, model: str, session: str = "fuzz-good") -> Request:
        if model == "query_encoder":
            return Request(model, {"QUERY": ("BYTES", text_tensor(self.query.encode()))})
        if model == "retriever":
            return Request(model, self.retriever_inputs())
        if model == "reranker":
            return Request(model, self.reranker_inputs())
        if model == "generator":
            return Request(model, self.generator_inputs())
        if model == "generator_stream":
            return Request(model, self.generator_inputs(batched=False), stream=True)
        if model in ("recllm", "recllm_rank"):
            return Request(model, self.ensemble_inputs())
        if model == "recllm_chat":
            return Request(model, self.chat_inputs(session), stream=True)
        raise ValueError(model)


def _inputs(tensors: dict[str, tuple[str, np.ndarray]], shape_override: dict | None = None
            ) -> list[grpcclient.InferInput]:
    inputs = []
    for name, (dtype, array) in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        if shape_override and name in shape_override:
            tensor.set_shape(shape_override[name])
        inputs.append(tensor)
    return inputs


# --- case generators --------------------------------------------------------------------------------------------

WRONG_DTYPES = {"BYTES": ("FP32", "INT32", "INT64", "BOOL", "UINT8"), "INT32": ("FP32", "INT64", "BYTES", "INT8"),
                "FP32": ("FP64", "INT32", "BYTES", "FP16"), "INT64": ("INT32", "FP32", "BYTES", "UINT64")}
NP_OF = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64,
         "INT8": np.int8, "UINT8": np.uint8, "UINT64": np.uint64, "BOOL": np.bool_}
OPTIONAL = {"EXCLUDE_ITEM_IDS", "MAX_PRICE", "LANGUAGE", "REPLY_ACT", "RELAXATION"}


def _as_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BYTES":
        return np.array([str(v).encode() for v in array.reshape(-1)], dtype=np.object_).reshape(array.shape)
    if array.dtype == np.object_:
        return np.zeros(array.shape, dtype=NP_OF[dtype])
    return array.astype(NP_OF[dtype])


def _with(request: Request, **changes) -> Request:
    inputs = dict(request.inputs)
    for name, value in changes.items():
        if value is None:
            inputs.pop(name, None)
        else:
            inputs[name] = value
    return Request(request.model, inputs, request.version, request.stream, request.disconnect_after,
                   dict(request.shape_override))


def _value_cases(model: str, rng: random.Random, name: str) -> list[tuple[str, str, Callable]]:
    """(class, label, (Base, Request) -> Request) breaking the value of input ``name`` of ``model``."""
    batched = model not in STREAM_MODELS
    key = name.upper()
    cases = []

    def text(kind: str, value: bytes):
        cases.append((kind, name, lambda b, r, v=value: _with(r, **{name: ("BYTES", text_tensor(v, batched=batched))})))

    if key == "QUERY":
        for kind, value in bad_texts(rng).items():
            text({"huge": "huge_string", "invalid_utf8": "invalid_utf8", "binary": "binary_string"}.get(
                kind, "empty_string"), value)
    elif key == "USER_TOKEN":
        for kind in ("empty", "bare_user_id", "expired", "forged_unknown_key", "forged_key_id_collision",
                     "tampered_subject", "tampered_scope_admin", "tampered_expiry", "scope_service", "truncated",
                     "version_v2", "huge", "bad_signature_chars", "invalid_utf8", "non_ascii"):
            cases.append(("bad_token", kind, lambda b, r, k=kind: _with(r, **{name: ("BYTES", text_tensor(
                bad_tokens(b.keys, b.user_id, b.other_user, random.Random(rng.random()))[k], batched=batched))})))
    elif key == "TOP_K":
        for value in (0, -1, -(2**31), 51, 2**31 - 1, rng.randrange(-(2**31), 0), rng.randrange(51, 2**31)):
            array = np.array([[value]] if batched else [value], np.int32)
            cases.append(("bad_top_k", str(value), lambda b, r, a=array: _with(r, **{name: ("INT32", a)})))
    elif key in ("SERVICE", "RESOLVED_SERVICE"):
        values = [b"ozon", b"samokat\x00", "самокат".encode(), b"x" * rng.randrange(100, 100_000),
                  b"\xff" + rng.randbytes(8), rng.choice([b"wildberries", b"kuper;drop", b"../etc"])]
        if key == "RESOLVED_SERVICE":
            values.append(b"")
        for value in values:
            text("unknown_service", value)
    elif key == "SESSION_ID":
        for value in (b"", b"bad session!", b"s" * rng.randrange(129, 5000), b"\xff\xfe", b"../../etc/passwd"):
            text("bad_session_id", value)
    elif key == "USER_CONTEXT":
        def unsealed(b, r):
            return _with(r, USER_CONTEXT=("BYTES", text_tensor(bytes(b.retrieval["USER_CONTEXT"].reshape(-1)[0])
                                                               .split(b".", 4)[4])))

        def tampered(b, r):
            sealed = bytes(b.retrieval["USER_CONTEXT"].reshape(-1)[0])
            return _with(r, USER_CONTEXT=("BYTES", text_tensor(sealed[:-3] + b'}}}')))

        def expired(b, r):
            data = bytes(b.retrieval["USER_CONTEXT"].reshape(-1)[0]).split(b".", 4)[4]
            return _with(r, USER_CONTEXT=("BYTES", text_tensor(b.keys.seal(data, ttl_s=1, now=time.time() - 600))))

        def forged(b, r):
            data = bytes(b.retrieval["USER_CONTEXT"].reshape(-1)[0]).split(b".", 4)[4]
            return _with(r, USER_CONTEXT=("BYTES", text_tensor(Keyring.generate().seal(data))))

        def other_users(b, r):
            return _with(r, USER_CONTEXT=("BYTES", b.other_context.astype(np.object_)))

        for label, fn in (("unsealed", unsealed), ("tampered", tampered), ("expired", expired),
                          ("forged_stage_key", forged), ("another_users", other_users)):
            cases.append(("forged_context", label, fn))
        for kind, value in bad_texts(rng).items():
            text("forged_context", value)
    elif key == "QUERY_EMBEDDING":
        for label, fill in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
            def bad(b, r, fill=fill):
                vector = b.embedding.copy()
                vector.reshape(-1)[rng.randrange(vector.size)] = fill
                return _with(r, QUERY_EMBEDDING=("FP32", vector))
            cases.append(("nan_inf", label, bad))
        for delta in (-1, 1, rng.randrange(2, 400)):
            cases.append(("bad_shape", f"embedding_len{delta:+d}", lambda b, r, d=delta: _with(r, QUERY_EMBEDDING=(
                "FP32", np.resize(b.embedding, (1, max(b.embedding.shape[1] + d, 1))).astype(np.float32)))))
    elif key == "MAX_PRICE":
        for value in (np.nan, np.inf, -np.inf, 0.0, -1.0, -1e30):
            array = np.array([[value]] if batched else [value], np.float32)
            cases.append(("nan_inf" if not np.isfinite(value) else "bad_number", str(value),
                          lambda b, r, a=array: _with(r, **{name: ("FP32", a)})))
    elif key == "LANGUAGE":
        values = [b"de", b"\xff", b"x" * 5000, b"ru\x00"] + ([] if model == "generator_stream" else [b""])
        for value in values:
            text("bad_language", value)
    elif key == "CANDIDATE_ITEM_IDS":
        for label, fn in (("negative", lambda ids: -ids - 1), ("huge", lambda ids: ids + 10**12),
                          ("one_unknown", lambda ids: np.where(np.arange(ids.size).reshape(ids.shape) == 0,
                                                               10**9 + rng.randrange(10**6), ids))):
            cases.append(("unknown_item", label, lambda b, r, fn=fn: _with(r, CANDIDATE_ITEM_IDS=(
                "INT64", fn(b.retrieval["CANDIDATE_ITEM_IDS"].astype(np.int64)).astype(np.int64)))))
        cases.append(("length_mismatch", "ids_vs_scores", lambda b, r: _with(r, CANDIDATE_ITEM_IDS=(
            "INT64", b.retrieval["CANDIDATE_ITEM_IDS"].astype(np.int64)[:, :-1]))))
    elif key == "CANDIDATE_SCORES":
        for label, fill in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
            def bad(b, r, fill=fill):
                scores = b.retrieval["CANDIDATE_SCORES"].astype(np.float32).copy()
                scores.reshape(-1)[rng.randrange(scores.size)] = fill
                return _with(r, CANDIDATE_SCORES=("FP32", scores))
            cases.append(("nan_inf", label, bad))
        cases.append(("length_mismatch", "scores_vs_ids", lambda b, r: _with(r, CANDIDATE_SCORES=(
            "FP32", np.concatenate([b.retrieval["CANDIDATE_SCORES"].astype(np.float32)] * 2, axis=-1)))))
    elif key == "ITEM_IDS":
        for label, offset in (("negative", None), ("huge", 10**12)):
            def bad(b, r, offset=offset):
                ids = r.inputs[name][1].copy()
                ids.reshape(-1)[0] = -7 if offset is None else offset + rng.randrange(10**6)
                return _with(r, **{name: ("INT64", ids)})
            cases.append(("unknown_item", label, bad))
    elif key == "PROFILE_FACTS":
        def bad_fact(b, r):
            facts = r.inputs[name][1].copy()
            if facts.size == 0:
                facts = np.array([[b"x"]] if batched else [b"x"], dtype=np.object_)
            facts.reshape(-1)[0] = b"\xff\xfe" + rng.randbytes(5)
            return _with(r, **{name: ("BYTES", facts)})
        cases.append(("invalid_utf8", name, bad_fact))
    elif key == "REPLY_ACT":
        for value in (b"bogus", b"\xff", b"recommend" * 1000):
            text("bad_act", value)
    return cases


def _structural_cases(model: str, rng: random.Random, good: Request) -> list[tuple[str, str, Callable]]:
    batched = model not in STREAM_MODELS
    cases = []
    required = [n for n in good.inputs if n.upper() not in OPTIONAL]
    for name in required:
        cases.append(("missing_input", name, lambda b, r, n=name: _with(r, **{n: None})))
    for name, (dtype, _) in good.inputs.items():
        for wrong in WRONG_DTYPES[dtype]:
            cases.append(("wrong_dtype", f"{name}:{wrong}", lambda b, r, n=name, w=wrong: _with(
                r, **{n: (w, _as_dtype(r.inputs[n][1], w))})))
    for name, (dtype, array) in good.inputs.items():
        scalar = array.size == 1 and name.upper() not in ("CANDIDATE_ITEM_IDS", "CANDIDATE_SCORES", "ITEM_IDS",
                                                           "PROFILE_FACTS", "EXCLUDE_ITEM_IDS", "QUERY_EMBEDDING")
        cases.append(("wrong_shape", f"{name}:extra_dim", lambda b, r, n=name: _with(
            r, **{n: (r.inputs[n][0], r.inputs[n][1][..., None])})))
        if batched:
            cases.append(("wrong_shape", f"{name}:no_batch_dim", lambda b, r, n=name: _with(
                r, **{n: (r.inputs[n][0], r.inputs[n][1].reshape(-1))})))
        if scalar:
            cases.append(("wrong_shape", f"{name}:two_values", lambda b, r, n=name: _with(
                r, **{n: (r.inputs[n][0], np.concatenate([r.inputs[n][1]] * 2, axis=-1))})))
        cases.append(("bytesize_mismatch", name, lambda b, r, n=name: _bytesize(r, n)))
    cases.append(("unexpected_input", "EXTRA", lambda b, r: _with(r, EXTRA_INPUT=("INT32", np.zeros(
        (1, 1) if batched else (1,), np.int32)))))
    cases.append(("unknown_model", "name", lambda b, r: Request(r.model + rng.choice(["_x", "2", "/../recllm"]),
                                                               r.inputs, stream=r.stream)))
    cases.append(("unknown_model", "version", lambda b, r: Request(r.model, r.inputs, str(rng.randrange(2, 99)),
                                                                  stream=r.stream)))
    if batched:
        limit = MAX_BATCH[model]
        for rows in (limit + 1, limit + rng.randrange(2, 64)):
            cases.append(("oversized_batch", str(rows), lambda b, r, k=rows: _rows(r, k)))
        for rows in (2, rng.randrange(2, limit + 1)):
            cases.append(("multi_row_batch", str(rows), lambda b, r, k=rows: _rows(r, k)))
        cases.append(("inconsistent_batch", "rows", lambda b, r: _rows(r, 2, only=next(iter(r.inputs)))))
    return cases


def _rows(request: Request, rows: int, only: str | None = None) -> Request:
    inputs = {name: (dtype, np.concatenate([array] * rows, axis=0) if only in (None, name) else array)
              for name, (dtype, array) in request.inputs.items()}
    return Request(request.model, inputs, request.version, request.stream)


def _bytesize(request: Request, name: str) -> Request:
    out = _with(request)
    shape = list(out.inputs[name][1].shape)
    shape[-1] = shape[-1] + 3
    out.shape_override[name] = shape
    return out


def triton_cases(rng: random.Random, base: Base) -> list[Case]:
    """Every malformed variant the generators know, for every Triton model (one list; sample from it)."""
    cases = []
    for model in TRITON_MODELS:
        good = base.good(model)
        variants = _structural_cases(model, rng, good)
        for name in good.inputs:
            variants += _value_cases(model, rng, name)
        if model in ("retriever", "reranker"):
            for optional, value in (("MAX_PRICE", ("FP32", np.array([[1.0]], np.float32))),
                                    ("LANGUAGE", ("BYTES", text_tensor(b"ru")))):
                for klass, label, fn in _value_cases(model, rng, optional):
                    variants.append((klass, label, lambda b, r, fn=fn, o=optional, v=value: fn(b, _with(r, **{o: v}))))
        if model == "generator_stream":
            for klass, label, fn in _value_cases(model, rng, "REPLY_ACT") + _value_cases(model, rng, "LANGUAGE"):
                variants.append((klass, label, fn))
        for klass, label, fn in variants:
            cases.append(Case(model, klass, label, lambda b, m=model, fn=fn: fn(b, b.good(m, _session(rng)))))
    return cases


def _session(rng: random.Random) -> str:
    return f"fuzz-{rng.randrange(10**12)}"


def disconnect_cases(rng: random.Random) -> list[Case]:
    """Good streamed requests the client abandons mid-turn (must only be survived)."""
    cases = []
    for after in (1, 2, 3):
        cases.append(Case("recllm_chat", "stream_disconnect", f"after_{after}", lambda b, a=after: _disconnect(
            b.good("recllm_chat", _session(rng)), a), expect_error=False))
        cases.append(Case("generator_stream", "stream_disconnect", f"after_{after}", lambda b, a=after: _disconnect(
            b.good("generator_stream"), a), expect_error=False))
    return cases


def _disconnect(request: Request, after: int) -> Request:
    request.disconnect_after = after
    return request


# --- profile-service cases --------------------------------------------------------------------------------------

@dataclass
class ProfileBase:
    keys: Keyring
    user_id: str
    other_user: str
    item_id: int
    timestamp: int


def good_event(pbase: ProfileBase, user_id: str | None = None, sequence: int = 0) -> pb.Event:
    return pb.Event(sequence=sequence, event_id=f"fuzz-{sequence}", user_id=user_id or pbase.user_id,
                    service=GOOD_SERVICE, item_id=pbase.item_id, kind="purchase", timestamp=pbase.timestamp,
                    basket_id="fuzz-basket", price=99.0, quantity=1, region="moscow", device="android")


def bad_events(pbase: ProfileBase, rng: random.Random) -> list[tuple[str, Callable[[pb.Event], None]]]:
    """(label, mutate) each making one event invalid under recllm.profile.event_schema."""
    def clear(name):
        return lambda e: e.ClearField(name)

    def setter(name, value):
        return lambda e: setattr(e, name, value)
    future = int(time.time()) + rng.randrange(3_600, 10**8)
    return [
        ("missing_item_id", clear("item_id")), ("missing_timestamp", clear("timestamp")),
        ("missing_price", clear("price")), ("missing_quantity", clear("quantity")),
        ("missing_basket", clear("basket_id")),
        ("price_nan", setter("price", float("nan"))), ("price_inf", setter("price", float("inf"))),
        ("price_negative", setter("price", -rng.random() * 1000)), ("price_zero", setter("price", 0.0)),
        ("price_huge", setter("price", 1e300)), ("quantity_zero", setter("quantity", 0)),
        ("quantity_negative", setter("quantity", -rng.randrange(1, 2**62))),
        ("quantity_huge", setter("quantity", 2**62)), ("timestamp_future", setter("timestamp", future)),
        ("timestamp_negative", setter("timestamp", -rng.randrange(1, 2**62))),
        ("timestamp_1970", setter("timestamp", rng.randrange(0, 946_684_800))),
        ("item_negative", setter("item_id", -rng.randrange(1, 2**62))),
        ("item_unknown", setter("item_id", 10**12 + rng.randrange(10**6))),
        ("kind_unknown", setter("kind", rng.choice(["buy", "PURCHASE", "", "purchase\x00", "k" * 5000]))),
        ("service_unknown", setter("service", rng.choice(["ozon", "", "Samokat", "самокат", "s" * 5000]))),
        ("region_bad", setter("region", rng.choice(["Moscow", "<script>", "r" * 100, "moscow; drop table"]))),
        ("device_bad", setter("device", rng.choice(["iphone", "", "d" * 100]))),
        ("user_empty", setter("user_id", "")),
        ("user_malformed", setter("user_id", rng.choice(["bad user!", "-x", "u\x00", "пользователь", "u" * 65]))),
        ("basket_malformed", setter("basket_id", rng.choice(["bad basket!", "b" * 65, "\x00"]))),
        ("event_id_oversized", setter("event_id", "e" * rng.randrange(129, 20_000))),
    ]


def bad_metadata(pbase: ProfileBase, rng: random.Random, user_id: str, scopes_ok: tuple[str, ...]) -> list[
        tuple[str, tuple]]:
    """(label, metadata) that must be refused for a call on ``user_id`` that accepts ``scopes_ok``."""
    keys = pbase.keys
    tokens = bad_tokens(keys, user_id, pbase.other_user, rng)
    out = [("no_metadata", ()), ("empty_bearer", (("authorization", "Bearer "),)),
           ("basic_scheme", (("authorization", "Basic " + keys.sign(user_id)),)),
           ("another_users_token", bearer_metadata(keys.sign(pbase.other_user)))]
    for kind, token in tokens.items():
        if kind in ("invalid_utf8", "non_ascii", "empty"):
            continue  # metadata values must be ASCII: the client refuses to send them
        if kind == "scope_service" and "service" in scopes_ok:
            continue
        out.append((kind, bearer_metadata(token.decode())))
    return out


def profile_cases(rng: random.Random, pbase: ProfileBase) -> list[Case]:
    cases = []
    admin = bearer_metadata(pbase.keys.sign("fuzz-admin", scope="admin"))
    bad_ids = ["", " ", "bad user!", "u" * 65, "u" * rng.randrange(66, 100_000), "\x00", "пользователь",
               "../" + pbase.user_id, pbase.user_id + "\n", "-" + pbase.user_id]
    for rpc, message_of in (("GetProfile", lambda u, n=0: pb.ProfileRequest(user_id=u, recent_events=n)),
                            ("Forget", lambda u, n=0: pb.ForgetRequest(user_id=u))):
        for label, metadata in bad_metadata(pbase, rng, pbase.user_id, ("user", "admin")):
            cases.append(Case(f"profile.{rpc}", "bad_token", label, lambda b, r=rpc, m=metadata, f=message_of:
                              ProfileCall(r, f(pbase.user_id, 2**32 - 1), metadata=m)))
        for user_id in bad_ids:
            cases.append(Case(f"profile.{rpc}", "bad_user_id", repr(user_id[:20]), lambda b, r=rpc, u=user_id,
                              f=message_of: ProfileCall(r, f(u), metadata=admin)))
        cases.append(Case(f"profile.{rpc}", "oversized_message", "5MB_user_id", lambda b, r=rpc, f=message_of:
                          ProfileCall(r, f("u" * (5 << 20)), metadata=admin)))
        for label, raw in (("bad_wire_type", b"\x0f" + rng.randbytes(rng.randrange(0, 50))),
                           ("truncated_field", b"\x0a\xff\x01" + rng.randbytes(rng.randrange(0, 20))),
                           ("bad_varint", b"\x10" + b"\xff" * 11)):
            cases.append(Case(f"profile.{rpc}", "undecodable_message", label, lambda b, r=rpc, x=raw: ProfileCall(
                r, raw=x, metadata=admin)))
    service = bearer_metadata(pbase.keys.sign("fuzz-backend", scope="service"))
    for label, mutate in bad_events(pbase, rng):
        def events(b, mutate=mutate):
            n = rng.randrange(1, 12)
            out = []
            for i in range(n):
                event = good_event(pbase, sequence=rng.randrange(10**9))
                mutate(event)
                out.append(event)
            return ProfileCall("IngestEvents", events=out, metadata=service)
        cases.append(Case("profile.IngestEvents", "invalid_event", label, events, requests=0))
    cases.append(Case("profile.IngestEvents", "another_users_event", "user_token", lambda b: ProfileCall(
        "IngestEvents", events=[good_event(pbase, user_id=pbase.other_user, sequence=rng.randrange(10**9))],
        metadata=bearer_metadata(pbase.keys.sign(pbase.user_id))), requests=0))
    for label, metadata in bad_metadata(pbase, rng, pbase.user_id, ("user", "service", "admin")):
        cases.append(Case("profile.IngestEvents", "bad_token", label, lambda b, m=metadata: ProfileCall(
            "IngestEvents", events=[good_event(pbase, sequence=rng.randrange(10**9))], metadata=m, cancel_after=None)))
    cases.append(Case("profile.IngestEvents", "undecodable_message", "bad_wire_type", lambda b: ProfileCall(
        "IngestEvents", raw=b"\x0f" + rng.randbytes(10), metadata=service)))
    for path in (PROFILE_SERVICE + "DropAll", "/recllm.profile.v1.Admin/Exec", "/grpc.reflection.v1.Nope/Get",
                 PROFILE_SERVICE + "getprofile"):
        cases.append(Case("profile.raw", "unknown_method", path, lambda b, p=path: ProfileCall(
            "raw", raw=rng.randbytes(8), path=p, metadata=admin)))
    cases.append(Case("profile.IngestEvents", "stream_disconnect", "cancel_mid_stream", lambda b: ProfileCall(
        "IngestEvents", events=[_invalid(good_event(pbase, sequence=i)) for i in range(50)], metadata=service,
        cancel_after=rng.randrange(1, 5)), requests=0, expect_error=False))
    return cases


def _invalid(event: pb.Event) -> pb.Event:
    event.price = -1.0
    return event


# --- sending ------------------------------------------------------------------------------------------------------

def _internal(message: str) -> bool:
    return "internal error" in message or "Stub process" in message or "Exception calling application" in message


def send_triton(client: grpcclient.InferenceServerClient, url: str, request: Request) -> Outcome:
    if request.stream:
        return _send_stream(url, request)
    try:
        result = client.infer(request.model, _inputs(request.inputs, request.shape_override),
                              model_version=request.version, client_timeout=CASE_TIMEOUT_S)
    except InferenceServerException as exc:
        message = exc.message() or str(exc)
        if "Deadline Exceeded" in message:
            return Outcome(timeouts=1, messages=[message])
        return Outcome(errors=1, internal=int(_internal(message)), messages=[message])
    except Exception as exc:  # noqa: BLE001 - a client-side refusal (e.g. shape checks) is no server answer
        return Outcome(errors=1, messages=[f"client: {type(exc).__name__}: {exc}"])
    return Outcome(successes=1, leak_text=_response_text(result.get_response()))


def _response_text(response) -> str:
    """Every byte string an inference response carries, decoded leniently (for canary checks)."""
    parts = []
    for raw in response.raw_output_contents:
        parts.append(raw.decode("utf-8", "replace"))
    for output in response.outputs:
        for value in output.contents.bytes_contents:
            parts.append(value.decode("utf-8", "replace"))
    return "\n".join(parts)


def _send_stream(url: str, request: Request) -> Outcome:
    """One request on a fresh stream: all its responses until the final flag, an error, or the disconnect."""
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    outcome = Outcome()
    data = 0
    cancelled = False
    try:
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer(request.model, _inputs(request.inputs, request.shape_override),
                                  model_version=request.version, enable_empty_final_response=True)
        deadline = time.monotonic() + CASE_TIMEOUT_S
        while True:
            try:
                result, error = responses.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                outcome.timeouts = 1
                break
            if error is not None:
                message = error.message() if hasattr(error, "message") else str(error)
                outcome.messages.append(message)
                outcome.errors = 1
                outcome.internal = max(outcome.internal, int(_internal(message)))
                # a model's error response is followed by its final flag; Triton's own refusal is not: stop here
                break
            response = result.get_response()
            if response.outputs:
                data += 1
                outcome.leak_text += _response_text(response) + "\n"
            if request.disconnect_after is not None and data >= request.disconnect_after:
                cancelled = True
                break
            final = response.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                break
    except InferenceServerException as exc:
        outcome.errors, outcome.messages = 1, [exc.message() or str(exc)]
    except Exception as exc:  # noqa: BLE001
        outcome.errors, outcome.messages = 1, [f"client: {type(exc).__name__}: {exc}"]
    finally:
        _stop_stream(client, cancel=cancelled or outcome.timeouts > 0)
    if data and not outcome.errors and not outcome.timeouts:
        outcome.successes = 1
    return outcome


def _stop_stream(client: grpcclient.InferenceServerClient, cancel: bool) -> None:
    """End a stream and its client. tritonclient's cancelling close leaves the request-feeding thread blocked on
    its queue forever (one leaked thread per abandoned stream): end that iterator too."""
    stream = getattr(client, "_stream", None)
    client.stop_stream(cancel_requests=cancel)
    if cancel and stream is not None:
        stream._request_queue.put(None)
    client.close()


def send_profile(channel: grpc.Channel, call: ProfileCall) -> Outcome:
    """Unary calls: error or success. Ingest: one outcome per event (rejected ack = error), or a stream error."""
    ident = lambda x: x  # noqa: E731
    try:
        if call.rpc == "raw" or (call.raw is not None and call.rpc != "IngestEvents"):
            method = channel.unary_unary(call.path or PROFILE_SERVICE + call.rpc, request_serializer=ident,
                                         response_deserializer=ident)
            reply = method(call.raw, timeout=CASE_TIMEOUT_S, metadata=call.metadata)
            return Outcome(successes=1, leak_text=reply.decode("utf-8", "replace"))
        if call.rpc in ("GetProfile", "Forget"):
            method = channel.unary_unary(PROFILE_SERVICE + call.rpc, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=ident)
            reply = method(call.message, timeout=CASE_TIMEOUT_S, metadata=call.metadata)
            return Outcome(successes=1, leak_text=reply.decode("utf-8", "replace"))
        return _send_ingest(channel, call)
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(timeouts=1, messages=[details])
        if code == grpc.StatusCode.CANCELLED and call.cancel_after is not None:
            return Outcome(errors=1, messages=["cancelled by the client"])
        return Outcome(errors=max(1, len(call.events)) if call.rpc == "IngestEvents" else 1,
                       internal=int(code == grpc.StatusCode.UNKNOWN or _internal(details)),
                       messages=[f"{code.name}: {details}"], leak_text=details)


def _send_ingest(channel: grpc.Channel, call: ProfileCall) -> Outcome:
    if call.raw is not None:
        method = channel.stream_stream(PROFILE_SERVICE + "IngestEvents", request_serializer=lambda x: x,
                                       response_deserializer=pb.EventAck.FromString)
        acks = list(method(iter([call.raw]), timeout=CASE_TIMEOUT_S, metadata=call.metadata))
        if not acks:  # the stream ended with OK and no answer for the undecodable event
            return Outcome(successes=1, messages=["stream ended OK without an ack or an error"])
        return Outcome(successes=sum(a.accepted for a in acks), errors=sum(not a.accepted for a in acks))
    method = channel.stream_stream(PROFILE_SERVICE + "IngestEvents",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pb.EventAck.FromString)
    responses = method(iter(call.events), timeout=CASE_TIMEOUT_S, metadata=call.metadata)
    outcome = Outcome()
    for n, ack in enumerate(responses, 1):
        if ack.accepted:
            outcome.successes += 1
        else:
            outcome.errors += 1
            outcome.messages.append(ack.error)
        outcome.leak_text += ack.error + "\n"
        if call.cancel_after is not None and n >= call.cancel_after:
            responses.cancel()
            break
    if call.cancel_after is None and outcome.errors + outcome.successes != len(call.events):
        outcome.timeouts += 1  # an event without its ack
    return outcome


# --- the good requests' answers and the server's health ---------------------------------------------------------

def good_answer(client: grpcclient.InferenceServerClient, url: str, base: Base, model: str, session: str):
    """A comparable summary of ``model``'s answer to its good request (floats rounded)."""
    request = base.good(model, session)
    if request.stream:
        client_stream = _stream_collect(url, request)
        return client_stream
    result = client.infer(model, _inputs(request.inputs), client_timeout=CASE_TIMEOUT_S)
    skip = {"USER_CONTEXT"}  # sealed with a fresh expiry each time
    out = {}
    for output in result.get_response().outputs:
        if output.name in skip:
            continue
        array = result.as_numpy(output.name)
        out[output.name] = _comparable(array)
    return out


def _comparable(array):
    if array.dtype == np.object_:
        return [bytes(v).decode("utf-8", "replace") for v in array.reshape(-1)]
    if array.dtype.kind == "f":
        return [round(float(v), 4) for v in array.reshape(-1)]
    return array.reshape(-1).tolist()


def _stream_collect(url: str, request: Request) -> dict:
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    out: dict[str, list] = defaultdict(list)
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer(request.model, _inputs(request.inputs), enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=CASE_TIMEOUT_S)
            if error is not None:
                raise RuntimeError(f"good {request.model} request failed: {error}")
            response = result.get_response()
            for output in response.outputs:
                out[output.name].extend(_comparable(result.as_numpy(output.name)))
            final = response.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                break
    finally:
        _stop_stream(client, cancel=False)
    if "text_delta" in out:
        out["text_delta"] = ["".join(out["text_delta"])]
    if "TEXT_DELTA" in out:
        out["TEXT_DELTA"] = ["".join(out["TEXT_DELTA"])]
    return dict(out)


def good_profile_answers(channel: grpc.Channel, pbase: ProfileBase, probe_event: pb.Event) -> dict:
    stub_get = channel.unary_unary(PROFILE_SERVICE + "GetProfile", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pb.Profile.FromString)
    profile = stub_get(pb.ProfileRequest(user_id=pbase.user_id, recent_events=20), timeout=CASE_TIMEOUT_S,
                       metadata=bearer_metadata(pbase.keys.sign(pbase.user_id)))
    ingest = channel.stream_stream(PROFILE_SERVICE + "IngestEvents", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pb.EventAck.FromString)
    acks = list(ingest(iter([probe_event]), timeout=CASE_TIMEOUT_S,
                       metadata=bearer_metadata(pbase.keys.sign("fuzz-backend", scope="service"))))
    return {"GetProfile": profile.SerializeToString(deterministic=True),
            "IngestEvents": [(a.accepted, a.error) for a in acks]}


def triton_health(server, client: grpcclient.InferenceServerClient) -> list[str]:
    problems = []
    if server.process is None or server.process.poll() is not None:
        problems.append(f"tritonserver exited (rc {server.process.poll() if server.process else None})")
        return problems
    try:
        if not client.is_server_live() or not client.is_server_ready():
            problems.append("server not live/ready")
        for model in TRITON_MODELS:
            if not client.is_model_ready(model):
                problems.append(f"model {model} not ready")
    except InferenceServerException as exc:
        problems.append(f"health check failed: {exc}")
    return problems


# --- the run ------------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    successes: int = 0
    timeouts: int = 0
    internal: int = 0


@dataclass
class FuzzReport:
    seed: int
    by_target: dict = field(default_factory=lambda: defaultdict(Tally))
    by_class: dict = field(default_factory=lambda: defaultdict(Tally))
    disconnects: Tally = field(default_factory=Tally)
    findings: list = field(default_factory=list)       # successes on malformed requests, timeouts
    internal_examples: dict = field(default_factory=dict)
    crashes: list = field(default_factory=list)
    good_mismatches: list = field(default_factory=list)
    batches: int = 0
    good_checks: int = 0
    seconds: float = 0.0

    @property
    def malformed(self) -> Tally:
        total = Tally()
        for tally in self.by_target.values():
            for name in ("requests", "errors", "successes", "timeouts", "internal"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        return total

    def record(self, case: Case, outcome: Outcome) -> None:
        if not case.expect_error:
            self.disconnects.requests += 1
            self.disconnects.timeouts += outcome.timeouts
            return
        count = case.requests or max(outcome.errors + outcome.successes + outcome.timeouts, 1)
        for tally in (self.by_target[case.target], self.by_class[case.klass]):
            tally.requests += count
            tally.errors += outcome.errors
            tally.successes += outcome.successes
            tally.timeouts += outcome.timeouts
            tally.internal += outcome.internal
        if outcome.successes or outcome.timeouts:
            self.findings.append({"target": case.target, "class": case.klass, "label": case.label,
                                  "successes": outcome.successes, "timeouts": outcome.timeouts,
                                  "messages": outcome.messages[:2]})
        if outcome.internal and (case.target, case.klass) not in self.internal_examples:
            self.internal_examples[(case.target, case.klass)] = f"{case.label}: {outcome.messages[0][:200]}"


def describe(request) -> str:
    """What a request carried (names, datatypes, shapes; no tensor data), for a crash report."""
    if isinstance(request, Request):
        parts = [f"{n}:{d}{list(a.shape)}" + (f"->{request.shape_override[n]}" if n in request.shape_override else "")
                 for n, (d, a) in request.inputs.items()]
        return f"{request.model} v{request.version or '-'} stream={request.stream} " + " ".join(parts)
    return f"profile {request.rpc}"


def interleaved(cases: list[Case], rng: random.Random) -> list[Case]:
    """The cases shuffled within each target, then taken one target after another."""
    by_target: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_target[case.target].append(case)
    lanes = [by_target[t] for t in sorted(by_target)]
    for lane in lanes:
        rng.shuffle(lane)
    out = []
    for i in range(max(map(len, lanes))):
        out.extend(lane[i] for lane in lanes if i < len(lane))
    return out


class Fuzzer:
    """Runs cases against a live tritonserver and profile service; checks health and good answers per batch."""

    def __init__(self, triton_server, profile_address: str, profile_server, keyring_path: Path, user_id: str,
                 other_user: str, item_id: int, timestamp: int, seed: int = 0, check_chat_every: int = 1):
        self.triton, self.profile_server = triton_server, profile_server
        self.url = triton_server.config.grpc_url
        self.client = grpcclient.InferenceServerClient(self.url)
        self.channel = grpc.insecure_channel(profile_address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.keys = load_keyring(keyring_path)
        self.rng = random.Random(seed)
        self.seed = seed
        self.base = Base(self.client, self.keys, user_id, other_user)
        self.pbase = ProfileBase(self.keys, user_id, other_user, item_id, timestamp)
        self.probe_event = good_event(self.pbase, user_id="zz-fuzz-probe", sequence=1)
        self.probe_event.event_id = "zz-fuzz-probe-1"
        self.check_chat_every = check_chat_every
        self.reference = None
        self.recent: deque = deque(maxlen=40)  # the last cases sent (wall time, what), for crash reports
        self.run_id = f"{seed}-{time.time_ns()}"  # fresh chat sessions per run (the cases stay seeded)

    def answers(self, batch: int) -> dict:
        out = {}
        for model in TRITON_MODELS:
            if model == "recllm_chat" and batch % self.check_chat_every:
                continue
            out[model] = good_answer(self.client, self.url, self.base, model, f"fuzz-good-{self.run_id}-{batch}")
        out["profile"] = good_profile_answers(self.channel, self.pbase, self.probe_event)
        return out

    def record_reference(self) -> dict:
        # The probe event is stored by its first delivery and acknowledged as a duplicate from then on.
        good_profile_answers(self.channel, self.pbase, self.probe_event)
        self.reference = self.answers(0)
        return self.reference

    def compare(self, report: FuzzReport, batch: int) -> None:
        self.base.refresh()
        now = self.answers(batch)
        report.good_checks += 1
        for key, value in now.items():
            if value != self.reference[key]:
                report.good_mismatches.append({"batch": batch, "check": key})

    def health(self, report: FuzzReport, batch: int) -> bool:
        problems = triton_health(self.triton, self.client)
        if self.profile_server is not None and not self.profile_server.is_healthy():
            problems.append("profile service unhealthy")
        if problems:
            report.crashes.append({"batch": batch, "problems": problems, "last_cases": list(self.recent)})
        return not problems

    def cases(self) -> list[Case]:
        return triton_cases(self.rng, self.base) + profile_cases(self.rng, self.pbase) + disconnect_cases(self.rng)

    def run(self, total_requests: int, batch_size: int = 250, log=print) -> FuzzReport:
        report = FuzzReport(self.seed)
        if self.reference is None:
            self.record_reference()
        pool = self.cases()
        started = time.perf_counter()
        batch = 0
        # Every case once first, round robin over the targets (a small slice still reaches every model and RPC),
        # then seeded draws until the malformed count is reached.
        order = interleaved(pool, self.rng)[::-1]
        while report.malformed.requests < total_requests:
            batch += 1
            sent = 0
            while sent < batch_size and report.malformed.requests < total_requests:
                case = order.pop() if order else self.rng.choice(pool)
                request = case.make(self.base)
                outcome = (send_profile(self.channel, request) if case.target.startswith("profile.")
                           else send_triton(self.client, self.url, request))
                report.record(case, outcome)
                self.recent.append((time.strftime("%H:%M:%S"), case.target, case.klass, case.label, describe(request)))
                sent += max(case.requests, 1) if case.expect_error else 0
                if self.triton.process is not None and self.triton.process.poll() is not None:
                    report.crashes.append({"batch": batch, "problems": [
                        f"tritonserver exited (rc {self.triton.process.poll()}) right after this case: "
                        f"{case.target} / {case.klass} / {case.label}"], "case": describe(request)})
                    break
            report.batches = batch
            healthy = self.health(report, batch)
            if healthy:
                self.compare(report, batch)
            m = report.malformed
            log(f"batch {batch}: {m.requests} malformed, {m.errors} errors, {m.successes} successes, "
                f"{m.timeouts} timeouts, {len(report.crashes)} crash reports, "
                f"{len(report.good_mismatches)} good-answer mismatches, {time.perf_counter() - started:.0f} s")
            if not healthy:
                break
        report.seconds = time.perf_counter() - started
        return report

    def close(self) -> None:
        self.client.close()
        self.channel.close()


def forget_probe(channel_address: str, keys: Keyring) -> None:
    from recllm_client.profile_client import ProfileClient  # noqa: PLC0415
    with ProfileClient(channel_address, keyring=keys) as client:
        client.forget("zz-fuzz-probe", token=keys.sign("fuzz-admin", scope="admin"))


# --- report -------------------------------------------------------------------------------------------------------

def render(report: FuzzReport, command: str, machine: dict, extra: dict) -> str:
    m = report.malformed
    lines = [
        "# Fuzz: malformed requests against the live tritonserver and profile service",
        "",
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Build: test preset ({extra.get('artifact_dir')}); seed {report.seed}; {report.batches} batches; "
        f"{report.seconds:.0f} s of fuzzing ({m.requests / max(report.seconds, 1e-9):.0f} malformed requests/s).",
        "",
        "## Summary",
        "",
        "| malformed requests | answered with an error | successes (findings) | hangs | of the errors: internal "
        "| crashes / unhealthy checks | good-request checks | good answers changed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {m.requests} | {m.errors} | {m.successes} | {m.timeouts} | {m.internal} | {len(report.crashes)} | "
        f"{report.good_checks} | {len(report.good_mismatches)} |",
        "",
        "Profile service shutdown after the run (`ProfileServer.stop`, 1 s grace): "
        + (f"{extra['profile_stop_s']} s." if extra.get("profile_stop_s") is not None
           else f"**did not finish within {STOP_TIMEOUT_S:.0f} s** (finding, see below)."),
        "",
        f"Disconnects mid-stream (good chat / generator_stream turns and ingest streams abandoned by the client): "
        f"{report.disconnects.requests}, hangs {report.disconnects.timeouts}.",
        "",
        "'Internal' errors are errors whose message is the model's generic `internal error (…)` instead of a "
        "request error: still an error answer, but the input should be refused by name.",
        "",
        "## Per target",
        "",
        "| target | malformed | errors | successes | hangs | internal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target in sorted(report.by_target):
        t = report.by_target[target]
        lines.append(f"| {target} | {t.requests} | {t.errors} | {t.successes} | {t.timeouts} | {t.internal} |")
    lines += ["", "## Per class", "", "| class | malformed | errors | successes | hangs | internal |",
              "|---|---:|---:|---:|---:|---:|"]
    for klass in sorted(report.by_class):
        t = report.by_class[klass]
        lines.append(f"| {klass} | {t.requests} | {t.errors} | {t.successes} | {t.timeouts} | {t.internal} |")
    lines += ["", "## Findings", ""]
    stop_hung = "profile_stop_s" in extra and extra["profile_stop_s"] is None
    if stop_hung:
        lines.append(f"- the profile service's gRPC server (`ProfileServer.stop`: `grpc.Server.stop(1.0).wait()`) had "
                     f"not finished stopping {STOP_TIMEOUT_S:.0f} s after the run, with no RPC handler thread left "
                     "running; not yet diagnosed (a lone cancelled ingest stream, undecodable message, oversized "
                     "message or unknown method each stopped at once in isolation).")
    if not (report.findings or report.crashes or report.good_mismatches or report.internal_examples or stop_hung):
        lines.append("None: every malformed request got an error, no hang, no crash, every good answer unchanged.")
    for finding in report.findings[:50]:
        lines.append(f"- success/hang on malformed: {json.dumps(finding, ensure_ascii=False)}")
    for crash in report.crashes:
        lines.append(f"- crash/unhealthy after batch {crash['batch']}: {'; '.join(crash['problems'])}; the last "
                     "cases sent (wall time, target, class, label, tensors):")
        lines += [f"  - {' | '.join(map(str, case))}" for case in crash.get("last_cases", [])[-20:]]
    for mismatch in report.good_mismatches[:50]:
        lines.append(f"- good answer changed: {mismatch}")
    for (target, klass), example in sorted(report.internal_examples.items()):
        lines.append(f"- internal error: {target} / {klass}: {example}")
    lines += ["", "## What was checked", "",
              "- Every case is one good request of that model with one thing broken (see `benchmarks/fuzz.py`); "
              "every distinct case is sent once first, then seeded draws fill the count.",
              "- An ingest stream of k invalid events counts k requests: each must get a rejected ack.",
              "- After each batch: tritonserver's process alive, server live and ready, all eight models ready, "
              "the profile service healthy; then the good request of every model (query_encoder, retriever, "
              "reranker, generator, generator_stream, recllm, recllm_rank, recllm_chat in a fresh session) and "
              "GetProfile/IngestEvents must answer as before fuzzing.",
              ""]
    return "\n".join(lines)


STOP_TIMEOUT_S = 30.0


def stop_within(stop: Callable[[], None], timeout_s: float) -> float | None:
    """Run ``stop`` on a daemon thread: seconds it took, None if it had not returned within ``timeout_s``."""
    import threading  # noqa: PLC0415

    started = time.perf_counter()
    done = threading.Event()
    threading.Thread(target=lambda: (stop(), done.set()), daemon=True).start()
    return round(time.perf_counter() - started, 2) if done.wait(timeout_s) else None


def main(argv: list[str] | None = None) -> int:
    import logging
    import os
    import shlex
    import sys

    from benchmarks.machine_info import machine_info
    from recllm.catalog.product_catalog import Catalog
    from recllm.artifacts import ArtifactLayout
    from recllm.profile.sqlite_store import ProfileStore
    from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
    from recllm.profile_service.server import ProfileServer
    from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact-dir", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "fuzz.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    machine = machine_info()
    layout = ArtifactLayout(args.artifact_dir)
    store = ProfileStore(layout.profile_db, read_only=True)
    users = store.user_ids()
    catalog = Catalog.load_jsonl(layout.catalog)
    item = next(i for i in catalog.in_service(GOOD_SERVICE) if i.in_stock and not catalog.is_sensitive(i))
    timestamp = store.latest_timestamp() - 86_400
    config = TritonServerConfig(artifact_dir=args.artifact_dir, grpc_port=free_port(), http_port=free_port(),
                                metrics_port=free_port(), runtime_dir=Path(f"/tmp/fuzz_runtime_{args.seed}"))
    profile_config = ProfileServiceConfig(artifact_dir=args.artifact_dir, port=0, stop_grace_s=1.0,
                                          ingest=IngestPolicy(refresh_mode="sync"))
    with TritonServer(config) as triton:
        profile = ProfileServer(profile_config).start()
        fuzzer = Fuzzer(triton, profile.address, profile, config.keyring_path, users[0], users[1], item.item_id,
                        timestamp, seed=args.seed)
        try:
            report = fuzzer.run(args.requests, args.batch_size)
            print("fuzzing done; stopping the servers", flush=True)
        finally:
            fuzzer.close()
            forget_probe(profile.address, load_keyring(config.keyring_path))
            stop_s = stop_within(profile.stop, STOP_TIMEOUT_S)
    extra = {"artifact_dir": args.artifact_dir, "profile_stop_s": stop_s}
    command = "python -m benchmarks.fuzz " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.output.write_text(render(report, command, machine, extra))
    print(args.output.read_text(), flush=True)
    bad = report.malformed.successes or report.malformed.timeouts or report.crashes or report.good_mismatches
    if stop_s is None:
        os._exit(1)  # the profile service's gRPC server never finished stopping: its threads would block exit
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
