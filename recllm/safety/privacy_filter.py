"""Privacy filter: find and redact personal data (PII) in any text that enters or leaves the dialogue.

It runs on profile fragments before they reach the prompt (design step 2.3, «фильтр приватности очищает данные»)
and on every generated answer, so a phone, email, card, address, passport/SNILS/INN number or a person's name never
reaches a user (product.md, «What must never happen»). ``find_pii`` returns character spans; ``redact`` replaces
each span with a placeholder naming its kind («[телефон]», "[phone]" or "[PHONE]").

Structured kinds are regular expressions plus validation (Luhn for cards, digit counts and prefixes for phones).
Names come from natasha's slovnet NER (offline, loaded once on first use), but a PER span is kept only when one of its
words is a known first name, a patronymic or has a surname ending: the NER alone tags product names such as
«Молоко Простоквашино» as persons. English names come from a first-name list and cue phrases ("my name is").
Product text — prices, pack sizes, percentages, dates, brands, catalog item ids — must pass untouched.
The module also detects sensitive domains (health, intimate goods, alcohol/tobacco) mentioned in text:
``mentions_sensitive_domain``.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

PII_KINDS: tuple[str, ...] = ("email", "card", "snils", "phone", "passport", "inn", "address", "name")
PLACEHOLDER_STYLES: tuple[str, ...] = ("auto", "ru", "en", "neutral")

_PLACEHOLDERS: dict[str, dict[str, str]] = {
    "ru": {"email": "[email]", "card": "[номер карты]", "phone": "[телефон]", "snils": "[СНИЛС]",
           "passport": "[паспорт]", "inn": "[ИНН]", "address": "[адрес]", "name": "[имя]"},
    "en": {"email": "[email]", "card": "[card number]", "phone": "[phone]", "snils": "[SNILS]",
           "passport": "[passport]", "inn": "[INN]", "address": "[address]", "name": "[name]"},
    "neutral": {kind: f"[{kind.upper()}]" for kind in PII_KINDS},
}


@dataclass(frozen=True)
class PrivacyFilterConfig:
    """What to look for and how to write placeholders.

    ``allow_words``: capitalised words that are never names (pass the catalog's brands here).
    ``use_ner``: run slovnet NER for Russian names; off = only the lexicon and cue phrases.
    """

    kinds: tuple[str, ...] = PII_KINDS
    placeholder_style: str = "auto"
    use_ner: bool = True
    allow_words: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.kinds if kind not in PII_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"PrivacyFilterConfig.kinds={self.kinds!r}: expected a non-empty subset of {PII_KINDS}")
        if self.placeholder_style not in PLACEHOLDER_STYLES:
            raise ValueError(f"PrivacyFilterConfig.placeholder_style={self.placeholder_style!r}: "
                             f"expected one of {PLACEHOLDER_STYLES}")
        if not isinstance(self.allow_words, frozenset):
            raise ValueError(f"PrivacyFilterConfig.allow_words={self.allow_words!r}: expected a frozenset of words")


@dataclass(frozen=True)
class PiiSpan:
    kind: str    # one of PII_KINDS
    start: int   # character offsets into the text, text[start:end] is the personal data
    end: int


@dataclass(frozen=True)
class RedactionResult:
    text: str                    # the input with every span replaced by its placeholder
    spans: tuple[PiiSpan, ...]   # offsets into the *input* text


# ---------------------------------------------------------------------------------------------- structured kinds

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)

# 13-19 digits, as one run or in groups separated by single spaces/dashes (cards never use dots or brackets).
_CARD = re.compile(r"(?<![\d+])\d{4}(?:[ \-]?\d{2,6}){2,4}(?![\d,.]\d)")

# A phone is a run of digits with phone separators; the digit count and prefix decide below.
_PHONE = re.compile(r"(?<![\w+])(?:\+\s?)?\(?\d[\d\s\-()]{8,20}\d(?![\d%])")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")

_SNILS = re.compile(r"(?<!\d)\d{3}[ \-]\d{3}[ \-]\d{3}[ \-]\d{2}(?!\d)")
_SNILS_LABELED = re.compile(r"(?i)(?:снилс|snils)\s*(?:№|#|:|-)?\s*(\d{11})(?!\d)")
_PASSPORT = re.compile(r"(?<![\d\-])\d{2} \d{2} \d{6}(?!\d)")
_PASSPORT_LABELED = re.compile(
    r"(?i)(?:паспорт\w*|passport)(?:\s+(?:рф|серия|series|number|номер|no\.?|№))*\s*[:#№]?\s*"
    r"(\d{4}\s?(?:№\s?)?\d{6}|(?:серия\s*)?\d{2}\s?\d{2}\s*(?:номер|№)?\s*\d{6}|[A-Z]{0,2}\d{7,9})(?!\d)")
_INN_LABELED = re.compile(r"(?i)\b(?:инн|inn|tin)(?:\s+[а-яa-z]+){0,2}?\s*(?:№|#|:|-)?\s*(\d{12}|\d{10})(?!\d)")

# Units that follow a number in product text: «дом 300 г» is a brand and a pack size, not a house number.
_UNIT = r"(?:г|гр|кг|мг|мл|л|шт|уп|см|мм|м|вт|ватт|гб|тб|руб|р|₽|%|капсул|таблет|пакет|рулон|пар|лет|год|мин|ч)\b"
_HOUSE = (r"(?:д\.?|дом)\s*№?\s*\d{1,4}(?!\d|\s*(?:,\d|" + _UNIT + r"))[а-яa-z]?(?:/\d{1,3})?"
          r"(?:\s*,?\s*(?:к\.?|корп\.?|корпус|стр\.?|строение)\s*\d{1,3}(?![\d:.]))?")
_FLAT_ONE = r"\s*,?\s*(?:кв\.?|квартира|оф\.?|офис|под\.?|подъезд|эт\.?|этаж)\s*\d{1,4}(?!\d|[,.]\d|\s*м\b)"
_FLAT = r"(?:" + _FLAT_ONE + r")*"
_RU_STREET_TYPE = (r"(?:ул\.?|улиц[аеыу]|пр-т|пр-кт|просп\.?|проспект[ауе]?|пер\.|переул(?:ок|ке|ка)|б-р|бульвар[ауе]?|"
                   r"ш\.|шоссе|наб\.|набережн(?:ая|ой|ую)|мкр\.?|микрорайон[ае]?|пл\.|площад[ьи]|проезд[ае]?|пр-д)(?![а-яё])")
_RU_STREET_NAME = r"(?:(?:\d{1,2}-?(?:я|й|го|ой)\s+)?[А-ЯЁA-Zа-яё][а-яёa-z\-]+\.?(?:\s+[А-ЯЁ][а-яё\-]+){0,2}|\d{1,2}\s+[А-Я][а-я]+)"
_RU_CITY = r"(?:(?:\d{6},?\s*)?(?:г\.|город)\s*[А-ЯЁ][а-яё\-]+,?\s*)?"
_RU_ADDRESS = re.compile(
    r"(?i:" + _RU_CITY + r")(?<![\w-])(?i:" + _RU_STREET_TYPE + r")\s*" + _RU_STREET_NAME
    + r"(?:\s*,?\s*(?i:(?:" + _HOUSE + r")|\d{1,4}(?!\d|\s*(?:,\d|" + _UNIT + r"))(?:[а-я](?!\d))?(?:/\d{1,3})?(?:\s*к\s*\d)?))?"
    + r"(?i:" + _FLAT + r")")
_RU_ADDRESS_REVERSED = re.compile(   # «Ленинский пр-т, 12», «Тверской бульвар 3»
    r"(?<![\w-])[А-ЯЁ][а-яё]+(?:ский|ская|цкий|цкая|ный|ная|ой|ий|ая)\s+(?i:" + _RU_STREET_TYPE + r")"
    r"(?:\s*,?\s*(?i:(?:" + _HOUSE + r")|\d{1,4}(?!\d|\s*(?:,\d|" + _UNIT + r"))(?:[а-я](?!\d))?(?:\s*к\s*\d)?))"
    + r"(?i:" + _FLAT + r")")
# a bare «дом 2» is too vague (a TV show, a brand); a house with a flat, block or building number is an address
_RU_HOUSE_ONLY = re.compile(r"(?<![\w-])(?i:(?:" + _HOUSE + r")(?:" + _FLAT_ONE + r")+)")
_EN_STREET_TYPE = (r"(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Lane|Ln\.?|Boulevard|Blvd\.?|Drive|Dr\.?|Court|Ct\.?|"
                   r"Place|Pl\.?|Square|Sq\.?|Way|Terrace|Highway|Hwy\.?)")
_EN_ADDRESS = re.compile(
    r"(?:(?:Apt\.?|Apartment|Flat|Suite|Unit)\s*#?\w{1,4},?\s*)?(?<![\w-])\d{1,5}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){1,3}"
    + _EN_STREET_TYPE + r"(?![\w])(?:,?\s*(?:Apt\.?|Apartment|Flat|Suite|Unit)\s*#?\w{1,4})?")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment cards)."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digit_windows(raw: str) -> list[tuple[int, int]]:
    """(start, end) of every run of whole digit groups in ``raw``, longest first: a candidate that swallowed a
    neighbouring number («8-916-123-45-67 2 шт», «4111 1111 1111 1111 12/27») is tried without it too."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", raw)]
    windows = [(groups[i][0], groups[j][1]) for i in range(len(groups)) for j in range(i, len(groups))]
    return sorted(windows, key=lambda w: (w[0] - w[1], w[0]))


def _is_card(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    # a bare 13-15 digit run is more likely a barcode (EAN-13) than a card; cards that short come grouped
    return 13 <= len(digits) <= 19 and (raw != digits or len(digits) >= 16) and luhn_valid(digits)


def _card_spans(text: str) -> list[PiiSpan]:
    spans = []
    for match in _CARD.finditer(text):
        for start, end in _digit_windows(match.group()):
            if _is_card(match.group()[start:end]):
                spans.append(PiiSpan("card", match.start() + start, match.start() + end))
                break
    return spans


def _is_phone(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    if raw.count("(") != raw.count(")") or re.search(r"\s{2,}|--", raw):
        return False
    if raw.startswith("+"):
        return 10 <= len(digits) <= 15
    if len(digits) == 11 and digits[0] in "78":
        return True
    # a Russian mobile without the country prefix, grouped 3-3-2-2 or 3-3-4 («916 123-45-67»); a passport
    # «9289 227580» or «92 08 130831» has the same digits in other groups
    groups = [group for group in re.split(r"[\s\-()]+", raw) if group]
    return len(digits) == 10 and digits[0] == "9" and len(groups) >= 3 and len(groups[0]) == 3


def _phone_spans(text: str) -> list[PiiSpan]:
    spans = []
    for match in _PHONE.finditer(text):
        raw = match.group()
        for start, end in _digit_windows(raw):
            # widen the digit window to a "+" before it and to brackets that belong to it
            if start > 0 and raw[start - 1] == "(" and ")" in raw[start:end]:
                start -= 1
            if raw[:start].rstrip().endswith("+"):
                start = raw[:start].rstrip().rindex("+")
            if _is_phone(raw[start:end]):
                spans.append(PiiSpan("phone", match.start() + start, match.start() + end))
                break
    return spans


def _regex_spans(kind: str, pattern: re.Pattern[str], text: str, group: int = 0) -> list[PiiSpan]:
    return [PiiSpan(kind, m.start(group), m.end(group)) for m in pattern.finditer(text)]


def _address_spans(text: str) -> list[PiiSpan]:
    spans = []
    for pattern in (_RU_ADDRESS, _RU_ADDRESS_REVERSED, _RU_HOUSE_ONLY, _EN_ADDRESS):
        for match in pattern.finditer(text):
            end = match.end()
            while end > match.start() and text[end - 1] in " ,":
                end -= 1
            spans.append(PiiSpan("address", match.start(), end))
    return spans


# --------------------------------------------------------------------------------------------------------- names

# Nominative first names, full and familiar forms; declined forms are generated by _name_forms.
_RU_FIRST_NAMES = """
александр алексей анатолий андрей антон аркадий арсений артём артем борис вадим валентин валерий василий виктор
виталий владимир владислав всеволод вячеслав геннадий георгий герман глеб григорий даниил денис дмитрий евгений
егор иван игорь илья кирилл константин леонид максим матвей михаил никита николай олег павел пётр петр роман
руслан святослав семён семен сергей станислав степан тимофей тимур фёдор федор филипп эдуард юрий ярослав
александра алина алла анастасия ангелина анна антонина валентина валерия варвара василиса галина дарья диана ева
евгения екатерина елена елизавета жанна зинаида зоя инна ирина карина кира клавдия ксения лариса лидия людмила
маргарита мария милана наталья наталия нина оксана олеся ольга полина раиса светлана софья софия таисия тамара
татьяна ульяна эльвира юлия яна алиса арина вероника виктория кристина злата эмилия василина стефания мирослава
марк мирон давид артур тихон савелий демид богдан прохор платон
саша шура лёша леша алёша андрюша антоша боря вадик валера вася витя вова володя гена гоша гриша дима денчик егорка
женя ваня игорёк илюша костя кирюша лёня лёва макс миша никитка коля олежек паша петя рома серёжа сережа слава стас
стёпа тима федя юра ярик аня анечка нюра варя валя галя даша дашенька катя катюша лена леночка лиза лизонька ира
ксюша лара люда рита маша машенька мариша наташа оля олечка поля света соня таня танечка уля юля юленька зина
"""
_EN_FIRST_NAMES = """
james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony paul
steven andrew kenneth joshua kevin brian george timothy ronald edward jason jeffrey ryan jacob gary nicholas eric
jonathan stephen larry justin scott brandon benjamin samuel gregory alexander patrick dennis jerry tyler
aaron henry peter adam nathan zachary kyle harry oliver noah liam ethan lucas mason logan owen
mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret sandra ashley
kimberly emily donna michelle carol amanda dorothy melissa deborah stephanie rebecca sharon laura cynthia kathleen
amy angela shirley anna emma olivia sophia isabella charlotte amelia mia evelyn abigail ella chloe
alice julia natalie hannah rachel megan lucy kate helen victoria
"""
# English names that are also common words (mark, frank, jack, grace, harper) are left out of _EN_FIRST_NAMES.
# First names that are also common words or brands (вера, роза, лев, мила…): only with NER or a cue phrase.
_AMBIGUOUS_RU = frozenset("вера надежда любовь роза лилия лев мила слава марина виолетта майя клара тигран роман "
                          "виктория".split())
# singular forms only: plural «-ины/-овы» are mostly common nouns («витамины», «мандарины»)
_RU_SURNAME = re.compile(r"(?:ов|ев|ёв|ин|ын)(?:а|у|ым|ой|ом|е)?$|(?:енко|дзе|швили)$|(?:ян|янц|ук|юк)(?:а|у|ом|е)?$")
_RU_SURNAME_ADJ = re.compile(r"(?:ск|цк)(?:ий|ая|ого|ой|ому|ую|им)$")
_RU_PATRONYMIC = re.compile(r"(?:ович|евич|ьич|ич|овн|евн|ичн|инична|ична)(?:а|у|ом|е|ы|ой|ем)?$")
_WORD = re.compile(r"[A-Za-zА-ЯЁа-яё][A-Za-zА-ЯЁа-яё'\-]*")
_CUE = re.compile(r"(?i)(?:меня зовут|зовут|на имя|получател[ьяю]|курьер\w* передайте|моя фамилия|фамилия"
                  r"|my name is|name is|i am|i'm|recipient|deliver to|addressed to|contact person|"
                  r"mr\.?|mrs\.?|ms\.?|miss|dr\.?|dear)[:,]?\s+")


def _ru_name_forms(name: str) -> set[str]:
    forms = {name}
    if name.endswith(("а", "я")):
        stem, soft = name[:-1], name.endswith("я") or name[-2] in "жшчщ"
        forms |= {stem + ending for ending in (("и", "е", "ю", "ей", "ею") if soft else ("ы", "е", "у", "ой", "ою"))}
        if name.endswith("ия"):
            forms.add(stem + "и")
        if stem[-1:] in "кгх":
            forms.add(stem + "и")
    elif name.endswith(("й", "ь")):
        stem = name[:-1]
        forms |= {stem + ending for ending in ("я", "ю", "ем", "е", "ём")}
    else:
        forms |= {name + ending for ending in ("а", "у", "ом", "е", "ем")}
        if name.endswith(("ёл", "ел")):   # Павел → Павла
            forms |= {name[:-2] + "л" + ending for ending in ("а", "у", "ом", "е")}
        if name.endswith("ёт") or name.endswith("ет"):
            forms |= {name[:-2] + "т" + ending for ending in ("а", "у", "ом", "е")}
    return forms


@functools.lru_cache(maxsize=1)
def _first_names() -> tuple[frozenset[str], frozenset[str]]:
    ru = set()
    for name in _RU_FIRST_NAMES.split() + sorted(_AMBIGUOUS_RU):
        ru |= _ru_name_forms(name)
    en = set(_EN_FIRST_NAMES.split())
    en |= {name + "'s" for name in en}
    return frozenset(ru), frozenset(en)


def _is_ru_first_name(word: str) -> bool:
    return word.lower().replace("ё", "е") in _first_names()[0] or word.lower() in _first_names()[0]


@functools.lru_cache(maxsize=1)
def natasha_models():
    """The natasha models (navec embeddings, segmenter, slovnet NER), loaded once from the wheel; offline."""
    from natasha import NewsEmbedding, NewsNERTagger, Segmenter

    embedding = NewsEmbedding()
    logger.info("natasha models loaded: navec %d words", len(embedding.vocab.words))
    return embedding, Segmenter(), NewsNERTagger(embedding)


def _ner_person_spans(text: str) -> list[tuple[int, int]]:
    from natasha import Doc

    _, segmenter, tagger = natasha_models()
    doc = Doc(text)
    doc.segment(segmenter)
    doc.tag_ner(tagger)
    return [(span.start, span.stop) for span in doc.spans if span.type == "PER"]


# Head nouns of product names: a surname-like word right after one is a brand («Колбаса Дымов»), not a person.
PRODUCT_HEAD_STEMS = tuple("""
молок кефир йогурт творог сыр сметан ряженк масл хлеб батон булк багет колбас сосиск сардельк ветчин бекон пельмен
вареник квас сок вода воды лимонад чай кофе какао шоколад конфет пряник печень вафл зефир мармелад торт пирог пирожн
морожен майонез кетчуп соус круп гречк рис макарон спагетти мук сахар сол чипс сухарик орех корм лакомств пюре каш
смес подгузник шампун крем гель мыл порошок пиво вино водк мяс фарш куриц филе рыб икр консерв кроссовк наушник
смартфон книг игрушк набор конструктор напит тушенк огурц томат овощ фрукт яблок банан варень мёд мед джем паст
""".split())


_VERB_ENDING = re.compile(r"(?:те|ть|ться|тся|ся|ай|яй|ей|и)$")


def _accepted_person(words: list[re.Match[str]], allow: frozenset[str], before: str = "") -> tuple[int, int] | None:
    """The part of an NER PER span that is really a person: words from the first name to the last name-like word."""
    keep = []
    ambiguous_only = all(word.group().lower() in _ambiguous_forms() or not _is_ru_first_name(word.group())
                         for word in words)
    for word in words:
        token = word.group()
        lower = token.lower()
        if lower in allow or token in allow or not token[0].isupper():
            continue
        if (_is_ru_first_name(token) or _RU_PATRONYMIC.search(lower) or _RU_SURNAME.search(lower)
                or (_RU_SURNAME_ADJ.search(lower) and len(words) > 1 and keep)):
            keep.append(word)
    if not keep:
        return None
    if ambiguous_only and len(words) > 1 and all(w.group().lower() in _ambiguous_forms() for w in keep):
        return None   # «Роман Азбука»: a genre and a publisher; an ambiguous name needs a surname or patronymic
    # capitalised words of the span, less verbs the NER glues on at a sentence start («Доставьте Ольге …»)
    names = [word for word in words if word.group()[0].isupper() and word.group().lower() not in allow
             and (word in keep or not _VERB_ENDING.search(word.group().lower()))]
    surname_only = not any(_is_ru_first_name(w.group()) or _RU_PATRONYMIC.search(w.group().lower()) for w in keep)
    preceding = ([before] + [w.group() for w in words])[[w.group() for w in words].index(keep[0].group())]
    if surname_only and preceding.lower().startswith(PRODUCT_HEAD_STEMS):
        return None   # «Творог Савушкин», «Колбаса Дымов»: a brand named after a person follows the product noun
    # the NER said the whole span is a person and one word confirms it: keep the span's capitalised words
    return names[0].start(), names[-1].end()


def _lexicon_name_spans(text: str, allow: frozenset[str]) -> list[tuple[int, int]]:
    """Names found without NER: an unambiguous first name (ru/en) plus following name-like capitalised words."""
    ru_names, en_names = _first_names()
    words = list(_WORD.finditer(text))
    spans = []
    index = 0
    while index < len(words):
        token = words[index].group()
        lower = token.lower().replace("ё", "е")
        is_name = token[0].isupper() and token not in allow and lower not in allow and (
            (lower in ru_names and lower not in _AMBIGUOUS_RU and not _is_common_ru_form(lower))
            or lower in en_names)
        if not is_name:
            index += 1
            continue
        start, end = words[index].start(), words[index].end()
        index += 1
        while index < len(words) and _continues_name(words[index].group(), text[end:words[index].start()]):
            end = words[index].end()
            index += 1
        spans.append((start, end))
    return spans


# Declined forms of first names that are everyday words: «Вере» is fine, but «Максе», «Яне»… stay; these do not.
_COMMON_RU_FORMS = frozenset("поле поля полю полей рому гене мише кире лизе зое еве вале яну нине ире "
                             "марка марку марке марки маркой".split())


def _is_common_ru_form(lower: str) -> bool:
    return lower in _COMMON_RU_FORMS


def _continues_name(token: str, gap: str) -> bool:
    if gap.strip() or not token[:1].isupper():
        return False
    lower = token.lower()
    return bool(_RU_PATRONYMIC.search(lower) or _RU_SURNAME.search(lower) or _RU_SURNAME_ADJ.search(lower)
                or re.fullmatch(r"[A-Z][a-z]+(?:-[A-Z][a-z]+)?", token) or _is_ru_first_name(token))


_TITLE = re.compile(r"(?i)mr\.?|mrs\.?|ms\.?|miss|dr\.?")


def _cue_name_spans(text: str) -> list[tuple[int, int]]:
    """«меня зовут иван петров», "my name is Anna": the words after a cue phrase, lower-case allowed (typing)."""
    spans = []
    for cue in _CUE.finditer(text):
        title = bool(_TITLE.fullmatch(cue.group().strip(" :,")))
        words = []
        for word in _WORD.finditer(text, cue.end()):
            gap = text[(words[-1].end() if words else cue.end()):word.start()]
            if gap.strip() or len(words) == 3:
                break
            token = word.group()
            lower = token.lower()
            name_like = (_is_ru_first_name(token) or lower in _first_names()[1] or _RU_PATRONYMIC.search(lower)
                         or _RU_SURNAME.search(lower) or (token[0].isupper() and (words or title)))
            if not name_like:
                break
            words.append(word)
        if words:
            spans.append((words[0].start(), words[-1].end()))
    return spans


_CAPITALISED_CYRILLIC = re.compile(r"(?<![\w])[А-ЯЁ][а-яё]+")


def _worth_ner(text: str, allow: frozenset[str]) -> bool:
    """NER (a few ms) only when a capitalised Russian word could be a name the lexicon cannot settle alone:
    an ambiguous first name («Вера»), a surname or a patronymic. Product names rarely have one, so most calls
    skip it."""
    for match in _CAPITALISED_CYRILLIC.finditer(text):
        lower = match.group().lower()
        if lower in allow:
            continue
        if lower in _ambiguous_forms() or _RU_PATRONYMIC.search(lower) or _RU_SURNAME.search(lower):
            return True
    return False


@functools.lru_cache(maxsize=1)
def _ambiguous_forms() -> frozenset[str]:
    return frozenset(form for name in _AMBIGUOUS_RU for form in _ru_name_forms(name))


def _name_spans(text: str, config: PrivacyFilterConfig) -> list[PiiSpan]:
    allow = frozenset(token.lower() for words in config.allow_words for token in words.split())
    found = _lexicon_name_spans(text, allow) + _cue_name_spans(text)
    if config.use_ner and _worth_ner(text, allow):
        for start, end in _ner_person_spans(text):
            previous = _WORD.findall(text[:start])
            accepted = _accepted_person(list(_WORD.finditer(text, start, end)), allow, previous[-1] if previous else "")
            if accepted:
                found.append(accepted)
    return [PiiSpan("name", start, end) for start, end in found]


# --------------------------------------------------------------------------------------------------------- API

def _candidates(text: str, config: PrivacyFilterConfig) -> list[PiiSpan]:
    finders = {
        "email": lambda: _regex_spans("email", _EMAIL, text),
        "card": lambda: _card_spans(text),
        "phone": lambda: _phone_spans(text),
        "snils": lambda: _regex_spans("snils", _SNILS, text) + _regex_spans("snils", _SNILS_LABELED, text, 1),
        "passport": lambda: (_regex_spans("passport", _PASSPORT, text)
                             + _regex_spans("passport", _PASSPORT_LABELED, text, 1)),
        "inn": lambda: _regex_spans("inn", _INN_LABELED, text, 1),
        "address": lambda: _address_spans(text),
        "name": lambda: _name_spans(text, config),
    }
    return [span for kind in config.kinds for span in finders[kind]()]


def _resolve_overlaps(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Keep one span per stretch of text: the earlier kind in PII_KINDS wins, then the longer span."""
    rank = {kind: position for position, kind in enumerate(PII_KINDS)}
    chosen: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (rank[s.kind], -(s.end - s.start), s.start)):
        if span.end > span.start and all(span.end <= other.start or span.start >= other.end for other in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


_DEFAULT_CONFIG = PrivacyFilterConfig()


def find_pii(text: str, config: PrivacyFilterConfig = _DEFAULT_CONFIG) -> list[PiiSpan]:
    """All personal-data spans in ``text``, sorted by start, non-overlapping."""
    if not text:
        return []
    return _resolve_overlaps(_candidates(text, config))


def text_language(text: str) -> str:
    """'ru' when the text has more Cyrillic than Latin letters, else 'en' (empty text: 'ru')."""
    cyrillic = len(re.findall(r"[А-Яа-яЁё]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "ru" if cyrillic >= latin else "en"


def redact(text: str, config: PrivacyFilterConfig = _DEFAULT_CONFIG) -> RedactionResult:
    """``text`` with every PII span replaced by its kind's placeholder (style from ``config.placeholder_style``)."""
    return redact_spans(text, find_pii(text, config), config)


def redact_spans(text: str, spans: list[PiiSpan], config: PrivacyFilterConfig = _DEFAULT_CONFIG) -> RedactionResult:
    """``text`` with the given (sorted, non-overlapping) spans replaced by their kinds' placeholders."""
    style = text_language(text) if config.placeholder_style == "auto" else config.placeholder_style
    placeholders = _PLACEHOLDERS[style]
    pieces, cursor = [], 0
    for span in spans:
        pieces += [text[cursor:span.start], placeholders[span.kind]]
        cursor = span.end
    pieces.append(text[cursor:])
    return RedactionResult("".join(pieces), tuple(spans))


# ------------------------------------------------------------------------------------------- sensitive domains

@dataclass(frozen=True)
class SensitiveTopic:
    """A sensitive shopping domain and the words that name it, in Russian and English.

    ``stems`` match a word by prefix — a poor man's morphology: «лекарств» covers «лекарство», «лекарствами»;
    ``words`` match whole words only, for short or ambiguous forms («вино» must not match «виноград»);
    ``phrases`` match as substrings of the lower-cased text ("blood pressure").
    """

    name: str
    stems: tuple[str, ...]
    words: frozenset[str] = frozenset()
    phrases: tuple[str, ...] = ()
    negators: tuple[str, ...] = ()   # prefixes that cancel a mention next to them: «пиво безалкогольное»

    def __post_init__(self) -> None:
        short = [stem for stem in self.stems if len(stem) < 4]
        if short:
            raise ValueError(f"SensitiveTopic {self.name!r}: stems {short!r} are shorter than 4 letters; "
                             "put short forms in words")

    def mentioned_in(self, tokens: list[str], lowered: str) -> bool:
        negated = {i + shift for i, token in enumerate(tokens) if self.negators and token.startswith(self.negators)
                   for shift in (-1, 0, 1)}
        return (any((token in self.words or token.startswith(self.stems)) and i not in negated
                    for i, token in enumerate(tokens))
                or any(phrase in lowered for phrase in self.phrases))


SENSITIVE_TOPICS: tuple[SensitiveTopic, ...] = (
    SensitiveTopic(
        "health",
        stems=("лекарств", "медикамент", "препарат", "таблет", "аптек", "аптеч", "витамин", "давлени", "гипертон",
               "гипотон", "диабет", "инсулин", "простуд", "грипп", "кашл", "насморк", "болезн", "болит", "болел",
               "болею", "болеет", "заболе", "симптом", "лечени", "лечить", "лечит", "врач", "доктор", "антибиот",
               "обезбол", "анальгет", "жаропониж", "антисепт", "пластыр", "тонометр", "градусник", "термометр",
               "глюкометр", "аллерг", "антигистамин", "мигрен", "изжог", "диаре", "отравлени", "противовирус",
               "парацетамол", "ибупрофен", "аспирин", "омега-3", "сироп", "мазь", "мази", "стоматит", "ангин",
               "medicine", "medicat", "pharmac", "drugstore", "vitamin", "supplement", "hypertens", "diabet",
               "insulin", "cough", "fever", "headache", "painkill", "ibuprofen", "paracetamol", "aspirin",
               "antibiot", "allerg", "antihistamin", "symptom", "illness", "disease", "prescript", "bandage",
               "antisept", "thermometer", "migraine", "heartburn", "nausea", "diarrh"),
        words=frozenset("бад бады бадов бинт бинты бинта горло горла горле боль боли болью мед медицина медицинский "
                        "meds pill pills flu sick doctor plaster".split()),
        phrases=("от давления", "от головы", "от горла", "от простуды", "first aid", "blood pressure",
                 "sore throat", "cold remedy", "cold remedies", "первой помощи", "first-aid"),
    ),
    SensitiveTopic(
        "intimate",
        stems=("презерватив", "контрацеп", "лубрикант", "интим", "беременн", "овуляц", "condom", "contracep",
               "lubricant", "intimate", "pregnan", "ovulat"),
        phrases=("тест на беременность", "sexual health"),
    ),
    SensitiveTopic(
        "alcohol_tobacco",
        stems=("алкогол", "водк", "коньяк", "шампанск", "сигарет", "табак", "табач", "кальян", "никотин", "спиртн",
               "alcohol", "vodka", "whisk", "cognac", "champagne", "cigar", "tobacco", "hookah", "nicotine", "liquor"),
        words=frozenset("вино вина вину вином вине вин пиво пива пиву пивом виски ром рома джин вейп вейпы вейпа "
                        "стики beer beers wine wines rum gin vape vapes".split()),
        negators=("безалкогол", "non-alcohol", "alcohol-free", "nonalcohol"),
    ),
)

_TOKENS = re.compile(r"[a-zа-я0-9]+(?:-[a-zа-я0-9]+)?")


def mentions_sensitive_domain(text: str, topics: tuple[SensitiveTopic, ...] = SENSITIVE_TOPICS) -> set[str]:
    """Names of the sensitive topics that ``text`` mentions («есть что-то от давления?» → {"health"})."""
    lowered = text.lower().replace("ё", "е")
    tokens = _TOKENS.findall(lowered)
    return {topic.name for topic in topics if topic.mentioned_in(tokens, lowered)}
