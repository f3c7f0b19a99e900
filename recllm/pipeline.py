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
from recllm.generator.reply_prompt import build_prompt
from recllm.rag.rec_request import RecRequest, parse_request
from recllm.rag.reranker import Reranker, candidate_features
from recllm.rag.retriever import Retrieval, Retriever, RetrieverConfig
from recllm_proto.text_arrays import utf8_array
from recllm.profile.user_signals import check_preference_source

if TYPE_CHECKING:  # the generator pulls in transformers: only the generation stage's process needs it
    from recllm.generator import ReplyGenerator

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


class GenerationStage:
    """The Qwen2 reply generator, constrained to the ranked items."""

    def __init__(self, catalog: Catalog, generator: ReplyGenerator):
        self.catalog = catalog
        self.generator = generator

    def item_name(self, item_id: int) -> str:
        return self.catalog.get(item_id).name

    def stream(self, service: str, language: str, query: str, item_ids: Sequence[int],
               profile_facts: Sequence[str]) -> Iterator[str]:
        prompt = build_prompt(service, language, query, profile_facts)
        return self.generator.stream(prompt, [int(i) for i in item_ids], self.item_name)

    def generate(self, service: str, language: str, query: str, item_ids: Sequence[int],
                 profile_facts: Sequence[str]) -> str:
        return "".join(self.stream(service, language, query, item_ids, profile_facts))


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


def load_generation_stage(layout: ArtifactLayout) -> GenerationStage:
    from recllm.generator import ReplyGenerator  # noqa: PLC0415

    return GenerationStage(Catalog.load_jsonl(layout.catalog), ReplyGenerator.load(layout.generator_dir))


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
