"""Amazon Beauty loader: the README's counts, item text, the leave-one-out split, and events that pass the schema.

Tests on the real files skip when ``../shared/data/amazon_beauty`` is absent; the tiny-file tests always run.
"""

from __future__ import annotations

import json

import pytest

from recllm.datasets import amazon_beauty
from recllm.datasets.amazon_beauty import SERVICE_BY_DOMAIN, leave_one_out, load_amazon_beauty
from recllm.datasets.interaction_dataset import DAY, PLACEHOLDER_PRICE, placeholder_catalog, to_events
from recllm.profile.event_schema import validate_batch

DATA_DIR = amazon_beauty.DEFAULT_DATA_DIR
START_TS = 1_600_000_000


@pytest.fixture(scope="module")
def beauty():
    if not DATA_DIR.is_dir():
        pytest.skip(f"Amazon Beauty data not found at {DATA_DIR}")
    return load_amazon_beauty()


def test_counts_match_the_readme(beauty):
    items = {item for sequence in beauty.sequences.values() for item in sequence}
    assert len(beauty.sequences) == 22_363
    assert len(items) == len(beauty.item_text) == len(beauty.item_domain) == 12_101
    assert (min(items), max(items)) == (1, 12_101)
    assert beauty.n_interactions() == 198_502
    assert min(map(len, beauty.sequences.values())) == 5
    assert round(beauty.n_interactions() / len(beauty.sequences), 2) == 8.88
    assert beauty.domains == ["beauty"]


def test_item_text_joins_textual_id_and_attributes(beauty):
    assert beauty.item_text[1] == "nail lacquer simmer and shimmer (OPI, Makeup, Nails, Nail Polish)"
    assert all(text.strip() for text in beauty.item_text.values())
    assert not any("Unknown" in text for text in beauty.item_text.values())


def test_leave_one_out_holds_out_the_last_two_items(beauty):
    split = leave_one_out(beauty)
    assert len(split.train) == len(split.valid) == len(split.test) == 22_363
    assert sum(map(len, split.train.values())) == 198_502 - 2 * 22_363
    for valid, test in zip(split.valid, split.test):
        sequence = beauty.sequences[valid.user_id]
        assert valid.user_id == test.user_id
        assert list(valid.history) == split.train[valid.user_id] == sequence[:-2]
        assert (valid.target, test.target) == (sequence[-2], sequence[-1])
        assert test.history == valid.history + (valid.target,)


def test_events_pass_the_schema(beauty):
    users = list(beauty.sequences)[::100]          # ~2,000 events
    events = to_events(beauty, SERVICE_BY_DOMAIN, START_TS, users=users)
    assert 1_500 < len(events) == sum(len(beauty.sequences[user]) for user in users) < 3_000
    catalog = placeholder_catalog(beauty, SERVICE_BY_DOMAIN)
    assert len(catalog) == 12_102 and not catalog.get(0).in_stock
    longest = max(map(len, beauty.sequences.values()))
    assert validate_batch(events, catalog, now_ts=START_TS + longest * DAY) == events
    assert {event.service for event in events} == {"megamarket"}
    assert {event.price for event in events} == {PLACEHOLDER_PRICE}
    first_user = [event for event in events if event.user_id == f"beauty-{users[0]}"]
    assert [event.item_id for event in first_user] == beauty.sequences[users[0]]
    assert [event.timestamp - START_TS for event in first_user] == [step * DAY for step in range(len(first_user))]


def write_tiny_beauty(directory):
    (directory / "Beauty.txt").write_text("1 1 2 3\n2 3 1 2 4\n\n", encoding="utf-8")
    records = [
        {"item_id": 1, "asin": "A1", "attributes": ["OPI", "Nails"], "idgenrec_text_id": "red polish"},
        {"item_id": 2, "asin": "A2", "attributes": ["Unknown", "Face"], "idgenrec_text_id": ""},
        {"item_id": 3, "asin": "A3", "attributes": ["Unknown"], "idgenrec_text_id": "balm"},
        {"item_id": 4, "asin": "A4", "attributes": ["Hair"], "idgenrec_text_id": "shampoo"},
    ]
    (directory / "items.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def test_tiny_files_load_and_split(tmp_path):
    write_tiny_beauty(tmp_path)
    dataset = load_amazon_beauty(tmp_path)
    assert dataset.sequences == {"1": [1, 2, 3], "2": [3, 1, 2, 4]}
    assert dataset.item_text == {1: "red polish (OPI, Nails)", 2: "Face", 3: "balm", 4: "shampoo (Hair)"}
    split = leave_one_out(dataset)
    assert split.train == {"1": [1], "2": [3, 1]}
    assert [(e.history, e.target) for e in split.test] == [((1, 2), 3), ((3, 1, 2), 4)]


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "Beauty.txt")):
        load_amazon_beauty(tmp_path)


def test_amazon_dir_finds_the_sequence_file_by_its_attribute_file(tmp_path):
    (tmp_path / "Toys_and_Games.txt").write_text("7 2 1 2\n", encoding="utf-8")
    (tmp_path / "Toys_and_Games_item2attributes.json").write_text('{"1": [1], "2": [2]}', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a sequence file\n", encoding="utf-8")
    records = [{"item_id": 1, "attributes": ["Lego"], "idgenrec_text_id": "bricks"},
               {"item_id": 2, "attributes": ["Unknown"], "idgenrec_text_id": "doll"}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert amazon_beauty.find_sequence_file(tmp_path) == tmp_path / "Toys_and_Games.txt"
    dataset = amazon_beauty.load_amazon_dir(tmp_path)
    assert dataset.name == "toys_and_games" and dataset.domains == ["toys_and_games"]
    assert dataset.sequences == {"7": [2, 1, 2]}
    assert dataset.item_text == {1: "bricks (Lego)", 2: "doll"}


def test_amazon_dir_on_the_beauty_layout_equals_the_beauty_loader(tmp_path):
    write_tiny_beauty(tmp_path)
    (tmp_path / "Beauty_item2attributes.json").write_text("{}", encoding="utf-8")
    assert amazon_beauty.load_amazon_dir(tmp_path) == load_amazon_beauty(tmp_path)


def test_amazon_dir_errors_name_the_folder_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <Name>.txt"):
        amazon_beauty.load_amazon_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        amazon_beauty.load_amazon_dir(tmp_path / "absent")
    for name in ("A", "B"):
        (tmp_path / f"{name}.txt").write_text("1 1 1 1\n", encoding="utf-8")
        (tmp_path / f"{name}_item2attributes.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="several sequence files"):
        amazon_beauty.find_sequence_file(tmp_path)


def test_items_missing_from_items_jsonl_are_named(tmp_path):
    write_tiny_beauty(tmp_path)
    (tmp_path / "Beauty.txt").write_text("1 1 2 9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"items \[9\]"):
        load_amazon_beauty(tmp_path)
