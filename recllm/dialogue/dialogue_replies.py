"""The replies the dialogue manager writes itself, without the generator: a clarifying question, an item's
explanation and the plain «nothing more fits» with its relaxation offer. They carry no item the ranker did not
return and say exactly what the state holds, which a free-running generator could not promise."""

from __future__ import annotations

import re
from typing import Sequence

from recllm.catalog.product_catalog import SERVICE_DISPLAY
from recllm.dialogue.dialogue_state import (DIET_PHRASES, UNMARKED_DIET_PHRASES, DialogueState, compared_by,
                                           explanations_in, offers_made, states_only_a_budget)
from recllm.dialogue.request_understanding import RequestUnderstanding
from recllm.explanation.causal_explanations import cold_start_explanation
from recllm.generator.plain_reply import listed
from recllm.rag.rec_request import parse_budget as text_budget

SERVICE_NAMES = {"ru": {"samokat": "Самокате", "megamarket": "Мегамаркете", "kuper": "Купере"},
                 "en": {"samokat": "Samokat", "megamarket": "Megamarket", "kuper": "Kuper"}}
_ORDINALS = {"перв": 0, "втор": 1, "трет": 2, "четверт": 3, "пят": 4, "first": 0, "second": 1, "third": 2,
             "fourth": 3, "fifth": 4}
# an ordinal word whole («второй», «третьего», "fifth"; not «вторник», «пятновыводитель», "seconds"); group 1: its
# ``_ORDINALS`` stem
_ORDINAL_WORD = re.compile(r"(перв|втор|трет|четверт|пят)(?:ый|ой|ий|ая|ое|ые|ья|ье|ьи|ого|ему|ом|ую|ью|ей|ым|ых|"
                           r"ьего|ьему|ьей|ьем|ьим|ьих)|(first|second|third|fourth|fifth)")
_WORD = re.compile(r"[a-zа-яё0-9]{4,}", re.IGNORECASE)
# «почему эти?», "why these ones?", «а их почему?»: the question is about the whole list on screen, not one item
_WHOLE_LIST = re.compile(r"\b(?:эти|этих|они|их|все|всё\s+это|такие|список|подборк\w*|these|those|them|they|all|"
                         r"(?:this|the)\s+list)\b", re.IGNORECASE)


_GIFT = re.compile(r"подар|подарит|сюрприз|present|gift", re.IGNORECASE)
# a wish for something to eat that names no food («что-нибудь вкусненькое», "something tasty": the question was
# which shelf at all — groceries, home, electronics — when the understanding gave it no domain)
_TASTY = re.compile(r"вкусн\w*|tasty|yummy|delicious", re.IGNORECASE)
# What a clarifying question asks, by what the vague wish already says: (Russian, English)
_CLARIFY_WHAT = {
    "gift": ("Кому подарок и что этот человек любит: вкусное, технику, книги, что-то для дома или для спорта?",
             "Who is the present for, and what do they like: treats, gadgets, books, something for the home or for "
             "sport?"),
    "gift child": ("Сколько лет ребёнку и чем он увлекается: конструкторы, настольные игры, книги, рисование?",
                   "How old is the child, and what are they into: building sets, board games, books, drawing?"),
    "child": ("Сколько лет ребёнку и что ищете: игрушки, книги, подгузники или детское питание?",
              "How old is the child, and what are you after: toys, books, diapers or baby food?"),
    "guests": ("Что нужно к столу: закуски, сладкое, напитки или готовая еда? И на сколько человек?",
               "What do you need for the table: snacks, sweets, drinks or ready meals? And for how many people?"),
    "gift for": ("Что подойдёт к подарку: вкусное, техника, книги, что-то для дома или для спорта?",
                 "What would suit the present: treats, gadgets, books, something for the home or for sport?"),
    "pet": ("Что нужно питомцу: корм, лакомство, наполнитель или игрушка?",
            "What does your pet need: food, treats, litter or a toy?"),
    "food": ("Подскажите чуть подробнее: сладкое или солёное, на завтрак, перекус или ужин?",
             "Tell me a bit more: sweet or savoury, for breakfast, a snack or dinner?"),
    "other": ("Подскажите, что ищете: продукты, что-то для дома, технику, товары для детей, спорта или питомца?",
              "What are you looking for: groceries, something for the home, electronics, or things for kids, sport or "
              "pets?"),
}
# asked of a present when the message says no budget ("a gift for my boss, around 3000 rubles" was asked it again)
_CLARIFY_BUDGET = {"gift": (" И на какой бюджет?", " And what budget?"),
                   "gift for": (" И на какой бюджет?", " And what budget?")}
_CLARIFY_SERVICE = ("И где заказать — в Самокате, Мегамаркете или Купере?",
                    "And which service — Samokat, Megamarket or Kuper?")


def clarify_topic(understanding: RequestUnderstanding | None, message: str = "") -> str:
    """What the clarifying question should ask about (a key of ``_CLARIFY_WHAT``): a present (for someone named or
    not, for a child), a child, guests, a pet, food, or what kind of thing at all."""
    recipient = understanding.recipient if understanding else None
    if recipient in ("partner", "parent", "grandparent", "friend", "colleague"):
        return "gift for"  # whom it is for is said: what they like is not
    if _GIFT.search(message):
        return "gift child" if recipient == "child" else "gift"
    if recipient == "child" or (understanding and understanding.domain == "kids"):
        return "child"
    if recipient in ("company", "family"):
        return "guests"
    if recipient == "pet" or (understanding and understanding.domain == "pet"):
        return "pet"
    return "food" if understanding and understanding.domain == "food" or _TASTY.search(message) else "other"


def clarify_reply(language: str, understanding: RequestUnderstanding | None, message: str = "") -> str:
    """A question about what the vague wish leaves open, and about the service when it names none; a budget said
    alone («до 3000») is acknowledged and the question is what to look for within it."""
    english = language == "en"
    budget_only = states_only_a_budget(message)
    topic = "other" if budget_only else clarify_topic(understanding, message)
    question = _CLARIFY_WHAT[topic][english]
    if topic in _CLARIFY_BUDGET and text_budget(message) is None:
        question += _CLARIFY_BUDGET[topic][english]
    if budget_only:
        budget = rub(text_budget(message), language)
        question = (f"I'll keep to {budget}. " if english else f"Хорошо, уложимся в {budget}. ") + question
    if understanding is None or not understanding.target_services:
        question += " " + _CLARIFY_SERVICE[english]
    return question


def rub(price: float, language: str) -> str:
    """A price as the replies write it: «152 ₽», "152 RUB"."""
    return f"{price:.0f} ₽" if language == "ru" else f"{price:.0f} RUB"


def constraint_text(state: DialogueState, language: str) -> str:
    phrases = DIET_PHRASES.get(language, DIET_PHRASES["ru"])
    parts = [phrases[t] for t in state.diet if t in phrases]
    if state.budget is not None:
        parts.append(("до " if language == "ru" else "under ") + rub(state.budget, language))
    return ", ".join(parts)


def droppable(state: DialogueState, language: str) -> str:
    """The conditions the user could drop, named: «без лактозы» или «до 152 ₽»."""
    phrases = DIET_PHRASES.get(language, DIET_PHRASES["ru"])
    parts = [f"«{phrases[t]}»" for t in state.diet if t in phrases]
    if state.budget is not None:
        parts.append(f"«до {rub(state.budget, language)}»" if language == "ru" else
                     f"“under {rub(state.budget, language)}”")
    return (" или " if language == "ru" else " or ").join(parts)


def ru_count(count: int, one: str, few: str, many: str) -> str:
    """«1 вариант», «3 варианта», «11 вариантов»."""
    tens, ones = count % 100, count % 10
    word = many if 11 <= tens <= 14 else one if ones == 1 else few if 2 <= ones <= 4 else many
    return f"{count} {word}"


def en_count(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def showed_in(state: DialogueState, service: str) -> bool:
    """Whether the goal has shown items in ``service`` (a state saved before ``shown_in``: anywhere)."""
    return service in state.shown_in if state.shown_in else bool(state.shown)


def nothing_to_take_reply(language: str) -> str:
    """A yes to a nothing-left reply that offered nothing: there is nothing to show; ask what to look for instead."""
    if language == "en":
        return "There's nothing to show for that request in any service. What should I look for instead?"
    return "Показать пока нечего: по этому запросу ничего нет ни в одном сервисе. Что поискать вместо этого?"


def no_remedy_reply(language: str, need, shelves: Sequence[str] = ()) -> str:
    """A health need nothing sold here treats (``recllm.safety.health_rule.HealthNeed``): said plainly, with the
    referral a shop assistant would give, and the health shelves there are (``shelves``, named in ``language``);
    no list."""
    if language == "en":
        offer = f" I can help with {', '.join(shelves)}." if shelves else ""
        return (f"We don't sell {need.said['en']} on Samokat, Megamarket or Kuper — please ask a doctor or a "
                f"pharmacist.{offer}")
    offer = f" Могу подобрать: {', '.join(shelves)}." if shelves else ""
    return (f"{need.said['ru'][:1].upper()}{need.said['ru'][1:]} в Самокате, Мегамаркете и Купере нет — с этим "
            f"лучше к врачу или фармацевту.{offer}")


def unmarked_diet_note(language: str, diets: Sequence[str]) -> str:
    """What a list shown for a diet the catalog has no mark for (``unmarked_diets``) cannot promise, said after it."""
    if not diets:
        return ""
    phrases = UNMARKED_DIET_PHRASES["en" if language == "en" else "ru"]
    if language == "en":
        return (f" Note: the catalog does not mark items {' or '.join(phrases[d] for d in diets)}, so I can't promise "
                f"that — please check the ingredients.")
    marks = " и ".join(f"«{phrases[d]}»" for d in diets)
    return (f" Учтите: отмет{'ки' if len(diets) == 1 else 'ок'} {marks} в каталоге нет, поэтому поручиться за это не "
            f"могу — проверьте состав на упаковке.")


# Brand names said for the product (``catalog.russian_synonyms``: «айфон» → смартфон): the message's word, how an item
# name states the brand, and how a note names it. Live: «хочу айфон» got Samsung, HONOR and Xiaomi phones, listed as if
# they were what was asked for.
NAMED_BRANDS = (
    (re.compile(r"айфон|iphone", re.IGNORECASE), re.compile(r"apple|iphone", re.IGNORECASE), ("Айфонов", "iPhones")),
    (re.compile(r"пепси|pepsi", re.IGNORECASE), re.compile(r"pepsi", re.IGNORECASE), ("Pepsi", "Pepsi")),
    (re.compile(r"спрайт|sprite", re.IGNORECASE), re.compile(r"sprite", re.IGNORECASE), ("Sprite", "Sprite")),
    (re.compile(r"памперс|pampers", re.IGNORECASE), re.compile(r"pampers", re.IGNORECASE), ("Pampers", "Pampers")),
)


def missing_brand_note(language: str, message: str, names: Sequence[str]) -> str:
    """A brand the message asks for by name that no shown item is of, said after the list: the list is the nearest
    kind, not the brand."""
    missing = [said[language == "en"] for asked, stated, said in NAMED_BRANDS
               if asked.search(message) and not any(stated.search(n) for n in names)]
    if not missing:
        return ""
    if language == "en":
        return f" There are no {' or '.join(missing)} here — these are the nearest ones of other brands."
    return f" {' и '.join(missing)} здесь нет — это ближайшие варианты других марок."


def nothing_left_reply(language: str, state: DialogueState, service: str, relaxation) -> str:
    """Nothing (more) fits: said plainly, with the nearest relaxation offered (or the conditions named, to choose
    which to drop; with no condition to drop, ``relaxation`` None means no other service has anything either). Said again on the next turn, it is said shorter instead of word for word; for a goal that has
    shown nothing yet it never claims to have shown everything."""
    names = SERVICE_NAMES.get(language, SERVICE_NAMES["ru"])
    where = names.get(service, service)
    constraint = constraint_text(state, language)
    again = state.last_act == "nothing_left"
    # asked again («ещё», «что-нибудь другое») after this very offer: say how to take it, or to ask for another thing
    offered_again = relaxation is not None and (relaxation.kind, relaxation.service) in offers_made(state)
    fresh = not showed_in(state, service)  # nothing shown for this goal here: never «всё подходящее я уже показал»
    more_there = relaxation is not None and showed_in(state, relaxation.service)  # «там ещё 3 варианта»
    choices = droppable(state, language)
    if language == "en":
        more = "more " if more_there else ""
        if again:
            head = f"Still nothing new{' ' + constraint if constraint else ''} on {where}."
        elif fresh:
            head = f"Nothing{' ' + constraint if constraint else ''} on {where} fits this request."
        else:
            head = (f"Nothing else{' ' + constraint if constraint else ''} on {where} fits — "
                    "I've shown everything that does.")
        if relaxation is None:
            if not choices:  # no condition to drop, and no other service has it: say so
                if not state.shown and not again:  # nothing anywhere for this goal
                    return ("Nothing fits this request on Samokat, Megamarket or Kuper — we may not sell it. "
                            "Try naming the product differently.")
                return head + " Nothing on the other services either."
            which = " — tell me which." if " or " in choices else "."
            return f"{head} I can show more without {choices}{which}"
        options = en_count(relaxation.count, more + "option")
        if offered_again:
            what = {"service": f"look on {names.get(relaxation.service, relaxation.service)} with the same "
                               f"conditions ({options} there)",
                    "category": f"show other{' ' + constraint if constraint else ''} products from neighbouring categories "
                                f"({en_count(relaxation.count, 'option')})",
                    "budget": f"raise the budget ({options} then)"}[relaxation.kind]
            return f"{head} Say “yes” and I'll {what}, or name another product."
        offer = {"service": f"I can look on {names.get(relaxation.service, relaxation.service)} with the same "
                            f"conditions: {options} there.",
                 "category": f"I can show other{' ' + constraint if constraint else ''} products from neighbouring categories "
                             f"({en_count(relaxation.count, 'option')}).",
                 "budget": f"I can raise the budget: {options} then."}[relaxation.kind]
        return f"{head} {offer}"
    if again:
        head = f"По-прежнему ничего нового{' ' + constraint if constraint else ''} в {where}."
    elif fresh:
        head = f"По этому запросу{' ' + constraint if constraint else ''} в {where} ничего не нашлось."
    else:
        head = f"Больше ничего{' ' + constraint if constraint else ''} в {where} не нашлось — всё подходящее я уже показал."
    if relaxation is None:
        if not choices:  # no condition to drop, and no other service has it: say so
            if not state.shown and not again:  # nothing anywhere for this goal
                return ("По этому запросу ничего не нашлось ни в Самокате, ни в Мегамаркете, ни в Купере — "
                        "возможно, такого у нас нет. Попробуйте назвать товар иначе.")
            return head + " В других сервисах тоже ничего нет."
        which = " — скажите, какое." if " или " in choices else "."
        return f"{head} Покажу ещё, если снять условие {choices}{which}"
    options = ("ещё " if more_there else "") + ru_count(relaxation.count, "вариант", "варианта", "вариантов")
    if offered_again:
        what = {"service": f"поищу с теми же условиями в {names.get(relaxation.service, relaxation.service)} "
                           f"(там {options})",
                "category": f"покажу другие товары{' ' + constraint if constraint else ''} из соседних категорий ({relaxation.count})",
                "budget": f"подниму бюджет (найдётся {options})"}[relaxation.kind]
        return f"{head} Скажите «да» — {what}, или назовите другой товар."
    offer = {"service": f"Могу поискать с теми же условиями в {names.get(relaxation.service, relaxation.service)}: "
                        f"там {options}.",
             "category": f"Могу показать другие товары{' ' + constraint if constraint else ''} из соседних категорий ({relaxation.count}).",
             "budget": f"Могу поднять бюджет — тогда найдётся {options}."}[relaxation.kind]
    return f"{head} {offer}"


def acknowledge_reply(language: str) -> str:
    """The answer to thanks or praise for the list on screen: nothing more was asked, so no new list."""
    if language == "en":
        return "Glad it helps! If you need anything else, just ask."
    return "Рад помочь! Если понадобится что-то ещё — просто напишите."


def _words(message: str) -> list[str]:
    return re.findall(r"[a-zа-я]+", message.lower().replace("ё", "е"))


def _places_in(words: list[str]) -> list[int]:
    return [_ORDINALS[match.group(1) or match.group(2)] for match in map(_ORDINAL_WORD.fullmatch, words) if match]


def places_named(message: str) -> list[int]:
    """The places in a list the message's ordinal words name, 0-based, in the message's order («а второй?» → [1])."""
    return _places_in(_words(message))


def at_place(state: DialogueState, place: int) -> int | None:
    """The index in ``last_items`` of the ``place``-th item as the reply named them (``last_order``; the cards'
    order when the reply named none), None past the list."""
    order = state.last_order or tuple(range(len(state.last_items)))
    return order[place] if 0 <= place < len(order) else None


def explained_indices(state: DialogueState, message: str) -> list[int]:
    """Which shown items «почему …?» asks about: one named by an ordinal, every one when it asks about the list
    («почему эти?», "why these ones?" explained only the first), else ``explained_index``'s one; none when its
    ordinals are all past the list («почему пятый?» about three)."""
    if places_beyond_the_list(state, message):
        return []
    if not places_named(message) and _WHOLE_LIST.search(message.lower()):
        return list(range(len(state.last_items))) or [0]
    return [explained_index(state, message)]


# what may stand beside an ordinal in a message that only points at a shown item («а второй?», "what about the
# second one?", «ну а третий как?»)
_PLACE_FILLER = frozenset("а и ну ещё еще как насчёт насчет про там вот этот эта это тот та and what about how the one "
                          "ones item".split())


def place_asked_about(state: DialogueState, message: str) -> int | None:
    """The place in the list a message asks about when it is nothing but one ordinal («а второй?», "and the
    first?", «а пятый?» after three), with a list on screen; None otherwise. Such a message asks about that item:
    read as a refinement it got a new list, as small talk the off-topic reply."""
    words = _words(message)
    places = _places_in(words)
    only_a_place = len(places) == 1 and all(word in _PLACE_FILLER or _ORDINAL_WORD.fullmatch(word) for word in words)
    return places[0] if only_a_place and state.last_items else None


def places_beyond_the_list(state: DialogueState, message: str) -> bool:
    """The message names places in the list and none of them is on screen («а пятый?» about three items)."""
    places = places_named(message)
    return bool(places) and bool(state.last_items) and all(at_place(state, p) is None for p in places)


def no_such_place_reply(language: str, state: DialogueState) -> str:
    """«а пятый?» about a list of three: how many there are and what they are."""
    count = len(state.last_items)
    names = quoted_names(list(state.last_names), language)
    if language == "en":
        how_many = "is only one item" if count == 1 else f"are only {count} items"
        return f"There {how_many} in the list: {names}."
    how_many = "только один товар" if count == 1 else "только " + ru_count(count, "товар", "товара", "товаров")
    return f"В списке {how_many}: {names}."


def explained_index(state: DialogueState, message: str) -> int:
    """Which shown item «почему это?» asks about: an ordinal, one it names, the one best by a comparison ("why the
    cheapest one?" explained the first), else the first."""
    lowered = message.lower()
    for place in places_named(message):
        if (index := at_place(state, place)) is not None:
            return index  # «почему третий?»: the reply's third
    words = set(_WORD.findall(lowered))
    for index, name in enumerate(state.last_names):
        if words & set(_WORD.findall(name.lower())):
            return index  # «почему JBL такой дешёвый?» is about the JBL
    attribute = compared_by(message)
    best = best_by(state, attribute) if attribute else None
    return best[0] if best else 0


# a pack size in an item name: «1,5 кг», «900 мл», «1 000 г», «12 шт по 75 г» (12 × 75 g), «930 мл × 6», "2 l"; not
# «2019 г.» (a year), «5G» (a network), «9-14 кг» beside «62 шт» (a size range, not the pack)
_DIGITS = r"(\d{1,3}(?:[ \u00a0]\d{3})+|\d+(?:[.,]\d+)?)"
_NUMBER = r"(?<![\w.,-])" + _DIGITS
_UNIT = r"(кг|г(?!\.)|мл|л|kg|g|ml|l)(?!\w)"
_AMOUNT = re.compile(_NUMBER + r"\s*" + _UNIT)
_COUNT = re.compile(_NUMBER + r"\s*(?:шт|pcs)(?!\w)")
_PER_PIECE = re.compile(_NUMBER + r"\s*(?:шт|pcs)\.?\s+(?:по|of|x|×)\s+" + _DIGITS + r"\s*" + _UNIT)
_TIMES = re.compile(_NUMBER + r"\s*" + _UNIT + r"\s*[×x]\s*(\d+)(?!\w)")
_UNITS = {"кг": ("mass", 1000.0), "kg": ("mass", 1000.0), "г": ("mass", 1.0), "g": ("mass", 1.0),
          "л": ("volume", 1000.0), "l": ("volume", 1000.0), "мл": ("volume", 1.0), "ml": ("volume", 1.0)}
_UNIT_WORDS = {"ru": {"mass": ("кг", 1000.0), "volume": ("л", 1000.0), "count": ("шт", 1.0)},
               "en": {"mass": ("kg", 1000.0), "volume": ("l", 1000.0), "count": ("pcs", 1.0)}}


def _number(text: str) -> float:
    return float(text.replace(" ", "").replace("\u00a0", "").replace(",", "."))


def pack_amount(name: str) -> tuple[str, float] | None:
    """(dimension, amount in g / ml / pieces) of the pack an item name states; a multipack («12 шт по 75 г»,
    «930 мл × 6») is its total; None when the name states none, or a count beside a weight it does not multiply."""
    if match := _PER_PIECE.search(name):
        count, amount, unit = match.groups()
        dimension, scale = _UNITS[unit]
        total = _number(count) * _number(amount) * scale
    elif match := _TIMES.search(name):
        amount, unit, count = match.groups()
        dimension, scale = _UNITS[unit]
        total = _number(count) * _number(amount) * scale
    else:
        amounts, counts = _AMOUNT.findall(name), _COUNT.findall(name)
        if amounts and counts or not (amounts or counts):
            return None
        if counts:
            dimension, total = "count", _number(counts[-1])
        else:
            dimension, scale = _UNITS[amounts[-1][1]]
            total = _number(amounts[-1][0]) * scale
    return (dimension, total) if total > 0 else None


def quoted_names(names: list[str], language: str) -> str:
    """«A», «B» и «C» / «A», «B» and «C»."""
    return listed([f"«{n}»" for n in names], "ru" if language == "ru" else "en")


def attribute_values(state: DialogueState, attribute: str) -> tuple[list[float], str | None] | None:
    """Per shown item, the figure ``attribute`` compares (price; pack in g / ml / pieces; price per kg, l or
    piece), "lower is better" first, and the packs' dimension (None for prices); None when the list does not tell
    (no prices, or packs not of one measure)."""
    names, prices = state.last_names, state.last_prices
    if len(names) < 2 or len(prices) != len(names):
        return None
    if attribute == "cheapest":
        return list(prices), None
    if attribute == "priciest":
        return [-p for p in prices], None
    amounts = [pack_amount(n) for n in names]
    if any(a is None for a in amounts) or len({a[0] for a in amounts}) != 1:
        return None
    if attribute == "biggest":
        return [-a[1] for a in amounts], amounts[0][0]
    scale = _UNIT_WORDS["en"][amounts[0][0]][1]
    return [round(prices[k] / amounts[k][1] * scale, 2) for k in range(len(names))], amounts[0][0]


def best_by(state: DialogueState, attribute: str) -> list[int] | None:
    """The indices of the shown items tied for the best by ``attribute`` (``attribute_values``), None when the list
    does not tell."""
    figures = attribute_values(state, attribute)
    return None if figures is None else tied_for_best(figures[0])


def tied_for_best(values: list[float]) -> list[int]:
    """The indices of the lowest of ``values``."""
    best = min(values)
    return [k for k, v in enumerate(values) if v == best]


def compare_by_attribute(state: DialogueState, attribute: str, language: str) -> str | None:
    """The shown item(s) cheapest / priciest / biggest / best value per kg or litre, said with the figure (items tied
    for it named together); None when the list does not tell (no prices, or packs not of one measure)."""
    figures = attribute_values(state, attribute)
    if figures is None:
        return None
    values, dimension = figures
    names, ru = state.last_names, language == "ru"
    tied = tied_for_best(values)
    who, one, every = quoted_names([names[k] for k in tied], language), len(tied) == 1, len(tied) == len(names)
    if attribute in ("cheapest", "priciest"):
        price = rub(abs(values[tied[0]]), language)
        if every:
            return f"Они все стоят одинаково: {price}." if ru else f"They all cost the same: {price}."
        if attribute == "priciest":
            return (f"Дороже всех {who} — {'' if one else 'по '}{price}." if ru else
                    f"The most expensive is {who} at {price}." if one else
                    f"{who} are the most expensive at {price} each.")
        rest = rub(min(v for v in values if v != values[tied[0]]), language)
        return (f"Дешевле всех {who} — {'' if one else 'по '}{price}; остальные от {rest}." if ru else
                f"The cheapest is {who} at {price}; the others start at {rest}." if one else
                f"{who} are the cheapest at {price} each; the others start at {rest}.")
    unit, scale = _UNIT_WORDS["ru" if ru else "en"][dimension]
    if attribute == "biggest":
        size = f"{-values[tied[0]] / scale:g} {unit}".replace(".", "," if ru else ".")
        if every:  # one pack size: no item is the biggest
            return f"Они все одного размера: {size}." if ru else f"They are all the same size: {size}."
        if one:
            return f"Больше всех {who} — {size}." if ru else f"The biggest is {who}: {size}."
        return f"Больше всех {who} — по {size}." if ru else f"{who} are the biggest: {size} each."
    per_unit = rub(values[tied[0]], language)
    if every:
        return (f"Они все стоят одинаково за {unit}: {per_unit}." if ru else
                f"They all cost the same per {unit}: {per_unit}.")
    if one:
        return f"Выгоднее всех {who}: {per_unit} за {unit}." if ru else f"The best value is {who}: {per_unit} per {unit}."
    return (f"Выгоднее всех {who}: по {per_unit} за {unit}." if ru else
            f"{who} are the best value: {per_unit} per {unit} each.")


def explain_reply(state: DialogueState, message: str, language: str, compare: bool = False) -> str:
    """Why the item asked about was shown (its explanation from the ranker); ``compare`` («какой из них лучше?»):
    which of the list fits the user best — the ranker's first, unless the message names another — and why; a
    comparison by price or pack size («какой из них дешевле?», "which is the best value?") is answered from the
    shown prices and the packs the names state."""
    if compare and (attribute := compared_by(message)):
        answer = compare_by_attribute(state, attribute, language)
        if answer:
            return answer
    if not compare and places_beyond_the_list(state, message):
        return no_such_place_reply(language, state)  # «а пятый?», «почему пятый?» about three: there is none
    whys, whys_language = explanations_in(state, language)
    indices = [explained_index(state, message)] if compare else explained_indices(state, message)
    if len(indices) > 1:
        return explain_list(state, indices, whys, whys_language if any(whys) else language)
    index = indices[0]
    name = state.last_names[index] if index < len(state.last_names) else ""
    why = whys[index] if index < len(whys) else ""
    if why:  # the lead is in the explanation's language («Вам я бы выбрал …: you bought …» was two in one sentence)
        language = whys_language
    else:
        why = goal_fit(state, language)
    # a user without purchase history was told "popular on …": the pick is not "for you"
    personal = why not in {cold_start_explanation(state.service, lang) for lang in ("ru", "en")
                           if state.service in SERVICE_DISPLAY}
    why = closed(why)
    if compare:
        lead = ("For you I'd pick" if personal else "I'd pick") if language == "en" else \
            ("Вам я бы выбрал" if personal else "Я бы выбрал")
        return f"{lead} «{name}»: {why[:1].lower()}{why[1:]}"
    return f"«{name}»: {why}"


def goal_fit(state: DialogueState, language: str) -> str:
    """The reason of an item shown without an explanation of its own: it fits the request."""
    return f"it fits your request «{state.goal}»" if language == "en" else f"подходит под ваш запрос «{state.goal}»"


def closed(sentence: str) -> str:
    return sentence + ("" if sentence.rstrip()[-1:] in (".", "!", "?") else ".")


def explain_list(state: DialogueState, indices: list[int], whys: list[str], language: str) -> str:
    """Why each of the shown items was shown, in list order: one sentence per item, and the items that share a reason
    (a cold user's "popular on …") named together with it once."""
    by_reason: dict[str, list[str]] = {}
    for index in indices:
        if index < len(state.last_names):
            why = whys[index] if index < len(whys) and whys[index] else goal_fit(state, language)
            by_reason.setdefault(closed(why), []).append(state.last_names[index])
    return " ".join(f"{quoted_names(names, language)}: {why}" for why, names in by_reason.items())
