"""End-to-end SIDs: Amazon-format folders and the unified catalog; the padded table sequential models load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.sid.content_encoder import ContentEncoderConfig
from recllm.sid.item_sids import (SidBuildConfig, amazon_semantic_ids, catalog_item_sids, catalog_semantic_ids,
                                  load_item_sids, padded_item_table, save_item_sids, sid_feature_ids)
from recllm.sid.residual_quantization import RQKMeansConfig
from recllm.synthetic_ecosystem import SyntheticConfig, generate_ecosystem

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
