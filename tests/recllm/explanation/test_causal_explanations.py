"""Causal explanations: a cited fact lowers the item's reranker score when removed from the profile, a profile that
did not raise the item is said plainly, health items cite no history, the style follows the user; the faithfulness
metric."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recllm.explanation.causal_explanations import (DROP_RESOLUTION, CausalExplanationConfig, ProfileFact,
                                                    cited_facts, counterfactual_scores, explain_ranked,
                                                    explanation_style, fact_groups, faithfulness, strongest_first)
from recllm.profile.feedback import FeedbackSignals
from recllm.profile.user_context import read_user_context
from recllm.rag.reranker import FEATURE_NAMES, Reranker, RerankerConfig

CONFIG = CausalExplanationConfig()


def linear_reranker(weights: dict[str, float]) -> Reranker:
    """A reranker whose score grows with the named features only (one hidden unit; GELU is increasing on x >= 0,
    and these features are >= 0)."""
    reranker = Reranker(RerankerConfig(hidden=1))
    with torch.no_grad():
        first, second = reranker.model.mlp[0], reranker.model.mlp[2]
        first.weight.zero_()
        first.bias.zero_()
        for name, weight in weights.items():
            first.weight[0, FEATURE_NAMES.index(name)] = weight
        second.weight.fill_(1.0)
        second.bias.zero_()
    return reranker


PROFILE_DRIVEN = linear_reranker({"log_category_purchases": 1.0, "log_family_purchases": 1.0,
                                  "retrieval_score": 0.1})
QUERY_ONLY = linear_reranker({"retrieval_score": 1.0})


@pytest.fixture(scope="module")
def buyer(profile_store, catalog, item_vectors):
    """A user with purchases and the context the ranking reads."""
    user = max(profile_store.user_ids(), key=lambda u: len(profile_store.events_of(u, kind="purchase")))
    return read_user_context(profile_store, catalog, item_vectors, user)


def bought_item(context, catalog):
    return next(catalog.get(e.item_id) for e in context.purchases
                if not catalog.categories[catalog.get(e.item_id).category_id].sensitive)


def test_every_cited_fact_lowers_the_score_when_removed(buyer, catalog, item_vectors):
    item = bought_item(buyer, catalog)
    facts = cited_facts(item.item_id, 0.5, item.service, buyer, PROFILE_DRIVEN, catalog, item_vectors, {}, CONFIG)
    assert facts and {f.signal for f in facts} >= {"family", "category"}
    assert [f.score_drop for f in facts] == sorted((f.score_drop for f in facts), reverse=True)
    groups = fact_groups(item, buyer.purchases, catalog)
    for fact in facts:
        positions = groups[(fact.signal, fact.service)]
        full, without = counterfactual_scores(item.item_id, 0.5, item.service, buyer, [positions], PROFILE_DRIVEN,
                                              catalog, item_vectors, {})
        assert full - without == pytest.approx(fact.score_drop, abs=1e-5) and fact.score_drop > CONFIG.min_score_drop
        assert fact.purchases == len(positions)
        assert fact.last_ts == max(buyer.purchases[k].timestamp for k in positions)
    explanation = explain_ranked([item.item_id], [0.5], item.service, buyer, PROFILE_DRIVEN, catalog, item_vectors,
                                 {}, "ru", CONFIG)[0]
    assert explanation.text.startswith("Вы брали") and "последний раз" in explanation.text


def test_a_profile_that_did_not_raise_the_item_is_said_plainly(buyer, catalog, item_vectors):
    item = bought_item(buyer, catalog)
    for language, plain in (("ru", "Подобрано по запросу, а не по истории покупок"),
                            ("en", "Chosen for your request, not from your history")):
        explanation = explain_ranked([item.item_id], [0.5], item.service, buyer, QUERY_ONLY, catalog, item_vectors,
                                     {}, language, CONFIG)[0]
        assert explanation.facts == () and explanation.text == plain


def test_an_item_the_user_never_came_near_cites_nothing(buyer, catalog, item_vectors):
    bought_categories = {catalog.get(e.item_id).category_id for e in buyer.purchases}
    bought_parents = {catalog.categories[c].parent_id for c in bought_categories}
    far = next(i for i in catalog.items if i.category_id not in bought_categories
               and catalog.categories[i.category_id].parent_id not in bought_parents)
    assert cited_facts(far.item_id, 0.5, far.service, buyer, PROFILE_DRIVEN, catalog, item_vectors, {}, CONFIG) == ()


def test_a_health_item_is_never_explained_by_history(buyer, catalog, item_vectors):
    sensitive = next(i for i in catalog.items if catalog.categories[i.category_id].sensitive)
    family_bought = dataclasses.replace(buyer, purchases=buyer.purchases + [
        buyer.purchases[-1]._replace(item_id=sensitive.item_id, service=sensitive.service)])
    assert cited_facts(sensitive.item_id, 0.5, sensitive.service, family_bought, PROFILE_DRIVEN, catalog,
                       item_vectors, {}, CONFIG) == ()


def test_style_follows_how_often_the_user_asks_why(buyer, catalog, item_vectors):
    item = bought_item(buyer, catalog)
    assert explanation_style(buyer, CONFIG) == "short"
    curious = dataclasses.replace(buyer, feedback=FeedbackSignals(explain_requests=CONFIG.detailed_after_why))
    assert explanation_style(curious, CONFIG) == "detailed"
    short = explain_ranked([item.item_id], [0.5], item.service, buyer, PROFILE_DRIVEN, catalog, item_vectors, {},
                           "ru", CONFIG)[0]
    detailed = explain_ranked([item.item_id], [0.5], item.service, curious, PROFILE_DRIVEN, catalog, item_vectors,
                              {}, "ru", CONFIG)[0]
    assert short.facts == detailed.facts
    assert short.text.count(";") == 0 and " раз," not in short.text
    assert detailed.text.count(";") == min(len(detailed.facts), CONFIG.max_detailed_facts) - 1
    assert " раз," in detailed.text


def test_a_style_the_user_asked_for_beats_the_learned_one(buyer):
    curious = FeedbackSignals(explain_requests=CONFIG.detailed_after_why)
    asked_short = dataclasses.replace(buyer, feedback=dataclasses.replace(curious, style="short"))
    asked_detailed = dataclasses.replace(buyer, feedback=FeedbackSignals(style="detailed"))
    assert explanation_style(asked_short, CONFIG) == "short"
    assert explanation_style(asked_detailed, CONFIG) == "detailed"


def test_faithfulness_counts_explanations_whose_every_fact_passes():
    report = faithfulness([[0.5, 0.2], [0.3, 0.0], [], [1e-4]], min_score_drop=1e-3)
    assert report == {"faithfulness": 0.5, "no_fact_rate": 0.25, "shown": 4.0}
    assert faithfulness([[]], 1e-3) == {"faithfulness": 1.0, "no_fact_rate": 1.0, "shown": 1.0}
    with pytest.raises(ValueError, match="at least one"):
        faithfulness([], 1e-3)


@pytest.mark.parametrize("field, value", [("min_score_drop", 0.0), ("max_detailed_facts", 0),
                                          ("detailed_after_why", 1.5)])
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        CausalExplanationConfig(**{field: value})


def test_counterfactual_without_groups_is_the_ranking_score(buyer, catalog, item_vectors):
    item = bought_item(buyer, catalog)
    scores = counterfactual_scores(item.item_id, 0.5, item.service, buyer, [], PROFILE_DRIVEN, catalog,
                                   item_vectors, {})
    from recllm.rag.reranker import candidate_features

    features = candidate_features(np.array([item.item_id]), np.array([0.5], dtype=np.float32), buyer.signals,
                                  item.service, catalog, item_vectors, {}, buyer.now_ts)
    assert scores.shape == (1,) and scores[0] == pytest.approx(PROFILE_DRIVEN.score(features)[0])


def test_a_cold_user_gets_popular_picks_said_plainly(buyer, catalog, item_vectors):
    cold = dataclasses.replace(buyer, purchases=[])
    item = bought_item(buyer, catalog)
    explanation = explain_ranked([item.item_id], [0.5], item.service, cold, PROFILE_DRIVEN, catalog, item_vectors,
                                 {}, "ru", CONFIG)[0]
    assert explanation.facts == () and explanation.text.startswith("Популярно") and "истории покупок пока нет" in \
        explanation.text


def test_signals_without_a_group_equal_the_signals_recomputed_without_it(buyer, catalog, item_vectors):
    """The subtraction the explanations use against the reference: compute_user_signals of the kept purchases."""
    from collections import Counter

    from recllm.explanation.causal_explanations import signals_without
    from recllm.profile.user_signals import compute_user_signals

    item = bought_item(buyer, catalog)
    groups = list(fact_groups(item, buyer.purchases, catalog).values())
    groups.append(list(range(len(buyer.purchases))))  # everything: a cold user
    for positions in groups:
        kept = [e for k, e in enumerate(buyer.purchases) if k not in set(positions)]
        fast = signals_without(buyer.signals, buyer.purchases, positions, catalog)
        reference = compute_user_signals(buyer.user_id, kept, catalog, item_vectors, buyer.now_ts)
        positive = lambda counter: Counter({k: v for k, v in counter.items() if v > 0})  # noqa: E731
        for name in ("category_counts", "service_category_counts", "parent_category_counts", "family_counts",
                     "tag_counts", "brand_counts"):
            assert positive(getattr(fast, name)) == positive(getattr(reference, name)), name
        assert fast.family_last_ts == reference.family_last_ts
        assert fast.num_purchases == reference.num_purchases and fast.is_cold == reference.is_cold
        assert fast.median_price == (pytest.approx(reference.median_price) if kept else None)
        assert fast.pref_long is buyer.signals.pref_long  # the release is kept
        ids = np.array([item.item_id])
        from recllm.rag.reranker import candidate_features

        with_reference = dataclasses.replace(reference, pref_long=buyer.signals.pref_long,
                                             pref_short=buyer.signals.pref_short)
        assert np.allclose(
            candidate_features(ids, np.array([0.5], np.float32), fast, item.service, catalog, item_vectors, {},
                               buyer.now_ts),
            candidate_features(ids, np.array([0.5], np.float32), with_reference, item.service, catalog,
                               item_vectors, {}, buyer.now_ts))


def test_a_tie_in_strength_cites_the_more_specific_fact_whatever_the_float_noise():
    """The concurrent-burst test caught «Вы брали этот товар» alone and «Вы брали полезные перекусы Ореховый король»
    in a dynamic batch: the same request's scores ~1e-7 apart flipped a tie between the item and its brand."""
    def fact(signal, drop):
        return ProfileFact(signal, "samokat", 1, 0, drop)

    for noise in (0.0, 1e-7, -1e-7):
        cited = strongest_first([fact("brand", 0.31 + noise), fact("family", 0.31), fact("category", 0.05)])
        assert [f.signal for f in cited] == ["family", "brand", "category"]
    stronger_brand = strongest_first([fact("family", 0.30), fact("brand", 0.30 + 10 * DROP_RESOLUTION)])
    assert [f.signal for f in stronger_brand] == ["brand", "family"]  # a real difference still decides
