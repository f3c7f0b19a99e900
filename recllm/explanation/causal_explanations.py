"""Why each ranked item: the user's profile facts that raised its reranker score, each one checked by a counterfactual.

A profile fact is a group of the user's purchases in one service that feeds one of the reranker's profile features
for this item: the same product bought before (``family``: repeat count and recency), its category, its parent
category, its brand within the category. ``cited_facts`` re-runs the reranker's feature computation
(``recllm.rag.reranker.candidate_features``) with that group removed from the user's purchases and re-scores the
item; a fact is cited only when its removal lowers the score by more than ``CausalExplanationConfig.min_score_drop``,
strongest first. When none qualifies, the explanation says plainly that the item was chosen for the request and cites
no history; a sensitive (health) item is never explained by history. The preference vectors are the user's
differentially private release, not a group of purchases: every counterfactual keeps them as released.

Style per user: ``short`` cites the strongest fact (signal, service, when); ``detailed`` up to
``max_detailed_facts`` with how often. A user who asks «почему?» often (``FeedbackSignals.explain_requests``) gets
detailed ones. ``faithfulness`` is the benchmark's metric over shown explanations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recllm.catalog.product_catalog import SERVICE_DISPLAY, Catalog, Item
from recllm.explanation.counterfactual_arrays import PurchaseTable
from recllm.config.field_checks import require_above
from recllm.profile.events import EXPLANATION_STYLES
from recllm.profile.records import EventRow
from recllm.profile.user_context import UserContext
from recllm.profile.user_signals import DAY_S, UserSignals
from recllm.rag.rec_request import LANGUAGES as EXPLANATION_LANGUAGES
from recllm.rag.reranker import Reranker, candidate_features

SIGNALS = ("family", "category", "parent_category", "brand")
_COUNTERS = ("category_counts", "service_category_counts", "parent_category_counts", "family_counts", "tag_counts",
             "brand_counts")
STYLES = EXPLANATION_STYLES


@dataclass(frozen=True)
class CausalExplanationConfig:
    min_score_drop: float = 1e-3     # reranker logits: below this a removal "changes nothing" (float noise)
    max_detailed_facts: int = 3
    detailed_after_why: int = 2      # «почему?» asked this often → detailed explanations

    def __post_init__(self) -> None:
        require_above(self, "min_score_drop", 0)
        for name in ("max_detailed_facts", "detailed_after_why"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CausalExplanationConfig.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class ProfileFact:
    """A group of the user's purchases behind one reranker feature of one item, with its counterfactual effect."""

    signal: str          # one of SIGNALS
    service: str         # where the purchases were made
    purchases: int
    last_ts: int
    score_drop: float    # score with the fact − score without it


@dataclass(frozen=True)
class CausalExplanation:
    item_id: int
    text: str                        # in the request's language
    facts: tuple[ProfileFact, ...]   # the cited facts, strongest first; () = chosen for the request only
    # the same explanation in each language replies are written in (``EXPLANATION_LANGUAGES``): a question about the
    # list asked in the other language is answered in that one
    texts: dict[str, str] = field(default_factory=dict)


def bought_items(purchases: Sequence[EventRow], catalog: Catalog) -> list[Item]:
    """The catalog item of each purchase, looked up once per request for every counterfactual."""
    return [catalog.get(e.item_id) for e in purchases]


def fact_groups(item: Item, purchases: Sequence[EventRow], catalog: Catalog,
                bought_list: Sequence[Item] | None = None) -> dict[tuple[str, str], list[int]]:
    """(signal, service) → positions in ``purchases`` of the purchases that feed that signal for ``item``."""
    parent = catalog.categories[item.category_id].parent_id
    bought_list = bought_list if bought_list is not None else bought_items(purchases, catalog)
    groups: dict[tuple[str, str], list[int]] = {}
    for position, (event, bought) in enumerate(zip(purchases, bought_list)):
        matches = {
            "family": bought.family_id == item.family_id,
            "category": bought.category_id == item.category_id,
            "parent_category": bool(parent) and bought.category_id != item.category_id
            and catalog.categories[bought.category_id].parent_id == parent,
            "brand": bought.category_id == item.category_id and bought.brand == item.brand,
        }
        for signal, match in matches.items():
            if match:
                groups.setdefault((signal, event.service), []).append(position)
    return groups


def family_positions(bought_list: Sequence[Item]) -> dict[int, list[int]]:
    """family id → positions of its purchases (so a family's recency is recomputed from its own purchases only)."""
    positions: dict[int, list[int]] = {}
    for k, item in enumerate(bought_list):
        positions.setdefault(item.family_id, []).append(k)
    return positions


def signals_without(signals: UserSignals, purchases: Sequence[EventRow], positions: Sequence[int],
                    catalog: Catalog, bought_list: Sequence[Item] | None = None,
                    by_family: dict[int, list[int]] | None = None) -> UserSignals:
    """The user's signals as ``compute_user_signals`` would give them without the purchases at ``positions``, the
    preference vectors kept as they are; by subtraction from ``signals`` (computed from all of ``purchases``): the
    counters lose the removed purchases, the recency of their families and the median price are recomputed."""
    bought_list = bought_list if bought_list is not None else bought_items(purchases, catalog)
    by_family = by_family if by_family is not None else family_positions(bought_list)
    dropped = set(positions)
    kept = [k for k in range(len(purchases)) if k not in dropped]
    out = dataclasses.replace(signals, **{name: getattr(signals, name).copy() for name in _COUNTERS},
                              family_last_ts=dict(signals.family_last_ts), num_purchases=len(kept),
                              median_price=float(np.median([purchases[k].price for k in kept])) if kept else None)
    families = set()
    for k in dropped:
        event, item = purchases[k], bought_list[k]
        parent = catalog.categories[item.category_id].parent_id
        out.category_counts[item.category_id] -= 1
        out.service_category_counts[(event.service, item.category_id)] -= 1
        if parent:
            out.parent_category_counts[parent] -= 1
        out.family_counts[item.family_id] -= 1
        out.tag_counts.subtract(item.tags)
        out.brand_counts[(item.category_id, item.brand)] -= 1
        families.add(item.family_id)
    for family in families:
        times = [purchases[k].timestamp for k in by_family[family] if k not in dropped]
        if times:
            out.family_last_ts[family] = max(times)
        else:
            out.family_last_ts.pop(family, None)
    return out


def counterfactual_features(item_id: int, retrieval_score: float, service: str, context: UserContext,
                            groups: list[list[int]], catalog: Catalog, item_vectors: np.ndarray,
                            popularity: dict[int, int], bought_list: Sequence[Item] | None = None,
                            cache: dict[tuple[int, ...], UserSignals] | None = None) -> np.ndarray:
    """[1 + G, F] the reranker's features of the item: with the full profile, then without each group.

    ``cache`` (one per request) keeps the signals without each group already computed: the items of one list share
    most groups (the same category, brand or service), so each is subtracted once."""
    bought_list = bought_list if bought_list is not None else bought_items(context.purchases, catalog)
    cache = cache if cache is not None else {}
    by_family = None
    signals = [context.signals]
    for positions in groups:
        key = tuple(positions)
        if key not in cache:
            by_family = by_family if by_family is not None else family_positions(bought_list)
            # the DP release is no group of purchases: it stays as released (signals_without keeps it)
            cache[key] = signals_without(context.signals, context.purchases, positions, catalog, bought_list,
                                         by_family)
        signals.append(cache[key])
    ids, scores = np.array([item_id], dtype=np.int64), np.array([retrieval_score], dtype=np.float32)
    return np.concatenate([candidate_features(ids, scores, s, service, catalog, item_vectors, popularity,
                                              context.now_ts) for s in signals])


def counterfactual_scores(item_id: int, retrieval_score: float, service: str, context: UserContext,
                          groups: list[list[int]], reranker: Reranker, catalog: Catalog, item_vectors: np.ndarray,
                          popularity: dict[int, int]) -> np.ndarray:
    """[1 + G] reranker scores of the item: with the full profile, then without each group of purchases."""
    return reranker.score(counterfactual_features(item_id, retrieval_score, service, context, groups, catalog,
                                                  item_vectors, popularity))


def _candidate_facts(item: Item, context: UserContext, catalog: Catalog, bought_list: Sequence[Item]
                     ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], list[int]]]:
    """The (signal, service) groups to check for the item, in a fixed order; none for a sensitive item."""
    if catalog.categories[item.category_id].sensitive or not context.purchases:
        return [], {}
    groups = fact_groups(item, context.purchases, catalog, bought_list)
    return sorted(groups), groups


# Score drops closer than this are one strength: the more specific fact is cited first. The same request scored alone
# or in a dynamic batch gets retrieval scores ~1e-7 apart (FAISS and the reranker's GEMM differ per batch shape), and
# a tie between «этот товар» and its brand then flipped between the two (the concurrent-burst test caught it).
DROP_RESOLUTION = 1e-4


def strongest_first(facts) -> tuple[ProfileFact, ...]:
    """``facts`` by score drop (to ``DROP_RESOLUTION``), the more specific signal (``SIGNALS`` order) first on a
    tie, then by service."""
    return tuple(sorted(facts, key=lambda f: (-round(f.score_drop / DROP_RESOLUTION), SIGNALS.index(f.signal),
                                              f.service)))


def _qualifying(keys, groups, scores: np.ndarray, context: UserContext,
                config: CausalExplanationConfig) -> tuple[ProfileFact, ...]:
    facts = [ProfileFact(signal, where, len(groups[(signal, where)]),
                         max(context.purchases[k].timestamp for k in groups[(signal, where)]),
                         float(scores[0] - scores[1 + n]))
             for n, (signal, where) in enumerate(keys)]
    return strongest_first(f for f in facts if f.score_drop > config.min_score_drop)


def cited_facts(item_id: int, retrieval_score: float, service: str, context: UserContext, reranker: Reranker,
                catalog: Catalog, item_vectors: np.ndarray, popularity: dict[int, int],
                config: CausalExplanationConfig) -> tuple[ProfileFact, ...]:
    """The facts whose removal lowers the item's score, strongest first; () for a sensitive item."""
    return explain_facts([item_id], [retrieval_score], service, context, reranker, catalog, item_vectors,
                         popularity, config)[0]


def explain_facts(item_ids: Sequence[int], retrieval_scores: Sequence[float], service: str, context: UserContext,
                  reranker: Reranker, catalog: Catalog, item_vectors: np.ndarray, popularity: dict[int, int],
                  config: CausalExplanationConfig) -> list[tuple[ProfileFact, ...]]:
    """``cited_facts`` of several items of one request: every counterfactual row scored in one reranker call.

    The groups and rows come from the purchases as arrays (``counterfactual_arrays``), equal to ``fact_groups`` and
    ``counterfactual_features`` (the reference) but without a Python loop over the purchases per group."""
    table = PurchaseTable(context.purchases, catalog) if context.purchases else None
    plans, checks = [], []
    for item_id, retrieval_score in zip(item_ids, retrieval_scores):
        item_id = int(item_id)
        groups = [] if table is None or table.codes.leaf_sensitive[item_id] else table.fact_groups(item_id)
        plans.append(groups)
        if groups:
            checks.append((item_id, float(retrieval_score), [mask for _, mask in groups]))
    scores = reranker.score(table.features_many(checks, service, context.signals, item_vectors, popularity,
                                                context.now_ts)) if checks else np.zeros(0, np.float32)  # [sum(1 + G)]
    facts, offset = [], 0
    for groups in plans:
        if not groups:
            facts.append(())
            continue
        drops = scores[offset] - scores[offset + 1: offset + 1 + len(groups)]  # [G]
        offset += 1 + len(groups)
        cited = [ProfileFact(signal, where, int(mask.sum()), int(table.timestamp[mask].max()), float(drop))
                 for ((signal, where), mask), drop in zip(groups, drops)]
        facts.append(strongest_first(f for f in cited if f.score_drop > config.min_score_drop))
    return facts


def explain_facts_reference(item_ids: Sequence[int], retrieval_scores: Sequence[float], service: str,
                            context: UserContext, reranker: Reranker, catalog: Catalog, item_vectors: np.ndarray,
                            popularity: dict[int, int], config: CausalExplanationConfig
                            ) -> list[tuple[ProfileFact, ...]]:
    """``explain_facts`` the plain way (``fact_groups``, ``signals_without``, ``candidate_features`` per group):
    the definition the array path is tested against."""
    bought_list = bought_items(context.purchases, catalog)
    cache: dict[tuple[int, ...], UserSignals] = {}
    plans, rows = [], []
    for item_id, retrieval_score in zip(item_ids, retrieval_scores):
        keys, groups = _candidate_facts(catalog.get(int(item_id)), context, catalog, bought_list)
        plans.append((keys, groups))
        if keys:
            rows.append(counterfactual_features(int(item_id), float(retrieval_score), service, context,
                                                [groups[k] for k in keys], catalog, item_vectors, popularity,
                                                bought_list, cache))
    scores = reranker.score(np.concatenate(rows)) if rows else np.zeros(0, np.float32)  # [sum(1 + G)]
    facts, offset = [], 0
    for keys, groups in plans:
        if not keys:
            facts.append(())
            continue
        facts.append(_qualifying(keys, groups, scores[offset: offset + 1 + len(keys)], context, config))
        offset += 1 + len(keys)
    return facts


def explanation_style(context: UserContext, config: CausalExplanationConfig) -> str:
    """The style the user asked for («объясняй подробнее», «покороче»: ``FeedbackSignals.style``); else learned:
    ``detailed`` for a user who asked «почему?» at least ``detailed_after_why`` times, ``short`` otherwise."""
    if context.feedback.style in STYLES:
        return context.feedback.style
    return "detailed" if context.feedback.explain_requests >= config.detailed_after_why else "short"


def _when(fact: ProfileFact, now_ts: int, language: str) -> str:
    days = max(now_ts - fact.last_ts, 0) // DAY_S
    if language == "en":
        return "today" if days == 0 else f"{days} days ago"
    return "сегодня" if days == 0 else f"{days} дн. назад"


def fact_text(fact: ProfileFact, item: Item, catalog: Catalog, now_ts: int, language: str, detailed: bool) -> str:
    """One cited fact: which signal, which service, when (and how often, when detailed)."""
    category = catalog.categories[item.category_id]
    parent = catalog.categories[category.parent_id] if category.parent_id else category
    display = SERVICE_DISPLAY[fact.service]
    when = _when(fact, now_ts, language)
    if language == "en":
        # brand names are Russian catalog data: an English explanation names the brand signal without it
        subject = {"family": "this product", "category": category.name_en, "parent_category": parent.name_en,
                   "brand": f"{category.name_en} of this brand"}[fact.signal]
        often = f" {fact.purchases}×" if detailed else ""
        return f"you bought {subject} on {display['en']}{often}, last {when}"
    subject = {"family": "этот товар", "category": category.name_ru, "parent_category": parent.name_ru,
               "brand": f"{category.name_ru} {item.brand}"}[fact.signal]
    often = f" {fact.purchases} раз" if detailed else ""
    return f"вы брали {subject} {display['ru_where']}{often}, последний раз {when}"


def cold_start_explanation(service: str, language: str) -> str:
    """What a user without purchase history is told about every item: popular in the service, no history."""
    display = SERVICE_DISPLAY[service]
    return f"Popular on {display['en']}: no purchase history yet" if language == "en" \
        else f"Популярно {display['ru_where']}: истории покупок пока нет"


def explanation_text(item: Item, facts: Sequence[ProfileFact], catalog: Catalog, now_ts: int, language: str,
                     style: str, config: CausalExplanationConfig, cold: bool = False) -> str:
    """The cited facts in the user's style; none: said plainly (a ``cold`` user has no history: popular picks)."""
    if style not in STYLES:
        raise ValueError(f"explanation style must be one of {STYLES}, got {style!r}")
    if not facts and cold:
        return cold_start_explanation(item.service, language)
    if not facts:  # said plainly: nothing in the history raised this item
        return "Chosen for your request, not from your history" if language == "en" \
            else "Подобрано по запросу, а не по истории покупок"
    detailed = style == "detailed"
    shown = facts[: config.max_detailed_facts] if detailed else facts[:1]
    text = "; ".join(fact_text(f, item, catalog, now_ts, language, detailed) for f in shown)
    return text[:1].upper() + text[1:]


def explain_ranked(item_ids: Sequence[int], retrieval_scores: Sequence[float], service: str, context: UserContext,
                   reranker: Reranker, catalog: Catalog, item_vectors: np.ndarray, popularity: dict[int, int],
                   language: str, config: CausalExplanationConfig) -> list[CausalExplanation]:
    """The causal explanation of each shown item, in the user's style."""
    style = explanation_style(context, config)
    explanations = []
    cited = explain_facts(item_ids, retrieval_scores, service, context, reranker, catalog, item_vectors, popularity,
                          config)
    for item_id, facts in zip(item_ids, cited):
        texts = {lang: explanation_text(catalog.get(int(item_id)), facts, catalog, context.now_ts, lang, style, config,
                                        cold=not context.purchases) for lang in EXPLANATION_LANGUAGES}
        explanations.append(CausalExplanation(int(item_id), texts[language], facts, texts))
    return explanations


def faithfulness(cited_drops: Sequence[Sequence[float]], min_score_drop: float) -> dict[str, float]:
    """Over shown explanations, each given as the score drops of the facts it cites (re-measured by the caller):
    ``faithfulness`` — share whose every cited fact lowers the score by more than ``min_score_drop`` when removed
    (one that cites nothing claims nothing and passes); ``no_fact_rate`` — share citing no fact; ``shown``."""
    if not cited_drops:
        raise ValueError("faithfulness needs at least one shown explanation, got 0")
    passed = sum(all(drop > min_score_drop for drop in drops) for drops in cited_drops)
    no_fact = sum(not drops for drops in cited_drops)
    return {"faithfulness": passed / len(cited_drops), "no_fact_rate": no_fact / len(cited_drops),
            "shown": float(len(cited_drops))}
