"""One streamed chat turn: session context → encode → retrieve → rank → stream the generator's reply.

The stages are passed in as ``ChatStages`` so the same turn logic runs inside Triton (``recllm_chat`` calls the
other models through BLS) and in-process (tests, benchmarks). A turn yields the ranked items first, then the
reply's text deltas as the generator decodes them, and records the turn in the session only after it finished.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Protocol

import numpy as np
from recllm_proto import tensors

from recllm.dialogue.session_store import SessionStore, next_turn_context
from recllm.rag.rec_request import RecRequest, parse_request, validate_session_id


@dataclass(frozen=True)
class CandidateSet:
    candidate_ids: np.ndarray  # [C] int64
    candidate_scores: np.ndarray  # [C] float32
    service: str
    profile_facts: list[str]
    # The user's profile as the retriever read it, handed to ``rank`` (in-process a ``UserContext``, over BLS the
    # serialized USER_CONTEXT tensor): one profile read per turn.
    user_context: object = None


class ChatStages(Protocol):
    def encode(self, query: str) -> np.ndarray: ...

    def retrieve(self, request: RecRequest, query_vector: np.ndarray, exclude_item_ids: frozenset[int]) -> CandidateSet: ...

    def rank(self, request: RecRequest, candidates: CandidateSet) -> dict[str, np.ndarray]: ...

    def stream_reply(self, request: RecRequest, service: str, item_ids: list[int], facts: list[str]) -> Iterator[str]: ...


@dataclass(frozen=True)
class ItemsChunk:
    """The ranked items (lower_snake arrays: item_ids, item_scores, item_names, ...) and the resolved service."""

    arrays: dict[str, np.ndarray]
    service: str


@dataclass(frozen=True)
class TextChunk:
    text: str


class ChatEngine:
    def __init__(self, sessions: SessionStore, stages: ChatStages):
        self.sessions = sessions
        self.stages = stages

    def turn(self, session_id, user_id, message, top_k, service="") -> Iterator[ItemsChunk | TextChunk]:
        """Validate everything before yielding, so a bad request fails before any chunk is sent."""
        session_id = validate_session_id(session_id)
        base = parse_request(user_id, message, top_k, service)
        history = self.sessions.history(session_id, base.user_id)
        context = next_turn_context(history, base.query, base.service, base.max_price)
        request = parse_request(base.user_id, context.effective_query, base.top_k, context.service)
        request = replace(request, max_price=context.max_price, language=base.language)
        return self._run(session_id, base.query, request, context)

    def _run(self, session_id: str, message: str, request: RecRequest, context) -> Iterator[ItemsChunk | TextChunk]:
        query_vector = self.stages.encode(request.query)
        candidates = self.stages.retrieve(request, query_vector, context.exclude_item_ids)
        arrays = self.stages.rank(request, candidates)
        yield ItemsChunk(arrays, candidates.service)
        item_ids = [int(i) for i in arrays[tensors.ITEM_IDS.client_name]]
        for delta in self.stages.stream_reply(request, candidates.service, item_ids, candidates.profile_facts):
            yield TextChunk(delta)
        prices = [float(p) for p in arrays[tensors.ITEM_PRICES.client_name]]
        self.sessions.append(session_id, request.user_id, message, context, candidates.service, item_ids, prices)


class InProcessChatStages:
    """ChatStages over an in-process ``RecPipeline``."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def encode(self, query: str) -> np.ndarray:
        return self.pipeline.encoder.encode([query])[0]

    def retrieve(self, request, query_vector, exclude_item_ids) -> CandidateSet:
        retrieval = self.pipeline.retriever.retrieve(request, query_vector, exclude_item_ids)
        facts = [f.text(request.language) for f, _ in retrieval.fragments]
        return CandidateSet(retrieval.candidate_ids, retrieval.candidate_scores, retrieval.service, facts,
                            retrieval.context)

    def rank(self, request, candidates: CandidateSet) -> dict[str, np.ndarray]:
        ranking = self.pipeline.ranking.rank(request, candidates.service, candidates.candidate_ids,
                                             candidates.candidate_scores, candidates.user_context)
        return tensors.client_arrays(self.pipeline.ranking.item_arrays(ranking))

    def stream_reply(self, request, service, item_ids, facts) -> Iterator[str]:
        return self.pipeline.generation.stream(service, request.language, request.query, item_ids, facts)
