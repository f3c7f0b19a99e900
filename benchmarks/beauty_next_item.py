"""The full next-item pipeline on Amazon Beauty under the papers' leave-one-out full-ranking protocol.

SASRec with attribute features + item transitions (mixture weight chosen on validation), a candidate reranker fitted
on validation lists, the first stage refitted on train + validation for the test targets
(``recllm.seqrec.next_item_pipeline``). Ranks all 12,101 items, raw and history-filtered, and prints the published
numbers beside ours (``recllm.evaluation.published``: which variant each uses where known). Writes
``benchmarks/results/beauty_next_item.md`` with the exact command, timings and machine info.

    python -m benchmarks.beauty_next_item [--epochs N] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.machine_info import machine_info
from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR, leave_one_out, load_amazon_beauty
from recllm.evaluation.published import published_rows
from recllm.seqrec.hybrid_scorer import HybridConfig
from recllm.evaluation.leave_one_out import item_side_info
from recllm.seqrec.candidate_reranker import FEATURE_GROUPS
from recllm.seqrec.next_item_pipeline import NextItemPipelineConfig, PipelineResult, run_leave_one_out
from recllm.seqrec.sasrec import SASRecConfig

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "beauty_next_item.md"
COLUMNS = ("R@5", "R@10", "R@20", "N@5", "N@10", "N@20")
STAGE_NAMES = {"sasrec": "SASRec + attributes", "hybrid": "+ transitions (mixture)", "reranked": "+ reranker (full)"}


def result_rows(result: PipelineResult) -> list[tuple[str, dict[str, float]]]:
    rows = []
    for split_name, stages in (("test", result.test), ("valid", result.valid)):
        for stage, variants in stages.items():
            for variant in ("filtered", "raw"):
                rows.append((f"ours {split_name}: {STAGE_NAMES.get(stage, stage)}, {variant}", variants[variant]))
    return rows


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = ["| model / split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, metrics in rows:
        cells = [f"{metrics[c]:.4f}" if c in metrics else "–" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=SASRecConfig().epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    info = machine_info()
    data_dir = Path(args.data_dir)
    split = leave_one_out(load_amazon_beauty(data_dir))
    sasrec = SASRecConfig(epochs=args.epochs)
    start = time.perf_counter()
    side = item_side_info(data_dir, sasrec.n_items)
    config = NextItemPipelineConfig(hybrid=replace(HybridConfig(), sasrec=sasrec), ablations=tuple(FEATURE_GROUPS))
    result = run_leave_one_out(split, side, config, item_features=side.attributes)
    total = time.perf_counter() - start
    published = [(f"{row.model} ({row.note})", row.metrics) for row in published_rows(data_dir)]
    body = table(result_rows(result) + published)
    command = "python -m benchmarks.beauty_next_item " + " ".join(sys.argv[1:] if argv is None else argv)
    timings = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items())
    print(body)
    print(f"total {total:.0f} s ({timings}); mixture weight {result.transition_weight}")
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    Path(args.output).write_text(
        f"# Next-item pipeline on Amazon Beauty, full ranking over 12,101 items\n\n"
        f"Command: `{command.strip()}`\n\nConfig: `{config}`\n\n"
        f"Protocol: leave-one-out; validation target = second-to-last item (history = the rest before it), test target"
        f" = last item. Phase 1 fits the first stage on all but the last two items, chooses the mixture weight on the"
        f" validation targets (history-filtered N@10 by weight: "
        f"{ {w: round(v, 4) for w, v in result.weight_search.items()} } → {result.transition_weight}) and fits the"
        f" reranker on the validation candidate lists. Phase 2 refits the first stage with the same hyper-parameters on"
        f" all but the last item and ranks the test targets; nothing is tuned on test. Validation rows of the first"
        f" stage are optimistic (the weight was chosen on them); the reranker has no validation row (validation is its"
        f" training data). The reranker reads the first-stage scores, the log-probability of each candidate's Semantic"
        f" ID under the SID generator ({result.generative_epochs} epochs per phase), repeat, attribute, content-profile"
        f" and cross-service features (`recllm.seqrec.candidate_reranker.FEATURE_GROUPS`); each 'reranked without"
        f" <group>' row is a reranker fitted on the same validation lists with that group's columns zeroed (an"
        f" ablation, reported on test only, never used to choose anything)."
        f" Wall time {total:.0f} s ({timings}).\n\n{body}\n\n"
        f"Published rows: test numbers from `../shared/data/amazon_beauty/README.md`, with the variant where known.\n\n"
        f"## Machine\n\n{machine}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
