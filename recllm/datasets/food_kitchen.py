"""Amazon Food–Kitchen from the LLMCDSR release: two domains with shared users, our cross-domain case.

Domain A is Grocery & Gourmet Food (global ids 0..8660), domain B is Home & Kitchen (8661..36297 = 8661 + local
id). Each ``*.txt`` line is ``user<TAB>item,item,…`` in time order, and user numbers restart at 1 in every file:
the Food-only users of ``train_A``, the Kitchen-only users of ``train_B``, the users of both in ``train_overlap``
and the users of ``valid`` / ``test`` are all different people. Users are therefore keyed ``"<part>-<number>"``
(``"A-1"``, ``"B-1"``, ``"overlap-1"``, ``"valid-1"``, ``"test-1"``). Each valid / test line is one mixed-domain
history whose last item is the target; its domain follows from the id. In the event schema food goes to kuper
(grocery) and kitchen goods to megamarket.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from recllm.datasets.interaction_dataset import InteractionDataset, NextItemExample, default_data_dir, require_file

logger = logging.getLogger(__name__)

NAME = "food_kitchen"
FOOD, KITCHEN = "food", "kitchen"
SERVICE_BY_DOMAIN: dict[str, str] = {FOOD: "kuper", KITCHEN: "megamarket"}
DEFAULT_DATA_DIR = default_data_dir("llmcdsr_food_kitchen")
# file stem -> user key prefix
PARTS: dict[str, str] = {"train_A": "A", "train_B": "B", "train_overlap": "overlap", "valid": "valid", "test": "test"}


def domain_of(item_id: int, n_food_items: int) -> str:
    """"food" for global ids below the number of A items, else "kitchen"."""
    return FOOD if item_id < n_food_items else KITCHEN


@dataclass
class FoodKitchenDataset(InteractionDataset):
    """``sequences`` hold all five files; the fields below are the LLMCDSR split of the same lines."""

    n_food_items: int                     # 8661: B ids start here
    n_kitchen_items: int                  # 27637
    train_a: dict[str, list[int]]         # Food-only users, all ids < n_food_items
    train_b: dict[str, list[int]]         # Kitchen-only users, all ids >= n_food_items
    train_overlap: dict[str, list[int]]   # users of both domains, mixed sequences
    valid: list[NextItemExample]          # last item of each valid line is the target
    test: list[NextItemExample]


def _read_sequences(path: Path, prefix: str) -> dict[str, list[int]]:
    sequences = {}
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            user, _, items = line.rstrip("\r\n").partition("\t")
            key = f"{prefix}-{user.strip()}"
            if key in sequences:
                raise ValueError(f"{path}:{line_number}: user {user!r} appears twice")
            sequences[key] = [int(item) for item in items.split(",") if item.strip()]
    return sequences


def _read_item_counts(data_dir: str | Path) -> tuple[int, int]:
    counts = require_file(data_dir, "num.txt").read_text(encoding="utf-8").split()
    if len(counts) != 2:
        raise ValueError(f"{Path(data_dir) / 'num.txt'}: expected two item counts (A, B), got {counts}")
    return int(counts[0]), int(counts[1])


def _read_titles(data_dir: str | Path, domain: str, offset: int) -> dict[int, str]:
    """Global id -> title, joining ``item_set_<domain>.json`` (ASIN -> local id) with ``text_<domain>.json``."""
    local_ids = json.loads(require_file(data_dir, f"item_set_{domain}.json").read_text(encoding="utf-8"))
    titles = json.loads(require_file(data_dir, f"text_{domain}.json").read_text(encoding="utf-8"))
    return {offset + int(local_id): titles.get(asin, "") for asin, local_id in local_ids.items()}


def _examples(sequences: dict[str, list[int]], n_food_items: int) -> list[NextItemExample]:
    return [NextItemExample(user, tuple(sequence[:-1]), sequence[-1], domain_of(sequence[-1], n_food_items))
            for user, sequence in sequences.items()]


def load_food_kitchen(data_dir: str | Path = DEFAULT_DATA_DIR) -> FoodKitchenDataset:
    """All five files with the titles of all 36,298 items (global 0-based ids)."""
    n_food, n_kitchen = _read_item_counts(data_dir)
    parts = {stem: _read_sequences(require_file(data_dir, f"{stem}.txt"), prefix) for stem, prefix in PARTS.items()}
    item_text = {**_read_titles(data_dir, "A", 0), **_read_titles(data_dir, "B", n_food)}
    item_domain = {item_id: domain_of(item_id, n_food) for item_id in range(n_food + n_kitchen)}
    sequences = {user: items for part in parts.values() for user, items in part.items()}
    dataset = FoodKitchenDataset(
        NAME, sequences, item_text, item_domain, n_food, n_kitchen, parts["train_A"], parts["train_B"],
        parts["train_overlap"], _examples(parts["valid"], n_food), _examples(parts["test"], n_food))
    logger.info("loaded Food-Kitchen: %s sequences, %d items, %d interactions",
                {stem: len(part) for stem, part in parts.items()}, len(item_domain), dataset.n_interactions())
    return dataset
