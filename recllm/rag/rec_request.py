"""Validation of one recommendation request, shared by every entry point (Triton models, in-process pipeline).

Each check raises ``RequestError`` with a message a client can act on; Triton adapters turn it into that
request's error response, so one bad request never affects another or the server.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

from recllm.catalog.product_catalog import SERVICES

USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
LANGUAGES = ("ru", "en")
# Budgets: a comparative or "бюджет" means money unless an age or time unit follows ("under 10 years", "за 15
# минут"); «до»/«под»/«за»/«около» with a currency or thousands («до 2к», «за 3 тыс.»); a bare «до 300» only from 10
# up («а до 300 есть?», but not «игрушка до 3»); any number under 10 only with a currency. The one budget parser: the stages, the request understanding's slot
# and the dialogue state all read this.
NUMBER = r"(\d{1,3}(?:[ \u00a0]\d{3})+|\d+(?:[.,]\d+)?)"  # "1 500", "1500", "1,5"
THOUSAND = r"(\s*(?:к|k|тыс\w*\.?|тысяч\w*|thousand)(?![a-zа-яё]))?"
CURRENCY = r"\s*(?:₽|р\.|р\b|руб\w*\.?|rub\w*|rouble\w*|ruble\w*|rur\b)"
NOT_AGE_OR_TIME = (r"(?!\s*(?:лет|год|мес|мин|час|шт|дн|недел|пач|бутыл|упак|years?|yrs?|yo\b|y\.o|months?|min|hours?|"
                   r"days?|weeks?|bottles?|packs?|pcs|pieces?|items?|[:%]|\d))")  # counts and durations
BUDGET_PATTERNS = (
    re.compile(r"(?:дешевле|не\s+дороже|в\s+пределах|в\s+рамках|уложись\s+в|уложиться\s+в|максимум|бюджет\w*|"
               r"under|below|less\s+than|cheaper\s+than|up\s+to|max|within|budget|no\s+more\s+than)"
               r"(?:\s*(?:до|of|is|:))?\s*" + NUMBER + THOUSAND + NOT_AGE_OR_TIME, re.IGNORECASE),
    re.compile(r"(?:до|под|за|около|на|for|around|about)\s*" + NUMBER + THOUSAND + CURRENCY, re.IGNORECASE),
    re.compile(r"(?:до|под|за|около)\s*" + NUMBER + r"(\s*(?:к|k|тыс\w*\.?|тысяч\w*)(?![a-zа-яё]))", re.IGNORECASE),
    re.compile(r"тысяч\w*\s+до\s+" + NUMBER + r"()", re.IGNORECASE),  # "тысяч до 15"
    re.compile(r"\bдо\s+" + NUMBER + r"()" + NOT_AGE_OR_TIME, re.IGNORECASE),  # "а до 300 есть?"
    re.compile(NUMBER + THOUSAND + CURRENCY, re.IGNORECASE),  # "3000 руб max"
)
THOUSANDS_PATTERN = BUDGET_PATTERNS[3]
MIN_UNMARKED_BUDGET = 10.0  # below this a number is a price only with a currency («дешевле 1 рубля», not «within 2
#                             days», «максимум 2 пачки», «игрушка до 3»)
CURRENCY_AFTER = re.compile(CURRENCY, re.IGNORECASE)

# Dietary constraints stated in the message become hard filters: a bag-of-words encoder would match
# "без сахара" to sugary items, so negated ingredients are parsed rather than embedded.
REQUIRED_TAG_PATTERNS = {
    # (mixed-language «без lactose», "no сахара" too)
    "sugar_free": re.compile(r"без\s+(?:сахара|sugar)|несладк|sugar[\s-]*free|(?:no|without)\s+(?:sugar|сахара)",
                             re.IGNORECASE),
    "lactose_free": re.compile(r"без\s*(?:лактоз|lactose)|безлактоз|lactose[\s-]*free|"
                               r"(?:no|without)\s+(?:lactose|лактоз)", re.IGNORECASE),
    "vegan": re.compile(r"веган|vegan", re.IGNORECASE),
    # a mark the catalog's shelves and names state (``recllm.catalog.diet_marks``), not a tag it carries
    "vegetarian": re.compile(r"вегетариан|без\s+мяса|vegetarian|no\s+meat|meat[\s-]*free|without\s+meat",
                             re.IGNORECASE),
}


# (recipient, pattern); the earliest match in the message wins.
RECIPIENT_PATTERNS = (
    ("child", r"\bсын\w*|\bдоч[ек]\w*|\bдочь|ребён\w*|ребен\w*|\bдетям|для\s+детей|малыш\w*|племянни\w*|\bвнук\w*|"
              r"\bвнучк\w*|школьни\w*|первокласс\w*|подрост\w*|\bmy\s+(?:son|daughter|kid|child|boy|girl)s?\b|"
              r"\b\d+[\s-]*(?:year|yr)s?[\s-]*old|toddler|\bteen|\bfor\s+kids\b|\bfor\s+(?:a\s+)?child"),
    ("pet", r"\bкот(?:у|а|ик\w*|ам|ов)?\b|кошк\w*|\bкошек\b|кошеч\w*|котён\w*|котен\w*|собак\w*|\bпс[уа]\b|\bпёс|щен\w*|питом\w*|"
            r"попуга\w*|хомяк\w*|\bрыбк\w*|любимц\w*|животн\w*|\bcats?\b|(?<!hot\s)(?<!hot-)\bdogs?\b|puppy|kitten|\bpets?\b|parrot|"
            r"hamster"),
    ("partner", r"\bжен[еуаы]\b|\bмуж(?:у|а|ем)?\b|девушк\w*|\bпарн(?:ю|я)\b|любим(?!ц)\w*|на\s+двоих|\bwife|husband|"
                r"girlfriend|boyfriend|partner"),
    ("parent", r"\bмам\w*|\bпап[еауы]\b|\bпапочк\w*|родител\w*|тёщ\w*|\bтещ\w*|свекров\w*|\bmom\b|\bmum\b|\bdad\b|"
               r"mother|father|parents"),
    ("grandparent", r"бабушк\w*|дедушк\w*|бабул\w*|grandma|grandpa|grandparent"),
    ("friend", r"\bдруг(?:у|а|ом)?\b|\bдрузей|\bдрузьям|подруг\w*|приятел\w*|\bfriends?\b"),
    ("colleague", r"коллег\w*|начальни\w*|\bв\s+офис|colleague|coworker|\bboss\b|office"),
    ("company", r"на\s+компанию|для\s+гостей|гостям|вечеринк\w*|человек\s+на\s+\d|на\s+\d+\s+человек|\bparty\b|"
                r"guests"),
    ("family", r"\bсемь[юиейя]\b|\bсемейн\w*|family"),
    ("self", r"\bсебе\b|\bсебя\b|для\s+себя|\bмне\s+на\s+(?:обед|ужин|завтрак)|\bfor\s+me\b|myself"),
)
RECIPIENT_REGEXES = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in RECIPIENT_PATTERNS)
AGE_NUMBER = re.compile(r"(\d{1,2})\s*-?\s*(?:лет|год\w*|летн\w*|years?|yrs?|yo\b|y\.o)", re.IGNORECASE)
AGE_PHRASE = re.compile(r"(?:who\s+is|turning|aged?|которому|которой)\s+(\d{1,2})\b", re.IGNORECASE)
AGE_MONTHS = re.compile(r"(\d{1,2})\s*(?:мес\w*|months?)", re.IGNORECASE)
RU_NUMBER_STEMS = (("годовал", 1), ("двухлет", 2), ("трёхлет", 3), ("трехлет", 3), ("четырёхлет", 4),
                   ("четырехлет", 4), ("пятилет", 5), ("шестилет", 6), ("семилет", 7), ("восьмилет", 8),
                   ("девятилет", 9), ("десятилет", 10), ("первокласс", 7))
RU_NUMBER_WORDS = {"один": 1, "два": 2, "три": 3, "четыре": 4, "пять": 5, "шесть": 6, "семь": 7, "восемь": 8,
                   "девять": 9, "десять": 10, "одиннадцать": 11, "двенадцать": 12, "one": 1, "two": 2, "three": 3,
                   "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
AGE_WORD = re.compile(r"\b(" + "|".join(RU_NUMBER_WORDS) + r")\s*(?:лет|год\w*|years?)", re.IGNORECASE)
AGE_BANDS = ((0, 2), (3, 5), (6, 8), (9, 12), (13, 17))

# Recipients who are grown-ups: a request for one of them («подарок маме», "gift for my dad") never gets children's
# goods (toys, diapers, baby food), whatever the bag-of-words encoder pulls in with «мама» or "gift".
ADULT_RECIPIENTS = frozenset({"parent", "partner", "grandparent", "colleague"})


class RequestError(ValueError):
    """A client error in one request: the message names the field and what is wrong."""


@dataclass(frozen=True)
class RecRequest:
    user_id: str
    query: str
    top_k: int
    service: str  # "" = infer from the query
    language: str  # "ru" | "en"
    max_price: float | None
    required_tags: frozenset[str] = frozenset()
    for_adult: bool = False  # the query names only grown-up recipients (``ADULT_RECIPIENTS``): no children's goods
    child_age: tuple[int, int] | None = None  # (youngest, oldest) years of the child it is for: toys of that age
    for_pet: bool = False  # the query is for an animal and no person («что-нибудь для кошки»): pet goods only
    animal: str | None = None  # "cat" / "dog": the one kind of animal a pet request names (``ANIMALS``)
    categories: frozenset[str] = frozenset()  # the candidates come from these categories' subtrees (none: any)
    cheap: bool = False  # the query asks for inexpensive goods and states no budget: the cheaper half of the kind


def decode_text(field: str, raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{field} is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from exc


def validate_user_id(raw: bytes | str) -> str:
    user_id = decode_text("user_id", raw).strip()
    if not USER_ID_PATTERN.match(user_id):
        shown = user_id if len(user_id) <= 40 else user_id[:40] + "…"
        raise RequestError(
            f"malformed user_id {shown!r}: expected 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return user_id


def validate_session_id(raw: bytes | str) -> str:
    session_id = decode_text("session_id", raw).strip()
    if not SESSION_ID_PATTERN.match(session_id):
        raise RequestError("malformed session_id: expected 1-128 characters of letters, digits, '_', '.', ':', '-'")
    return session_id


def validate_query(raw: bytes | str) -> str:
    query = decode_text("query", raw)
    if len(query) > MAX_QUERY_CHARS:
        raise RequestError(f"query is too long: {len(query)} characters (at most {MAX_QUERY_CHARS})")
    query = "".join(ch for ch in query if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    query = " ".join(query.split())
    if not query:
        raise RequestError("query is empty: send the user's message as UTF-8 text")
    return query


def validate_top_k(raw) -> int:
    try:
        top_k = int(raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"top_k must be an integer, got {raw!r}") from exc
    if not 1 <= top_k <= MAX_TOP_K:
        raise RequestError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return top_k


def validate_service_hint(raw: bytes | str) -> str:
    service = decode_text("service", raw).strip().lower()
    if service and service not in SERVICES:
        raise RequestError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)} or empty to infer")
    return service


# an address is no language: «мой email test@mail.ru запомни» was answered in English
_ADDRESS = re.compile(r"\S+@\S+|https?://\S+|www\.\S+", re.IGNORECASE)


# function words vote twice: «мой email» is Russian, "I need молоко please" English
RU_FUNCTION_WORDS = frozenset("и в на с до для без что как а не мне мой моя мое мои хочу есть бы это по из или чтобы "
                              "закажи найди посоветуй покажи нужно купи".split())
EN_FUNCTION_WORDS = frozenset("i the a an for to me my of and or with want some any please under is it what "
                              "this that order find get need show buy".split())
_LANGUAGE_WORD = re.compile(r"[0-9a-zа-я]+")


def detect_language(text: str) -> str:
    """Words, not letters, vote (function words twice; an address is no word): «хочу airpods» and «мой email
    ivan@mail.ru» are Russian, "order творог" English; a tie or no letters is Russian."""
    votes = {"ru": 0, "en": 0}
    for word in _LANGUAGE_WORD.findall(_ADDRESS.sub(" ", text).lower().replace("ё", "е")):
        if re.search("[а-я]", word):
            votes["ru"] += 2 if word in RU_FUNCTION_WORDS else 1
        elif re.search("[a-z]", word):
            votes["en"] += 2 if word in EN_FUNCTION_WORDS else 1
    return "en" if votes["en"] > votes["ru"] else "ru"


# «недорогие наушники», "cheap sneakers": inexpensive goods wanted, no sum said (not «не дешёвые», "not cheap")
CHEAP_PATTERN = re.compile(r"(?<!\bне\s)(?<!\bnot\s)(?<!\bне\sочень\s)(?<!\bне\sслишком\s)(?<!\bnot\stoo\s)"
                           r"(?<!\bnot\svery\s)\b(?:дешев\w*|дешёв\w*|недорог\w*|бюджетн\w*|подешевле|"
                           r"cheap\w*|inexpensive|affordable|low[- ]cost|on\s+a\s+budget)", re.IGNORECASE)


def asks_for_cheap(text: str) -> bool:
    return bool(CHEAP_PATTERN.search(text))


def parse_budget(text: str) -> float | None:
    """The budget ``text`` states, in rubles (the first pattern that reads one), or None."""
    for pattern in BUDGET_PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        value = float(re.sub(r"\s", "", match.group(1)).replace(",", "."))
        if match.group(2) and match.group(2).strip() or pattern is THOUSANDS_PATTERN:
            value *= 1000
        priced = bool(match.group(2) and match.group(2).strip()) or bool(CURRENCY_AFTER.match(text, match.end())) \
            or bool(re.search(CURRENCY + r"\s*$", match.group(0), re.IGNORECASE))
        if value > 0 and (value >= MIN_UNMARKED_BUDGET or priced):
            return value
    return None


def required_tags(text: str) -> frozenset[str]:
    return frozenset(tag for tag, pattern in REQUIRED_TAG_PATTERNS.items() if pattern.search(text))


def recipient_hits(text: str) -> list[tuple[int, str]]:
    """(position of its first word, recipient) for every recipient the text names (``RECIPIENT_PATTERNS``)."""
    return [(match.start(), name) for name, regex in RECIPIENT_REGEXES if (match := regex.search(text))]


def earliest_recipient(hits: list[tuple[int, str]]) -> str | None:
    return min(hits)[1] if hits else None


def only_adults(hits: list[tuple[int, str]]) -> bool:
    """A grown-up recipient and no child («маме и сыну» names both: not only adults)."""
    named = {name for _, name in hits}
    return bool(named & ADULT_RECIPIENTS) and "child" not in named


# An animal as whom the request is for: «для» / "for (my)" + the animal, or the animal in the dative («коту»). A bare
# animal word is no recipient («хочу рыбку на ужин», «носки с котиками», «аллергия на кошку», "a mug with cats").
_ANIMAL = (r"(?:кот|кошк|кошек|кошеч|котён|котен|котик|собак|собач|пс[аоу]\b|пёс|щен|питом|попуга|хомяк|рыбок|любимц|"
           r"животн|зверуш|cats?\b|dogs?\b|pupp|kitten|pets?\b|parrot|hamster|animals?\b)")
PET_RECIPIENT = re.compile(r"\bдля\s+(?:(?:моего|моей|моих|нашего|нашей|наших|своего|своей)\s+)?" + _ANIMAL + "|"
                           r"\bfor\s+(?:(?:my|our|a|the|your)\s+)?(?:(?:little|new|old)\s+)?" + _ANIMAL + "|"
                           r"\b(?:коту|котику|кошке|кошечке|котёнку|котенку|собаке|собачке|псу|щенку|питомцу|попугаю|"
                           r"хомяку|любимцу)\b|"
                           # "cat vitamins", «кошачий корм»: the animal as what the good is for
                           r"\b(?:cat|dog|puppy|kitten|pet)s?\s+(?:food|treats?|vitamins?|toys?|beds?|litter|bowls?|"
                           r"supplies|shampoo|collars?|leash\w*|snacks?)\b|"
                           r"\bкошач\w+|\bсобач(?:ий|ья|ье|ьи|ьего|ьей|ьему|ьим|ьих|ью)\b|"
                           # the animal whose need it is: «кошка не ест сухой корм», «у кота линька», "my cat won't
                           # eat" (it got dog food)
                           r"\b(?:кошка|кот|котик|котёнок|котенок|собака|пёс|пес|щенок)\s+(?:не\s+)?(?:ест|ела|ел|"
                           r"пьёт|пьет|грыз\w*|точит|линяет|царапа\w*|нужда\w*)\b|"
                           r"\bу\s+(?:моей\s+|моего\s+|нашей\s+|нашего\s+)?(?:кошки|кота|котика|котёнка|котенка|собаки|"
                           r"пса|щенка)\b|\bmy\s+(?:cat|dog|puppy|kitten)\s+(?:needs|won'?t|doesn'?t|does\s+not|"
                           r"is\s+not|isn'?t|eats|has|keeps)\b", re.IGNORECASE)
# which animal a pet request is for, when it names one kind of animal only: the other's goods are not its
ANIMALS = {"cat": re.compile(r"\bкот(?!лет|ел|лов)\w*|кошк\w*|\bкошек|кошеч\w*|кошач\w*|котён\w*|котен\w*|"
                             r"\bcats?\b|kitten", re.IGNORECASE),
           "dog": re.compile(r"собак\w*|собач\w*|\bпс[уаоы]\b|\bпёс|\bпес\b|щен\w*|\bdogs?\b|pupp", re.IGNORECASE)}


def only_pets(hits: list[tuple[int, str]], text: str) -> bool:
    """An animal and no person is whom the request is for ("something for my cat", «игрушку собаке»; not «хочу
    рыбку на ужин» or «аллергия на кошку»)."""
    return {name for _, name in hits} <= {"pet"} and bool(PET_RECIPIENT.search(text))


def animal_named(text: str) -> str | None:
    """The one kind of animal (``ANIMALS``) the text names; None for none or both."""
    named = [name for name, pattern in ANIMALS.items() if pattern.search(text)]
    return named[0] if len(named) == 1 else None


def is_for_pets(text: str) -> bool:
    """``only_pets`` of the text's recipients (the goal a follow-up belongs to, read as the retriever reads it)."""
    return only_pets(recipient_hits(text), text)


def parse_recipient(text: str) -> str | None:
    """Who the request is for, by the earliest recipient word in it; None: not said."""
    return earliest_recipient(recipient_hits(text))


def age_to_band(age: int) -> str:
    return next((f"{low}-{high}" for low, high in AGE_BANDS if low <= age <= high), "18+")


def parse_child_age(text: str, recipient: str | None) -> tuple[int, int] | None:
    """(youngest, oldest) age in years of the child the message is about: (7, 7) for «сыну 7 лет», (13, 17) for a
    teenager, (0, 2) for a baby; None when no age is said or the recipient is a grown-up («папе на юбилей 60 лет»)."""
    if recipient not in (None, "child"):
        return None
    lowered = " ".join(text.lower().replace("ё", "е").split())
    age = None
    for regex in (AGE_NUMBER, AGE_PHRASE):
        if match := regex.search(lowered):
            age = int(match.group(1))
            break
    if age is None and (match := AGE_WORD.search(lowered)):
        age = RU_NUMBER_WORDS[match.group(1)]
    if age is None and (match := AGE_MONTHS.search(lowered)):
        age = int(match.group(1)) // 12
    if age is None:
        age = next((years for stem, years in RU_NUMBER_STEMS if stem in lowered), None)
    if age is None:
        if re.search(r"подрост|\bteen", lowered):
            return (13, 17)
        if re.search(r"малыш|младен|новорожд|toddler|\bbaby\b", lowered) and recipient == "child":
            return (0, 2)
        return None
    if age >= 18 and recipient != "child":
        return None
    return (age, age)


def parse_age_band(text: str, recipient: str | None) -> str | None:
    """Age band of a child the message is about (``AGE_BANDS``, "18+" above them); adults' ages are not a toy band."""
    ages = parse_child_age(text, recipient)
    if ages is None:
        return None
    low, high = ages
    return age_to_band(low) if low == high else f"{low}-{high}"


def parse_request(user_id, query, top_k, service="") -> RecRequest:
    """Validate raw request fields (bytes or str) into a ``RecRequest``."""
    text = validate_query(query)
    recipients = recipient_hits(text)  # once: every stage parses every request
    return RecRequest(
        user_id=validate_user_id(user_id),
        query=text,
        top_k=validate_top_k(top_k),
        service=validate_service_hint(service),
        language=detect_language(text),
        max_price=parse_budget(text),
        required_tags=required_tags(text),
        for_adult=only_adults(recipients),
        child_age=parse_child_age(text, earliest_recipient(recipients)),
        for_pet=(for_pet := only_pets(recipients, text)),
        animal=animal_named(text) if for_pet else None,
        cheap=asks_for_cheap(text),
    )


CATEGORY_ID_PATTERN = re.compile(r"^[a-z_]+(?:/[a-z_]+)*$")
MAX_CATEGORY_IDS = 64


def with_categories(request: RecRequest, raw: np.ndarray | None) -> RecRequest:
    """The CATEGORY_IDS the chat session holds its goal to (none or empty: no such constraint); each a catalog
    category id ("home/kitchenware"). Whether the catalog has them is the retriever's check."""
    if raw is None or not raw.size:
        return request
    values = [decode_text("CATEGORY_IDS", v).strip() for v in raw.reshape(-1)]
    if len(values) > MAX_CATEGORY_IDS:
        raise RequestError(f"CATEGORY_IDS has {len(values)} entries; at most {MAX_CATEGORY_IDS}")
    bad = [v for v in values if not CATEGORY_ID_PATTERN.match(v)]
    if bad:
        raise RequestError(f"CATEGORY_IDS {bad[0][:40]!r} is not a category id (like 'home/kitchenware')")
    return replace(request, categories=frozenset(values))


def with_session_constraints(request: RecRequest, max_price: np.ndarray | None = None,
                             language: bytes | str | None = None) -> RecRequest:
    """Apply what the chat session decided (MAX_PRICE, LANGUAGE tensors) over what the query text says: the
    session knows which of several stated budgets is current (+inf: none, the user dropped the one the text still
    states) and the language of the user's own message."""
    if max_price is not None and max_price.size:
        cap = float(max_price.reshape(-1)[0])
        if cap == float("inf"):
            return with_session_constraints(replace(request, max_price=None), None, language)
        if not np.isfinite(cap) or cap <= 0:
            raise RequestError(f"MAX_PRICE must be a positive finite number or +inf (no budget), got {cap!r}")
        request = replace(request, max_price=cap)
    if language is not None:
        language = decode_text("LANGUAGE", language)
        if language not in LANGUAGES:
            raise RequestError(f"LANGUAGE must be one of {', '.join(LANGUAGES)}, got {language!r}")
        request = replace(request, language=language)
    return request
