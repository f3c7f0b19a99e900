"""Conversational intents of the synthetic ecosystem: where each is asked, how it is phrased, which items satisfy it.

The relevance rule of an intent is a tag/category filter, so ``relevant_items`` is the ground truth for retrieval
metrics: every in-stock item of the service that satisfies the request. Health goods (sensitive categories) are
relevant only to intents that explicitly ask about health.
"""

from __future__ import annotations

from dataclasses import dataclass

from recllm.catalog.product_catalog import Catalog, Item, validate_service
from recllm.synthetic.vocabulary import TOY_AGE_BANDS


@dataclass(frozen=True)
class Intent:
    """``templates_*`` may use {child} / {age} (kid_gift); a budget phrase is appended separately."""

    name: str
    services: tuple[str, ...]
    templates_ru: tuple[str, ...]
    templates_en: tuple[str, ...]
    required_tags: frozenset[str] = frozenset()      # an item must carry all of them
    any_tags: frozenset[str] = frozenset()           # ... and at least one of these, when given
    excluded_tags: frozenset[str] = frozenset()
    category_prefixes: tuple[str, ...] = ()          # ... and sit under one of these categories, when given
    allows_sensitive: bool = False

    def matches(self, item: Item, sensitive: bool) -> bool:
        if sensitive and not self.allows_sensitive:
            return False
        if not self.required_tags <= item.tags or self.excluded_tags & item.tags:
            return False
        if self.any_tags and not self.any_tags & item.tags:
            return False
        return not self.category_prefixes or item.category_id.startswith(self.category_prefixes)


def _intent(name: str, services: str, ru: str, en: str, **rule) -> Intent:
    for key in ("required_tags", "any_tags", "excluded_tags"):
        if key in rule:
            rule[key] = frozenset(rule[key].split())
    return Intent(name, tuple(services.split()), tuple(ru.split(" | ")), tuple(en.split(" | ")), **rule)


_GROCERY = "samokat kuper"

INTENTS: dict[str, Intent] = {intent.name: intent for intent in (
    _intent("healthy_dinner", _GROCERY,
            "что приготовить на ужин, чтобы было полезно? | хочу полезный ужин | посоветуй что-нибудь лёгкое и полезное на ужин"
            " | собери продукты для здорового ужина",
            "what should I cook for a healthy dinner? | ideas for a light healthy dinner",
            required_tags="healthy dinner"),
    _intent("dinner", _GROCERY,
            "что приготовить на ужин? | подскажи, что взять на ужин | нужны продукты на ужин",
            "what can I make for dinner tonight? | need something for dinner",
            required_tags="dinner"),
    _intent("snack_office", _GROCERY,
            "полезные перекусы в офис | что взять перекусить на работу, только полезное | нужны здоровые снеки для офиса",
            "healthy snacks for the office | something healthy to snack on at work",
            required_tags="healthy snack"),
    _intent("breakfast", _GROCERY,
            "что взять на завтрак? | собери завтрак на утро | хочу вкусный завтрак",
            "what should I get for breakfast? | breakfast ideas for tomorrow",
            required_tags="breakfast"),
    _intent("coffee", _GROCERY,
            "закончился кофе, что посоветуешь? | хочу хороший кофе | нужен кофе домой",
            "I ran out of coffee, what do you suggest? | good coffee for home",
            required_tags="coffee"),
    _intent("sweet", _GROCERY,
            "хочу сладкого | что-нибудь к чаю | посоветуй сладости",
            "I want something sweet | something sweet for tea",
            required_tags="sweet", category_prefixes=("grocery/",)),
    _intent("sugar_free", _GROCERY,
            "что-нибудь без сахара | сладкое, но без сахара | хочу перекус без сахара",
            "something without sugar | sugar-free treats",
            required_tags="sugar_free"),
    _intent("vague", _GROCERY,
            "хочу что-нибудь вкусное | посоветуй что-нибудь вкусненькое | чего бы такого съесть",
            "I want something tasty | recommend something yummy",
            required_tags="snack", any_tags="sweet salty"),
    _intent("party", _GROCERY,
            "собираемся с друзьями, что взять? | закуски на вечеринку | нужно угощение для гостей",
            "snacks for a party with friends | what to get for guests tonight",
            required_tags="party"),
    _intent("reorder_lactose_free", _GROCERY,
            "закажи как в прошлый раз, но без лактозы | повтори мой прошлый заказ, только безлактозное"
            " | то же, что в прошлый раз, но без лактозы",
            "reorder my last basket but lactose-free | same as last time, but without lactose",
            required_tags="lactose_free"),
    _intent("pet_food", "samokat kuper megamarket",
            "закончился корм для питомца | нужен корм для моего любимца | что взять питомцу поесть",
            "I need pet food | we ran out of food for my pet",
            category_prefixes=("pet/cat_food", "pet/dog_food")),
    _intent("baby_care", "samokat kuper megamarket",
            "нужны товары для малыша | закончились подгузники и детское питание | что взять для ребёнка до года",
            "I need baby supplies | diapers and baby food please",
            required_tags="baby"),
    _intent("kid_gift", "megamarket",
            "нужен подарок {child} на {age} | что подарить {child} на {age}? | ищу подарок {child}, исполняется {age}",
            "need a gift for my {child} turning {age} | what to give my {age}-year-old {child}?",
            category_prefixes=("kids/toys",)),
    _intent("running_gear", "megamarket",
            "нужна экипировка для бега | что купить для пробежек? | готовлюсь к полумарафону, что взять",
            "I need running gear | what do I need for running?",
            required_tags="running"),
    _intent("gaming", "megamarket",
            "хочу обновить игровой сетап | что взять для игр на компьютере или приставке | нужен геймпад или гарнитура",
            "upgrade my gaming setup | I need gaming accessories",
            required_tags="gaming"),
    _intent("gift", "megamarket",
            "нужен подарок коллеге | что подарить на день рождения взрослому? | ищу подарок на праздник",
            "I need a gift for a colleague | birthday present ideas for an adult",
            required_tags="gift", excluded_tags="kids baby"),
    _intent("household", _GROCERY,
            "закончилась бытовая химия | нужно для уборки дома | что взять из хозтоваров",
            "I need cleaning supplies | household basics please",
            required_tags="household", excluded_tags="baby pet"),
    _intent("health", "kuper",
            "кажется, простыл, что взять в аптечке? | нужны витамины | собери домашнюю аптечку",
            "I think I caught a cold | I need vitamins",
            required_tags="health", allows_sensitive=True),
)}


def toy_band_for_age(kid_age: int) -> str:
    """Leaf category of age-appropriate toys for a child of ``kid_age`` years."""
    for category_id, (low, high) in TOY_AGE_BANDS.items():
        if low <= kid_age <= high:
            return category_id
    raise ValueError(f"kid_age must be within 0..12, got {kid_age!r}")


def relevant_items(catalog: Catalog, intent: str, service: str, max_price: float | None = None,
                   *, kid_age: int | None = None) -> list[Item]:
    """All in-stock items of ``service`` satisfying ``intent`` (and the budget, and for kid_gift the child's age)."""
    validate_service(service)
    if intent not in INTENTS:
        raise ValueError(f"unknown intent {intent!r}; expected one of {', '.join(INTENTS)}")
    rule = INTENTS[intent]
    toy_band = toy_band_for_age(kid_age) if intent == "kid_gift" and kid_age is not None else None
    return [
        item for item in catalog.in_service(service)
        if item.in_stock
        and (max_price is None or item.price <= max_price)
        and (toy_band is None or item.category_id == toy_band)
        and rule.matches(item, catalog.is_sensitive(item))
    ]
