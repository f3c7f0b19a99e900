"""Published numbers are read from the data set README's table, with the variant (history-filtered or not stated)."""

from __future__ import annotations

import pytest

from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR
from recllm.evaluation.published import FILTERED_NOTE, UNKNOWN_NOTE, parse_published_table, published_rows

README = """# Data

| file | size |
|---|---|
| a.txt | 3 |

## Published

| model | R@5 | N@5 | R@10 | N@10 | source |
|---|---|---|---|---|---|
| SASRec | 0.0387 | 0.0249 | 0.0605 | 0.0318 | S3-Rec repo `all_rank.PNG` |
| S3-Rec | 0.0387 | 0.0244 | 0.0647 | 0.0327 | same |
| ActionPiece | 0.0511* | 0.0340* | 0.0775 | 0.0424 | eSASRec README |
| GRAM | 0.0641 | 0.0451 | – | – | third-party |

Text after.
"""


def test_the_model_table_is_parsed_with_footnotes_and_gaps():
    rows = parse_published_table(README)
    assert [row.model for row in rows] == ["SASRec", "S3-Rec", "ActionPiece", "GRAM"]
    assert rows[0].metrics == {"R@5": 0.0387, "N@5": 0.0249, "R@10": 0.0605, "N@10": 0.0318}
    assert rows[2].metrics["R@5"] == 0.0511
    assert rows[3].metrics == {"R@5": 0.0641, "N@5": 0.0451}
    assert [row.note for row in rows] == [FILTERED_NOTE, FILTERED_NOTE, UNKNOWN_NOTE, UNKNOWN_NOTE]


def test_no_table_or_no_readme_gives_no_rows(tmp_path):
    assert parse_published_table("# Nothing\n\n| file | size |\n|---|---|\n") == []
    assert published_rows(tmp_path) == []


def test_the_beauty_readme_gives_the_issue_numbers():
    if not (DEFAULT_DATA_DIR / "README.md").is_file():
        pytest.skip(f"Amazon Beauty README not found at {DEFAULT_DATA_DIR}")
    rows = {row.model.split(" (")[0]: row for row in published_rows(DEFAULT_DATA_DIR)}
    assert rows["SASRec"].metrics["R@10"] == 0.0605 and rows["SASRec"].note == FILTERED_NOTE
    assert rows["TIGER"].metrics["N@10"] == 0.0384 and rows["TIGER"].note == UNKNOWN_NOTE
    assert rows["eSASRec"].metrics == {"R@10": 0.0928, "N@10": 0.0523}
