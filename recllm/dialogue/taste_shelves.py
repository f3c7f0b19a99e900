"""A food wish's taste → the catalog shelves of that taste: «сладкое» → sweets, "salty" → salty snacks.

Asked «Подскажите чуть подробнее: сладкое или солёное, …?» about «хочу что-нибудь вкусное», people answer with a taste
(«сладкое», "sweet"), and a taste is no kind of product: by nearest items «хочу что-нибудь вкусное сладкое» got rye
croutons, salted popcorn and chips (the buyer's own history of salty snacks), "something nice for tonight sweet" got
cold coffee and corn flakes. A taste is a table here, like a present's interests (``gift_interests``): the dialogue
holds a food wish that says one to its shelves (``DialogueState.kinds``, sent to the retriever as ``CATEGORY_IDS``).
A message that names a kind keeps its kind («сладкий перец», "sweet potatoes": the kind's own shelf).
"""

from __future__ import annotations

import re

# (pattern, shelves); every taste a message says adds its shelves, in this order
TASTES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), shelves) for pattern, shelves in (
        (r"(?<!не)сладк|сладен|сладост|\bsweets?\b|sweet\s+tooth|\bsugary\b", ("grocery/sweets",)),
        (r"(?<!не)сол[её]н|\bsalty\b|\bsavou?ry\b", ("grocery/salty_snacks",)),
    ))


def taste_shelves(message: str) -> tuple[str, ...]:
    """The shelves of the tastes ``message`` says, in ``TASTES`` order (none: ())."""
    return tuple(dict.fromkeys(c for pattern, shelves in TASTES if pattern.search(message) for c in shelves))
