"""Write each domain of Amazon Food–Kitchen as an S3-Rec-format folder, so ``recllm eval --amazon-dir`` can be run on
Amazon categories the next-item pipeline was never tuned on (Grocery & Gourmet Food, Home & Kitchen).

Per domain: every user's interactions in that domain (the five LLMCDSR files are different people; valid / test
lines keep their targets, they are interactions too), in time order; then the iterative 5-core filter that S3-Rec
applied to Beauty (users and items with >= 5 interactions); ids renumbered 1..N in order of first appearance.
The LLMCDSR release has titles but no brand or category metadata, so the attributes are title words: lower-case
alphabetic tokens of >= 3 letters that occur in at least ``min_word_items`` items and in at most ``max_word_share``
of them, the first ``max_attributes`` per title (Amazon titles usually start with the brand).

    python -m builders.export_amazon_format [--output artifacts/amazon_format] [--data-dir DIR]

writes ``<output>/food/Food.txt``, ``Food_item2attributes.json``, ``items.jsonl`` and a README stating the
derivation (and the same for ``kitchen/Kitchen``). The output is derived data: it stays out of the repository.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from recllm.datasets import food_kitchen
from recllm.config.field_checks import require_in_interval

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "artifacts" / "amazon_format"
FOLDER_NAMES = {food_kitchen.FOOD: "Food", food_kitchen.KITCHEN: "Kitchen"}
WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass
class AmazonExportConfig:
    min_interactions: int = 5      # the k of the k-core filter (users and items)
    min_word_items: int = 5        # a title word becomes an attribute when this many items use it ...
    max_word_share: float = 0.05   # ... and no more than this share of the domain's items
    max_attributes: int = 6        # first qualifying words of each title

    def __post_init__(self) -> None:
        for name in ("min_interactions", "min_word_items", "max_attributes"):
            if getattr(self, name) < 1:
                raise ValueError(f"AmazonExportConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        require_in_interval(self, "max_word_share", "(0, 1]")


@dataclass
class DomainExport:
    sequences: dict[int, list[int]]     # new user id -> new item ids, oldest first
    titles: dict[int, str]              # new item id -> title
    source_ids: dict[int, int]          # new item id -> global LLMCDSR id


def domain_sequences(dataset: food_kitchen.FoodKitchenDataset, domain: str) -> dict[str, list[int]]:
    """Every user's interactions in ``domain`` (global ids), time order kept; users without any are left out, and so
    are items without a title (the content encoder needs some text; the real release has a title for every item)."""
    kept = {}
    for user, sequence in dataset.sequences.items():
        items = [item for item in sequence
                 if dataset.item_domain[item] == domain and dataset.item_text.get(item, "").strip()]
        if items:
            kept[user] = items
    return kept


def k_core(sequences: dict[str, list[int]], k: int) -> dict[str, list[int]]:
    """Drop items with < k interactions and users with < k items until nothing changes."""
    while True:
        counts = Counter(item for sequence in sequences.values() for item in sequence)
        filtered = {user: [item for item in sequence if counts[item] >= k] for user, sequence in sequences.items()}
        filtered = {user: sequence for user, sequence in filtered.items() if len(sequence) >= k}
        if filtered == sequences:
            return filtered
        sequences = filtered


def renumber(sequences: dict[str, list[int]], item_text: dict[int, str]) -> DomainExport:
    new_item: dict[int, int] = {}
    renumbered = {}
    for user_number, sequence in enumerate(sequences.values(), start=1):
        renumbered[user_number] = [new_item.setdefault(item, len(new_item) + 1) for item in sequence]
    return DomainExport(renumbered, {new: item_text.get(old, "") for old, new in new_item.items()},
                        {new: old for old, new in new_item.items()})


def title_attributes(titles: dict[int, str], config: AmazonExportConfig) -> dict[int, list[str]]:
    """Item -> its first ``max_attributes`` qualifying title words (see the module docstring)."""
    words = {item: list(dict.fromkeys(WORD.findall(title.lower()))) for item, title in titles.items()}
    item_counts = Counter(word for item_words in words.values() for word in item_words)
    ceiling = config.max_word_share * max(len(titles), 1)
    qualifying = {word for word, count in item_counts.items() if config.min_word_items <= count <= ceiling}
    return {item: [w for w in item_words if w in qualifying][:config.max_attributes]
            for item, item_words in words.items()}


def write_folder(export: DomainExport, attributes: dict[int, list[str]], folder: Path, name: str,
                 source: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.txt", "w", encoding="utf-8") as out:
        for user, sequence in export.sequences.items():
            out.write(f"{user} {' '.join(map(str, sequence))}\n")
    vocabulary = {word: index for index, word in enumerate(sorted({w for ws in attributes.values() for w in ws}), 1)}
    item2attributes = {str(item): [vocabulary[w] for w in attributes[item]] for item in sorted(export.titles)}
    (folder / f"{name}_item2attributes.json").write_text(json.dumps(item2attributes), encoding="utf-8")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as out:
        for item in sorted(export.titles):
            out.write(json.dumps({"item_id": item, "source_id": export.source_ids[item],
                                  "attributes": attributes[item], "title": export.titles[item]},
                                 ensure_ascii=False) + "\n")
    n_interactions = sum(len(s) for s in export.sequences.values())
    (folder / "README.md").write_text(
        f"# {name} (derived)\n\nWritten by `python -m builders.export_amazon_format` from {source} (see its README "
        f"for provenance). Domain sequences of all LLMCDSR users, iterative 5-core, ids renumbered; attributes are "
        f"title words. {len(export.sequences):,} users, {len(export.titles):,} items, {n_interactions:,} "
        f"interactions. No published numbers exist for this derived split.\n", encoding="utf-8")


def export_domain(dataset: food_kitchen.FoodKitchenDataset, domain: str, output: Path, source: Path,
                  config: AmazonExportConfig) -> Path:
    sequences = k_core(domain_sequences(dataset, domain), config.min_interactions)
    if not sequences:
        raise ValueError(f"export_domain: no {domain} user keeps {config.min_interactions} items after the k-core")
    export = renumber(sequences, dataset.item_text)
    folder = output / domain
    write_folder(export, title_attributes(export.titles, config), folder, FOLDER_NAMES[domain], source)
    logger.info("%s: %d users, %d items, %d interactions -> %s", domain, len(export.sequences), len(export.titles),
                sum(len(s) for s in export.sequences.values()), folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=food_kitchen.DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    dataset = food_kitchen.load_food_kitchen(args.data_dir)
    for domain in FOLDER_NAMES:
        print(export_domain(dataset, domain, args.output, args.data_dir, AmazonExportConfig()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
