"""Candidate reranker: candidate lists and features, listwise training, and a full ranking as output."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.seqrec.candidate_reranker import (FEATURE_GROUPS, GENERATIVE_FEATURE, CandidateReranker,
                                              CandidateRerankerConfig, ItemContext, ItemSideInfo,
                                              build_candidate_lists, feature_names)

N_ITEMS = 30


def item_attributes() -> np.ndarray:
    attributes = np.zeros((N_ITEMS + 1, 2), dtype=np.int64)
    attributes[1:, 0] = np.arange(1, N_ITEMS + 1) % 3 + 1          # brand 1..3
    attributes[1:, 1] = 10                                         # one shared category
    return attributes


def context(side: ItemSideInfo | None = None) -> ItemContext:
    return ItemContext.from_training([[1, 2, 3], [2, 3]], item_attributes() if side is None else side)


def lists_for(histories, mixture, extra=None, item_context=None):
    users = len(histories)
    logits = np.log(mixture + 1e-6).astype(np.float32)
    transitions = np.zeros((users, N_ITEMS + 1), dtype=np.float32)
    return build_candidate_lists(logits, transitions, mixture, histories, item_context or context(), 5, extra)


def mixture_ranking(*items: int, users: int = 1) -> np.ndarray:
    """[users, N_ITEMS + 1] first-stage scores that rank ``items`` first, in that order."""
    mixture = np.zeros((users, N_ITEMS + 1), dtype=np.float32)
    mixture[:, list(items)] = np.linspace(0.5, 0.1, len(items))
    return mixture


def rows_by_item(lists, user: int = 0) -> dict[int, dict[str, float]]:
    names = feature_names()
    return {int(item): dict(zip(names, lists.features[user, c].tolist())) for c, item in enumerate(lists.items[user])}


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


CONTENT_FEATURES = FEATURE_GROUPS["content_profile"]
DOMAIN_FEATURES = FEATURE_GROUPS["cross_service"]


def content_side() -> ItemSideInfo:
    """Items 4 and 7 point the same way (7 is longer), 8 is orthogonal to both, 9 has no content, 2 and 10 point
    along the third axis."""
    content = np.zeros((N_ITEMS + 1, 3), dtype=np.float32)
    content[4], content[7], content[8] = [1, 0, 0], [2, 0, 0], [0, 1, 0]
    content[2], content[10] = [0, 0, 1], [0, 0, 5]
    return ItemSideInfo(item_attributes(), content=content)


def test_content_profile_features_are_cosines_with_the_history():
    lists = lists_for([[2, 4]], mixture_ranking(4, 7, 8, 9, 10), item_context=context(content_side()))
    rows = rows_by_item(lists)
    assert rows[7]["last_item_content_cosine"] == pytest.approx(1.0)     # same direction as the latest item
    assert rows[4]["last_item_content_cosine"] == pytest.approx(1.0)
    assert rows[8]["last_item_content_cosine"] == pytest.approx(0.0)     # orthogonal
    assert rows[10]["last_item_content_cosine"] == pytest.approx(0.0)
    assert rows[10]["recent_max_content_cosine"] == pytest.approx(1.0)   # matches the older item 2
    assert rows[7]["recent_max_content_cosine"] == pytest.approx(1.0)
    assert rows[8]["recent_max_content_cosine"] == pytest.approx(0.0)
    # profile = 1 * e1 (newest) + 0.9 * e3, normalised: the newest item weighs more than the older one
    norm = np.sqrt(1 + 0.9 ** 2)
    assert rows[7]["profile_content_cosine"] == pytest.approx(1 / norm, abs=1e-5)
    assert rows[10]["profile_content_cosine"] == pytest.approx(0.9 / norm, abs=1e-5)
    assert rows[8]["profile_content_cosine"] == pytest.approx(0.0)
    assert all(rows[9][name] == 0 for name in CONTENT_FEATURES)           # an item without content matches nothing


def test_content_features_are_zero_without_content_or_history():
    mixture = mixture_ranking(4, 7, 8, 9, 10)
    no_content = lists_for([[2, 4]], mixture)
    for row in rows_by_item(no_content).values():
        assert all(row[name] == 0 for name in CONTENT_FEATURES)
    empty_history = lists_for([[]], mixture, item_context=context(content_side()))
    for row in rows_by_item(empty_history).values():
        assert all(row[name] == 0 for name in CONTENT_FEATURES + DOMAIN_FEATURES)


def two_domain_side() -> ItemSideInfo:
    domains = np.zeros(N_ITEMS + 1, dtype=np.int64)
    domains[16:] = 1                       # items 1..15: service 0, 16..29: service 1
    domains[30] = 2                        # a service this user never used
    return ItemSideInfo(item_attributes(), domains=domains)


def test_cross_service_features_follow_the_history_domains():
    # history services: 0, 1, 0, 0 (item 20 is the only one in service 1, three steps back)
    lists = lists_for([[2, 20, 3, 4]], mixture_ranking(4, 17, 30, 5, 6), item_context=context(two_domain_side()))
    rows = rows_by_item(lists)
    assert rows[5]["history_share_in_item_domain"] == pytest.approx(0.75)
    assert rows[5]["last_item_same_domain"] == 1 and rows[5]["steps_since_item_domain"] == pytest.approx(1.0)
    assert rows[17]["history_share_in_item_domain"] == pytest.approx(0.25)
    assert rows[17]["last_item_same_domain"] == 0
    assert rows[17]["steps_since_item_domain"] == pytest.approx(1 / 3)
    assert all(rows[30][name] == 0 for name in DOMAIN_FEATURES)            # never in that service


def test_cross_service_features_are_constant_on_one_domain():
    rows = rows_by_item(lists_for([[2, 20, 3, 4]], mixture_ranking(4, 17, 30, 5, 6)))
    for row in rows.values():
        assert (row["history_share_in_item_domain"], row["last_item_same_domain"],
                row["steps_since_item_domain"]) == (1, 1, 1)


def test_with_columns_appends_at_the_end_and_checks_the_shape():
    lists = lists_for([[2, 4], [3]], mixture_ranking(4, 7, 8, 9, 10, users=2))
    before = lists.features.copy()
    column = np.arange(10, dtype=np.float64).reshape(2, 5)
    wider = lists.with_columns(column)
    names = feature_names(appended=(GENERATIVE_FEATURE,))
    assert wider.features.shape == (2, 5, len(names)) and names[-1] == GENERATIVE_FEATURE
    assert names[:-1] == feature_names()
    assert wider.features.dtype == np.float32
    assert np.array_equal(wider.features[..., -1], column) and np.array_equal(wider.features[..., :-1], before)
    assert np.array_equal(wider.items, lists.items) and wider.first_stage is lists.first_stage
    assert np.array_equal(lists.features, before)                         # the original keeps its columns
    two = lists.with_columns(np.ones((2, 5, 2)))
    assert two.features.shape == (2, 5, len(feature_names(appended=("a", "b"))))
    with pytest.raises(ValueError, match=r"CandidateLists.with_columns: expected \[2, 5, k\]"):
        lists.with_columns(np.ones((2, 4)))
    with pytest.raises(ValueError, match="CandidateLists.with_columns"):
        lists.with_columns(np.ones((1, 5, 1)))


def test_without_zeroes_the_given_columns_only():
    lists = lists_for([[2, 4]], mixture_ranking(4, 7, 8, 9, 10), item_context=context(content_side()))
    names = feature_names()
    dropped = [names.index("in_history"), names.index("last_item_content_cosine")]
    before = lists.features.copy()
    assert (before[..., dropped] != 0).any()
    ablated = lists.without(dropped)
    assert (ablated.features[..., dropped] == 0).all()
    kept = [i for i in range(len(names)) if i not in dropped]
    assert np.array_equal(ablated.features[..., kept], before[..., kept])
    assert np.array_equal(lists.features, before)                         # original untouched
    assert ablated.first_stage is lists.first_stage and np.array_equal(ablated.items, lists.items)


@pytest.mark.parametrize("field", ["content", "domains", "sids"])
def test_side_info_rows_must_match_the_attributes(field):
    attributes = item_attributes()
    short = np.zeros((N_ITEMS, 2)) if field != "domains" else np.zeros(N_ITEMS, dtype=np.int64)
    with pytest.raises(ValueError, match=f"ItemSideInfo.{field} has {N_ITEMS} rows; attributes have {N_ITEMS + 1}"):
        ItemSideInfo(attributes, **{field: short})
