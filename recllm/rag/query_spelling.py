"""The query as every stage reads it: validated, its typos corrected to the catalog's words («кифир» → «кефир»;
``recllm.catalog.spelling``). The query encoder does it for the ensembles (its SPELLED_QUERY output), the chat
engine for a chat turn, ``RecPipeline`` in-process."""

from __future__ import annotations

from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.catalog.product_terms import Lemmatizer
from recllm.catalog.spelling import SpellingCorrector
from recllm.rag.rec_request import MAX_QUERY_CHARS, validate_query


def load_spelling(layout: ArtifactLayout) -> SpellingCorrector:
    """The typo correction over the build's catalog words, as the chat has it."""
    return SpellingCorrector.of(Catalog.load_jsonl(layout.catalog), Lemmatizer().is_known)


def spelled_query(spelling: SpellingCorrector, query: str | bytes) -> str:
    """The query validated (``validate_query``: a clear error for a bad one) with its typos corrected; as written
    when the correction would make it too long."""
    return spelling.correct(validate_query(query), MAX_QUERY_CHARS)
