"""The unseen-categories report: one table per stored category, a pipeline / SASRec ratio row only when both
methods ran, categories without a stored result left out."""

from __future__ import annotations

from benchmarks.unseen_categories import COLUMNS, category_table, write_report


def metrics(scale: float, zero_n20: bool = False) -> dict[str, float]:
    values = {"R@5": 0.10, "R@10": 0.16, "R@20": 0.24, "N@5": 0.06, "N@10": 0.08, "N@20": 0.10}
    return {name: 0.0 if zero_n20 and name == "N@20" else value * scale for name, value in values.items()}


def sasrec_run(zero_n20: bool = False) -> dict:
    return {"test": {"sasrec": {"raw": metrics(1.0, zero_n20), "filtered": metrics(1.2, zero_n20)}},
            "valid": {}, "seconds": {"train": 61.9}, "config": "SASRecConfig(epochs=18)", "users": 7128,
            "items": 3680, "command": "python -m benchmarks.unseen_categories --methods sasrec",
            "date_utc": "2026-11-24T07:00:40Z"}


def pipeline_run() -> dict:
    stages = {"sasrec": 1.1, "hybrid": 1.3, "reranked": 1.5}
    return {"test": {stage: {"raw": metrics(scale), "filtered": metrics(scale * 1.2)}
                     for stage, scale in stages.items()},
            "valid": {}, "seconds": {"fit_first_stage_train": 100.0, "fit_reranker": 4.0}, "config": "Pipeline()",
            "transition_weight": 0.3, "users": 7128, "items": 3680,
            "command": "python -m benchmarks.unseen_categories --methods pipeline", "date_utc": "2026-11-24T07:30:00Z"}


def row(lines: list[str], label: str, variant: str) -> list[str]:
    found = [line for line in lines if line.startswith(f"| {label} | {variant} |")]
    assert len(found) == 1, (label, variant, lines)
    return [cell.strip() for cell in found[0].strip("|").split("|")][2:]


def test_both_methods_give_a_ratio_row_per_variant():
    lines = category_table("food", {"food/sasrec": sasrec_run(zero_n20=True), "food/pipeline": pipeline_run()})
    assert lines[0] == "### food" and "7,128 users, 3,680 items." in lines
    ratio = row(lines, "ratio full pipeline / SASRec", "raw")
    assert ratio == ["1.50×"] * (len(COLUMNS) - 1) + ["–"]             # N@20 of SASRec is 0: no ratio
    assert row(lines, "ratio full pipeline / SASRec", "filtered")[0] == "1.50×"
    assert row(lines, "SASRec (ID only, one training)", "raw")[0] == "0.1000"
    assert row(lines, "full pipeline", "filtered")[0] == "0.1800"
    assert row(lines, "+ transitions", "raw")[COLUMNS.index("R@10")] == "0.2080"
    assert row(lines, "SASRec + attributes (refit)", "raw")[0] == "0.1100"
    notes = [line for line in lines if line.startswith("- ")]
    assert len(notes) == 2 and "mixture weight 0.3" in notes[1] and "train 62 s" in notes[0]


def test_one_method_has_no_ratio_row_and_a_missing_category_is_skipped(tmp_path):
    stored = {"kitchen/pipeline": pipeline_run()}
    path = tmp_path / "unseen_categories.md"
    text = write_report(stored, path)
    assert path.read_text(encoding="utf-8") == text + "\n"
    assert "### food" not in text and "### kitchen" in text
    assert "ratio" not in text and "SASRec (ID only" not in text
    assert "| full pipeline | raw | 0.1500 |" in text
    assert category_table("food", stored) == []


def test_report_holds_every_stored_category_in_order(tmp_path):
    stored = {"kitchen/sasrec": sasrec_run(), "food/sasrec": sasrec_run(), "food/pipeline": pipeline_run()}
    text = write_report(stored, tmp_path / "report.md")
    assert text.index("### food") < text.index("### kitchen")
    food, kitchen = text.split("### kitchen")
    assert food.count("| ratio full pipeline / SASRec |") == 2 and "ratio" not in kitchen
