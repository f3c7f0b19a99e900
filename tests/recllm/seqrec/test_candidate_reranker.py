"""Candidate reranker: candidate lists and features, listwise training, and a full ranking as output."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.seqrec.candidate_reranker import (CandidateReranker, CandidateRerankerConfig, ItemContext,
                                              build_candidate_lists, feature_names)

N_ITEMS = 30


def context() -> ItemContext:
    attributes = np.zeros((N_ITEMS + 1, 2), dtype=np.int64)
    attributes[1:, 0] = np.arange(1, N_ITEMS + 1) % 3 + 1          # brand 1..3
    attributes[1:, 1] = 10                                         # one shared category
    return ItemContext.from_training([[1, 2, 3], [2, 3]], attributes)


def lists_for(histories, mixture, extra=None):
    users = len(histories)
    logits = np.log(mixture + 1e-6).astype(np.float32)
    transitions = np.zeros((users, N_ITEMS + 1), dtype=np.float32)
    return build_candidate_lists(logits, transitions, mixture, histories, context(), 5, extra)


def test_features_describe_history_and_content():
    mixture = np.zeros((1, N_ITEMS + 1), dtype=np.float32)
    mixture[0, [4, 7, 8, 9, 10, 11]] = [0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    lists = lists_for([[2, 4]], mixture)
    names = feature_names()
    assert lists.items[0].tolist() == [4, 7, 8, 9, 10]              # first-stage order, top 5
    row = dict(zip(names, lists.features[0, 0]))                    # item 4: the newest history item
    assert row["in_history"] == 1 and row["steps_since_seen"] == 1
    assert row["last_item_attribute_share"] == 1
    assert row["popularity"] == 0                                   # never in the training sequences
    other = dict(zip(names, lists.features[0, 1]))                  # item 7: brand 2 like item 4, not seen
    assert other["in_history"] == 0 and other["last_item_attribute_share"] == 1
    assert dict(zip(names, lists.features[0, 2]))["last_item_attribute_share"] == 0.5   # item 8: brand 3
    assert lists.features.shape == (1, 5, len(names))


def test_learns_to_promote_what_an_extra_view_points_at_and_keeps_a_full_ranking():
    rng = np.random.default_rng(0)
    users = 400
    mixture = rng.random((users, N_ITEMS + 1)).astype(np.float32)
    mixture[:, 0] = 0
    mixture /= mixture.sum(axis=1, keepdims=True)
    histories = [[int(rng.integers(1, N_ITEMS + 1))] for _ in range(users)]
    lists = lists_for(histories, mixture)
    # The target is always the candidate the extra view scores highest, whatever its first-stage position.
    extra = rng.random((users, N_ITEMS + 1)).astype(np.float32)
    lists = lists_for(histories, mixture, {"generative": extra})
    targets = np.take_along_axis(lists.items, np.take_along_axis(extra, lists.items, 1).argmax(1)[:, None], 1)[:, 0]
    reranker = CandidateReranker.fit([lists], [targets], CandidateRerankerConfig(epochs=60, hidden=16))
    scores = reranker.rerank(lists)
    assert (scores.argmax(axis=1) == targets).mean() > 0.9
    first_stage_hits = (mixture.argmax(axis=1) == targets).mean()
    assert first_stage_hits < 0.5
    outside = np.setdiff1d(np.arange(N_ITEMS + 1), lists.items[0])
    assert scores[0, lists.items[0]].min() > scores[0, outside].max()   # every candidate above every other item
    order_outside = outside[np.argsort(-scores[0, outside], kind="stable")]
    assert order_outside.tolist() == outside[np.argsort(-mixture[0, outside], kind="stable")].tolist()


def test_fit_needs_a_target_in_some_list():
    mixture = np.ones((1, N_ITEMS + 1), dtype=np.float32)
    lists = lists_for([[1]], mixture)
    missing = np.setdiff1d(np.arange(1, N_ITEMS + 1), lists.items[0])[:1]
    with pytest.raises(ValueError, match="num_candidates"):
        CandidateReranker.fit([lists], [missing], CandidateRerankerConfig())


def test_config_validation():
    with pytest.raises(ValueError, match="CandidateRerankerConfig.num_candidates"):
        CandidateRerankerConfig(num_candidates=0)
