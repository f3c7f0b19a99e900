"""Content encoder: deterministic unit vectors in which same-brand/same-category items sit closer than others."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR
from recllm.sid.content_encoder import (ContentEncoderConfig, ItemContent, amazon_item_contents,
                                        catalog_family_contents, encode_contents)
from recllm.synthetic.ecosystem import SyntheticConfig, generate_ecosystem

CONTENTS = [
    ItemContent(1, "OPI", ("Makeup", "Nails", "Nail Polish"), "nail lacquer red"),
    ItemContent(2, "OPI", ("Makeup", "Nails", "Nail Polish"), "nail lacquer blue"),
    ItemContent(3, "Nivea", ("Skin Care", "Face", "Creams"), "soft moisturizing cream"),
    ItemContent(4, "Nivea", ("Skin Care", "Body", "Lotions"), "body lotion"),
    ItemContent(5, "", ("Hair Care", "Shampoos"), "argan oil shampoo"),
    ItemContent(6, "Dove", ("Hair Care", "Shampoos"), "repair shampoo"),
    ItemContent(7, "Dove", ("Bath & Body", "Soap"), "beauty bar soap"),
]


def test_vectors_are_unit_deterministic_and_put_near_duplicates_closest():
    config = ContentEncoderConfig(dim=6)
    vectors = encode_contents(CONTENTS, config)
    assert vectors.shape == (7, 6) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, encode_contents(CONTENTS, config))
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    assert similarity[0].argmax() == 1 and similarity[4].argmax() == 5


def test_seed_changes_nothing_but_signs_free_choices():
    a = encode_contents(CONTENTS, ContentEncoderConfig(dim=3, seed=0))
    b = encode_contents(CONTENTS, ContentEncoderConfig(dim=3, seed=1))
    assert np.allclose(np.abs(a @ a.T), np.abs(b @ b.T), atol=1e-3)  # same subspace whatever the test matrix


def test_empty_item_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="item 9 has no brand"):
        encode_contents([*CONTENTS, ItemContent(9, "", (), " ")], ContentEncoderConfig(dim=3))
    with pytest.raises(ValueError, match="ContentEncoderConfig.dim"):
        ContentEncoderConfig(dim=0)
    with pytest.raises(ValueError, match="navec_weight"):
        ContentEncoderConfig(navec_weight=-1.0)
    with pytest.raises(ValueError, match="preset"):
        ContentEncoderConfig.from_name("nope")


def test_amazon_format_folder_brand_detection(tmp_path):
    records = [{"item_id": 2, "attributes": ["OPI", "Makeup", "Nails"], "idgenrec_text_id": "nail lacquer"},
               {"item_id": 1, "attributes": ["Unknown", "Skin Care", "Face"], "idgenrec_text_id": "face cream"},
               {"item_id": 3, "attributes": ["Makeup", "Nails"], "idgenrec_text_id": "polish"}]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    contents = amazon_item_contents(tmp_path)
    assert [c.key for c in contents] == [1, 2, 3]
    assert contents[0].brand == "" and contents[0].categories == ("Skin Care", "Face")
    assert contents[1].brand == "OPI"
    assert contents[2].brand == "" and contents[2].categories == ("Makeup", "Nails")  # "Makeup" is a category


def test_item2attributes_fallback(tmp_path):
    (tmp_path / "Toys_item2attributes.json").write_text(json.dumps({"2": [5, 7], "1": [5]}), encoding="utf-8")
    contents = amazon_item_contents(tmp_path)
    assert [c.key for c in contents] == [1, 2] and contents[1].categories == ("attribute 5", "attribute 7")
    with pytest.raises(FileNotFoundError, match="items.jsonl"):
        amazon_item_contents(tmp_path / "missing")


def test_synthetic_catalog_one_content_per_family_with_russian_names():
    catalog = generate_ecosystem(SyntheticConfig.from_name("test")).catalog
    contents = catalog_family_contents(catalog)
    assert len(contents) == len({item.family_id for item in catalog.items}) < len(catalog)
    vectors = encode_contents(contents, ContentEncoderConfig.from_name("synthetic", dim=16))
    assert vectors.shape == (len(contents), 16) and np.isfinite(vectors).all()
    assert any("а" <= ch <= "я" for ch in contents[0].text.lower())


@pytest.mark.skipif(not (DEFAULT_DATA_DIR / "items.jsonl").is_file(), reason="Amazon Beauty data not found")
def test_real_beauty_items_have_brand_categories_and_text():
    contents = amazon_item_contents(DEFAULT_DATA_DIR)
    assert len(contents) == 12101 and contents[0].brand == "OPI"
    assert 7000 < sum(bool(c.brand) for c in contents) < 12101  # ~4,600 items have no brand in the data
    assert not {c.brand for c in contents} & {"Makeup", "Skin Care", "Hair Care", "Fragrance", "Unknown"}
