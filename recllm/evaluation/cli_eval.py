"""``recllm eval``: run one evaluation protocol and print its report (markdown).

    recllm eval --dataset beauty|food_kitchen|tafeng|synthetic [--quick] [--data-dir DIR] [--output FILE]
    recllm eval --amazon-dir DIR [--quick]     any S3-Rec-format folder, trained from scratch with the defaults
                                               (``python -m builders.export_amazon_format`` writes Grocery & Gourmet
                                               Food and Home & Kitchen in that format from the Food–Kitchen data)

``--quick`` runs each protocol's small preset (fewer users, a tiny model; the synthetic protocol replays only the
first held-out requests) for tests and CI. ``recllm_cli/main.py`` wires ``add_eval_arguments`` / ``run_eval`` in.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from recllm.evaluation.report_table import EvalReport
from recllm.artifacts import DEFAULT_ARTIFACT_DIR

logger = logging.getLogger(__name__)

DATASETS = ("beauty", "food_kitchen", "tafeng", "synthetic")
QUICK_SYNTHETIC_REQUESTS = 60


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=DATASETS, help="a data set of ../shared/data, or the synthetic build")
    source.add_argument("--amazon-dir", type=Path, default=None,
                        help="a folder in the amazon_beauty format: <Name>.txt, <Name>_item2attributes.json, "
                             "items.jsonl (trained from scratch with the default hyper-parameters)")
    parser.add_argument("--quick", action="store_true", help="small configuration for tests and CI")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder of the --dataset files (default: ../shared/data/<data set>)")
    parser.add_argument("--artifact-dir", type=Path, default=DEFAULT_ARTIFACT_DIR,
                        help="artifact build evaluated by --dataset synthetic")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report to this file")


def _data_dir(args, default: Path) -> Path:
    return args.data_dir if args.data_dir is not None else default


def evaluation_report(args: argparse.Namespace) -> EvalReport:
    """Run the protocol the arguments name and return its report (raises ValueError / FileNotFoundError)."""
    preset = "quick" if args.quick else "default"
    if args.amazon_dir is not None or args.dataset == "beauty":
        from recllm.datasets import amazon_beauty  # noqa: PLC0415
        from recllm.evaluation.leave_one_out import LeaveOneOutEvalConfig, evaluate_leave_one_out  # noqa: PLC0415

        folder = args.amazon_dir if args.amazon_dir is not None else _data_dir(args, amazon_beauty.DEFAULT_DATA_DIR)
        dataset = amazon_beauty.load_amazon_dir(folder)
        return evaluate_leave_one_out(dataset, LeaveOneOutEvalConfig.from_name(preset), folder)
    if args.dataset == "food_kitchen":
        from recllm.datasets import food_kitchen  # noqa: PLC0415
        from recllm.evaluation.cross_domain import CrossDomainEvalConfig, evaluate_food_kitchen  # noqa: PLC0415

        dataset = food_kitchen.load_food_kitchen(_data_dir(args, food_kitchen.DEFAULT_DATA_DIR))
        return evaluate_food_kitchen(dataset, CrossDomainEvalConfig.from_name(preset))
    if args.dataset == "tafeng":
        from recllm.datasets import tafeng  # noqa: PLC0415
        from recllm.evaluation.next_basket import NextBasketEvalConfig, evaluate_tafeng  # noqa: PLC0415

        dataset = tafeng.load_tafeng(_data_dir(args, tafeng.DEFAULT_DATA_DIR))
        return evaluate_tafeng(dataset, NextBasketEvalConfig.from_name(preset))
    if args.dataset == "synthetic":
        from recllm.evaluation.synthetic_pipeline import evaluate_synthetic  # noqa: PLC0415

        return evaluate_synthetic(args.artifact_dir, QUICK_SYNTHETIC_REQUESTS if args.quick else None)
    raise ValueError(f"recllm eval: give --dataset (one of {', '.join(DATASETS)}) or --amazon-dir")


def run_eval(args: argparse.Namespace) -> int:
    report = evaluation_report(args)
    text = report.markdown()
    print(text, flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m recllm.evaluation.cli_eval ...``: the same as ``recllm eval ...``."""
    parser = argparse.ArgumentParser(prog="recllm eval", description=__doc__.splitlines()[0])
    add_eval_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_eval(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
