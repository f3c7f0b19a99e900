"""Ta-Feng grocery baskets in the "Next Basket Recommendation Reality Check" preprocessing.

``tafeng_history.json`` maps each user to ``[[-1], basket, …, basket, [-1]]`` and ``tafeng_future.json`` to
``[[-1], next_basket, [-1]]``; the ``[-1]`` start / end markers are dropped here. Products are anonymous ids
0..11996 without text. The task is to predict the whole future basket of a test user from the history baskets;
users are split at random 72 / 8 / 20 % into train / validation / test (``user_split``, the repo's
``keyset_fold.py`` arithmetic with a seed). In the event schema Ta-Feng baskets are kuper orders.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from recllm.datasets.interaction_dataset import InteractionDataset, default_data_dir, require_file

logger = logging.getLogger(__name__)

NAME = "tafeng"
DOMAIN = "grocery"
SERVICE_BY_DOMAIN: dict[str, str] = {DOMAIN: "kuper"}
DEFAULT_DATA_DIR = default_data_dir("tafeng_nbr")
MARKER = [-1]


@dataclass
class TaFengDataset(InteractionDataset):
    """``sequences`` are the history baskets and then the future basket, flattened; one event step per basket."""

    history: dict[str, list[list[int]]]   # user -> baskets, oldest first
    future: dict[str, list[int]]          # user -> the basket to predict

    def steps_of(self, user: str) -> list[list[int]]:
        return [*self.history[user], self.future[user]]


@dataclass
class UserSplit:
    train: list[str]
    valid: list[str]
    test: list[str]


def _strip_markers(path: Path, user: str, baskets: list) -> list[list[int]]:
    if len(baskets) < 2 or baskets[0] != MARKER or baskets[-1] != MARKER:
        raise ValueError(f"{path}: user {user}: expected [[-1], basket, …, [-1]], got {str(baskets)[:80]}")
    inner = baskets[1:-1]
    if not inner or any(not basket or MARKER == basket for basket in inner):
        raise ValueError(f"{path}: user {user}: empty basket or a [-1] marker inside the sequence")
    return [[int(item) for item in basket] for basket in inner]


def _read_baskets(path: Path) -> dict[str, list[list[int]]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {str(user): _strip_markers(path, user, baskets) for user, baskets in raw.items()}


def load_tafeng(data_dir: str | Path = DEFAULT_DATA_DIR) -> TaFengDataset:
    """History and future baskets of all 13,858 users; every product id that occurs gets domain "grocery"."""
    history_path = require_file(data_dir, "tafeng_history.json")
    future_path = require_file(data_dir, "tafeng_future.json")
    history, future_baskets = _read_baskets(history_path), _read_baskets(future_path)
    if set(history) != set(future_baskets):
        raise ValueError(f"{history_path} and {future_path} hold different users "
                         f"({len(set(history) ^ set(future_baskets))} differ)")
    future = {}
    for user, baskets in future_baskets.items():
        if len(baskets) != 1:
            raise ValueError(f"{future_path}: user {user} has {len(baskets)} future baskets; expected 1")
        future[user] = baskets[0]
    sequences = {user: [item for basket in history[user] for item in basket] + future[user] for user in history}
    item_domain = {item: DOMAIN for sequence in sequences.values() for item in sequence}
    dataset = TaFengDataset(NAME, sequences, {}, item_domain, history, future)
    logger.info("loaded Ta-Feng: %d users, %d products, %d history baskets", len(history), len(item_domain),
                sum(map(len, history.values())))
    return dataset


def user_split(dataset: TaFengDataset, seed: int = 0) -> UserSplit:
    """Shuffle the users with ``random.Random(seed)`` and cut at int(72 %) and int(80 %), as ``keyset_fold.py``.

    The paper averages over several such keysets; the same seed always gives the same split.
    """
    users = sorted(dataset.history, key=lambda user: (len(user), user))  # a fixed order before shuffling
    random.Random(seed).shuffle(users)
    n = len(users)
    train_end, valid_end = n * 72 // 100, n * 80 // 100
    return UserSplit(users[:train_end], users[train_end:valid_end], users[valid_end:])
