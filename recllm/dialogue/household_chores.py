"""A household chore a request names → the catalog shelves that do it (and the tea table → sweets).

People ask by the chore, not by the product: «что-нибудь против плесени в ванной», «чем отмыть жир на плите?»,
«нужно отстирать пятна», "how do I get rid of limescale?". Those words are not the words of the goods, and by nearest
items they got dark chocolate, flatbread and headphones. A chore is a table here, like the pharmacist's map of
health needs and the shop assistant's map of a present's interests: chore → the categories of this catalog that do
it. The dialogue holds the goal to them (``DialogueState.kinds``, sent to the retriever as ``CATEGORY_IDS``), so the
list is cleaning supplies, ranked for the user as usual.
"""

from __future__ import annotations

import re

# (pattern, shelves); every matching chore adds its shelves, in this order
HOUSEHOLD_CHORES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), shelves) for pattern, shelves in (
        (r"плесен|грибк\w*\s+в\s+ванн|накип|засор|\bотмы(?:ть|ва)|\bпомыть\s+(?:пол|окн|плит|ванн|раковин|унитаз|"
         r"кафел|холодильник)|\bмыть\s+(?:пол|окн|плит|ванн|раковин|унитаз|кафел)|\bуборк|\bубрат\w*\s+(?:в\s+)?"
         r"(?:квартир|дом|ванн|кухн)|жир\w*\s+(?:на|с)\s+(?:плит|кухн|сковород|духовк)|\bпятн|\bотстир|\bпостират|"
         r"стиральн\w*\s+порош|для\s+стирки|\bдезинфиц|\bпочистит|\bвычистит|\bотчистит|"
         r"\bmou?ld\b|limescale|\bclog|\bgrease\b|\bstains?\b|\bclean(?:ing|er)?\b|\bmop\b|\blaundry\b|"
         r"\bdetergent|\bdisinfect|wash\s+(?:the\s+)?(?:floors?|windows?|clothes|bath)",
         ("household/cleaning",)),
        (r"туалетн\w*\s+бумаг|бумажн\w*\s+полотен|салфет|toilet\s+(?:paper|roll)|paper\s+towels?|tissues?\b|napkins?",
         ("household/paper",)),
    ))
# What goes with tea or coffee is a table too: «что-нибудь к чаю» got lemonade and cranberry juice (the catalog tags
# lemonade «sweet», and a user who buys drinks was given drinks), where a host puts sweets on the table.
TEA_TABLE = re.compile(r"\bк\s+(?:чаю|чайку|кофе|чаепитию)|\bдля\s+чаепития|\bна\s+чаепитие|\b(?:for|with)\s+"
                       r"(?:a\s+)?(?:tea|coffee|cuppa)\b|\bteatime\b|\btea\s+time\b", re.IGNORECASE)
TEA_TABLE_SHELVES = ("grocery/sweets",)


def chore_shelves(message: str) -> tuple[str, ...]:
    """The shelves the chores the message names point at («чем отмыть жир на плите?» → cleaning supplies; «что-нибудь
    к чаю» → sweets), in table order, each once; () when it names none."""
    shelves: list[str] = list(TEA_TABLE_SHELVES) if TEA_TABLE.search(message) else []
    for pattern, chore in HOUSEHOLD_CHORES:
        if pattern.search(message):
            shelves += [c for c in chore if c not in shelves]
    return tuple(shelves)


__all__ = ["HOUSEHOLD_CHORES", "TEA_TABLE", "TEA_TABLE_SHELVES", "chore_shelves"]
