"""The leave-one-out full-ranking protocol of the sequential-recommendation papers, on any Amazon-format folder.

Per user: train on all but the last two items; the validation target is the second to last item (history = the
training sequence), the test target the last item (history = training sequence + validation item; the model never
trained on the validation item). Every target is ranked among ALL items, raw and history-filtered, Recall and NDCG
@5/10/20 (one target per user: Recall@K = HR@K). One training gives both splits. Published numbers from the data
set's README are printed beside ours with the variant each uses where known (``published``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from recllm.datasets.amazon_beauty import leave_one_out
from recllm.datasets.interaction_dataset import InteractionDataset
from recllm.evaluation.next_item import ALL_ITEMS, train_and_rank
from recllm.evaluation.published import published_rows
from recllm.evaluation.report_table import EvalReport
from recllm.seqrec.full_ranking import metrics_from_ranks
from recllm.seqrec.sasrec import SASRecConfig

logger = logging.getLogger(__name__)

COLUMNS = ("R@5", "R@10", "R@20", "N@5", "N@10", "N@20")
KS = (5, 10, 20)


@dataclass
class LeaveOneOutEvalConfig:
    """The model's hyper-parameters (``n_items`` is taken from the data) and an optional user cap for quick runs."""

    model: SASRecConfig = field(default_factory=SASRecConfig)
    max_users: int | None = None   # keep only the first N users (file order) for training and evaluation

    def __post_init__(self) -> None:
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"LeaveOneOutEvalConfig.max_users must be >= 1 or None, got {self.max_users!r}")

    @classmethod
    def from_name(cls, name: str) -> "LeaveOneOutEvalConfig":
        if name == "default":
            return cls()
        if name == "quick":
            return cls(SASRecConfig.from_name("test", epochs=12), max_users=2000)
        raise ValueError(f"LeaveOneOutEvalConfig preset {name!r} unknown; expected 'default' or 'quick'")


def first_users(dataset: InteractionDataset, max_users: int | None) -> InteractionDataset:
    if max_users is None or max_users >= len(dataset.sequences):
        return dataset
    kept = dict(list(dataset.sequences.items())[:max_users])
    return replace(dataset, sequences=kept)


def evaluate_leave_one_out(dataset: InteractionDataset, config: LeaveOneOutEvalConfig,
                           data_dir: str | Path | None = None) -> EvalReport:
    """Train once on the leave-one-out training split and report valid / test, raw / filtered, beside the
    published rows of ``data_dir/README.md`` (if any)."""
    dataset = first_users(dataset, config.max_users)
    split = leave_one_out(dataset)
    n_items = max(dataset.item_domain)
    examples = split.valid + split.test
    trained = train_and_rank(list(split.train.values()), [ex.history for ex in examples],
                             [ex.target for ex in examples], n_items, config.model)
    ranks, n_valid = trained.ranks[ALL_ITEMS], len(split.valid)
    rows = {
        "ours valid raw": metrics_from_ranks(ranks.raw[:n_valid], KS),
        "ours valid filtered": metrics_from_ranks(ranks.filtered[:n_valid], KS),
        "ours test raw": metrics_from_ranks(ranks.raw[n_valid:], KS),
        "ours test filtered": metrics_from_ranks(ranks.filtered[n_valid:], KS),
    }
    notes = {"ours valid raw": "nothing removed", "ours test raw": "nothing removed",
             "ours valid filtered": "history items removed", "ours test filtered": "history items removed"}
    for row in published_rows(data_dir) if data_dir is not None else []:
        rows[f"{row.model} (published, test)"] = row.metrics
        notes[f"{row.model} (published, test)"] = row.note
    report = EvalReport(
        f"{dataset.name}: leave-one-out next-item recommendation, full ranking over {n_items:,} items",
        f"Protocol: per user, train on all but the last two items; valid target = second to last (history = train "
        f"sequence), test target = last (history = train sequence + valid item). Every target is ranked among all "
        f"{n_items:,} items, no sampled negatives; Recall@K = HR@K. Raw = scores as given; filtered = the user's "
        f"history items removed before ranking (S3-Rec's full-sort convention). Users: {len(dataset.sequences):,}. "
        f"Model: `{trained.config}`, trained once in {trained.train_seconds:.0f} s.")
    report.add_table("leave_one_out", "Results", rows, COLUMNS, notes)
    return report
