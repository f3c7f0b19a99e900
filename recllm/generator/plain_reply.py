"""The plain reply sent when a generated one fails the consistency check and nothing of it could be sent.

It says what the turn's act says, in the turn's language, naming the turn's items (``names``) — no profile fact,
no frame: short and always well formed. ``GuardedReply`` (``reply_check``) falls back to it; ``reply_check``'s
counters say how often.
"""

from __future__ import annotations

from collections.abc import Sequence

LIST_OPENING = {"ru": "Вот что я подобрал: ", "en": "Here is what I found: "}
LAST_JOIN = {"ru": " и ", "en": " and "}
NOTHING_LEFT = {"ru": "Подходящих товаров не нашлось.", "en": "Nothing fits this request."}
RELAXATION_OFFERS = {
    "ru": {"service": "Поискать в другом сервисе?", "budget": "Поднять бюджет?",
           "diet": "Показать варианты без этого ограничения?", "seen": "Показать уже просмотренные варианты?",
           "query": "Попробуйте описать запрос иначе."},
    "en": {"service": "Shall I look in another service?", "budget": "Shall I raise the budget?",
           "diet": "Shall I show options without that restriction?", "seen": "Shall I show the ones you have seen?",
           "query": "Try describing it differently."},
}
CLARIFY = {"ru": "Уточните, пожалуйста, что вы ищете?", "en": "Could you tell me a bit more about what you need?"}
DECLINE = {"ru": "С этим я не помогу, но могу подобрать продукты или товары.",
           "en": "I can't help with that, but I can find groceries or products for you."}


def listed(names: Sequence[str], language: str) -> str:
    """«A, B и C» / "A, B and C"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + LAST_JOIN[language] + names[-1]


def plain_reply(language: str, act: str, names: Sequence[str], relaxation: str = "") -> str:
    """The act's plain reply in ``language`` ("ru" or "en"; anything else reads as "ru")."""
    language = language if language in LIST_OPENING else "ru"
    if act == "clarify":
        return CLARIFY[language]
    if act == "decline":
        return DECLINE[language]
    if names:
        return LIST_OPENING[language] + listed(names, language) + "."
    offer = RELAXATION_OFFERS[language].get(relaxation, "")
    return f"{NOTHING_LEFT[language]} {offer}".strip()
