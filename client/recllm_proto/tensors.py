"""Every Triton tensor of Rec-LLM, named once: name, dtype and shape.

The serving graph (``ensemble/pipeline_graph.py``), the Triton adapters (``model_repository/*/1/model.py``), the BLS
chat model, the clients (``recllm_client``) and the benchmarks all import these specs, so a tensor's name, dtype
or shape cannot drift between the places that produce and consume it. It lives beside ``profile.proto`` in the
small wire-contract package that both the server and the torch-free client install.

Names are UPPER_SNAKE inside the graph (between models) and lower_snake at the client boundary (the ``recllm``
ensemble's and ``recllm_chat``'s own inputs and outputs); ``client_name`` / ``internal_name`` are the
one conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# Triton's wire dtypes (the ``datatype`` of a gRPC InferInput); pipeline_graph maps them onto ModelConfig enums.
BYTES, FP32, INT32, INT64 = "BYTES", "FP32", "INT32", "INT64"
NUMPY_DTYPES = {BYTES: "object", FP32: "float32", INT32: "int32", INT64: "int64"}


@dataclass(frozen=True)
class TensorSpec:
    name: str                 # UPPER_SNAKE
    dtype: str                # one of BYTES, FP32, INT32, INT64
    dims: tuple[int, ...]     # -1 = variable
    optional: bool = False    # an input a caller may leave out

    def __post_init__(self):
        if not self.name or self.name != self.name.upper():
            raise ValueError(f"TensorSpec.name must be UPPER_SNAKE, got {self.name!r}")
        if self.dtype not in NUMPY_DTYPES:
            raise ValueError(f"TensorSpec.dtype must be one of {sorted(NUMPY_DTYPES)}, got {self.dtype!r}")

    @property
    def client_name(self) -> str:
        return client_name(self.name)

    @property
    def numpy_dtype(self) -> str:
        return NUMPY_DTYPES[self.dtype]


def client_name(name: str) -> str:
    """The lower_snake name a client sees for an internal UPPER_SNAKE tensor name."""
    return name.lower()


def internal_name(name: str) -> str:
    """The UPPER_SNAKE name inside the graph for a client-boundary tensor name."""
    return name.upper()


def client_arrays(arrays: Mapping[str, object]) -> dict[str, object]:
    """``{INTERNAL_NAME: array}`` → ``{client_name: array}`` (the chat model's responses)."""
    return {client_name(name): array for name, array in arrays.items()}


# --- request ------------------------------------------------------------------------------------------------------
SESSION_ID = TensorSpec("SESSION_ID", BYTES, (1,))
# A token the calling backend signed for the user (recllm_proto.user_token): every model that reads a profile takes
# the user id from the verified token, never from a free field.
USER_TOKEN = TensorSpec("USER_TOKEN", BYTES, (1,))
QUERY = TensorSpec("QUERY", BYTES, (1,))
TOP_K = TensorSpec("TOP_K", INT32, (1,))
SERVICE = TensorSpec("SERVICE", BYTES, (1,))
# Optional constraints the chat model sends from the session (the ensembles leave them unset).
EXCLUDE_ITEM_IDS = TensorSpec("EXCLUDE_ITEM_IDS", INT64, (-1,), optional=True)
MAX_PRICE = TensorSpec("MAX_PRICE", FP32, (1,), optional=True)  # +inf: no budget, whatever the query text says
LANGUAGE = TensorSpec("LANGUAGE", BYTES, (1,), optional=True)
# The catalog categories (and their subtrees) the candidates must come from: the kinds the dialogue holds its goal to
# (a need's pharmacy shelf, the shelves a present's interest points at, what an accepted offer counted).
CATEGORY_IDS = TensorSpec("CATEGORY_IDS", BYTES, (-1,), optional=True)

# --- between stages -------------------------------------------------------------------------------------------------
QUERY_EMBEDDING = TensorSpec("QUERY_EMBEDDING", FP32, (-1,))
# The query with its typos corrected to the catalog's words (recllm.catalog.spelling: «кифир» → «кефир»): the encoder
# writes it, the ensembles' later stages read it in place of their QUERY, and the caller gets it back.
SPELLED_QUERY = TensorSpec("SPELLED_QUERY", BYTES, (1,))
CANDIDATE_ITEM_IDS = TensorSpec("CANDIDATE_ITEM_IDS", INT64, (-1,))
CANDIDATE_SCORES = TensorSpec("CANDIDATE_SCORES", FP32, (-1,))
RESOLVED_SERVICE = TensorSpec("RESOLVED_SERVICE", BYTES, (1,))
PROFILE_FACTS = TensorSpec("PROFILE_FACTS", BYTES, (-1,))
# The user's profile as read once by the retriever (recllm.profile.user_context), passed on to the reranker, sealed
# with the server's stage key (a caller cannot forge one).
USER_CONTEXT = TensorSpec("USER_CONTEXT", BYTES, (1,))

# --- ranked items and the reply -------------------------------------------------------------------------------------
ITEM_IDS = TensorSpec("ITEM_IDS", INT64, (-1,))
ITEM_SCORES = TensorSpec("ITEM_SCORES", FP32, (-1,))
ITEM_NAMES = TensorSpec("ITEM_NAMES", BYTES, (-1,))
ITEM_PRICES = TensorSpec("ITEM_PRICES", FP32, (-1,))
ITEM_SERVICES = TensorSpec("ITEM_SERVICES", BYTES, (-1,))
ITEM_EXPLANATIONS = TensorSpec("ITEM_EXPLANATIONS", BYTES, (-1,))
REPLY = TensorSpec("REPLY", BYTES, (1,))
TEXT_DELTA = TensorSpec("TEXT_DELTA", BYTES, (1,))

ITEM_OUTPUTS = (ITEM_IDS, ITEM_SCORES, ITEM_NAMES, ITEM_PRICES, ITEM_SERVICES, ITEM_EXPLANATIONS)
# The reranker writes each explanation in every reply language too (ITEM_EXPLANATIONS is the request's): the chat
# model answers «почему это?» asked in the other language than the list's in that one. Between stages only.
ITEM_EXPLANATIONS_RU = TensorSpec("ITEM_EXPLANATIONS_RU", BYTES, (-1,))
ITEM_EXPLANATIONS_EN = TensorSpec("ITEM_EXPLANATIONS_EN", BYTES, (-1,))
ITEM_EXPLANATIONS_IN = {"ru": ITEM_EXPLANATIONS_RU, "en": ITEM_EXPLANATIONS_EN}
SESSION_CONSTRAINTS = (EXCLUDE_ITEM_IDS, MAX_PRICE, LANGUAGE, CATEGORY_IDS)


@dataclass(frozen=True)
class StageSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Batched models (``max_batch_size > 0``): every tensor travels with a leading batch dim that ``dims`` leave
    # out; one request is one row ([1, *dims]), and Triton's dynamic batcher hands several requests to one execute.
    batched: bool = False

    def wire_shape(self, spec: TensorSpec, length: int = 1) -> list[int]:
        """The shape a caller sends for ``spec`` (one request; ``length`` for a variable dim)."""
        shape = [length if d == -1 else d for d in spec.dims]
        return [1, *shape] if self.batched else shape


# Each Triton model's inputs and outputs, in config order. All stages are batched models (ensemble/pipeline_graph.py
# sets the sizes); the generator's dynamic batches decode together.
QUERY_ENCODER = StageSignature((QUERY,), (QUERY_EMBEDDING, SPELLED_QUERY), batched=True)
RETRIEVER = StageSignature((USER_TOKEN, QUERY, TOP_K, SERVICE, QUERY_EMBEDDING, *SESSION_CONSTRAINTS),
                           (CANDIDATE_ITEM_IDS, CANDIDATE_SCORES, RESOLVED_SERVICE, PROFILE_FACTS, USER_CONTEXT),
                           batched=True)
RERANKER = StageSignature((USER_TOKEN, QUERY, TOP_K, RESOLVED_SERVICE, CANDIDATE_ITEM_IDS, CANDIDATE_SCORES,
                           USER_CONTEXT, MAX_PRICE, LANGUAGE),
                          (*ITEM_OUTPUTS, *ITEM_EXPLANATIONS_IN.values()), batched=True)
# The generator reads the user's profile too (their user layers: recllm.user_layers.reply_personalizer): from the
# retriever's sealed USER_CONTEXT when its caller has one (the ensembles, the chat model: no second profile read),
# else from the profile. Optional: a direct caller has no sealed context.
GENERATOR_USER_CONTEXT = TensorSpec("USER_CONTEXT", BYTES, (1,), optional=True)
GENERATOR = StageSignature((USER_TOKEN, QUERY, RESOLVED_SERVICE, ITEM_IDS, PROFILE_FACTS, GENERATOR_USER_CONTEXT),
                           (REPLY,), batched=True)
STAGES: dict[str, StageSignature] = {
    "query_encoder": QUERY_ENCODER, "retriever": RETRIEVER, "reranker": RERANKER, "generator": GENERATOR,
}
RANKING_STAGES = ("query_encoder", "retriever", "reranker")
# A stage output that the ensembles' later steps read in place of an ensemble input of another name.
READ_IN_PLACE_OF = {SPELLED_QUERY.name: QUERY.name}

# The client boundary (lower_snake on the wire).
REQUEST = (USER_TOKEN, QUERY, TOP_K, SERVICE)
# Items, scores and explanations without a reply (no generator), plus what a caller needs to write its own reply.
RANK_MODEL = "recllm_rank"
RANK = StageSignature(REQUEST, (*ITEM_OUTPUTS, RESOLVED_SERVICE, PROFILE_FACTS, SPELLED_QUERY), batched=True)
ENSEMBLE_MODEL = "recllm"
ENSEMBLE = StageSignature(REQUEST, (*ITEM_OUTPUTS, REPLY, RESOLVED_SERVICE, SPELLED_QUERY), batched=True)
CHAT_MODEL = "recllm_chat"
CHAT = StageSignature((SESSION_ID, USER_TOKEN, QUERY, TOP_K, SERVICE), (TEXT_DELTA, *ITEM_OUTPUTS, RESOLVED_SERVICE))

# The chat model's reply stream: ``generator_stream`` is decoupled and unbatched at its boundary (one request per
# chat turn, token deltas as responses); it batches concurrent turns itself (recllm.serving.stream_batcher).
REPLY_ACT = TensorSpec("REPLY_ACT", BYTES, (1,), optional=True)    # recommend/refine/...; absent: derived
RELAXATION = TensorSpec("RELAXATION", BYTES, (1,), optional=True)  # the nothing-left turn's offered relaxation
GENERATOR_STREAM_MODEL = "generator_stream"
GENERATOR_STREAM = StageSignature((USER_TOKEN, QUERY, RESOLVED_SERVICE, ITEM_IDS, PROFILE_FACTS, LANGUAGE, REPLY_ACT,
                                   RELAXATION, GENERATOR_USER_CONTEXT), (TEXT_DELTA,))
