"""What the person a present is for likes → the catalog shelves a shop assistant would take the buyer to.

Asked «Что подойдёт к подарку: вкусное, техника, книги, что-то для дома или для спорта?», people answer with the
person's interests («она любит готовить», "he's into running", «что-то для дома»), and those words are not the words of
the goods: by nearest items "she likes cooking" got popcorn and «подарок маме, она любит готовить» headphones (the
buyer's own history). An interest is a table here, like the pharmacist's map of health needs: interest → the
categories of this catalog that answer it. The dialogue holds a present's goal to them (``DialogueState.kinds``, sent
to the retriever as ``CATEGORY_IDS``), so the list is kitchenware, kitchen appliances and cookbooks, ranked for the
buyer as usual. A child's interests map to children's shelves where the catalog has them (reading → children's books).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recllm.dialogue.request_understanding import follow_up_content
from recllm.rag.rec_request import (BUDGET_PATTERNS, RECIPIENT_REGEXES, parse_child_age, parse_recipient,
                                    recipient_hits)

_PRESENT = re.compile(r"подар|сюрприз|present|gift", re.IGNORECASE)
PRESENT_WORD = {"ru": "подарок", "en": "a gift"}  # what a recipient alone is asked about as


@dataclass(frozen=True)
class Interest:
    name: str
    category_ids: tuple[str, ...]        # for a grown-up
    child_category_ids: tuple[str, ...]  # for a child (empty: the interest says nothing about a child's present)


# (pattern, interest); every matching interest adds its shelves, in this order
GIFT_INTERESTS: tuple[tuple[re.Pattern[str], Interest], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), Interest(name, adult, child))
    for pattern, name, adult, child in (
        (r"(?<!при)готов(?:ит|ить)|кулинар|выпека|выпечк|\bпеч[её]т|\bкухн|\bcook(?!ie)|\bbak(?:e|es|ing)\b|kitchen|\bchef",
         "cooking", ("home/kitchenware", "electronics/kitchen_appliances", "books/cookbooks"), ()),
        (r"\bбега(?:ет|ть|ю)|\bбег\b|пробежк|марафон|\brunning\b|\brunners?\b|\bjog", "running",
         ("sport/running_shoes", "sport/running_apparel"), ()),
        (r"спорт|фитнес|\bйог|трениров|\bв\s+зал|футбол|хоккей|теннис|велосипед|\bgym\b|fitness|\byoga|workout|"
         r"\bsports?\b|exercis|football|soccer|tennis|cycling", "sport",
         ("sport/fitness", "sport/running_apparel", "sport/nutrition"), ()),
        (r"\bчита(?:ет|ть|ю)|\bкниг|чтени|\bread(?:s|ing)?\b|\bbooks?\b|\bnovels?\b", "reading", ("books/fiction",),
         ("kids/books",)),
        (r"музык|\bслуша(?:ет|ть)|\bmusic|\blisten", "music", ("electronics/headphones",), ()),
        (r"видеоигр|компьютерн\w*\s+игр|\bв\s+игры|приставк|геймер|\bгейм|gaming|gamer|video\s*games?|"
         r"plays?\s+games|playstation|xbox", "gaming", ("electronics/gaming",), ("electronics/gaming",)),
        (r"косметик|уход\w*\s+за\s+(?:собой|кожей|лицом|волосами)|skin\s*care|make-?up|\bbeauty", "beauty",
         ("beauty/skincare", "beauty/haircare"), ()),
        (r"\bкофе|coffee", "coffee", ("grocery/coffee", "electronics/kitchen_appliances"), ()),
        (r"\bуют|домосед|для\s+дома|cosy|cozy|homebody|for\s+the\s+home", "home",
         ("home/textiles", "home/kitchenware"), ()),
        (r"\bвкусн|сладк|сладкоежк|\bшоколад|\bsweets?\b|sweet\s+tooth|\btreats?\b|chocolate|tasty", "treats",
         ("grocery/sweets", "grocery/coffee"), ("grocery/sweets",)),
        (r"гаджет|техник|\bgadget|\btech\b|electronics", "tech",
         ("electronics/headphones", "electronics/smartphones", "electronics/gaming"), ()),
    ))


def is_a_present(goal: str) -> bool:
    """The goal is a present: it says so («ужин для мужа», «подгузники для сына» are no present; a recipient alone,
    «для мамы», is asked about as one and its goal says so: ``ChatEngine``)."""
    return bool(_PRESENT.search(goal))


_PRESENT_WORDS = re.compile(r"\b(?:подар\w*|сюрприз\w*|presents?|gifts?|на|для|в|a|an|for|as|idea|ideas|to|the|my|our|"
                            r"мо(?:ей|ему|его|им|й|я)|наш(?:ей|ему|его|им)|"
                            # the occasion says nothing of what the person likes
                            r"дн(?:ём|ем|ю)?\s+рождения|день\s+рождения|др|юбиле\w*|нов(?:ый|ому)\s+год\w*|"
                            r"праздник\w*|birthday|christmas|anniversary|new\s+year)\b", re.IGNORECASE)
# whom a present is for (not the buyer, guests or the family's table)
PRESENT_RECIPIENTS = frozenset({"parent", "partner", "grandparent", "friend", "colleague", "child"})


def asks_for_a_present_only(message: str) -> bool:
    """«что-нибудь на подарок», "any gift ideas?", «подарок маме на день рождения», "a gift for my boss, around 3000
    rubles": a present and nothing about it but whom it is for and the budget (what they like, a kind, a child's
    age): what a shop assistant would ask about first («подарок маме» got headphones, the buyer's own history;
    «подарок сыну» a baby's rattle)."""
    if not _PRESENT.search(message) or interests_named(message):
        return False
    hits = recipient_hits(message)
    if any(name not in PRESENT_RECIPIENTS for _, name in hits) or parse_child_age(message, "child") is not None:
        return False  # («подарок сыну на 7 лет»: toys for seven-year-olds)
    rest = message
    for regex in (*(regex for _, regex in RECIPIENT_REGEXES), *BUDGET_PATTERNS):  # a budget says nothing they like
        rest = regex.sub(" ", rest)
    return not follow_up_content(_PRESENT_WORDS.sub(" ", rest))


# What the person likes, said of them (not of the buyer: «мне нравится», "I love it"; not negated: «не нравится»)
_LIKES = re.compile(r"(?<!не\s)\b(?:любит|любят|обожает|обожают|увлекается|увлекаются|интересуется|интересуются)\b|"
                    r"\b(?:ему|ей|им)\s+нрав(?:ится|ятся)|\bфанат\w*|"
                    r"(?<!doesn't\s)(?<!does\snot\s)\b(?:likes|loves|enjoys)\b|\b(?:is|'s|are)\s+(?:really\s+)?into\b|"
                    r"\bfan\s+of\b", re.IGNORECASE)
# a negation just before an interest («она не любит готовить», «только не книги», "she doesn't like cooking")
_NEGATED_BEFORE = re.compile(r"(?:\bне|\bnot|n't|\bnever|\bникогда\s+не|\bno)\s+(?:[\w'-]+\s+){0,2}$",
                             re.IGNORECASE)


def tells_what_they_like(message: str, goal: str) -> bool:
    """The message says what the person a present is for likes («он любит кофе», "she's into yoga"), not asking
    anything else («а ты сам любишь готовить?»)."""
    return bool(_LIKES.search(plain_quotes(message))) and is_a_present(goal) and not asks_something_else(message)


# A question or request of its own: who / why / when …, or about the assistant («ты», "you"), or «расскажи …»
_ASKS_SOMETHING_ELSE = re.compile(
    r"\b(?:кто|почему|зачем|где|когда|сколько|расскажи\w*|объясни\w*|напиши|сочини|who|why|where|when|how\s+(?:many|"
    r"much|old|did|do|does|is|are)|tell\s+me|explain|write)\b|\bты\b|\bтебе\b|\bтвой\b|\byou\b|\byour\b",
    re.IGNORECASE)


def asks_something_else(message: str) -> bool:
    """The message asks a question of its own or asks the assistant about itself (no answer to a shop's question)."""
    return bool(_ASKS_SOMETHING_ELSE.search(message))


def plain_quotes(text: str) -> str:
    """Typographic apostrophes as plain ones ("she’s" → "she's")."""
    return text.replace("’", "'").replace("‘", "'")


def interest_shelves(message: str, goal: str) -> tuple[str, ...]:
    """The categories the interests ``message`` names point at, for the present ``goal`` is (a child's shelves for a
    child); () when the goal is no present or the message names no interest."""
    if not is_a_present(goal):
        return ()
    child = parse_recipient(goal) == "child"
    shelves = [c for interest in interests_named(message)
               for c in (interest.child_category_ids if child else interest.category_ids)]
    return tuple(dict.fromkeys(shelves))


def interests_named(message: str) -> list[Interest]:
    """The interests the message names, not negated («она не любит готовить» names none)."""
    message = plain_quotes(message)
    return [interest for pattern, interest in GIFT_INTERESTS
            if any(not _NEGATED_BEFORE.search(message[:m.start()]) for m in pattern.finditer(message))]


__all__ = ["GIFT_INTERESTS", "Interest", "PRESENT_RECIPIENTS", "PRESENT_WORD", "asks_for_a_present_only", "asks_something_else",
           "interest_shelves", "interests_named", "is_a_present", "plain_quotes", "tells_what_they_like"]
