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

# (pattern, shelves, name stems); every matching chore adds its shelves, in this order. The name stems say which goods
# on the shelf do the chore («чем помыть полы» got laundry gel first: the cleaning shelf also holds dish soap and
# laundry gel): an item whose name carries one does it; () = the whole shelf does.
HOUSEHOLD_CHORES: tuple[tuple[re.Pattern[str], tuple[str, ...], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), shelves, names) for pattern, shelves, names in (
        (r"\b(?:по)?мыть\s+пол(?:ы|а)?\b|\bмытья\s+пол(?:а|ов)\b|\bwash\s+(?:the\s+)?floors?|\bmop\b",
         ("household/cleaning",), ("для пола",)),
        (r"\bпятн|\bотстир|\bпостират|стиральн\w*\s+порош|для\s+стирки|\blaundry\b|\bdetergent|\bstains?\b|"
         r"wash\s+(?:the\s+)?clothes", ("household/cleaning",), ("для стирки",)),
        (r"\b(?:по)?мыть\s+посуд|\bwash\s+(?:the\s+)?dishes", ("household/cleaning",), ("посуд",)),
        (r"плесен|грибк\w*\s+в\s+ванн|накип|засор|\bотмы(?:ть|ва)|\bпомыть\s+(?:окн|плит|ванн|раковин|унитаз|"
         r"кафел|холодильник)|\bмыть\s+(?:окн|плит|ванн|раковин|унитаз|кафел)|\bуборк|\bубрат\w*\s+(?:в\s+)?"
         r"(?:квартир|дом|ванн|кухн)|жир\w*\s+(?:на|с)\s+(?:плит|кухн|сковород|духовк)|\bдезинфиц|\bпочистит|"
         r"\bвычистит|\bотчистит|\bmou?ld\b|limescale|\bclog|\bgrease\b|\bclean(?:ing|er)?\b|\bdisinfect|"
         r"wash\s+(?:the\s+)?(?:windows?|bath)", ("household/cleaning",), ()),
        (r"туалетн\w*\s+бумаг|бумажн\w*\s+полотен|салфет|toilet\s+(?:paper|roll)|paper\s+towels?|tissues?\b|napkins?",
         ("household/paper",), ()),
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
    for pattern, chore, _ in HOUSEHOLD_CHORES:
        if pattern.search(message):
            shelves += [c for c in chore if c not in shelves]
    return tuple(shelves)


def chore_name_stems(message: str) -> tuple[str, ...]:
    """What the names of the goods that do the message's chore carry («чем помыть полы» → («для пола»,)), when it
    names one such chore and nothing else; () when the whole shelf does it, or the message names several chores
    («помыть полы и постирать»: both kinds are asked for) or the tea table."""
    found = [names for pattern, _, names in HOUSEHOLD_CHORES if pattern.search(message)]
    if len(found) != 1 or TEA_TABLE.search(message):
        return ()
    return found[0]


__all__ = ["HOUSEHOLD_CHORES", "TEA_TABLE", "TEA_TABLE_SHELVES", "chore_name_stems", "chore_shelves"]
