"""Amazon-format export of Food–Kitchen domains: domain filter, iterative k-core, title-word attributes, and a
folder that the Amazon loader and the attribute reader read back (ids 1..N, every user >= k items)."""

from __future__ import annotations

import json
import random

import pytest

from builders.export_amazon_format import (AmazonExportConfig, domain_sequences, export_domain, k_core,
                                           title_attributes)
from recllm.datasets import food_kitchen
from recllm.datasets.amazon_beauty import load_amazon_dir
from recllm.datasets.food_kitchen import FOOD, KITCHEN, FoodKitchenDataset
from recllm.seqrec.item_features import read_item_attributes

FOOD_TITLES = ["Acme Crunchy Peanut Butter", "Acme Smooth Peanut Butter", "Zest Olive Oil 500ml",
               "Zest Crunchy Granola", "Acme Olive Tapenade", "Rare Truffle"]
N_FOOD, N_KITCHEN = len(FOOD_TITLES), 4            # food ids 0..5, kitchen ids 6..9
RARE_FOOD = 5                                      # bought by two users only: the 5-core drops it


def tiny_dataset() -> FoodKitchenDataset:
    """Ten users with the five common food items in random order, kitchen items interleaved; two of them also
    bought the rare food item; one user with three food items only; one kitchen-only user."""
    rng = random.Random(0)
    sequences = {}
    for user in range(10):
        food = rng.sample(range(5), 5) + ([RARE_FOOD] if user < 2 else [])
        mixed = []
        for item in food:
            mixed += [item, N_FOOD + rng.randrange(N_KITCHEN)]
        sequences[f"overlap-{user + 1}"] = mixed
    sequences["A-1"] = [0, 1, 2]
    sequences["B-1"] = [6, 7, 8, 9, 6]
    item_text = {i: title for i, title in enumerate(FOOD_TITLES)}
    item_text.update({N_FOOD + i: f"Kitchen Gadget {chr(65 + i) * 3}" for i in range(N_KITCHEN)})
    item_domain = {i: food_kitchen.domain_of(i, N_FOOD) for i in range(N_FOOD + N_KITCHEN)}
    return FoodKitchenDataset("food_kitchen", sequences, item_text, item_domain, N_FOOD, N_KITCHEN,
                              {"A-1": sequences["A-1"]}, {"B-1": sequences["B-1"]},
                              {u: s for u, s in sequences.items() if u.startswith("overlap")}, [], [])


def test_domain_sequences_keep_order_and_only_that_domain():
    dataset = tiny_dataset()
    food = domain_sequences(dataset, FOOD)
    kitchen = domain_sequences(dataset, KITCHEN)
    assert "B-1" not in food and "A-1" not in kitchen            # users without any item of the domain
    assert food["A-1"] == [0, 1, 2]
    for user, sequence in dataset.sequences.items():
        if user in food:
            assert food[user] == [i for i in sequence if i < N_FOOD]
        if user in kitchen:
            assert kitchen[user] == [i for i in sequence if i >= N_FOOD]
    assert kitchen["B-1"] == [6, 7, 8, 9, 6]


def test_k_core_iterates_until_stable():
    sequences = {"a": [2, 1], "b": [1, 2], "c": [3, 4, 5], "d": [4, 6]}
    # Pass 1: items 3, 5, 6 (one interaction) go; "d" keeps [4] and goes. Item 4 still had two interactions in
    # pass 1, but with "d" gone it has one: pass 2 drops it, and then "c" ([5] was dropped, [4] too) is empty.
    assert k_core(sequences, 2) == {"a": [2, 1], "b": [1, 2]}
    assert sequences["c"] == [3, 4, 5]                               # the input is not modified


def test_k_core_counts_interactions_and_keeps_a_stable_input():
    stable = {"a": [1, 1, 2], "b": [2, 1, 2]}
    assert k_core(stable, 3) == stable
    assert k_core({"a": [1, 2], "b": [1]}, 3) == {}


def test_title_attributes_filter_by_item_count_share_and_keep_title_order():
    titles = {1: "ACME Peanut peanut Butter 2x of", 2: "Acme Almond Butter", 3: "Zest Peanut Oil",
              4: "Zest Olive Oil", 5: "Acme Olive Oil"}
    # items per word: acme 3, peanut 2, butter 2, almond 1, zest 2, oil 3, olive 2; the ceiling is 0.5 * 5 = 2.5
    config = AmazonExportConfig(min_word_items=2, max_word_share=0.5, max_attributes=6)
    assert title_attributes(titles, config) == {1: ["peanut", "butter"], 2: ["butter"], 3: ["zest", "peanut"],
                                                4: ["zest", "olive"], 5: ["olive"]}
    first_only = title_attributes(titles, AmazonExportConfig(min_word_items=2, max_word_share=0.5, max_attributes=1))
    assert first_only == {1: ["peanut"], 2: ["butter"], 3: ["zest"], 4: ["zest"], 5: ["olive"]}
    everything = title_attributes(titles, AmazonExportConfig(min_word_items=1, max_word_share=1.0))
    assert everything[2] == ["acme", "almond", "butter"]
    assert title_attributes(titles, AmazonExportConfig(min_word_items=4, max_word_share=1.0)) == \
        {item: [] for item in titles}


@pytest.mark.parametrize("field, value", [("min_interactions", 0), ("min_word_items", 0), ("max_attributes", 0),
                                          ("max_word_share", 0.0), ("max_word_share", 1.5)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"AmazonExportConfig.{field}"):
        AmazonExportConfig(**{field: value})


def read_items(folder):
    lines = (folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return {record["item_id"]: record for record in map(json.loads, lines)}


def test_export_domain_writes_a_folder_the_amazon_loader_reads(tmp_path):
    dataset = tiny_dataset()
    config = AmazonExportConfig(min_word_items=2, max_word_share=0.5, max_attributes=2)
    folder = export_domain(dataset, FOOD, tmp_path, tmp_path / "source", config)
    assert folder == tmp_path / FOOD
    assert {path.name for path in folder.iterdir()} == {"Food.txt", "Food_item2attributes.json", "items.jsonl",
                                                        "README.md"}
    loaded = load_amazon_dir(folder)
    items = read_items(folder)
    n_items = len(items)
    assert sorted(items) == list(range(1, n_items + 1)) == sorted(loaded.item_domain)
    assert n_items == 5                                              # the rare food item fell out of the 5-core
    assert {record["source_id"] for record in items.values()} == set(range(5))
    assert list(loaded.sequences) == [str(u) for u in range(1, 11)]  # "A-1" (3 items) and "B-1" are gone
    assert all(len(sequence) >= 5 for sequence in loaded.sequences.values())
    seen = []                                                         # ids follow the order of first appearance
    for sequence in loaded.sequences.values():
        seen += [item for item in sequence if item not in seen]
    assert seen == list(range(1, n_items + 1))
    originals = [s for u, s in domain_sequences(dataset, FOOD).items() if u.startswith("overlap")]
    for sequence, original in zip(loaded.sequences.values(), originals):
        assert [items[i]["source_id"] for i in sequence] == [i for i in original if i != RARE_FOOD]
    for item, record in items.items():
        assert record["title"] == FOOD_TITLES[record["source_id"]]
    by_source = {record["source_id"]: record for record in items.values()}
    assert by_source[0]["attributes"] == ["crunchy", "peanut"]      # "acme" is in 3 of 5 items: above the share
    assert by_source[4]["attributes"] == ["olive"]
    attribute_ids = read_item_attributes(folder / "Food_item2attributes.json")
    assert sorted(attribute_ids) == list(range(1, n_items + 1))
    word_of_id = {}
    for item, record in items.items():
        assert len(attribute_ids[item]) == len(record["attributes"])
        for attribute_id, word in zip(attribute_ids[item], record["attributes"]):
            assert word in record["title"].lower()
            assert word_of_id.setdefault(attribute_id, word) == word   # one word per id, in every item
    assert len(set(word_of_id.values())) == len(word_of_id)
    assert sorted(word_of_id) == list(range(1, len(word_of_id) + 1))
    assert "10 users, 5 items, 50 interactions" in (folder / "README.md").read_text(encoding="utf-8")


def test_export_kitchen_folder_and_an_empty_core_is_an_error(tmp_path):
    dataset = tiny_dataset()
    config = AmazonExportConfig(min_word_items=1)
    folder = export_domain(dataset, KITCHEN, tmp_path, tmp_path / "source", config)
    assert (folder / "Kitchen.txt").is_file()
    assert all(len(s) >= 5 for s in load_amazon_dir(folder).sequences.values())
    with pytest.raises(ValueError, match="no food user keeps 50 items"):
        export_domain(dataset, FOOD, tmp_path / "big", tmp_path / "source", AmazonExportConfig(min_interactions=50))
