"""The benchmark's scoring helpers: beams become full-ranking scores; invalid SIDs are counted, padding is not."""

from __future__ import annotations

import numpy as np

from benchmarks.beauty_sids import beam_scores, invalid_rate
from recllm.seqrec.full_ranking import target_ranks
from recllm.sid.prefix_trie import DecodedItems

ITEM_SIDS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])   # row 0 = padding, items 1..3


def decoded() -> DecodedItems:
    return DecodedItems(np.array([[2, 1, -1]]), np.array([[[1, 0], [0, 1], [-1, -1]]]),
                        np.array([[-0.1, -2.0, -np.inf]], dtype=np.float32))


def test_beam_items_rank_in_beam_order_and_the_rest_never_hits():
    scores = beam_scores(decoded(), n_items=3)
    assert scores.shape == (1, 4)
    assert target_ranks(scores, [2]).tolist() == [0] and target_ranks(scores, [1]).tolist() == [1]
    assert target_ranks(scores, [3]).tolist() == [3]  # outside the beam: behind every item (pessimistic ties)


def test_invalid_rate_counts_unknown_or_mismatched_sids_only():
    good = decoded()
    assert invalid_rate(good.sids, good.item_ids, ITEM_SIDS) == 0.0
    bad_sids = good.sids.copy()
    bad_sids[0, 0] = [1, 1]          # exists, but is item 3's SID, not item 2's
    assert invalid_rate(bad_sids, good.item_ids, ITEM_SIDS) == 0.5
    bad_sids[0, 1] = [5, 5]          # no item has it
    assert invalid_rate(bad_sids, good.item_ids, ITEM_SIDS) == 1.0
