"""Conversational queries with ground truth for the synthetic ecosystem.

A user's traits decide which intents they ask about and where; the intent's rule gives the relevant items; the item
the user actually picks (the target) is sampled among them with weights from the user's history (loyal brands,
categories they buy, families they re-buy, the dairy kinds of their last basket) and traits (cheap items for budget
shoppers, their pet's food, sweets for a sweet tooth). That dependence is what makes personalization learnable:
a model that reads the profile can beat one that reads only the text.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from dataclasses import dataclass, field

from recllm.catalog.product_catalog import Catalog, Item
from recllm.synthetic.intents import INTENTS, relevant_items
from recllm.profile.events import Event
from recllm.synthetic.records import QueryExample, UserProfileSeed

ENGLISH_FRACTION = 0.2
BUDGET_STEPS: tuple[int, ...] = (100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 7000, 10000, 15000, 20000)
NO_BUDGET_INTENTS = frozenset({"reorder_lactose_free", "health", "kid_gift"})
BUDGET_PHRASES_RU = (", до {n} рублей", " под {n} рублей", ", не дороже {n} ₽", ", бюджет {n} рублей")
BUDGET_PHRASES_EN = (" under {n} rubles", ", budget {n} rubles", " for less than {n} rubles")

BASE_INTENT_WEIGHTS: dict[str, float] = {"vague": 1.0, "household": 0.4, "party": 0.4, "breakfast": 0.6,
                                         "dinner": 0.6, "health": 0.12, "gift": 0.4, "sweet": 0.3}
TRAIT_INTENT_WEIGHTS: dict[str, dict[str, float]] = {
    "runner": {"healthy_dinner": 3, "running_gear": 3, "snack_office": 1.5},
    "healthy_eater": {"healthy_dinner": 3, "snack_office": 2, "sugar_free": 1},
    "parent": {"kid_gift": 3},
    "sweet_tooth": {"sweet": 3, "vague": 1.5, "sugar_free": 0.3},
    "lactose_intolerant": {"reorder_lactose_free": 3},
    "pet_owner": {"pet_food": 3},
    "coffee_lover": {"coffee": 3, "breakfast": 1},
    "gamer": {"gaming": 3},
    "cook": {"dinner": 2, "healthy_dinner": 1},
    "reader": {"gift": 0.5},
}


@dataclass
class HistorySummary:
    """What the user's purchases say, in the form the target sampler needs. Empty for cold-start users."""

    brand_in_category: Counter = field(default_factory=Counter)   # (category_id, brand) -> purchases
    brands: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    families: Counter = field(default_factory=Counter)
    services: Counter = field(default_factory=Counter)
    last_basket_kinds: dict[str, frozenset[str]] = field(default_factory=dict)   # service -> product kinds
    last_timestamp: int = 0

    @classmethod
    def from_events(cls, events: list[Event], catalog: Catalog) -> HistorySummary:
        summary = cls()
        last_basket: dict[str, str | None] = {}
        basket_kinds: dict[str | None, set[str]] = {}
        for event in events:
            summary.last_timestamp = max(summary.last_timestamp, event.timestamp)
            if event.kind != "purchase":
                continue
            item = catalog.get(event.item_id)
            summary.brand_in_category[(item.category_id, item.brand)] += 1
            summary.brands[item.brand] += 1
            summary.categories[item.category_id] += 1
            summary.families[item.family_id] += 1
            summary.services[event.service] += 1
            last_basket[event.service] = event.basket_id
            basket_kinds.setdefault(event.basket_id, set()).add(product_kind(item))
        summary.last_basket_kinds = {service: frozenset(basket_kinds[basket_id])
                                     for service, basket_id in last_basket.items()}
        return summary


def product_kind(item: Item) -> str:
    """The product word of a name: «Молоко безлактозное Valio 1 л» and «Молоко Простоквашино ...» are both «молоко»."""
    return item.name.split()[0].lower()


def intent_weights(profile: UserProfileSeed) -> dict[str, float]:
    weights = dict(BASE_INTENT_WEIGHTS)
    for trait in sorted(profile.traits):
        for intent, weight in TRAIT_INTENT_WEIGHTS.get(trait, {}).items():
            weights[intent] = weights.get(intent, 0.0) + weight
    if profile.kid_age is not None and profile.kid_age <= 3:
        weights["baby_care"] = weights.get("baby_care", 0.0) + 2
    return weights


def trait_bonus(item: Item, profile: UserProfileSeed) -> float:
    traits, tags = profile.traits, item.tags
    bonus = 0.0
    if traits & {"runner", "healthy_eater"}:
        bonus += 1.0 * ("healthy" in tags) - 0.5 * ("sweet" in tags and "sugar_free" not in tags)
    bonus += 1.2 * ("running" in tags and "runner" in traits)
    bonus += 1.2 * ("sweet" in tags and "sweet_tooth" in traits)
    if "lactose_intolerant" in traits:
        bonus += 1.5 * ("lactose_free" in tags) - 1.5 * ("dairy" in tags and "lactose_free" not in tags)
    bonus += 1.0 * ("coffee" in tags and "coffee_lover" in traits)
    bonus += 2.5 * (item.category_id == "pet/cat_food" and "cat_owner" in traits)
    bonus += 2.5 * (item.category_id == "pet/dog_food" and "dog_owner" in traits)
    bonus += 1.0 * ("gaming" in tags and "gamer" in traits)
    bonus += 0.7 * ("dinner" in tags and "cook" in traits)
    return bonus


def target_scores(items: list[Item], profile: UserProfileSeed, history: HistorySummary, intent: str,
                  service: str) -> list[float]:
    """Log-weights of each relevant item being the one this user picks."""
    prices = sorted(item.price for item in items)
    last_kinds = history.last_basket_kinds.get(service, frozenset())
    scores = []
    for item in items:
        score = 1.2 * math.log1p(history.brand_in_category[(item.category_id, item.brand)])
        score += 0.6 * (item.brand in history.brands) + 0.8 * math.log1p(history.categories[item.category_id])
        score += 1.5 * (item.family_id in history.families) + trait_bonus(item, profile)
        if "budget" in profile.traits:
            score += 2.0 * (1.0 - bisect.bisect_left(prices, item.price) / max(1, len(prices) - 1))
        if intent == "reorder_lactose_free":
            score += 2.5 * (product_kind(item) in last_kinds)
        scores.append(score)
    return scores


def _pick_budget(items: list[Item], rng: random.Random) -> float | None:
    """A round budget leaving between 20% and 80% of the relevant items, or None if no such step exists."""
    steps = [step for step in BUDGET_STEPS if 0.2 <= sum(item.price <= step for item in items) / len(items) <= 0.8]
    return float(rng.choice(steps)) if steps else None


def _age_phrase_ru(age: int) -> str:
    if age % 10 == 1 and age % 100 != 11:
        return f"{age} год"
    if age % 10 in (2, 3, 4) and age % 100 not in (12, 13, 14):
        return f"{age} года"
    return f"{age} лет"


def _render_text(intent: str, language: str, profile: UserProfileSeed, gift_age: int, max_price: float | None,
                 rng: random.Random) -> str:
    rule = INTENTS[intent]
    template = rng.choice(rule.templates_en if language == "en" else rule.templates_ru)
    son = "has_son" in profile.traits
    if language == "en":
        text = template.format(child="son" if son else "daughter", age=gift_age)
    else:
        text = template.format(child="сыну" if son else "дочке", age=_age_phrase_ru(gift_age))
    if max_price is not None:
        phrases = BUDGET_PHRASES_EN if language == "en" else BUDGET_PHRASES_RU
        text = text.rstrip("?") + rng.choice(phrases).format(n=int(max_price))
    return text


class QueryWriter:
    """Writes one user's queries; caches the intent/service relevance lists shared by all users."""

    def __init__(self, catalog: Catalog, seed: int):
        self.catalog, self.seed = catalog, seed
        self._relevant: dict[tuple[str, str, int | None], list[Item]] = {}

    def relevant(self, intent: str, service: str, kid_age: int | None) -> list[Item]:
        key = (intent, service, kid_age if intent == "kid_gift" else None)
        if key not in self._relevant:
            self._relevant[key] = relevant_items(self.catalog, intent, service, kid_age=key[2])
        return self._relevant[key]

    def _choose_service(self, intent: str, history: HistorySummary, rng: random.Random) -> str:
        services = INTENTS[intent].services
        weights = [0.5 + history.services[service] + (5.0 if (intent, service) == ("healthy_dinner", "samokat") else 0)
                   for service in services]
        return rng.choices(services, weights=weights)[0]

    def user_queries(self, profile: UserProfileSeed, history: HistorySummary, count: int,
                     after_timestamp: int) -> list[QueryExample]:
        rng = random.Random(f"{self.seed}:queries:{profile.user_id}")
        weights = intent_weights(profile)
        intents = sorted(weights)
        queries, timestamp = [], after_timestamp
        while len(queries) < count:
            intent = rng.choices(intents, weights=[weights[name] for name in intents])[0]
            timestamp += rng.randint(3600, 2 * 86_400)
            query = self._one_query(profile, history, intent, timestamp, rng)
            if query is not None:
                queries.append(query)
        return queries

    def _one_query(self, profile: UserProfileSeed, history: HistorySummary, intent: str, timestamp: int,
                   rng: random.Random) -> QueryExample | None:
        service = self._choose_service(intent, history, rng)
        gift_age = max(1, profile.kid_age or 1)
        candidates = self.relevant(intent, service, gift_age if intent == "kid_gift" else None)
        if not candidates:
            return None
        budget_probability = 0.6 if "budget" in profile.traits else 0.2
        max_price = None
        if intent not in NO_BUDGET_INTENTS and rng.random() < budget_probability:
            max_price = _pick_budget(candidates, rng)
        if max_price is not None:
            candidates = [item for item in candidates if item.price <= max_price]
        scores = target_scores(candidates, profile, history, intent, service)
        top = max(scores)
        target = rng.choices(candidates, weights=[math.exp(score - top) for score in scores])[0]
        language = "en" if rng.random() < ENGLISH_FRACTION else "ru"
        return QueryExample(
            user_id=profile.user_id, service=service,
            text=_render_text(intent, language, profile, gift_age, max_price, rng), language=language,
            intent=intent, relevant_item_ids=tuple(sorted(item.item_id for item in candidates)),
            target_item_id=target.item_id, timestamp=timestamp, max_price=max_price,
        )
