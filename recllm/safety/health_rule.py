"""The sensitive-domain rule: health and pharmacy goods surface only when the user asked about that domain.

"What must never happen" (product notes): health- or medicine-related purchases surfaced unless the user asked about
health. The catalog marks sensitive categories; this module decides, per request, whether the query is about that
domain (its nearest items are health items, or its words ask for that domain: ``asks_about_health``) and what the
retriever and the explanations may then use:

* a health query gets health items only, and health items never surface anywhere else (``item_allowed``);
* sensitive profile fragments are retrieved only for a health query (``retrievable_fragments``);
* explanations never cite a sensitive fragment, not even for a health query (``citable_fragments``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from recllm.catalog.asking_words import words_beside_asking
from recllm.catalog.product_catalog import Catalog

FragmentT = TypeVar("FragmentT")


def sensitive_item_mask(catalog: Catalog) -> np.ndarray:
    """[N] bool by item id: the item's category or one of its ancestors is sensitive."""
    return np.array([any(c.sensitive for c in catalog.category_path(i.category_id)) for i in catalog.items],
                    dtype=bool)


def is_health_query(nearest_item_ids: Sequence[int], sensitive_items: np.ndarray, vote_threshold: float) -> bool:
    """The query is about health when its nearest item, or at least ``vote_threshold`` of its nearest items, is a
    sensitive item. ``nearest_item_ids`` are best first; negative ids (FAISS padding) are ignored."""
    top = [int(i) for i in nearest_item_ids if i >= 0]
    if not top:
        return False
    return bool(sensitive_items[top[0]]) or float(sensitive_items[top].mean()) >= vote_threshold


# a thermometer for a patient, not for the meat or the oven
_THERMOMETER = (r"(?<!кухонный )термометр(?!\w*\s+для\s+(?:мяса|духовки|еды|воды))|"
                r"(?<!meat )(?<!kitchen )(?<!oven )(?<!cooking )thermometer")

# A request that asks for the health domain in words: a remedy «от …» a condition, medicine, a pharmacy, vitamins,
# first-aid goods. Narrower than ``privacy_filter.mentions_sensitive_domain`` (which blocks «мёд» or «таблетки для
# посудомойки» from leaving the server, but must not route them to the pharmacy shelf).
HEALTH_REQUEST = re.compile(
    r"\bот\s+(?:кашл|давлени|простуд|горл|голов|боли|аллерги|изжог|температур|насморк|грипп|тошнот|диаре|"
    r"мигрен|бессонниц|укачивани)|лекарств|медикамент|аптек|аптечк|витамин|омег[аиуеой]*[\s-]*3|\bomega[\s-]*3|тонометр|"
    r"градусник|\bcough|"
    + _THERMOMETER + r"|"
    r"жаропониж|обезбол|антисептик|пластыр|\bmedicine|\bmedication|pharmac|vitamin|blood\s+pressure|painkill|"
    r"\bplasters?\b|band[- ]?aids?|\bbandages?\b|antiseptic|hand\s+saniti[sz]er|heartburn|antacid|nause|insomnia|"
    r"sleeping\s+pills?|antihistamin|migraine|diarrh|снотворн|антигистамин|антацид|иммунитет|гипертон|"
    r"first[- ]aid|\bfor\s+(?:a\s+|my\s+)?(?:cough|cold|fever|headache|sore\s+throat|allerg|flu)|"
    # symptoms said plainly («у ребёнка температура», «сопли», «болит живот», "my son has a fever")
    r"(?<!регулировкой )(?<!регулировки )(?<!контролем )температур(?!\w*\s+(?:воды|нагрева|хранения))|"
    r"\bсопл(?:и|ей|ями|ях)\b|\bболит|\bболеет|заболел|простыл|\bкашля?ет|\bкашель|\bhas\s+a\s+(?:fever|cough|cold)|"
    r"першит|першени|саднит|заложен\w*\s+нос|насморк|\bsore\s+throat|"
    r"runny\s+nose|\bsick\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class HealthNeed:
    """A health need a request names and the pharmacy categories that answer it; none: nothing here treats it."""

    name: str
    category_ids: tuple[str, ...]
    said: dict[str, str] = field(default_factory=dict, compare=False)  # language -> what is sold for it, as a
    #                                                                    reply names it («средств от изжоги»)


# Which shelf answers which need — a pharmacist's map, not a similarity: by nearest items, «что-нибудь от изжоги»
# and «есть что-то от давления?» got cold powders «для домашней аптечки». A need without a shelf here gets the
# referral (``no_remedy_reply``); one matching several entries takes the first.
HEALTH_NEEDS: tuple[tuple[re.Pattern[str], HealthNeed], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), HealthNeed(name, categories, {"ru": ru, "en": en}))
    for pattern, name, categories, ru, en in (
        (r"давлени|гипертон|тонометр|blood\s+pressure|hypertens", "blood pressure", (), "средств от давления",
         "blood pressure medicine"),
        (r"изжог|heartburn|антацид|antacid", "heartburn", (), "средств от изжоги", "heartburn remedies"),
        (r"голов\w*\s+бол|\bот\s+головы|мигрен|обезбол|\bот\s+боли|headache|migraine|painkill|pain\s+reli",
         "pain", (), "обезболивающих", "painkillers"),
        (r"аллерги|антигистамин|allerg|antihistamin", "allergy", (), "средств от аллергии", "allergy medicine"),
        (r"тошнот|диаре|\bживот(?:а|е|у|ом)?\b|отравлени|укачив|nause|diarrh|stomach|motion\s+sick", "stomach", (),
         "средств для желудка", "stomach remedies"),
        (r"бессонниц|снотворн|insomnia|sleeping\s+pill", "sleep", (), "средств от бессонницы", "sleep aids"),
        (r"градусник|" + _THERMOMETER, "thermometer", (), "градусников", "thermometers"),
        (r"простуд|кашл|кашель|горл|насморк|сопл|грипп|орви|заложен\w*\s+нос|температур|жаропониж|\bcold\b|cough|"
         r"throat|runny\s+nose|\bflu\b|fever|stuffy", "cold", ("pharmacy/cold_remedies",), "средств от простуды",
         "cold remedies"),
        (r"пластыр|бинт|антисептик|порез|ссадин|царапин|\bран(?:а|у|ы|ка|ку|ки)\b|перевяз|first[- ]aid|plaster|"
         r"band[- ]?aid|bandage|antiseptic|saniti[sz]|\bcuts?\b|wound|scratch", "first aid", ("pharmacy/first_aid",),
         "средств первой помощи", "first-aid goods"),
        (r"витамин|иммунитет|омега|\bбад\b|vitamin|immun|omega|supplement", "vitamins", ("pharmacy/vitamins",),
         "витаминов", "vitamins"),
    ))


def health_need(text: str) -> HealthNeed | None:
    """The need a health request names (``HEALTH_NEEDS``), None when it names none of them («лекарства», "a
    pharmacy": the whole shelf). Of several, one a shelf answers comes first («от боли в горле»: throat lozenges,
    not the painkiller referral)."""
    named = [need for pattern, need in HEALTH_NEEDS if pattern.search(text)]
    return next((need for need in named if need.category_ids), named[0] if named else None)


# A supplement named as what another product contains («сок с витамином C», "cereal fortified with vitamin D",
# «обогащённый омегой»): with that product named, it describes the product and does not ask for the pharmacy shelf
# (``words_ask_for_health``).
CONTAINS_A_SUPPLEMENT = re.compile(
    r"(?:\b(?:с|со|with|fortified\s+with|enriched\s+with)|обогащ\w*)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:витамин|омег|vitamin|omega)\w*(?:\s+[a-zа-я]\d?\b)?|(?:vitamin|omega)\w*[-\s]+(?:enriched|fortified)",
    re.IGNORECASE)


def asks_about_health(text: str) -> bool:
    """The request names the health domain itself («есть что-то от давления?», "anything for a cough?")."""
    return bool(HEALTH_REQUEST.search(text))


def words_ask_for_health(text: str, named_ids_of: Callable[[str], np.ndarray | None],
                         sensitive_items: np.ndarray) -> bool:
    """``asks_about_health``, unless its only health words are a supplement a product the request names contains
    («сок с витамином C», «каша, обогащённая витаминами», «чай с витамином C»: tea, a good the catalog lacks, not
    the pharmacy). ``named_ids_of(text)``: the items of the kinds a text names (an empty array: a good the catalog
    lacks; None: none named), asked about the text without its supplement. «что-нибудь с витамином D для ребёнка»
    names no product: it asks for vitamins."""
    if not asks_about_health(text):
        return False
    rest = CONTAINS_A_SUPPLEMENT.sub(" ", text)
    if HEALTH_REQUEST.search(rest):  # health words besides the supplement («что выпить с витамином C при простуде»)
        return True
    ids = named_ids_of(rest)
    names_a_product = ids is not None and (ids.size == 0 or bool((~sensitive_items[ids]).any()))
    return not names_a_product


def names_health_goods_only(text: str, named_ids_of: Callable[[str], np.ndarray | None],
                            sensitive_items: np.ndarray) -> bool:
    """The kinds the text names are health items, every one («а пастилки есть?»: this catalog's pastilles are throat
    lozenges): asking for them by name, and nothing more, asks in that domain with no health word said. A
    supplement a product contains is no kind asked for («а с витамином C?» after juice is about the juice:
    ``words_ask_for_health``)."""
    rest = CONTAINS_A_SUPPLEMENT.sub(" ", text)
    if len(words_beside_asking(rest)) > 1:
        return False  # «закончился стиральный порошок» says more than the kind: this catalog's powders are for colds
    ids = named_ids_of(rest)
    return ids is not None and ids.size > 0 and bool(sensitive_items[ids].all())


def item_allowed(item_is_sensitive: bool, health_query: bool) -> bool:
    """Health items for health queries only, and only health items for them (the domain is routed on its own)."""
    return bool(item_is_sensitive) == bool(health_query)


def retrievable_fragments(fragments: Iterable[FragmentT], health_query: bool) -> list[FragmentT]:
    """The user's profile fragments a query may retrieve: sensitive ones only for a health query."""
    return [f for f in fragments if health_query or not f.sensitive]


def citable_fragments(fragments: Iterable[FragmentT]) -> list[FragmentT]:
    """Fragments an explanation may cite: never a sensitive one (no history-based reasons in that domain)."""
    return [f for f in fragments if not f.sensitive]
