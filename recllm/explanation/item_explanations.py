"""The earlier explanation: the profile fragment nearest to the item, kept as the baseline the faithfulness benchmark
(``benchmarks/explanation_faithfulness.py``) checks the served causal explanations against.

The supporting fact is the user's own non-sensitive profile fragment whose item-space vector is closest to the
item (a fragment of the same category gets a bonus). With no fragment close enough: a repeat purchase, popularity in
the service (cold start) or the query match. Nothing checks that the cited fragment drove the ranking — which is why
the server now sends ``causal_explanations`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recllm.catalog.product_catalog import SERVICE_DISPLAY, Item
from recllm.profile.records import ProfileFragment
from recllm.profile.user_signals import UserSignals
from recllm.safety.health_rule import citable_fragments
from recllm.config.field_checks import require_in_interval

SAME_CATEGORY_BONUS = 0.25


@dataclass
class ExplanationConfig:
    min_fragment_similarity: float = 0.55

    def __post_init__(self) -> None:
        require_in_interval(self, "min_fragment_similarity", "[-1, 1]")


def best_fragment(item: Item, item_vector: np.ndarray, fragments: list[ProfileFragment]) -> tuple[ProfileFragment | None, float]:
    best, best_score = None, -np.inf
    for fragment in fragments:
        score = float(fragment.vector @ item_vector) + (SAME_CATEGORY_BONUS if fragment.category_id == item.category_id else 0.0)
        if score > best_score:
            best, best_score = fragment, score
    return best, best_score


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def explain_item(
    item: Item,
    item_vector: np.ndarray,
    fragments: list[ProfileFragment],
    signals: UserSignals,
    language: str,
    config: ExplanationConfig,
) -> str:
    fragment, score = best_fragment(item, item_vector, citable_fragments(fragments))
    if fragment is not None and score >= config.min_fragment_similarity:
        if language == "en":
            return capitalize(f"because {fragment.text_en}")
        return capitalize(f"вы {fragment.text_ru}")
    if signals.family_counts.get(item.family_id):
        return "You have bought this before" if language == "en" else "Вы уже брали этот товар"
    where = SERVICE_DISPLAY[item.service]
    if signals.is_cold:
        return f"Popular on {where['en']}" if language == "en" else f"Популярно {where['ru_where']}"
    return "Matches your request" if language == "en" else "Подходит под ваш запрос"
