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
from recllm.rag.rec_request import parse_recipient

# Recipients a present is for (not the buyer, not guests or the family's dinner)
PRESENT_RECIPIENTS = frozenset({"parent", "partner", "grandparent", "friend", "colleague", "child"})
_PRESENT = re.compile(r"подар|сюрприз|present|gift", re.IGNORECASE)


@dataclass(frozen=True)
class Interest:
    name: str
    category_ids: tuple[str, ...]        # for a grown-up
    child_category_ids: tuple[str, ...]  # for a child (empty: the interest says nothing about a child's present)


# (pattern, interest); every matching interest adds its shelves, in this order
GIFT_INTERESTS: tuple[tuple[re.Pattern[str], Interest], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), Interest(name, adult, child))
    for pattern, name, adult, child in (
        (r"готовит|готовить|кулинар|выпека|выпечк|\bпеч[её]т|\bкухн|\bcook|\bbak(?:e|es|ing)\b|kitchen|\bchef",
         "cooking", ("home/kitchenware", "electronics/kitchen_appliances", "books/cookbooks"), ()),
        (r"\bбега(?:ет|ть|ю)|\bбег\b|пробежк|марафон|\brunning|\brun(?:s|ner)\b|\bjog", "running",
         ("sport/running_shoes", "sport/running_apparel"), ()),
        (r"спорт|фитнес|\bйог|трениров|\bв\s+зал|\bgym\b|fitness|\byoga|workout|\bsports?\b|exercis", "sport",
         ("sport/fitness", "sport/running_apparel", "sport/nutrition"), ()),
        (r"\bчита(?:ет|ть|ю)|\bкниг|чтени|\bread(?:s|ing)?\b|\bbooks?\b|\bnovels?\b", "reading", ("books/fiction",),
         ("kids/books",)),
        (r"музык|\bслуша(?:ет|ть)|\bmusic|\blisten", "music", ("electronics/headphones",), ()),
        (r"видеоигр|компьютерн\w*\s+игр|\bв\s+игры|приставк|геймер|\bгейм|gaming|gamer|video\s*games?|"
         r"plays?\s+games|playstation|xbox", "gaming", ("electronics/gaming",), ("electronics/gaming",)),
        (r"косметик|уход\w*\s+за\s+(?:собой|кожей|лицом|волосами)|skin\s*care|make-?up|\bbeauty", "beauty",
         ("beauty/skincare", "beauty/haircare"), ()),
        (r"\bкофе|coffee", "coffee", ("grocery/coffee", "electronics/kitchen_appliances"), ()),
        (r"\bуют|домосед|для\s+дома|\bдом(?:а|у)?\b|cosy|cozy|homebody|for\s+the\s+home|\bhome\b", "home",
         ("home/textiles", "home/kitchenware"), ()),
        (r"\bвкусн|сладк|сладкоежк|\bшоколад|sweet|treats?\b|chocolate|tasty", "treats",
         ("grocery/sweets", "grocery/coffee"), ("grocery/sweets",)),
        (r"гаджет|техник|\bgadget|\btech\b|electronics", "tech",
         ("electronics/headphones", "electronics/smartphones", "electronics/gaming"), ()),
    ))


def is_a_present(goal: str) -> bool:
    """The goal is a present: it says so, or it is for someone the buyer gives to (not «себе», not guests)."""
    return bool(_PRESENT.search(goal)) or parse_recipient(goal) in PRESENT_RECIPIENTS


_PRESENT_WORDS = re.compile(r"\b(?:подар\w*|сюрприз\w*|presents?|gifts?|на|для|в|a|an|for|as|idea|ideas)\b",
                            re.IGNORECASE)


def asks_for_a_present_only(message: str) -> bool:
    """«что-нибудь на подарок», "any gift ideas?": a present and nothing about it (for whom, what they like, a kind):
    what a shop assistant would ask about first."""
    return bool(_PRESENT.search(message)) and parse_recipient(message) is None \
        and not any(pattern.search(message) for pattern, _ in GIFT_INTERESTS) \
        and not follow_up_content(_PRESENT_WORDS.sub(" ", message))


_LIKES = re.compile(r"\bлюб(?:ит|ят)\b|обожа(?:ет|ют)|увлека(?:ется|ются)|интерес(?:уется|уются)|нравится|фанат|"
                    r"\blikes?\b|\bloves?\b|\bis\s+into\b|\benjoys?\b|\bfan\s+of\b|\binto\b", re.IGNORECASE)


def tells_what_they_like(message: str, goal: str) -> bool:
    """The message says what the person a present is for likes («он любит кофе», "she's into yoga")."""
    return bool(_LIKES.search(message)) and is_a_present(goal)


def interest_shelves(message: str, goal: str) -> tuple[str, ...]:
    """The categories the interests ``message`` names point at, for the present ``goal`` is (a child's shelves for a
    child); () when the goal is no present or the message names no interest."""
    if not is_a_present(goal):
        return ()
    child = parse_recipient(goal) == "child"
    shelves = [c for pattern, interest in GIFT_INTERESTS if pattern.search(message)
               for c in (interest.child_category_ids if child else interest.category_ids)]
    return tuple(dict.fromkeys(shelves))


__all__ = ["GIFT_INTERESTS", "Interest", "asks_for_a_present_only", "interest_shelves", "is_a_present",
           "tells_what_they_like"]
