"""Leave-one-out protocol on a tiny Amazon-format folder: one training, valid and test rows raw / filtered, the
README's published rows with their variant, and the user cap of quick runs."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.datasets.amazon_beauty import load_amazon_dir
from recllm.evaluation.leave_one_out import (LeaveOneOutEvalConfig, evaluate_leave_one_out, first_users,
                                             item_side_info, quick_pipeline)
from recllm.evaluation.published import FILTERED_NOTE, UNKNOWN_NOTE
from recllm.evaluation.report_table import PUBLISHED_STANDARD, PUBLISHED_UNSTATED, REFIT, VALID
from recllm.seqrec.sasrec import SASRecConfig
from tests.recllm.evaluation.tiny_data import AMAZON_ITEMS, write_amazon_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory, single_thread):
    folder = write_amazon_dir(tmp_path_factory.mktemp("amazon"), n_users=160)
    config = LeaveOneOutEvalConfig(quick_pipeline(SASRecConfig.from_name("test", epochs=12)))
    with single_thread():
        return evaluate_leave_one_out(load_amazon_dir(folder), config, folder)


def test_the_ring_is_learned_on_valid_and_test(report):
    rows = report.numbers["leave_one_out"]
    random_recall_at_5 = 5 / AMAZON_ITEMS
    for name in ("ours valid raw", "ours valid filtered", "ours test raw", "ours test filtered"):
        assert rows[name]["R@5"] > 4 * random_recall_at_5
        assert rows[name]["R@5"] <= rows[name]["R@10"] <= rows[name]["R@20"]
        assert rows[name]["N@5"] <= rows[name]["R@5"]
    for stage in ("SASRec + attributes", "first stage (SASRec + transitions)"):
        assert rows[f"ours test filtered, {stage}"]["R@5"] > 4 * random_recall_at_5   # ablation rows are there


def test_published_rows_carry_their_variant(report):
    rows = report.numbers["leave_one_out"]
    assert rows["SASRec (published, test)"] == {"R@5": 0.0387, "N@5": 0.0249, "R@10": 0.0605, "N@10": 0.0318}
    markdown = report.markdown()
    assert f"| SASRec (published, test) | 0.0387 | 0.0605 | – | 0.0249 | 0.0318 | – | {FILTERED_NOTE} |" in markdown
    assert UNKNOWN_NOTE in markdown and "full ranking over 30 items" in markdown


def test_every_row_names_its_training_protocol(report):
    protocols = report.protocols["leave_one_out"]
    assert set(protocols) == set(report.numbers["leave_one_out"])
    assert {protocols[name] for name in protocols if name.startswith("ours test")} == {REFIT}
    assert protocols["ours valid raw"] == protocols["ours valid filtered"] == VALID
    assert protocols["SASRec (published, test)"] == PUBLISHED_STANDARD  # S3-Rec code: one training
    assert protocols["TIGER (published, test)"] == PUBLISHED_UNSTATED
    markdown = report.markdown()
    assert "| protocol |" in markdown and f"| {FILTERED_NOTE} | {PUBLISHED_STANDARD} |" in markdown


def test_quick_runs_keep_the_first_users(tmp_path):
    dataset = load_amazon_dir(write_amazon_dir(tmp_path, n_users=50))
    kept = first_users(dataset, 7)
    assert list(kept.sequences) == list(dataset.sequences)[:7]
    assert first_users(dataset, None) is dataset


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="LeaveOneOutEvalConfig.max_users"):
        LeaveOneOutEvalConfig(max_users=0)
    with pytest.raises(ValueError, match="preset 'huge'"):
        LeaveOneOutEvalConfig.from_name("huge")


def test_side_info_without_a_folder_is_attributes_only():
    side = item_side_info(None, 12)
    assert side.attributes.shape == (13, 1) and not side.attributes.any()
    assert side.content is None and side.sids is None and side.domains is None


def test_side_info_of_a_folder_has_content_vectors_and_sids_per_item(tmp_path):
    folder = write_amazon_dir(tmp_path, n_users=20)
    side = item_side_info(folder, AMAZON_ITEMS)
    rows = AMAZON_ITEMS + 1
    assert side.attributes.shape[0] == rows and side.attributes[1:].any()
    assert side.content.ndim == 2 and side.content.shape[0] == rows
    assert np.issubdtype(side.content.dtype, np.floating)
    assert not side.content[0].any()                                          # row 0 = padding
    assert np.allclose(np.linalg.norm(side.content[1:], axis=1), 1.0, atol=1e-5)
    assert side.sids.shape == (rows, 4) and np.issubdtype(side.sids.dtype, np.integer)
    assert not side.sids[0].any()
    assert len({tuple(row) for row in side.sids[1:].tolist()}) == AMAZON_ITEMS   # one SID per item


def test_side_info_leaves_out_the_items_past_n_items(tmp_path):
    fewer = item_side_info(write_amazon_dir(tmp_path, n_users=20), 20)
    assert fewer.content.shape[0] == fewer.sids.shape[0] == fewer.attributes.shape[0] == 21
