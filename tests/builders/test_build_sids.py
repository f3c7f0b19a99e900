"""build_sids: both data sets end to end on quick configs (few items, small codebooks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders.build_sids import BuildSidsConfig, build_sids, main
from recllm.catalog.product_catalog import SERVICES
from recllm.sid.item_sids import load_item_sids
from tests.recllm.sid.test_item_sids import write_amazon_folder


def test_amazon_format_build_writes_files_and_prints_stats(tmp_path, capsys):
    write_amazon_folder(tmp_path)
    out = tmp_path / "sids"
    main(["--dataset", "beauty", "--data-dir", str(tmp_path), "--output", str(out), "--codebook-size", "4",
          "--dim", "8", "--seed", "3"])
    printed = capsys.readouterr().out
    stats = json.loads((out / "sid_stats.json").read_text())
    assert '"collision_rate"' in printed and stats["seed"] == 3 and stats["unique_sids"] == 40
    assert np.load(out / "sids.npy").shape == (40, 4)
    assert set(np.load(out / "codebooks.npz").files) == {"level_1", "level_2", "level_3"}
    assert load_item_sids(out).shape == (41, 4)


def test_synthetic_build_is_one_codebook_over_all_services_and_deterministic(tmp_path):
    config = dict(dataset="synthetic", synthetic_preset="test", codebook_size=8, dim=8, progress=False)
    stats = build_sids(BuildSidsConfig(output=tmp_path / "a", **config))
    build_sids(BuildSidsConfig(output=tmp_path / "b", **config))
    sids, family_ids = np.load(tmp_path / "a" / "sids.npy"), np.load(tmp_path / "a" / "family_ids.npy")
    assert np.array_equal(sids, np.load(tmp_path / "b" / "sids.npy"))
    assert set(stats["services"]) == set(SERVICES)
    assert all(v["items"] == v["distinct_sids"] for v in stats["services"].values())
    assert stats["catalog_items"] == len(sids) > stats["n_items"] == len(np.unique(family_ids))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dataset"):
        BuildSidsConfig(dataset="movies")
    with pytest.raises(ValueError, match="codebook_size"):
        BuildSidsConfig(codebook_size=1)
