"""LLMCDSR Food–Kitchen loader: the README's per-file counts, the domain id ranges, the valid/test lines, and
cross-domain events (food on kuper, kitchen on megamarket) that pass the schema.

Tests on the real files skip when ``../shared/data/llmcdsr_food_kitchen`` is absent; tiny-file tests always run.
"""

from __future__ import annotations

import json

import pytest

from recllm.datasets import food_kitchen
from recllm.datasets.food_kitchen import SERVICE_BY_DOMAIN, domain_of, load_food_kitchen
from recllm.datasets.interaction_dataset import DAY, placeholder_catalog, to_events
from recllm.profile.event_schema import validate_batch

DATA_DIR = food_kitchen.DEFAULT_DATA_DIR
START_TS = 1_600_000_000
N_FOOD = 8_661
# README "Counts": sequences, interactions, A interactions, B interactions
README_COUNTS = {
    "train_a": (5_472, 37_281, 37_281, 0),
    "train_b": (38_191, 265_817, 0, 265_817),
    "train_overlap": (7_501, 99_170, 45_849, 53_321),
    "valid": (960, 18_133, 8_739, 9_394),
    "test": (937, 15_726, 6_447, 9_279),
}


@pytest.fixture(scope="module")
def food_kitchen_data():
    if not DATA_DIR.is_dir():
        pytest.skip(f"LLMCDSR Food-Kitchen data not found at {DATA_DIR}")
    return load_food_kitchen()


def full_sequences(part) -> list[list[int]]:
    if isinstance(part, dict):
        return list(part.values())
    return [[*example.history, example.target] for example in part]


@pytest.mark.parametrize("part", list(README_COUNTS))
def test_per_file_counts_match_the_readme(food_kitchen_data, part):
    sequences = full_sequences(getattr(food_kitchen_data, part))
    items = [item for sequence in sequences for item in sequence]
    n_food = sum(item < N_FOOD for item in items)
    assert (len(sequences), len(items), n_food, len(items) - n_food) == README_COUNTS[part]


def test_items_domains_and_titles(food_kitchen_data):
    data = food_kitchen_data
    assert (data.n_food_items, data.n_kitchen_items) == (8_661, 27_637)
    assert len(data.item_text) == len(data.item_domain) == 36_298
    assert all(title.strip() for title in data.item_text.values())
    assert (data.item_domain[0], data.item_domain[8_660], data.item_domain[8_661], data.item_domain[36_297]) == (
        "food", "food", "kitchen", "kitchen")
    assert data.domains == ["food", "kitchen"]
    assert len(data.sequences) == sum(counts[0] for counts in README_COUNTS.values())  # user numbers restart per file
    assert data.n_interactions() == 436_127


def test_valid_and_test_targets_by_domain(food_kitchen_data):
    for examples, targets_in_food in ((food_kitchen_data.valid, 363), (food_kitchen_data.test, 300)):
        assert sum(example.target_domain == "food" for example in examples) == targets_in_food
        for example in examples:
            assert example.target_domain == domain_of(example.target, N_FOOD)
            assert [*example.history, example.target] == food_kitchen_data.sequences[example.user_id]
    assert food_kitchen_data.valid[0].user_id == "valid-1"


def test_overlap_users_span_both_domains(food_kitchen_data):
    for sequence in food_kitchen_data.train_overlap.values():
        assert {domain_of(item, N_FOOD) for item in sequence} == {"food", "kitchen"}


def test_events_pass_the_schema_with_one_user_id_across_services(food_kitchen_data):
    data = food_kitchen_data
    users = list(data.sequences)[::200]                # ~2,000 events from every part
    events = to_events(data, SERVICE_BY_DOMAIN, START_TS, users=users)
    assert 1_500 < len(events) < 3_000
    catalog = placeholder_catalog(data, SERVICE_BY_DOMAIN)
    longest = max(map(len, data.sequences.values()))
    assert validate_batch(events, catalog, now_ts=START_TS + longest * DAY) == events
    assert all(event.service == ("kuper" if event.item_id < N_FOOD else "megamarket") for event in events)
    overlap_user = next(user for user in users if user.startswith("overlap-"))
    services = {event.service for event in events if event.user_id == f"food_kitchen-{overlap_user}"}
    assert services == {"kuper", "megamarket"}


def write_tiny_food_kitchen(directory):
    (directory / "num.txt").write_text("2\n3\n", encoding="utf-8")
    (directory / "train_A.txt").write_text("1\t0,1\n", encoding="utf-8")
    (directory / "train_B.txt").write_text("1\t2,3,4\n2\t4,2\n", encoding="utf-8")
    (directory / "train_overlap.txt").write_text("1\t0,3,1\n", encoding="utf-8")
    (directory / "valid.txt").write_text("1\t1,2,0\n", encoding="utf-8")
    (directory / "test.txt").write_text("1\t0,1,4\n", encoding="utf-8")
    domains = (("A", ["a0", "a1"], ["rice", "tea"]), ("B", ["b0", "b1", "b2"], ["pan", "pot", "cup"]))
    for domain, asins, titles in domains:
        (directory / f"item_set_{domain}.json").write_text(json.dumps({a: i for i, a in enumerate(asins)}))
        (directory / f"text_{domain}.json").write_text(json.dumps(dict(zip(asins, titles))))


def test_tiny_files_keep_users_of_each_file_apart(tmp_path):
    write_tiny_food_kitchen(tmp_path)
    data = load_food_kitchen(tmp_path)
    assert data.train_a == {"A-1": [0, 1]}
    assert data.train_b == {"B-1": [2, 3, 4], "B-2": [4, 2]}
    assert set(data.sequences) == {"A-1", "B-1", "B-2", "overlap-1", "valid-1", "test-1"}
    assert data.item_text == {0: "rice", 1: "tea", 2: "pan", 3: "pot", 4: "cup"}
    assert [(e.history, e.target, e.target_domain) for e in (*data.valid, *data.test)] == [
        ((1, 2), 0, "food"), ((0, 1), 4, "kitchen")]
