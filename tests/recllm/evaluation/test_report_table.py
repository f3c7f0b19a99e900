"""Markdown tables of recllm eval: fixed column order, "–" for values a row lacks, an optional note column."""

from recllm.evaluation.report_table import EvalReport, metrics_table


def test_table_keeps_column_order_and_marks_missing_values():
    text = metrics_table({"ours": {"R@10": 0.12345, "R@5": 0.1}, "paper": {"R@10": 0.0605}}, ["R@5", "R@10"])
    assert text.splitlines() == ["| row | R@5 | R@10 |", "|---|---|---|", "| ours | 0.1000 | 0.1235 |",
                                 "| paper | – | 0.0605 |"]


def test_notes_add_a_column_and_reports_keep_the_numbers():
    report = EvalReport("Title", "How it was measured.")
    report.add_table("main", "Results", {"a": {"R@5": 0.5}, "b": {"R@5": 0.25}}, ["R@5"], notes={"b": "filtered"},
                     text="Explanation.")
    markdown = report.markdown()
    assert markdown.startswith("# Title\n\nHow it was measured.\n\n## Results\n\nExplanation.\n\n")
    assert "| a | 0.5000 |  |" in markdown and "| b | 0.2500 | filtered |" in markdown
    assert report.numbers == {"main": {"a": {"R@5": 0.5}, "b": {"R@5": 0.25}}}


def test_a_protocol_column_names_each_rows_training_and_refuses_a_row_without_one():
    from recllm.evaluation.report_table import REFIT, STANDARD  # noqa: PLC0415

    rows = {"ours": {"R@5": 0.5}, "paper": {"R@5": 0.25}}
    report = EvalReport("Title", "How.")
    report.add_table("main", "Results", rows, ["R@5"], protocols={"ours": REFIT, "paper": STANDARD})
    assert f"| ours | 0.5000 | {REFIT} |" in report.markdown()
    assert f"| paper | 0.2500 | {STANDARD} |" in report.markdown()
    assert report.protocols == {"main": {"ours": REFIT, "paper": STANDARD}}
    try:
        report.add_table("second", "More", rows, ["R@5"], protocols={"ours": REFIT})
    except ValueError as error:
        assert "rows without a protocol: ['paper']" in str(error)
    else:
        raise AssertionError("a row without its protocol was printed")
    assert "second" not in report.numbers
