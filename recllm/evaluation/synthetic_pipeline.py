"""The seed's goal on its own data: Recall@10 > 0.4 of the full pipeline on the synthetic three-service test set.

The builder (``builders/build_artifacts.py``) holds out each user's last conversational request (by time) from the
training of the query encoder, reranker and generator and writes it to ``eval_queries.jsonl``; the user's purchase
history before it is in the profile database. This module replays those requests through ``RecPipeline``
(query encoder → retriever with the service / budget / dietary filters → reranker), with ``evaluate`` (the builder reports the same
figures at build time), and reports, overall and per service, Recall@10 = the share of requests whose picked item is
among the 10 returned items, beside the query-only order (the retriever's top 10 by retrieval score).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from recllm.artifacts import ArtifactLayout
from recllm.rag.rec_request import RecRequest, parse_request
from recllm.evaluation.report_table import EvalReport
from recllm.synthetic.records import QueryExample

if TYPE_CHECKING:
    from recllm.pipeline import RecPipeline

logger = logging.getLogger(__name__)

GOAL_RECALL_AT_10 = 0.4
PIPELINE, QUERY_ONLY = "recall_at_10_pipeline", "recall_at_10_query_only"


EVAL_K = 10


def request_of(query) -> RecRequest:
    return parse_request(query.user_id, query.text, EVAL_K, query.service)


def evaluate(pipeline: RecPipeline, queries: list) -> dict:
    """Recall@10 of the held-out picks: full pipeline vs the query-only (retrieval score) order."""
    hits_full = hits_query_only = 0
    for query in queries:
        retrieval, ranking = pipeline.retrieve_and_rank(request_of(query))
        hits_full += query.target_item_id in set(ranking.item_ids.tolist())
        hits_query_only += query.target_item_id in set(retrieval.candidate_ids[:EVAL_K].tolist())
    n = max(len(queries), 1)
    return {"held_out_requests": len(queries), "recall_at_10_pipeline": hits_full / n,
            "recall_at_10_query_only": hits_query_only / n}


def read_held_out(layout: ArtifactLayout) -> list[QueryExample]:
    """The held-out requests of a build (``eval_queries.jsonl``)."""
    return read_queries(layout.eval_queries)


def read_queries(path: Path) -> list[QueryExample]:
    """Requests as the build wrote them (``eval_queries.jsonl``, ``train_queries.jsonl``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `recllm build --force`")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [QueryExample(**{**row, "relevant_item_ids": tuple(row["relevant_item_ids"])}) for row in rows]


def evaluate_synthetic(artifact_dir: str | Path, max_requests: int | None = None) -> EvalReport:
    """Recall@10 of the pipeline and of the query-only order over the first ``max_requests`` held-out requests."""
    from recllm.pipeline import RecPipeline  # noqa: PLC0415

    if max_requests is not None and max_requests < 1:
        raise ValueError(f"evaluate_synthetic: max_requests must be >= 1 or None, got {max_requests!r}")
    layout = ArtifactLayout(artifact_dir)
    layout.require_built()
    queries = read_held_out(layout)[:max_requests]
    pipeline = RecPipeline.load(layout.root)
    rows, counts = {}, {}
    for service in sorted({query.service for query in queries}):
        subset = [query for query in queries if query.service == service]
        metrics = evaluate(pipeline, subset)
        counts[service] = len(subset)
        rows[f"{service} (n={len(subset)})"] = {"pipeline R@10": metrics[PIPELINE],
                                                "query-only R@10": metrics[QUERY_ONLY]}
    total = sum(counts.values())
    rows[f"all services (n={total})"] = {
        column: sum(row[column] * count for row, count in zip(rows.values(), counts.values())) / max(total, 1)
        for column in ("pipeline R@10", "query-only R@10")}
    manifest = layout.read_manifest() or {}
    report = EvalReport(
        "Synthetic three-service ecosystem: Recall@10 of the held-out request",
        f"Build `{layout.root}` (preset {manifest.get('preset')!r}, {manifest.get('users')} users, "
        f"{manifest.get('items')} items). Each user's last request (by time) is held out of all training; the "
        f"pipeline (query encoder → retriever with service/budget/dietary filters → reranker) returns 10 items for "
        f"it and a hit is the item the user picked. Query-only = the retriever's top 10 by retrieval score. "
        f"Seed goal: pipeline Recall@10 > {GOAL_RECALL_AT_10}.")
    report.add_table("synthetic", "Results", rows, ("pipeline R@10", "query-only R@10"))
    overall = rows[f"all services (n={total})"]["pipeline R@10"]
    verdict = "met" if overall > GOAL_RECALL_AT_10 else "NOT met"
    report.sections.append(f"Goal Recall@10 > {GOAL_RECALL_AT_10}: {verdict} ({overall:.4f}).")
    return report
