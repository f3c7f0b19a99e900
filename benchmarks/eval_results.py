"""Run one ``recllm eval`` protocol on the real data and write ``benchmarks/results/eval_<data set>.md``.

The report is the same markdown ``recllm eval`` prints, headed by the exact command, the wall time and the machine
(``machine_info``). Run it under the shared CPU lock, one at a time:

    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.eval_results --dataset food_kitchen
    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.eval_results --dataset tafeng
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from benchmarks.machine_info import machine_info
from recllm.evaluation.cli_eval import add_eval_arguments, evaluation_report

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def result_path(args: argparse.Namespace) -> Path:
    name = args.dataset if args.dataset else Path(args.amazon_dir).name.lower()
    return RESULTS_DIR / f"eval_{name}{'_quick' if args.quick else ''}.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_eval_arguments(parser)
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.torch_threads)
    info = machine_info()
    start = time.perf_counter()
    report = evaluation_report(args)
    seconds = time.perf_counter() - start
    command = ".venv/bin/python -m benchmarks.eval_results " + " ".join(
        sys.argv[1:] if argv is None else argv)
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    text = (f"Command: `{command.strip()}` (the same protocol as `recllm eval`), wall time {seconds:.0f} s.\n\n"
            f"{report.markdown()}\n## Machine\n\n{machine}\n")
    output = args.output or result_path(args)
    output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
