"""Which reply act a turn needs, from simple signals, until the dialogue layer decides it.

``derive_act`` is deliberately plain: an empty ranked list is ``nothing_left``; a request the safety layer or these
word lists mark as off-topic, unsafe or about personal data is ``decline``; "why …" is ``explain``; a short
follow-up such as "подешевле" / "не то" is ``refine``; a vague wish ("хочу что-нибудь вкусное") is ``clarify``;
everything else ``recommend``. Callers that know better pass ``act=`` to ``GenerationStage`` directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DECLINE_PATTERNS = (
    # personal data: addresses, phone numbers, cards, passports, other people's orders (a phone alone is a product:
    # «хочу телефон» and "I need a phone" got the decline reply over a list of smartphones)
    r"\bадрес", r"номер\w* телефон", r"номер карт",
    # someone's phone: «телефон» + (a possessive) + a person in the genitive (whose phone: «телефон маме в подарок» is
    # a gift), unless the query names the phone as what an accessory is for («чехол на (новый) телефон мамы»,
    # «зарядка от телефона мамы»: a preposition and at most one word before «телефон»)
    r"^(?!.*\b(?:на|для|к|от|под|с|со)\s+(?:\w+\s+)?телефон).*?телефон\w* "
    r"(?:(?:мо|тво|ваш|наш|ег|е[её]|их|эт)\w*\s+)?"
    r"(курьер(?:а|ов)|сосед(?:а|ки|ей|ов)|клиент(?:а|ов|ки|ок)|пользовател(?:я|ей)|друга|друзей|подруги|мамы|папы|"
    r"брата|сестры|жены|мужа|сына|дочери|дочки|бабушки|дедушки|девушки|парня|коллег(?:и)?|бывш(?:его|ей))\b",
    r"\bпаспорт", r"\baddress", r"phone number", r"\bphone of\b", r"'s phone\b", r"card number", r"passport",
    r"чужи[ехм]", r"другого (пользователя|клиента)", r"someone else'?s", r"other (user|customer)s?'? (orders|data)",
    # off-topic
    r"\bпогод", r"\bанекдот", r"\bстих", r"\bполитик", r"\bweather\b", r"\bjoke\b", r"\bpoem\b", r"\bpolitic",
    r"домашн(ее|юю) задани", r"\bhomework\b",
    # unsafe / prompt injection
    r"игнорируй", r"ignore (all|previous|the) instructions", r"\bоружи", r"\bweapon", r"\bвзлом", r"\bhack",
    r"\bнаркот", r"\bdrugs?\b",
)
EXPLAIN_PATTERNS = (r"^почему", r"\bпочему (ты|вы|именно)", r"^why\b", r"\bwhy (did|do) you", r"\bзачем ты")
REFINE_PATTERNS = (
    r"подешевле", r"дешевле", r"\bне то\b", r"\bдругое\b", r"\bещё\b", r"\bбез сахара\b", r"\bбез лактозы\b",
    r"\bcheaper\b", r"something else", r"\bnot that\b", r"\bmore options\b", r"\bsugar[- ]free\b", r"\bno sugar\b",
)
VAGUE_PATTERNS = (r"что-нибудь", r"что-то\b", r"\bхочу чего", r"\bsomething (tasty|nice|good)\b", r"\banything\b",
                  r"не знаю что")

_compiled = {name: re.compile("|".join(p), re.IGNORECASE)
             for name, p in (("decline", DECLINE_PATTERNS), ("explain", EXPLAIN_PATTERNS),
                             ("refine", REFINE_PATTERNS), ("clarify", VAGUE_PATTERNS))}


def derive_act(query: str, item_ids: Sequence[int], refused: bool = False, follow_up: bool = False) -> str:
    """The reply act of a turn: ``refused`` = the safety layer refused the request; ``follow_up`` = the dialogue
    layer folded this message into the previous request."""
    text = query.strip().lower()
    if refused or _compiled["decline"].search(text):
        return "decline"
    if _compiled["explain"].search(text):
        return "explain"
    if not len(item_ids):
        return "nothing_left"
    if follow_up or _compiled["refine"].search(text):
        return "refine"
    if _compiled["clarify"].search(text):
        return "clarify"
    return "recommend"
