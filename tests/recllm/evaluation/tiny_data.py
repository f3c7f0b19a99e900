"""Tiny data sets in the real files' formats, written to a temp folder, for end-to-end tests of ``recllm eval``.

Each has a pattern a model or baseline can learn, so the tests can tell learning from noise.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

AMAZON_ITEMS = 30


def write_amazon_dir(folder: Path, name: str = "Tiny_Toys", n_users: int = 240, seed: int = 0) -> Path:
    """``<name>.txt`` where every user walks the item ring 1 → 2 → … → 30 → 1 from a random start (5–8
    items), ``<name>_item2attributes.json`` and ``items.jsonl``, plus a README with a published table."""
    rng = random.Random(seed)
    lines = []
    for user in range(1, n_users + 1):
        start, length = rng.randrange(AMAZON_ITEMS), rng.randint(5, 8)
        lines.append(" ".join([str(user)] + [str((start + step) % AMAZON_ITEMS + 1) for step in range(length)]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / f"{name}_item2attributes.json").write_text(
        json.dumps({str(item): [item % 3 + 1] for item in range(1, AMAZON_ITEMS + 1)}), encoding="utf-8")
    records = [{"item_id": item, "asin": f"T{item}", "attributes": [f"Brand{item % 3}"],
                "idgenrec_text_id": f"toy {item}"} for item in range(1, AMAZON_ITEMS + 1)]
    (folder / "items.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    (folder / "README.md").write_text(
        "# Tiny\n\n## Published\n\n| model | R@5 | N@5 | R@10 | N@10 | source |\n|---|---|---|---|---|---|\n"
        "| SASRec | 0.0387 | 0.0249 | 0.0605 | 0.0318 | S3-Rec repo `all_rank.PNG` |\n"
        "| TIGER | 0.0454* | – | 0.0648 | 0.0384 | TIGER Table 1 |\n\nAfter the table.\n", encoding="utf-8")
    return folder


N_FOOD, N_KITCHEN = 12, 18


def _ring_walk(rng: random.Random, first: int, size: int, length: int) -> list[int]:
    start = rng.randrange(size)
    return [first + (start + step) % size for step in range(length)]


def _mixed_walk(rng: random.Random, length: int) -> list[int]:
    """Food ring step, then the kitchen item paired with that food item (food f -> kitchen N_FOOD + f), repeated."""
    start, items = rng.randrange(N_FOOD), []
    for step in range(length):
        food = (start + step // 2) % N_FOOD
        items.append(food if step % 2 == 0 else N_FOOD + food)
    return items


def write_food_kitchen_dir(folder: Path, seed: int = 0) -> Path:
    """The LLMCDSR file set with 12 food and 18 kitchen items; valid / test lines are mixed-domain walks."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "num.txt").write_text(f"{N_FOOD}\n{N_KITCHEN}\n", encoding="utf-8")
    for domain, size in (("A", N_FOOD), ("B", N_KITCHEN)):
        ids = {f"{domain}{local}": local for local in range(size)}
        (folder / f"item_set_{domain}.json").write_text(json.dumps(ids), encoding="utf-8")
        (folder / f"text_{domain}.json").write_text(json.dumps({asin: f"title {asin}" for asin in ids}),
                                                    encoding="utf-8")
    files = {
        "train_A": [_ring_walk(rng, 0, N_FOOD, rng.randint(4, 7)) for _ in range(80)],
        "train_B": [_ring_walk(rng, N_FOOD, N_KITCHEN, rng.randint(4, 7)) for _ in range(80)],
        "train_overlap": [_mixed_walk(rng, rng.randint(6, 10)) for _ in range(120)],
        "valid": [_mixed_walk(rng, rng.randint(5, 9)) for _ in range(40)],
        "test": [_mixed_walk(rng, rng.randint(5, 9)) for _ in range(40)],
    }
    for stem, sequences in files.items():
        lines = [f"{user}\t" + ",".join(map(str, items)) for user, items in enumerate(sequences, start=1)]
        (folder / f"{stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


TAFENG_ITEMS = 60


def write_tafeng_dir(folder: Path, n_users: int = 300, seed: int = 0) -> Path:
    """Reality-Check JSON files: each user re-buys 3 personal staples (plus random items) in 3–6 baskets, and the
    future basket is two staples plus one random item."""
    rng = random.Random(seed)
    history, future = {}, {}
    for user in range(n_users):
        staples = rng.sample(range(TAFENG_ITEMS), 3)
        baskets = [rng.sample(staples, 2) + [rng.randrange(TAFENG_ITEMS)] for _ in range(rng.randint(3, 6))]
        history[str(user)] = [[-1], *[sorted(set(b)) for b in baskets], [-1]]
        future[str(user)] = [[-1], sorted(set(rng.sample(staples, 2) + [rng.randrange(TAFENG_ITEMS)])), [-1]]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tafeng_history.json").write_text(json.dumps(history), encoding="utf-8")
    (folder / "tafeng_future.json").write_text(json.dumps(future), encoding="utf-8")
    return folder
