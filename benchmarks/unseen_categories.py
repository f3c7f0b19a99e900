"""The Beauty-tuned next-item pipeline, untouched, on Amazon categories it has never seen, against plain SASRec.

The categories are Grocery & Gourmet Food and Home & Kitchen, written in the S3-Rec format by
``builders.export_amazon_format`` (5-core per domain, title words as attributes). On each:

- **SASRec**: the published baseline's recipe: ID embeddings only, one training on all but each user's last two
  items, valid target = second to last item, test target = last item with the validation item appended to the
  history (our SASRec implementation and its default hyper-parameters, as used on Beauty);
- **pipeline**: exactly what ``recllm eval --amazon-dir <folder>`` runs (``leave_one_out.run_pipeline`` with the
  default config): SASRec + attributes, item transitions, the candidate reranker; tuned on validation only.

Full ranking over all items of the category, raw and history-filtered. Each (category, method) result is stored in
``benchmarks/results/unseen_categories.json`` as it finishes (the runs are long; ``--methods`` picks which to run),
and the markdown report is rebuilt from every stored result, with the pipeline / SASRec ratio per metric.

    python -m benchmarks.unseen_categories [--categories food kitchen] [--methods sasrec pipeline] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.machine_info import machine_info
from builders.export_amazon_format import DEFAULT_OUTPUT as EXPORT_DIR
from builders.export_amazon_format import main as export_main
from recllm.datasets.amazon_beauty import leave_one_out, load_amazon_dir
from recllm.evaluation.leave_one_out import LeaveOneOutEvalConfig, run_pipeline
from recllm.seqrec.hybrid_scorer import chunked
from recllm.seqrec.sasrec import SASRecConfig, score_histories, train_sasrec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STORE_PATH = RESULTS_DIR / "unseen_categories.json"
REPORT_PATH = RESULTS_DIR / "unseen_categories.md"
CATEGORIES = ("food", "kitchen")
METHODS = ("sasrec", "pipeline")
COLUMNS = ("R@5", "R@10", "R@20", "N@5", "N@10", "N@20")
STAGE_NAMES = {"sasrec": "SASRec + attributes (refit)", "hybrid": "+ transitions", "reranked": "full pipeline"}


def run_plain_sasrec(folder: Path) -> dict:
    """One training of ID-only SASRec on the leave-one-out training split; valid and test metrics."""
    dataset = load_amazon_dir(folder)
    split = leave_one_out(dataset)
    config = replace(SASRecConfig(), n_items=max(dataset.item_domain))
    start = time.perf_counter()
    model = train_sasrec(list(split.train.values()), config)
    seconds = time.perf_counter() - start
    score = lambda histories: score_histories(model, histories)                              # noqa: E731
    stages = {}
    for name, examples in (("valid", split.valid), ("test", split.test)):
        stages[name] = {"sasrec": chunked(score, [list(e.history) for e in examples], [e.target for e in examples])}
    return {"test": stages["test"], "valid": stages["valid"], "seconds": {"train": seconds},
            "config": str(config), "users": len(dataset.sequences), "items": config.n_items}


def run_default_pipeline(folder: Path) -> dict:
    dataset = load_amazon_dir(folder)
    config, result = run_pipeline(dataset, LeaveOneOutEvalConfig.from_name("default").pipeline, folder)
    return {"test": result.test, "valid": result.valid, "seconds": result.seconds, "config": str(config),
            "transition_weight": result.transition_weight, "users": len(dataset.sequences),
            "items": config.hybrid.sasrec.n_items}


def _cells(metrics: dict[str, float]) -> list[str]:
    return [f"{metrics[c]:.4f}" for c in COLUMNS]


def category_table(category: str, stored: dict) -> list[str]:
    lines = [f"### {category}", ""]
    runs = {method: stored[f"{category}/{method}"] for method in METHODS if f"{category}/{method}" in stored}
    if not runs:
        return []
    any_run = next(iter(runs.values()))
    lines += [f"{any_run['users']:,} users, {any_run['items']:,} items.", "",
              "| method (test) | variant | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for variant in ("filtered", "raw"):
        if "sasrec" in runs:
            lines.append(f"| SASRec (ID only, one training) | {variant} | "
                         + " | ".join(_cells(runs["sasrec"]["test"]["sasrec"][variant])) + " |")
        if "pipeline" in runs:
            for stage, label in STAGE_NAMES.items():
                if stage in runs["pipeline"]["test"]:
                    lines.append(f"| {label} | {variant} | "
                                 + " | ".join(_cells(runs["pipeline"]["test"][stage][variant])) + " |")
        if len(runs) == 2:
            base = runs["sasrec"]["test"]["sasrec"][variant]
            final = "reranked" if "reranked" in runs["pipeline"]["test"] else "hybrid"
            ours = runs["pipeline"]["test"][final][variant]
            lines.append(f"| ratio full pipeline / SASRec | {variant} | "
                         + " | ".join(f"{ours[c] / base[c]:.2f}×" if base[c] else "–" for c in COLUMNS) + " |")
    lines.append("")
    for method, run in runs.items():
        timings = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run["seconds"].items())
        lines.append(f"- {method}: `{run['command']}` at {run['date_utc']} ({timings}); config `{run['config']}`"
                     + (f"; mixture weight {run['transition_weight']}" if "transition_weight" in run else ""))
    return lines + [""]


def write_report(stored: dict, path: Path) -> str:
    body = ["# The next-item pipeline on Amazon categories it was never tuned on", "",
            "Grocery & Gourmet Food and Home & Kitchen from the LLMCDSR Food–Kitchen release, each domain written in "
            "the S3-Rec format by `python -m builders.export_amazon_format` (all users' interactions in that domain, "
            "iterative 5-core, title words as attributes: the release has no brand or category metadata). "
            "Leave-one-out, full ranking over every item of the category, raw and history-filtered. SASRec = our "
            "ID-only SASRec with the default hyper-parameters, trained once on all but the last two items (the "
            "published baseline's recipe). Pipeline = `recllm eval --amazon-dir <folder>` with the defaults chosen "
            "on Beauty validation, nothing re-tuned. No published numbers exist for these derived splits.", ""]
    for category in CATEGORIES:
        body += category_table(category, stored)
    text = "\n".join(body)
    path.write_text(text + "\n", encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=list(CATEGORIES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-dir", type=Path, default=EXPORT_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not all((args.export_dir / category).is_dir() for category in args.categories):
        export_main(["--output", str(args.export_dir)])
    stored = json.loads(STORE_PATH.read_text(encoding="utf-8")) if STORE_PATH.exists() else {}
    command = "python -m benchmarks.unseen_categories " + " ".join(sys.argv[1:] if argv is None else argv)
    runners = {"sasrec": run_plain_sasrec, "pipeline": run_default_pipeline}
    for category in args.categories:
        for method in args.methods:
            info = machine_info()
            run = runners[method](args.export_dir / category)
            run.update(command=command.strip(), date_utc=info["date_utc"], machine=info)
            stored[f"{category}/{method}"] = run
            STORE_PATH.write_text(json.dumps(stored, indent=1), encoding="utf-8")
            print(write_report(stored, REPORT_PATH), flush=True)


if __name__ == "__main__":
    main()
