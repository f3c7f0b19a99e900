"""The synthetic protocol replays the build's held-out requests through RecPipeline: on the session's test build its
overall numbers are the build's own evaluation, and the per-service rows add up to them."""

from __future__ import annotations

import json

import pytest

from recllm.evaluation.synthetic_pipeline import evaluate_synthetic, read_held_out


def test_overall_recall_equals_the_builds_own_evaluation(test_artifacts):
    report = evaluate_synthetic(test_artifacts.root)
    rows = report.numbers["synthetic"]
    manifest = test_artifacts.read_manifest()["evaluation"]
    total = f"all services (n={manifest['held_out_requests']})"
    assert rows[total]["pipeline R@10"] == pytest.approx(manifest["recall_at_10_pipeline"])
    assert rows[total]["query-only R@10"] == pytest.approx(manifest["recall_at_10_query_only"])
    services = {name.split(" ")[0] for name in rows} - {"all"}
    assert services <= {"samokat", "megamarket", "kuper"} and services
    assert "Seed goal: pipeline Recall@10 > 0.4" in report.markdown()


def test_quick_runs_replay_the_first_requests(test_artifacts):
    queries = read_held_out(test_artifacts)
    report = evaluate_synthetic(test_artifacts.root, max_requests=5)
    assert f"all services (n={min(5, len(queries))})" in report.numbers["synthetic"]
    assert queries[0].relevant_item_ids == tuple(json.loads(
        test_artifacts.eval_queries.read_text(encoding="utf-8").splitlines()[0])["relevant_item_ids"])


def test_bad_arguments_are_named(test_artifacts, tmp_path):
    with pytest.raises(ValueError, match="max_requests"):
        evaluate_synthetic(test_artifacts.root, max_requests=0)
    with pytest.raises(FileNotFoundError, match="recllm build"):
        evaluate_synthetic(tmp_path)
