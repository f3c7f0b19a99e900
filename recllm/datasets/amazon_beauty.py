"""Amazon Beauty (5-core, 2014) in the S3-Rec / P5 / TIGER form: the single-service sequential benchmark.

Reads ``Beauty.txt`` (``user item item …``, ids from 1, oldest first) and ``items.jsonl`` (the IDGenRec textual id
and the brand / category attributes of every item). The papers evaluate leave-one-out with full ranking over all
12,101 items: ``leave_one_out`` gives that split. In the event schema Beauty goods are sold on megamarket.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from recllm.datasets.interaction_dataset import InteractionDataset, NextItemExample, default_data_dir, require_file

logger = logging.getLogger(__name__)

NAME = "beauty"
DOMAIN = "beauty"
SERVICE_BY_DOMAIN: dict[str, str] = {DOMAIN: "megamarket"}
DEFAULT_DATA_DIR = default_data_dir("amazon_beauty")
UNKNOWN_ATTRIBUTE = "Unknown"  # the S3-Rec attribute standing for a missing brand: no information, left out


@dataclass
class LeaveOneOutSplit:
    """Per user: train on all but the last two items; validate on the second to last; test on the last."""

    train: dict[str, list[int]]
    valid: list[NextItemExample]   # history = train sequence
    test: list[NextItemExample]    # history = train sequence + the validation target


def _read_sequences(path: Path) -> dict[str, list[int]]:
    sequences = {}
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            user, *items = line.split()
            if user in sequences:
                raise ValueError(f"{path}:{line_number}: user {user} appears twice")
            sequences[user] = [int(item) for item in items]
    return sequences


def item_description(record: dict) -> str:
    """"<textual id> (<attribute>, …)", e.g. "nail lacquer simmer and shimmer (OPI, Makeup, Nails, Nail Polish)"."""
    attributes = [name for name in record["attributes"] if name != UNKNOWN_ATTRIBUTE]
    text = record.get("idgenrec_text_id") or ""
    if not attributes:
        return text
    return f"{text} ({', '.join(attributes)})" if text else ", ".join(attributes)


def _read_item_text(path: Path) -> dict[int, str]:
    with open(path, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return {int(record["item_id"]): item_description(record) for record in records}


def load_amazon_beauty(data_dir: str | Path = DEFAULT_DATA_DIR) -> InteractionDataset:
    """All 22,363 user sequences with the text of all 12,101 items (ids 1..12101, domain "beauty")."""
    sequences = _read_sequences(require_file(data_dir, "Beauty.txt"))
    item_text = _read_item_text(require_file(data_dir, "items.jsonl"))
    dataset = InteractionDataset(NAME, sequences, item_text, {item_id: DOMAIN for item_id in item_text})
    logger.info("loaded Amazon Beauty: %d users, %d items, %d interactions", len(sequences), len(item_text),
                dataset.n_interactions())
    return dataset


def leave_one_out(dataset: InteractionDataset) -> LeaveOneOutSplit:
    """The papers' split; every Beauty user has >= 5 items, shorter sequences raise ValueError."""
    train, valid, test = {}, [], []
    for user, sequence in dataset.sequences.items():
        if len(sequence) < 3:
            raise ValueError(f"leave_one_out: user {user} has {len(sequence)} items; need >= 3")
        train[user] = sequence[:-2]
        valid.append(NextItemExample(user, tuple(sequence[:-2]), sequence[-2], dataset.item_domain[sequence[-2]]))
        test.append(NextItemExample(user, tuple(sequence[:-1]), sequence[-1], dataset.item_domain[sequence[-1]]))
    return LeaveOneOutSplit(train, valid, test)
