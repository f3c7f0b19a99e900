"""``recllm eval`` arguments end to end on tiny data sets written to tmp_path (the quick presets)."""

from __future__ import annotations

import argparse

import pytest

from recllm.evaluation.cli_eval import add_eval_arguments, run_eval
from tests.recllm.evaluation.tiny_data import write_amazon_dir, write_food_kitchen_dir, write_tafeng_dir


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recllm eval")
    add_eval_arguments(parser)
    return parser.parse_args(argv)


def test_amazon_dir_quick_prints_and_writes_the_report(tmp_path, capsys, single_thread):
    folder = write_amazon_dir(tmp_path / "Tiny", name="Tiny_Toys", n_users=120)
    output = tmp_path / "out" / "report.md"
    with single_thread():
        assert run_eval(parse(["--amazon-dir", str(folder), "--quick", "--output", str(output)])) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# tiny_toys: leave-one-out next-item recommendation, full ranking over 30 items")
    assert "| ours test filtered |" in printed and "| SASRec (published, test) |" in printed
    assert output.read_text(encoding="utf-8") == printed.rstrip("\n") + "\n"


def test_tafeng_and_food_kitchen_quick_run_on_their_file_formats(tmp_path, capsys, single_thread):
    tafeng_dir = write_tafeng_dir(tmp_path / "tafeng")
    food_kitchen_dir = write_food_kitchen_dir(tmp_path / "food_kitchen")
    with single_thread():
        assert run_eval(parse(["--dataset", "tafeng", "--data-dir", str(tafeng_dir), "--quick"])) == 0
        assert run_eval(parse(["--dataset", "food_kitchen", "--data-dir", str(food_kitchen_dir), "--quick"])) == 0
    printed = capsys.readouterr().out
    assert "| TIFU-KNN (tuned on valid) |" in printed and "## Test users (n=6)" in printed   # every 10th user
    assert "## LLMCDSR protocol: target vs 999 sampled negatives of its domain" in printed
    assert "## Cross-domain lift for users with history in both domains" in printed


def test_exactly_one_source_is_required(capsys):
    with pytest.raises(SystemExit):
        parse(["--quick"])
    with pytest.raises(SystemExit):
        parse(["--dataset", "tafeng", "--amazon-dir", "x"])
    with pytest.raises(SystemExit):
        parse(["--dataset", "movies"])
    assert "invalid choice: 'movies'" in capsys.readouterr().err


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tafeng_history.json")):
        run_eval(parse(["--dataset", "tafeng", "--data-dir", str(tmp_path), "--quick"]))
    with pytest.raises(FileNotFoundError, match="no <Name>.txt"):
        run_eval(parse(["--amazon-dir", str(tmp_path)]))
    with pytest.raises(FileNotFoundError, match="recllm build"):
        run_eval(parse(["--dataset", "synthetic", "--artifact-dir", str(tmp_path / "none")]))
