"""Published numbers of a data set, read from the "Published ..." markdown table of its README.

The data set folders in ``../shared/data`` document the numbers the papers report (Amazon Beauty: SASRec, S3-Rec,
TIGER, ActionPiece, eSASRec, ...). ``recllm eval`` prints them beside ours; reading them from the README keeps one
source of truth and gives ``--amazon-dir`` folders of other categories their own rows when their README has them.

Which variant each number is: S3-Rec's full-sort evaluation sets the scores of the user's history items to zero
before ranking, so rows whose source is the S3-Rec repository are history-filtered; for the others the README does
not say, and neither do we.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

METRIC_COLUMN = re.compile(r"^[RN]@\d+$")
S3REC_SOURCE = "s3-rec repo"
SAME_SOURCE = {"same", "same as above", "ditto", "\""}   # a source cell pointing at the row above
FILTERED_NOTE = "history-filtered (S3-Rec full-sort code)"
UNKNOWN_NOTE = "filtering not stated"


@dataclass(frozen=True)
class PublishedRow:
    model: str
    metrics: dict[str, float]   # "R@10" -> 0.0605; footnoted values ("0.0511*") are kept, missing ("–") left out
    source: str
    note: str                   # FILTERED_NOTE or UNKNOWN_NOTE


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(cell: str) -> float | None:
    try:
        return float(cell.rstrip("*"))
    except ValueError:
        return None


def parse_published_table(readme_text: str) -> list[PublishedRow]:
    """Rows of the first table whose header is ``| model | R@k / N@k columns ... | source |``; [] when none."""
    lines = readme_text.splitlines()
    for start, line in enumerate(lines):
        header = _cells(line) if line.lstrip().startswith("|") else []
        if not header or header[0].lower() != "model" or not any(METRIC_COLUMN.match(c) for c in header):
            continue
        rows, previous_source = [], ""
        for body in lines[start + 2:]:
            if not body.lstrip().startswith("|"):
                break
            cells = _cells(body)
            values = dict(zip(header, cells))
            metrics = {column: number for column, cell in values.items()
                       if METRIC_COLUMN.match(column) and (number := _number(cell)) is not None}
            source = values.get("source", "")
            source = previous_source if source.lower() in SAME_SOURCE else source
            previous_source = source
            note = FILTERED_NOTE if S3REC_SOURCE in source.lower() else UNKNOWN_NOTE
            rows.append(PublishedRow(cells[0], metrics, source, note))
        return rows
    return []


def published_rows(data_dir: str | Path) -> list[PublishedRow]:
    """The published table of ``data_dir/README.md``; [] when there is no README or no such table."""
    readme = Path(data_dir) / "README.md"
    return parse_published_table(readme.read_text(encoding="utf-8")) if readme.is_file() else []
