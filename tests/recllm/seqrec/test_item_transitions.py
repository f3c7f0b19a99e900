"""Item-to-item transitions: counts within the window, row normalisation, recency-weighted history votes."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.seqrec.item_transitions import ItemTransitions, TransitionConfig


def test_successor_within_window_is_scored_and_rows_are_normalised():
    transitions = ItemTransitions([[1, 2, 3], [1, 2, 4]], n_items=5, config=TransitionConfig(window=2, history_items=1))
    scores = transitions.score([[1]])[0]
    # From 1: item 2 twice at distance 1 (weight 2), items 3 and 4 once at distance 2 (weight 0.5 each).
    assert scores[2] == pytest.approx(2 / 3)
    assert scores[3] == pytest.approx(1 / 6) and scores[4] == pytest.approx(1 / 6)
    assert scores[5] == 0 and scores[1] == 0


def test_latest_item_votes_most():
    config = TransitionConfig(window=1, history_items=2, decay=0.5)
    transitions = ItemTransitions([[1, 3], [2, 4]], n_items=4, config=config)
    scores = transitions.score([[1, 2]])[0]
    assert scores[4] == pytest.approx(1.0) and scores[3] == pytest.approx(0.5)


def test_only_the_latest_history_items_vote():
    transitions = ItemTransitions([[1, 3], [2, 4]], n_items=4, config=TransitionConfig(window=1, history_items=1))
    assert transitions.score([[1, 2]])[0, 3] == 0


def test_unknown_history_gives_zero_row():
    transitions = ItemTransitions([[1, 2]], n_items=3)
    assert not np.any(transitions.score([[3]]))


def test_rejects_ids_outside_catalogue_and_bad_config():
    with pytest.raises(ValueError, match="1..3"):
        ItemTransitions([[1, 7]], n_items=3)
    with pytest.raises(ValueError, match="TransitionConfig.decay"):
        TransitionConfig(decay=0.0)
