"""SASRec (full-softmax CE) on Amazon Beauty under the papers' full-ranking leave-one-out protocol.

Trains once on every user's sequence minus the last two items (the ``leave_one_out`` train split), then ranks all
12,101 items for the validation target (history = train sequence) and the test target (history = train sequence +
validation item), raw and history-filtered, and prints them next to the published numbers of the data set's README.
Writes ``benchmarks/results/beauty_sasrec.md`` with the command, training time and machine info.

    python -m benchmarks.beauty_sasrec [--preset default] [--epochs N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine_info import machine_info
from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR, leave_one_out, load_amazon_beauty
from recllm.datasets.interaction_dataset import NextItemExample
from recllm.seqrec.full_ranking import filter_history, metrics_from_ranks, target_ranks
from recllm.seqrec.sasrec import SASRec, SASRecConfig, score_histories, train_sasrec

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "beauty_sasrec.md"
SCORE_CHUNK = 1024
COLUMNS = ("R@5", "R@10", "R@20", "N@5", "N@10", "N@20")
# README of ../shared/data/amazon_beauty: full-ranking test numbers (R@10, N@10; R@5/N@5 where given).
PUBLISHED = {
    "SASRec (S3-Rec repo)": {"R@5": 0.0387, "N@5": 0.0249, "R@10": 0.0605, "N@10": 0.0318},
    "S3-Rec": {"R@5": 0.0387, "N@5": 0.0244, "R@10": 0.0647, "N@10": 0.0327},
    "TIGER": {"R@5": 0.0454, "N@5": 0.0321, "R@10": 0.0648, "N@10": 0.0384},
    "ActionPiece": {"R@10": 0.0775, "N@10": 0.0424},
    "eSASRec": {"R@10": 0.0928, "N@10": 0.0523},
}


def evaluate(model: SASRec, examples: list[NextItemExample]) -> dict[str, dict[str, float]]:
    """Raw and history-filtered full-ranking metrics, scored in chunks of ``SCORE_CHUNK`` users."""
    raw, filtered = [], []
    for offset in range(0, len(examples), SCORE_CHUNK):
        chunk = examples[offset:offset + SCORE_CHUNK]
        histories, targets = [ex.history for ex in chunk], [ex.target for ex in chunk]
        scores = score_histories(model, histories)
        raw.append(target_ranks(scores, targets))
        filtered.append(target_ranks(filter_history(scores, histories), targets))
    return {"raw": metrics_from_ranks(np.concatenate(raw)), "filtered": metrics_from_ranks(np.concatenate(filtered))}


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| model / split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:.4f}" if c in metrics else "–" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(command: str, config: SASRecConfig, train_seconds: float, rows: dict, info: dict) -> str:
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    return (f"# SASRec (full-softmax CE) on Amazon Beauty, full ranking over 12,101 items\n\n"
            f"Command: `{command}`\n\nConfig: `{config}`\n\n"
            f"Training: one run on the leave-one-out train split (all but the last 2 items per user); valid history ="
            f" train sequence, test history = train sequence + valid item (the model never trained on the valid"
            f" item). Training time: {train_seconds:.0f} s.\n\n{table(rows)}\n\n"
            f"Published rows are test numbers from `../shared/data/amazon_beauty/README.md`.\n\n## Machine\n\n{machine}\n")


def main(argv: list[str] | None = None) -> None:
    defaults = SASRecConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    info = machine_info()
    split = leave_one_out(load_amazon_beauty(args.data_dir))
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    config = SASRecConfig.from_name(args.preset, n_items=defaults.n_items, **overrides)
    start = time.perf_counter()
    model = train_sasrec(list(split.train.values()), config)
    train_seconds = time.perf_counter() - start
    valid, test = evaluate(model, split.valid), evaluate(model, split.test)
    rows = {"ours valid raw": valid["raw"], "ours valid filtered": valid["filtered"],
            "ours test raw": test["raw"], "ours test filtered": test["filtered"], **PUBLISHED}
    command = "python -m benchmarks.beauty_sasrec " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(rows))
    print(f"training time {train_seconds:.0f} s")
    Path(args.output).write_text(report(command.strip(), config, train_seconds, rows, info), encoding="utf-8")


if __name__ == "__main__":
    main()
