"""Markdown tables and the report object every protocol of ``recllm eval`` returns.

A protocol produces named rows of metrics (``{"test raw": {"R@10": 0.07, ...}}``); ``metrics_table`` prints them
with a fixed column order, "–" where a row has no value (published rows often give only R@10 / N@10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

MetricRows = dict[str, dict[str, float]]


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], first_column: str = "row",
                  notes: Mapping[str, str] | None = None) -> str:
    """A markdown table: one line per row, the metric columns in ``columns`` order, then an optional note column."""
    header = [first_column, *columns] + (["note"] if notes else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [f"{metrics[column]:.4f}" if column in metrics else "–" for column in columns]
        if notes:
            cells.append(notes.get(name, ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class EvalReport:
    """What one ``recllm eval`` run found: a title, the protocol in words, markdown sections, and the numbers."""

    title: str
    protocol: str
    sections: list[str] = field(default_factory=list)
    numbers: dict[str, MetricRows] = field(default_factory=dict)   # table name -> rows, for tests and scripts

    def add_table(self, name: str, heading: str, rows: MetricRows, columns: Sequence[str],
                  notes: Mapping[str, str] | None = None, text: str = "") -> None:
        self.numbers[name] = {row: dict(metrics) for row, metrics in rows.items()}
        body = metrics_table(rows, columns, notes=notes)
        self.sections.append(f"## {heading}\n\n" + (f"{text}\n\n" if text else "") + body)

    def markdown(self) -> str:
        return f"# {self.title}\n\n{self.protocol}\n\n" + "\n\n".join(self.sections) + "\n"
