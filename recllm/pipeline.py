"""The recommendation pipeline as four stages: encode → retrieve → rank → generate.

Each Triton model in ``model_repository/`` loads exactly one stage from a built artifact folder and calls it;
``RecPipeline`` chains the same stages in-process (for the benchmark's in-process baseline, for the builders
and for tests), so the served and the in-process paths run identical code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
from recllm_proto import tensors

from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.rag.catalog_index import CatalogIndex
from recllm.explanation.item_explanations import ExplanationConfig, explain_item
from recllm.profile.storage import ProfileStorage, open_profile_storage, profile_location
from recllm.profile.user_context import UserContext, read_user_context
from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.rec_request import RecRequest, parse_request
from recllm.rag.reranker import Reranker, candidate_features
from recllm.rag.retriever import Retrieval, Retriever, RetrieverConfig
from recllm_proto.text_arrays import utf8_array
from recllm.profile.user_signals import check_preference_source

if TYPE_CHECKING:  # the generator pulls in torch models: only the generation stage's process needs it
    from recllm.generator import GeneratedReply, ReplyCheckCounters, ReplyGenerator, ReplyRequest, Sampling

log = logging.getLogger(__name__)


@dataclass
class Ranking:
    item_ids: np.ndarray  # [K] int64, best first
    scores: np.ndarray  # [K] float32
    explanations: list[str]


@dataclass
class Recommendation:
    service: str
    items: list[dict]  # item_id, name, service, price, score, explanation
    reply: str
    profile_facts: list[str] = field(default_factory=list)


class RankingStage:
    """Reranker scores + per-item explanations for one request.

    The preference-similarity features use the user's DP release (``preference_source="released"``, as served);
    "raw" exists for tests of the raw signal only."""

    def __init__(self, catalog: Catalog, index: CatalogIndex, profile: ProfileStorage, reranker: Reranker,
                 explanation: ExplanationConfig | None = None, preference_source: str = "released"):
        check_preference_source("RankingStage preference_source", preference_source)
        self.catalog, self.index, self.profile, self.reranker = catalog, index, profile, reranker
        self.explanation = explanation or ExplanationConfig()
        self.preference_source = preference_source
        self.popularity = profile.item_popularity()

    def read_context(self, user_id: str) -> UserContext:
        return read_user_context(self.profile, self.catalog, self.index.item_vectors, user_id, self.preference_source)

    def rank(self, request: RecRequest, service: str, candidate_ids: np.ndarray, candidate_scores: np.ndarray,
             context: UserContext | None = None) -> Ranking:
        """Score and explain the candidates with the user's ``context`` as the retriever read it (read here only
        when the caller has none, e.g. offline evaluation)."""
        context = context if context is not None else self.read_context(request.user_id)
        signals = context.signals
        features = candidate_features(candidate_ids, candidate_scores, signals, service, self.catalog,
                                      self.index.item_vectors, self.popularity, context.now_ts)
        scores = self.reranker.score(features)
        order = np.argsort(-scores, kind="stable")[: request.top_k]
        explanations = [
            explain_item(self.catalog.get(int(i)), self.index.item_vectors[i], context.fragments, signals,
                         request.language, self.explanation)
            for i in candidate_ids[order]
        ]
        return Ranking(candidate_ids[order].astype(np.int64), scores[order].astype(np.float32), explanations)

    def item_arrays(self, ranking: Ranking) -> dict[str, np.ndarray]:
        """The ranked items as the reranker's output tensors (``recllm_proto.tensors.ITEM_OUTPUTS``, UPPER_SNAKE)."""
        items = [self.catalog.get(int(i)) for i in ranking.item_ids]
        return {
            tensors.ITEM_IDS.name: ranking.item_ids.astype(np.int64),
            tensors.ITEM_SCORES.name: ranking.scores.astype(np.float32),
            tensors.ITEM_NAMES.name: utf8_array([item.name for item in items]),
            tensors.ITEM_PRICES.name: np.array([item.price for item in items], dtype=np.float32),
            tensors.ITEM_SERVICES.name: utf8_array([item.service for item in items]),
            tensors.ITEM_EXPLANATIONS.name: utf8_array(ranking.explanations),
        }


@dataclass(frozen=True)
class ReplyTurn:
    """What the generator needs of one turn; ``act`` None = ``derive_act`` from the query and the ranked list."""

    service: str
    language: str
    query: str
    item_ids: tuple[int, ...]
    profile_facts: tuple[str, ...] = ()
    act: str | None = None
    relaxation: str = ""


class GenerationStage:
    """The Qwen2 reply generator, item spans constrained to the ranked items, replies checked after generation.

    ``sampling`` is the decoding of every reply (greedy by default). A reply that fails ``check_reply`` is
    regenerated greedily; failures are counted in ``counters`` (the Triton adapter exports them). A greedy stream
    is released token by token and checked when done (its greedy retry would be identical); a sampled one is
    checked, and regenerated if needed, before it is released."""

    def __init__(self, catalog: Catalog, generator: ReplyGenerator, sampling: Sampling | None = None,
                 counters: ReplyCheckCounters | None = None):
        from recllm.generator import GREEDY, ReplyCheckCounters  # noqa: PLC0415

        self.catalog = catalog
        self.generator = generator
        self.sampling = sampling or GREEDY
        self.counters = counters or ReplyCheckCounters()

    def item_name(self, item_id: int) -> str:
        return self.catalog.get(item_id).name

    def request(self, turn: ReplyTurn, sampling: Sampling | None = None) -> ReplyRequest:
        from recllm.generator import ReplyRequest, build_prompt, derive_act  # noqa: PLC0415

        act = turn.act or derive_act(turn.query, turn.item_ids)
        prompt = build_prompt(turn.service, turn.language, turn.query, list(turn.profile_facts), act, turn.relaxation)
        return ReplyRequest(prompt, tuple(int(i) for i in turn.item_ids), sampling or self.sampling)

    def check(self, turn: ReplyTurn, reply: GeneratedReply, retry: bool = False) -> bool:
        from recllm.generator.reply_check import check_reply  # noqa: PLC0415
        from recllm.generator.reply_prompt import prompt_facts  # noqa: PLC0415

        result = check_reply(reply.text, reply.item_ids, turn.item_ids, prompt_facts(turn.profile_facts),
                             [self.item_name(i) for i in reply.item_ids])
        self.counters.record(result, retry)
        return result.ok

    def generate_turns(self, turns: Sequence[ReplyTurn]) -> list[str | ValueError]:
        """Replies of several turns decoded as one batch (one forward per step), each checked; a failing reply is
        regenerated greedily (the retries as a second batch); a bad turn gets its own ``ValueError``."""
        from recllm.generator import GREEDY  # noqa: PLC0415

        requests = []
        results: list = [None] * len(turns)
        for i, turn in enumerate(turns):
            try:
                requests.append((i, self.request(turn)))
            except ValueError as exc:
                results[i] = exc
        replies = self.generator.generate_batch([r for _, r in requests], self.item_name)
        retry = []
        for (i, _), reply in zip(requests, replies):
            results[i] = reply
            if not isinstance(reply, ValueError) and not self.check(turns[i], reply):
                retry.append(i)
        if retry and self.sampling != GREEDY:
            for i in retry:
                self.counters.record_regeneration()
            again = self.generator.generate_batch([self.request(turns[i], GREEDY) for i in retry], self.item_name)
            for i, reply in zip(retry, again):
                if not isinstance(reply, ValueError):
                    self.check(turns[i], reply, retry=True)
                results[i] = reply
        return [r if isinstance(r, ValueError) else r.text for r in results]

    def stream(self, service: str, language: str, query: str, item_ids: Sequence[int],
               profile_facts: Sequence[str], act: str | None = None, relaxation: str = "") -> Iterator[str]:
        from recllm.generator import GREEDY  # noqa: PLC0415

        turn = ReplyTurn(service, language, query, tuple(int(i) for i in item_ids), tuple(profile_facts), act,
                         relaxation)
        request = self.request(turn)
        if self.sampling != GREEDY:
            reply = self.generate_turns([turn])[0]
            if isinstance(reply, ValueError):
                raise reply
            return iter([reply] if reply else [])
        return self._stream_checked(turn, request)

    def _stream_checked(self, turn: ReplyTurn, request: ReplyRequest) -> Iterator[str]:
        from recllm.generator import ReplyRenderer  # noqa: PLC0415

        tokens = self.generator.stream_batch([request])  # raises on a bad request at the first next()
        renderer = ReplyRenderer(self.generator.tokenizer, self.item_name)
        parts, items = [], []
        for _, token, item in tokens:
            delta = renderer.feed(token, item)
            if item is not None:
                items.append(item)
            if delta:
                parts.append(delta)
                yield delta
        tail = renderer.flush()
        if tail:
            parts.append(tail)
            yield tail
        from recllm.generator import GeneratedReply  # noqa: PLC0415

        self.check(turn, GeneratedReply("".join(parts), tuple(items), 0))

    def generate(self, service: str, language: str, query: str, item_ids: Sequence[int],
                 profile_facts: Sequence[str], act: str | None = None, relaxation: str = "") -> str:
        turn = ReplyTurn(service, language, query, tuple(int(i) for i in item_ids), tuple(profile_facts), act,
                         relaxation)
        reply = self.generate_turns([turn])[0]
        if isinstance(reply, ValueError):
            raise reply
        return reply


def load_catalog_and_index(layout: ArtifactLayout) -> tuple[Catalog, CatalogIndex]:
    catalog = Catalog.load_jsonl(layout.catalog)
    return catalog, CatalogIndex.load(layout.catalog_index_dir, catalog)


def load_retriever(layout: ArtifactLayout, config: RetrieverConfig | None = None) -> Retriever:
    catalog, index = load_catalog_and_index(layout)
    return Retriever(catalog, index, open_profile_storage(profile_location(layout.profile_db), read_only=True),
                     config or RetrieverConfig())


def load_ranking_stage(layout: ArtifactLayout) -> RankingStage:
    catalog, index = load_catalog_and_index(layout)
    return RankingStage(catalog, index, open_profile_storage(profile_location(layout.profile_db), read_only=True),
                        Reranker.load(layout.reranker_dir))


def load_generation_stage(layout: ArtifactLayout, generator_dir: Path | None = None,
                          sampling: Sampling | None = None) -> GenerationStage:
    """The generation stage of a build; ``generator_dir`` drops in another checkpoint folder in the same format
    (``train_generator``'s: HF-format Qwen2 weights + tokenizer.json + item_codes.npz)."""
    from recllm.generator import ReplyGenerator  # noqa: PLC0415

    return GenerationStage(Catalog.load_jsonl(layout.catalog), ReplyGenerator.load(generator_dir or layout.generator_dir),
                           sampling)


class RecPipeline:
    """All four stages in one process."""

    def __init__(self, encoder: QueryEncoder, retriever: Retriever, ranking: RankingStage, generation: GenerationStage):
        self.encoder, self.retriever, self.ranking, self.generation = encoder, retriever, ranking, generation
        self.catalog = retriever.catalog

    @classmethod
    def load(cls, artifact_dir: Path) -> "RecPipeline":
        layout = ArtifactLayout(artifact_dir)
        layout.require_built()
        return cls(QueryEncoder.load(layout.query_encoder_dir), load_retriever(layout),
                   load_ranking_stage(layout), load_generation_stage(layout))

    def retrieve_and_rank(self, request: RecRequest, exclude_item_ids: frozenset[int] = frozenset()
                          ) -> tuple[Retrieval, Ranking]:
        query_vector = self.encoder.encode([request.query])[0]
        retrieval = self.retriever.retrieve(request, query_vector, exclude_item_ids)
        ranking = self.ranking.rank(request, retrieval.service, retrieval.candidate_ids, retrieval.candidate_scores,
                                    retrieval.context)
        return retrieval, ranking

    def recommend(self, user_id: str, query: str, top_k: int = 5, service: str = "") -> Recommendation:
        request = parse_request(user_id, query, top_k, service)
        retrieval, ranking = self.retrieve_and_rank(request)
        facts = [f.text(request.language) for f, _ in retrieval.fragments]
        reply = self.generation.generate(retrieval.service, request.language, request.query, ranking.item_ids, facts)
        return Recommendation(retrieval.service, self.describe(ranking), reply, facts)

    def describe(self, ranking: Ranking) -> list[dict]:
        items = []
        for item_id, score, why in zip(ranking.item_ids.tolist(), ranking.scores.tolist(), ranking.explanations):
            item = self.catalog.get(item_id)
            items.append({"item_id": item_id, "name": item.name, "service": item.service, "price": item.price,
                          "score": score, "explanation": why})
        return items
