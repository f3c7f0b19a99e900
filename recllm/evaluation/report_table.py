"""Markdown tables and the report object every protocol of ``recllm eval`` returns.

A protocol produces named rows of metrics (``{"test raw": {"R@10": 0.07, ...}}``); ``metrics_table`` prints them
with a fixed column order, "–" where a row has no value (published rows often give only R@10 / N@10), and, when
given, the training protocol behind each row: numbers from a model trained once on all but the last two items
(``STANDARD``, the papers' convention) and from one refitted on train + valid before test (``REFIT``) are not the
same experiment, so every row says which it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

MetricRows = dict[str, dict[str, float]]

# The protocol column's labels (leave-one-out style splits: train = all but the last two items, valid = second to
# last, test = last).
STANDARD = "standard: trained once on train (all but the last two), test history includes the valid item"
REFIT = "refit: retrained on train + valid (all but the last item) before test"
VALID = "valid: trained on train (all but the last two)"
PUBLISHED_STANDARD = "standard (S3-Rec code: one training on all but the last two)"
PUBLISHED_UNSTATED = "as published: training protocol not stated"


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], first_column: str = "row",
                  notes: Mapping[str, str] | None = None, protocols: Mapping[str, str] | None = None) -> str:
    """A markdown table: one line per row, the metric columns in ``columns`` order, then optional note and protocol
    columns. With ``protocols``, every row must have one (a number without its protocol is refused)."""
    if protocols is not None:
        missing = [name for name in rows if not protocols.get(name)]
        if missing:
            raise ValueError(f"metrics_table: rows without a protocol: {missing}")
    header = [first_column, *columns] + (["note"] if notes else []) + (["protocol"] if protocols else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [f"{metrics[column]:.4f}" if column in metrics else "–" for column in columns]
        if notes:
            cells.append(notes.get(name, ""))
        if protocols:
            cells.append(protocols[name])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class EvalReport:
    """What one ``recllm eval`` run found: a title, the protocol in words, markdown sections, and the numbers."""

    title: str
    protocol: str
    sections: list[str] = field(default_factory=list)
    numbers: dict[str, MetricRows] = field(default_factory=dict)   # table name -> rows, for tests and scripts
    protocols: dict[str, dict[str, str]] = field(default_factory=dict)  # table name -> row -> protocol label

    def add_table(self, name: str, heading: str, rows: MetricRows, columns: Sequence[str],
                  notes: Mapping[str, str] | None = None, text: str = "",
                  protocols: Mapping[str, str] | None = None) -> None:
        body = metrics_table(rows, columns, notes=notes, protocols=protocols)
        self.numbers[name] = {row: dict(metrics) for row, metrics in rows.items()}
        if protocols is not None:
            self.protocols[name] = {row: protocols[row] for row in rows}
        self.sections.append(f"## {heading}\n\n" + (f"{text}\n\n" if text else "") + body)

    def markdown(self) -> str:
        return f"# {self.title}\n\n{self.protocol}\n\n" + "\n\n".join(self.sections) + "\n"
