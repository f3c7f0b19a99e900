"""Item feature matrices: attribute ids, Semantic-ID levels and their disjoint id ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.seqrec.item_features import attribute_matrix, concat_features, read_item_attributes, sid_matrix


def test_attribute_matrix_pads_with_zero_and_keeps_row_zero_empty():
    matrix = attribute_matrix({1: [5, 7], 3: [2]}, n_items=3)
    assert matrix.tolist() == [[0, 0], [5, 7], [0, 0], [2, 0]]


@pytest.mark.parametrize("attributes, message", [({4: [1]}, "item id 4"), ({1: [0]}, "ids < 1")])
def test_attribute_matrix_rejects_bad_ids(attributes, message):
    with pytest.raises(ValueError, match=message):
        attribute_matrix(attributes, n_items=3)


def test_sid_levels_get_disjoint_ranges_and_collision_level_can_be_dropped():
    sids = np.array([[0, 0, 0], [0, 2, 1], [1, 0, 0], [1, 1, 3]])
    features = sid_matrix(sids, levels=2)
    assert features[0].tolist() == [0, 0]
    assert features[1:, 0].tolist() == [1, 2, 2]            # level 0: codes 0..1 -> ids 1..2
    assert features[1:, 1].tolist() == [5, 3, 4]            # level 1: codes 0..2 -> ids 3..5
    assert set(features[1:, 0]).isdisjoint(features[1:, 1])


def test_concat_shifts_each_group_past_the_previous():
    merged = concat_features(np.array([[0], [3], [1]]), np.array([[0], [1], [2]]))
    assert merged.tolist() == [[0, 0], [3, 4], [1, 5]]


def test_read_item_attributes_parses_s3rec_json(tmp_path):
    path = tmp_path / "X_item2attributes.json"
    path.write_text(json.dumps({"2": [4, 1], "1": [3]}))
    assert read_item_attributes(path) == {2: [4, 1], 1: [3]}
