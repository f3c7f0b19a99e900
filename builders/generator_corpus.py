"""Training replies for the generator: what a good answer to each kind of request looks like.

The generator learns to open with a phrase that fits the request, mention the reranker's best items in order
(as ``<item_N>`` tokens), ask a clarifying question when the request is vague, and invite a new user to say more.
These are training targets; at serving time the model writes the reply itself, constrained to the ranked items.
"""

from __future__ import annotations

import random
from typing import Sequence

from recllm.generator import GeneratorExample, item_token

ITEMS_PER_REPLY = 3

OPENINGS = {
    "healthy_dinner": ("Для полезного ужина подойдут {items}.", "For a healthy dinner try {items}."),
    "dinner": ("На ужин можно взять {items}.", "For dinner you could get {items}."),
    "snack_office": ("Полезные перекусы для офиса: {items}.", "Healthy office snacks: {items}."),
    "breakfast": ("К завтраку подойдут {items}.", "For breakfast: {items}."),
    "coffee": ("Из кофе советую {items}.", "For coffee I suggest {items}."),
    "sweet": ("Из сладкого попробуйте {items}.", "Something sweet: {items}."),
    "sugar_free": ("Без сахара: {items}.", "Sugar-free picks: {items}."),
    "vague": ("Сладкое или солёное? Для себя или на компанию? Пока несколько идей: {items}.",
              "Sweet or salty? For yourself or for company? A few ideas meanwhile: {items}."),
    "party": ("Для компании подойдут {items}.", "For the party: {items}."),
    "reorder_lactose_free": ("Как в прошлый раз, но без лактозы: {items}.", "Like last time, lactose-free: {items}."),
    "pet_food": ("Для питомца: {items}.", "For your pet: {items}."),
    "baby_care": ("Для малыша: {items}.", "For the baby: {items}."),
    "kid_gift": ("В подарок ребёнку этого возраста подойдут {items}.", "Good gifts for that age: {items}."),
    "running_gear": ("Для бега пригодятся {items}.", "For running: {items}."),
    "gaming": ("Для игрового сетапа: {items}.", "For your gaming setup: {items}."),
    "gift": ("В подарок подойдут {items}.", "Gift ideas: {items}."),
    "household": ("Для дома: {items}.", "Household picks: {items}."),
    "health": ("Для домашней аптечки: {items}.", "For your medicine cabinet: {items}."),
}
GENERIC_OPENING = ("Вот что я подобрал: {items}.", "Here is what I found: {items}.")
COLD_START_CLOSING = (" Расскажите, что вы любите, и я подберу точнее.", " Tell me what you like and I will tailor the picks.")
NOTHING_FOUND = ("К сожалению, ничего подходящего не нашлось. Уточните, что вы ищете?",
                 "Sorry, nothing fits that request. Could you tell me more?")
FOLLOW_UPS = {
    "cheaper": (("подешевле", "а дешевле есть?"), ("cheaper", "something cheaper"), ("Подешевле: {items}.", "Cheaper options: {items}.")),
    "other": (("не то", "другое"), ("something else", "not that"), ("Тогда посмотрите {items}.", "Then take a look at {items}.")),
    "sugar_free": (("без сахара",), ("sugar free", "no sugar"), ("Без сахара: {items}.", "Sugar-free: {items}.")),
    "lactose_free": (("без лактозы",), ("lactose free",), ("Без лактозы: {items}.", "Lactose-free: {items}.")),
}


def join_items(item_ids: Sequence[int], language: str) -> str:
    tokens = [item_token(i) for i in item_ids]
    if len(tokens) <= 1:
        return "".join(tokens)
    conjunction = " and " if language == "en" else " и "
    return ", ".join(tokens[:-1]) + conjunction + tokens[-1]


def reply_text(intent: str, language: str, item_ids: Sequence[int], cold_user: bool, opening: str | None = None) -> str:
    lang = 1 if language == "en" else 0
    if not item_ids:
        return NOTHING_FOUND[lang]
    template = opening or OPENINGS.get(intent, GENERIC_OPENING)[lang]
    text = template.format(items=join_items(item_ids[:ITEMS_PER_REPLY], language))
    return text + (COLD_START_CLOSING[lang] if cold_user else "")


def follow_up_example(intent_query: str, language: str, candidates: Sequence[int], rng: random.Random,
                      cold_user: bool) -> tuple[str, str]:
    """(contextual query, reply) for a follow-up turn such as "подешевле" appended to the previous request."""
    kind = rng.choice(sorted(FOLLOW_UPS))
    words_ru, words_en, openings = FOLLOW_UPS[kind]
    lang = 1 if language == "en" else 0
    message = rng.choice(words_en if lang else words_ru)
    return f"{intent_query} {message}", reply_text("", language, candidates, cold_user, openings[lang])


def make_example(prompt: str, candidates: Sequence[int], reply: str) -> GeneratorExample:
    return GeneratorExample(prompt=prompt, candidate_item_ids=tuple(int(i) for i in candidates), reply=reply)
