"""Amazon Beauty (5-core, 2014) in the S3-Rec / P5 / TIGER form: the single-service sequential benchmark.

Reads ``Beauty.txt`` (``user item item …``, ids from 1, oldest first) and ``items.jsonl`` (the IDGenRec textual id
and the brand / category attributes of every item). The papers evaluate leave-one-out with full ranking over all
12,101 items: ``leave_one_out`` gives that split. In the event schema Beauty goods are sold on megamarket.

``load_amazon_dir`` reads any folder in the same format (another Amazon category prepared the S3-Rec way:
``<Name>.txt`` beside ``<Name>_item2attributes.json``, plus ``items.jsonl``); ``find_sequence_file`` finds its
``<Name>.txt``, so the same evaluation runs on categories it was never tuned on.
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
ATTRIBUTES_SUFFIX = "_item2attributes.json"  # S3-Rec names the attribute file after the sequence file
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
    text = record.get("idgenrec_text_id") or record.get("title") or ""
    if not attributes:
        return text
    return f"{text} ({', '.join(attributes)})" if text else ", ".join(attributes)


def _read_item_text(path: Path) -> dict[int, str]:
    with open(path, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return {int(record["item_id"]): item_description(record) for record in records}


def find_sequence_file(data_dir: str | Path) -> Path:
    """The ``<Name>.txt`` of an S3-Rec-format folder: the one whose ``<Name>_item2attributes.json`` sits beside it.

    Raises FileNotFoundError when the folder has none and ValueError when it has several.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Amazon data folder {folder} does not exist")
    names = sorted(path.name[:-len(ATTRIBUTES_SUFFIX)] for path in folder.glob(f"*{ATTRIBUTES_SUFFIX}"))
    found = [folder / f"{name}.txt" for name in names if (folder / f"{name}.txt").is_file()]
    if not found:
        raise FileNotFoundError(f"{folder}: no <Name>.txt beside a <Name>{ATTRIBUTES_SUFFIX} "
                                f"(the S3-Rec format of {DEFAULT_DATA_DIR})")
    if len(found) > 1:
        raise ValueError(f"{folder}: several sequence files {[path.name for path in found]}; expected one")
    return found[0]


def dataset_name(stem: str) -> str:
    """"Beauty" -> "beauty", "Sports_and_Outdoors" -> "sports_and_outdoors": a valid ``InteractionDataset.name``."""
    name = "".join(char if char.isalnum() else "_" for char in stem.lower()).strip("_")
    if not name:
        raise ValueError(f"cannot make a data set name from file name {stem!r}")
    return name


def _load(sequence_path: Path, data_dir: str | Path, name: str) -> InteractionDataset:
    sequences = _read_sequences(sequence_path)
    item_text = _read_item_text(require_file(data_dir, "items.jsonl"))
    missing = sorted({item for sequence in sequences.values() for item in sequence} - set(item_text))
    if missing:
        raise ValueError(f"{sequence_path}: items {missing[:5]} (and {max(0, len(missing) - 5)} more) have no "
                         f"record in {Path(data_dir) / 'items.jsonl'}")
    dataset = InteractionDataset(name, sequences, item_text, {item_id: name for item_id in item_text})
    logger.info("loaded %s: %d users, %d items, %d interactions", sequence_path, len(sequences), len(item_text),
                dataset.n_interactions())
    return dataset


def load_amazon_beauty(data_dir: str | Path = DEFAULT_DATA_DIR) -> InteractionDataset:
    """All 22,363 user sequences with the text of all 12,101 items (ids 1..12101, domain "beauty")."""
    return _load(require_file(data_dir, "Beauty.txt"), data_dir, NAME)


def load_amazon_dir(data_dir: str | Path) -> InteractionDataset:
    """Any S3-Rec-format folder (``<Name>.txt``, ``<Name>_item2attributes.json``, ``items.jsonl``); the data set
    and its single domain are named after ``<Name>`` in lower case (``Beauty`` gives the same as
    ``load_amazon_beauty``)."""
    sequence_path = find_sequence_file(data_dir)
    return _load(sequence_path, data_dir, dataset_name(sequence_path.stem))


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
