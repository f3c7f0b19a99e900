"""End-to-end SIDs: Amazon-format folders and the unified catalog; the padded table sequential models load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.sid.content_encoder import ContentEncoderConfig, amazon_item_contents, encode_contents
from recllm.sid.item_sids import (SidBuildConfig, amazon_semantic_ids, catalog_item_sids, catalog_semantic_ids,
                                  load_item_sids, padded_item_table, save_item_sids, sid_feature_ids)
from recllm.sid.residual_quantization import RQKMeansConfig
from recllm.synthetic.ecosystem import SyntheticConfig, generate_ecosystem

BRANDS = ["OPI", "Nivea", "Dove", "Loreal"]
PATHS = [["Makeup", "Nails"], ["Skin Care", "Face"], ["Hair Care", "Shampoos"], ["Makeup", "Lips"]]


def write_amazon_folder(path, n_items: int = 40) -> None:
    lines = [json.dumps({"item_id": i, "attributes": [BRANDS[i % 4], *PATHS[(i // 4) % 4]],
                         "idgenrec_text_id": f"product {i % 7} shade {i % 5}"}) for i in range(1, n_items + 1)]
    (path / "items.jsonl").write_text("\n".join(lines), encoding="utf-8")


def small_config(seed: int = 0) -> SidBuildConfig:
    return SidBuildConfig(encoder=ContentEncoderConfig(dim=8), rq=RQKMeansConfig(levels=3, codebook_size=4),
                          seed=seed)


def test_amazon_folder_round_trip_through_files(tmp_path):
    write_amazon_folder(tmp_path)
    result = amazon_semantic_ids(tmp_path, small_config())
    assert result.item_ids.tolist() == list(range(1, 41))
    assert result.stats["unique_sids"] == 40 and result.sids.codes.shape == (40, 4)
    out = save_item_sids(tmp_path / "out", result)
    table = load_item_sids(out)
    assert table.shape == (41, 4) and table.dtype == np.int64 and (table[0] == 0).all()
    assert np.array_equal(table[1:], result.sids.codes)
    assert np.array_equal(load_item_sids(out / "sids.npy"), table)
    again = amazon_semantic_ids(tmp_path, small_config())
    assert np.array_equal(again.sids.codes, result.sids.codes)


def test_feature_ids_are_one_based_and_disjoint_per_position():
    table = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 1]])
    features = sid_feature_ids(table)
    assert features[0].tolist() == [0, 0, 0]
    assert features[1].tolist() == [2, 3, 6] and features[2].tolist() == [1, 5, 7]


def test_padded_table_requires_ids_one_to_n(tmp_path):
    with pytest.raises(ValueError, match="exactly 1..2"):
        padded_item_table(np.array([0, 1]), np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(FileNotFoundError, match="build_sids"):
        load_item_sids(tmp_path)


def test_catalog_sids_are_per_family_shared_across_services_and_unique_within_a_service():
    catalog = generate_ecosystem(SyntheticConfig.from_name("test")).catalog
    families = catalog_semantic_ids(catalog, SidBuildConfig(encoder=ContentEncoderConfig.from_name("synthetic",
                                                                                                   dim=8),
                                                            rq=RQKMeansConfig(codebook_size=8)))
    assert families.stats["unique_sids"] == families.stats["n_items"] == len(families.item_ids)
    assert families.stats["items_in_several_services"] > 0
    table = catalog_item_sids(catalog, families)
    assert table.shape == (len(catalog), 4)
    for item in catalog.items:
        for twin in catalog.family_members(item.family_id):
            assert np.array_equal(table[twin.item_id], table[item.item_id])
    for service in ("samokat", "megamarket", "kuper"):
        rows = [item.item_id for item in catalog.in_service(service)]
        assert len(np.unique(table[rows], axis=0)) == len(rows)


def test_padded_table_keeps_float_codes_and_places_rows_by_id():
    vectors = np.array([[0.5, -1.0], [0.25, 2.0], [1.5, 0.0]], dtype=np.float32)
    table = padded_item_table(np.array([2, 1, 3]), vectors)
    assert table.dtype == np.float32 and table.shape == (4, 2)
    assert (table[0] == 0).all()
    assert table[2].tolist() == [0.5, -1.0] and table[1].tolist() == [0.25, 2.0] and table[3].tolist() == [1.5, 0.0]
    ints = padded_item_table(np.array([1, 2]), np.array([[3, 1], [2, 0]]))
    assert np.issubdtype(ints.dtype, np.integer) and ints[1].tolist() == [3, 1]


@pytest.mark.parametrize("ids", [[1, 2, 4], [1, 1, 2], [2, 3, 4]])
def test_padded_table_rejects_ids_that_are_not_one_to_n(ids):
    with pytest.raises(ValueError, match="exactly 1..3"):
        padded_item_table(np.array(ids), np.zeros((3, 2), dtype=np.float32))


TITLES = {1: "Crunchy Peanut Butter", 2: "Organic Olive Oil", 3: "Dark Chocolate Bar", 4: "Green Tea Bags",
          5: "Sea Salt Crackers", 6: "Honey Granola Clusters"}


def write_exported_folder(path, titles=TITLES, text_ids=None):
    """The export's Amazon format: ``Food.txt``, ``Food_item2attributes.json`` and ``items.jsonl`` with ``title``
    (no ``idgenrec_text_id`` unless ``text_ids`` are given); items 1 and 2 share their attributes, records shuffled."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "Food.txt").write_text("1 1 2 3 4 5 6\n2 6 5 4 3 2 1\n", encoding="utf-8")
    words = {1: ["snack"], 2: ["snack"], 3: ["sweet"], 4: ["drink"], 5: ["snack", "salty"], 6: ["sweet"]}
    (path / "Food_item2attributes.json").write_text(json.dumps({str(i): [1] for i in titles}), encoding="utf-8")
    records = []
    for item in (4, 2, 6, 1, 5, 3):
        record = {"item_id": item, "source_id": 100 + item, "attributes": words[item], "title": titles[item]}
        if text_ids:
            record["idgenrec_text_id"] = text_ids[item]
        records.append(json.dumps(record))
    (path / "items.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    return path


def test_amazon_sids_return_the_content_vectors_in_item_order(tmp_path):
    folder = write_exported_folder(tmp_path / "food")
    config = small_config()
    result = amazon_semantic_ids(folder, config)
    assert result.item_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert result.vectors is not None and result.vectors.dtype == np.float32
    assert result.vectors.shape[0] == 6 and result.sids.codes.shape[0] == 6
    expected = encode_contents(amazon_item_contents(folder), config.encoder)
    assert np.allclose(result.vectors, expected)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # the titles are read: items 1 and 2 have the same attributes and differ only by title
    assert not np.allclose(result.vectors[0], result.vectors[1])


def test_amazon_content_reads_the_title_only_when_there_is_no_text_id(tmp_path):
    same_title = {**TITLES, 2: TITLES[1]}
    same = amazon_semantic_ids(write_exported_folder(tmp_path / "same", same_title), small_config())
    assert np.allclose(same.vectors[0], same.vectors[1])          # attributes and title equal: same vector
    text_ids = {item: f"text {item}" for item in TITLES}
    text_ids[2] = text_ids[1]
    with_text = write_exported_folder(tmp_path / "text", TITLES, text_ids)
    assert [c.text for c in amazon_item_contents(with_text)][:2] == ["text 1", "text 1"]
    result = amazon_semantic_ids(with_text, small_config())
    assert np.allclose(result.vectors[0], result.vectors[1])      # idgenrec_text_id wins over the title
