"""Explanation faithfulness: does each shown explanation cite only profile facts whose removal lowers the score?

For the held-out requests of a build (in-process, top 5 per request), each shown item's causal explanation
(``recllm.explanation.causal_explanations``, what the server sends) is re-checked independently: every cited fact's
purchases are removed, the reranker's features recomputed and the item re-scored. For comparison the earlier
explanation (``recllm.explanation.item_explanations.explain_item``: the profile fragment nearest to the item by
cosine, else «вы уже брали этот товар») is checked the same way — the purchases behind its fragment (its category in
its service) or behind the repeat purchase (the item's family) removed. Reported for both: faithfulness (the share
of shown explanations whose every cited fact lowers the score when removed; one citing nothing passes) and how often
no fact qualifies (no history cited).

    python -m benchmarks.explanation_faithfulness --artifacts DIR [--requests 300] \
        [--out benchmarks/results/explanation_faithfulness.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.evaluation.synthetic_pipeline import read_held_out
from recllm.explanation.causal_explanations import counterfactual_scores, fact_groups, faithfulness
from recllm.explanation.item_explanations import ExplanationConfig, best_fragment
from recllm.pipeline import RecPipeline
from recllm.rag.rec_request import parse_request
from recllm.safety.health_rule import citable_fragments

TOP_K = 5


def drop_without(pipeline: RecPipeline, context, item_id: int, retrieval_score: float, service: str,
                 positions: list[int]) -> float:
    """How much the item's reranker score falls with the purchases at ``positions`` removed (0 when none)."""
    if not positions:
        return 0.0
    ranking = pipeline.ranking
    full, without = counterfactual_scores(item_id, retrieval_score, service, context, [positions], ranking.reranker,
                                          ranking.catalog, ranking.index.item_vectors, ranking.popularity)
    return float(full - without)


def baseline_positions(pipeline: RecPipeline, context, item_id: int, config: ExplanationConfig) -> list[int] | None:
    """The purchases the nearest-fragment explanation cites for the item (None: it cites no history)."""
    catalog = pipeline.catalog
    item = catalog.get(item_id)
    fragment, score = best_fragment(item, pipeline.ranking.index.item_vectors[item_id],
                                    citable_fragments(context.fragments))
    if fragment is not None and score >= config.min_fragment_similarity:
        return [k for k, e in enumerate(context.purchases)
                if e.service == fragment.service and catalog.get(e.item_id).category_id == fragment.category_id]
    if context.signals.family_counts.get(item.family_id):
        return [k for k, e in enumerate(context.purchases) if catalog.get(e.item_id).family_id == item.family_id]
    return None


def request_drops(pipeline: RecPipeline, request) -> tuple[list[list[float]], list[list[float]]]:
    """Per shown item: the re-measured drops of the facts the causal explanation cites, and of the baseline's."""
    retrieval, ranking = pipeline.retrieve_and_rank(request)
    context, service = retrieval.context, retrieval.service
    retrieval_score = dict(zip(retrieval.candidate_ids.tolist(), retrieval.candidate_scores.tolist()))
    causal, baseline = [], []
    for explanation in ranking.causal:
        item_id, score = explanation.item_id, retrieval_score[explanation.item_id]
        groups = fact_groups(pipeline.catalog.get(item_id), context.purchases, pipeline.catalog)
        causal.append([drop_without(pipeline, context, item_id, score, service, groups[(f.signal, f.service)])
                       for f in explanation.facts])
        positions = baseline_positions(pipeline, context, item_id, ExplanationConfig())
        baseline.append([] if positions is None else [drop_without(pipeline, context, item_id, score, service,
                                                                   positions)])
    return causal, baseline


def run(artifacts: Path, requests: int) -> dict:
    pipeline = RecPipeline.load(artifacts)
    min_drop = pipeline.ranking.explanation.min_score_drop
    causal, baseline, started = [], [], time.monotonic()
    for query in read_held_out(ArtifactLayout(artifacts))[:requests]:
        c, b = request_drops(pipeline, parse_request(query.user_id, query.text, TOP_K, query.service))
        causal += c
        baseline += b
    return {"requests": min(requests, len(read_held_out(ArtifactLayout(artifacts)))), "min_score_drop": min_drop,
            "causal": faithfulness(causal, min_drop), "nearest_fragment": faithfulness(baseline, min_drop),
            "seconds": round(time.monotonic() - started, 1)}


def markdown(result: dict, command: str, info: dict) -> str:
    rows = "\n".join(f"| {name} | {r['faithfulness']:.3f} | {r['no_fact_rate']:.3f} | {int(r['shown'])} |"
                     for name, r in (("causal (served)", result["causal"]),
                                     ("nearest fragment (before)", result["nearest_fragment"])))
    return (f"# Explanation faithfulness\n\n`{command}` — {result['requests']} held-out requests, top {TOP_K}, "
            f"a fact passes when its removal lowers the score by more than {result['min_score_drop']:g} "
            f"({result['seconds']} s).\n\n| explanation | faithfulness | no fact qualifies | shown |\n"
            f"|---|---|---|---|\n{rows}\n\nMachine: {json.dumps(info, ensure_ascii=False)}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/default"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/explanation_faithfulness.md"))
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error(f"--requests must be >= 1, got {args.requests}")
    result = run(args.artifacts, args.requests)
    command = "python -m benchmarks.explanation_faithfulness " + " ".join(argv or sys.argv[1:])
    args.out.write_text(markdown(result, command, machine_info()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
