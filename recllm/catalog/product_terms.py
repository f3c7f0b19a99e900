"""Which catalog items a request names by their kind: «молоко», «кофе в зёрнах», «корм для кошек».

A request that names a kind of product wants that kind; the rest of the request (budget, diet, service) narrows it.
Without this, a user who buys coffee every week and asks for «молоко» gets coffee beside the milk (the reranker's
history features outweigh a query it learned from intent-level requests only), and «кофе в зёрнах до 200 ₽», which
no coffee meets, gets milk and kefir instead of «nothing that cheap here».

Words are compared by their dictionary form (pymorphy3's lemma: «кошек», «кошки» → «кошка»). The kinds are the
catalog's own words: an item's **kind word** is its name's head noun: the first word («Молоко безлактозное …» →
«молоко») or the noun after leading adjectives («Игровая гарнитура …» → «гарнитура»; the adjective is a modifier
shared across kinds: «хочу обновить игровой сетап» names no kind). A request names a kind when one of its words is a kind word, outside these spans:

* after a negation («без молока и сахара», «кроме кефира») up to the end of the clause: what the item is not;
* after a purpose preposition («для любителя кофе», «к кофе», «за час») up to the clause's end or «и»: what the
  item is for, or when;

and not when it offers an alternative the catalog has no word for («геймпад или гарнитура»: the headsets are named
«Наушники …», so reading only «геймпад» would drop what the user also asked for). Of each kind's items, those whose
names share the most of the request's other words (purpose words too, negated ones not) are the ones named («кофе
в зёрнах» → the beans, «корм для кошек» → the cat food, «молоко Простоквашино» → that brand's milk), when any
shares one. A kind word that is also a category's one-word name names that category too («игрушка»: the pet toys
named «Игрушка …» and every toy under «игрушки»).

One-word Russian category names («сладости») are deliberately not kinds: measured on the build's held-out requests
they mostly carry an intent («хочу сладкого» — sweet yoghurt is a fine answer) and restricting to the category cost
Recall@10 (0.853 → 0.773 with categories and kind words; ``benchmarks/results/named_kinds.md``). A name of two content
words or more is one when the request says all of them («спортивное питание» got baby food, «товары для животных»
the user's usual items): ``russian_category_phrases``, except names that say what the items are good for («полезные
перекусы»: fruit answers it too; with it the held-out Recall@10 lost 2 of 150 test requests, without it none).

English requests are read against the English names: an item's ``name_en`` ("bananas", "lactose-free milk") names it
by its head noun (the last word: "milk" names the milk and the lactose-free milk, and "lactose-free milk" narrows to
the latter the way «кофе в зёрнах» does), and a category's English name names the category and everything under it,
as phrases: a name's parts («meat and poultry» → "meat", "poultry"; the bracketed age band dropped) when the
request's wanted words hold the whole phrase ("cat food" → the cat food; "good coffee for home" → the coffee;
"diapers and baby food" → both). Words are compared in the singular; a word after "something" / "anything" is an
adjective there ("something sweet" names no sweets).

A request that names no kind but wants an everyday good the catalog has none of («покажи чай», "show me some tea";
``everyday_goods``) names that good with no items: it gets nothing, said plainly by the chat, instead of the
user's usual items.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pymorphy3

from recllm.catalog.english_synonyms import catalog_word, with_phrase_synonyms
from recllm.catalog.everyday_goods import EVERYDAY_GOODS_EN, EVERYDAY_GOODS_RU
from recllm.catalog.product_catalog import Catalog
from recllm.catalog.russian_synonyms import RUSSIAN_SYNONYMS

WORD = re.compile(r"[a-z]+(?:'[a-z]*)?|[а-яё]+|[,.;:!?()]", re.IGNORECASE)  # "children's", "kids'"
CLAUSE_BREAK = frozenset(",.;:!?()")
NEGATIONS = frozenset({"без", "не", "нет", "кроме", "вместо", "no", "not", "without", "except", "instead"})
PURPOSES = frozenset({"для", "к", "ко", "за", "через", "под", "после", "от", "for", "to", "within", "after", "than"})
CONJUNCTIONS = frozenset({"и", "and"})
NEXT_WORD_PURPOSES = frozenset({"на"})  # a purpose for the one word after it only
ALTERNATIVES = frozenset({"или", "либо", "or"})
ADJECTIVES = frozenset({"ADJF", "PRTF"})  # pymorphy3's full adjectives and participles
# what item names call an animal a request calls otherwise («для кота» → the food «для кошек»)
ANIMAL_LEMMAS = {"кот": "кошка", "котик": "кошка", "котёнок": "кошка", "котенок": "кошка", "пёс": "собака",
                 "пес": "собака", "щенок": "собака"}
ENGLISH_WORD = re.compile(r"[a-z]+(?:'[a-z]*)?")
ENGLISH_INDEFINITES = frozenset({"something", "anything", "nothing", "everything"})
ENGLISH_IRREGULAR_PLURALS = {"cookies": "cookie", "movies": "movie", "children": "child", "loaves": "loaf",
                             "leaves": "leaf", "halves": "half", "shelves": "shelf", "mice": "mouse",
                             # "-oes" → "-o" only for these ("shoes", "toes" lose just the "s")
                             "potatoes": "potato", "tomatoes": "tomato", "mangoes": "mango", "heroes": "hero",
                             "echoes": "echo", "veggies": "veggie"}
# A word of an English item name that says whom the item is for → the request words that name that recipient.
ENGLISH_RECIPIENTS = {"cat": {"cat", "kitten", "kitty", "pet"}, "dog": {"dog", "puppy", "pet"}, "pet": {"pet", "cat", "dog"},
                      "baby": {"baby", "toddler", "infant", "newborn"}, "kid": {"kid", "child", "children", "son",
                                                                               "daughter"},
                      "children's": {"kid", "child", "children", "son", "daughter", "children's"}}
# words of an English item name that name no kind by themselves ("free" in "lactose-free"; the X of "X-free" and
# "non-X" is what the item has not, and is dropped before this)
ENGLISH_NAME_FILLERS = frozenset({"and", "with", "the", "for", "set", "of", "over", "ear"})
# the last words of category names that name no kind ("household goods", "pet supplies")
ENGLISH_GENERIC_KINDS = frozenset({"good", "product", "supply", "supplies"})
MAX_LEADING_ADJECTIVES = 2
MIN_KIND_WORD = 3  # shorter first words are no kind


@dataclass(frozen=True)
class NamedKinds:
    """What a request names: the kind words (lemmas) it matched and the items they name (sorted ids)."""

    terms: tuple[str, ...]
    item_ids: np.ndarray  # [N] int64


class Lemmatizer:
    """pymorphy3's likeliest dictionary form and part of speech of a word, «ё» read as «е»; kept per word."""

    def __init__(self):
        self._morph = pymorphy3.MorphAnalyzer()
        self.parse = functools.lru_cache(maxsize=65536)(self._parse)

    def _parse(self, word: str) -> tuple[str, str]:
        best = self._morph.parse(word.lower())[0]
        return best.normal_form.replace("ё", "е"), str(best.tag.POS or "")

    def lemma(self, word: str) -> str:
        return self.parse(word)[0]

    def is_noun(self, word: str) -> bool:
        return self.parse(word)[1] == "NOUN"

    def is_known(self, word: str) -> bool:
        """The word (lower-case) is in pymorphy3's dictionary (not only guessed by its ending)."""
        return self._morph.word_is_known(word)


WANTED, PURPOSE, NEGATED = "wanted", "purpose", "negated"


def request_words(text: str) -> list[tuple[str, str]]:
    """Each word of ``text``, lower-case, with its span: ``WANTED`` (may name a kind), ``PURPOSE`` (after «для»,
    «к», …, and the one word after «на»: may only narrow the kind, «корм для кошек») or ``NEGATED`` (after «без», «не», …: neither). The
    alternatives' «или» / "or" are kept as words for ``named``'s check."""
    words, span, next_only = [], WANTED, False
    for token in WORD.findall(text.lower()):
        if token in CLAUSE_BREAK:
            span, next_only = WANTED, False
        elif token in CONJUNCTIONS and span == PURPOSE:
            span = WANTED
        elif token in NEGATIONS:
            span = NEGATED
        elif token in PURPOSES:
            span = span if span == NEGATED else PURPOSE
        elif token in NEXT_WORD_PURPOSES and span == WANTED:
            next_only = True  # «чехол на телефон», «кефир на завтрак»; «на ужин хочу пиццу» still wants the pizza
        else:
            words.append((token, PURPOSE if next_only else span))
            next_only = False
    return words


def words_of(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in CLAUSE_BREAK]


def kind_word(name: str, lemmatizer: Lemmatizer) -> str | None:
    """The lemma of an item name's head noun: its first word, or the noun after up to two leading adjectives
    («Игровая гарнитура» → «гарнитура»); None when the name opens otherwise (or the noun is too short)."""
    for word in words_of(name)[:MAX_LEADING_ADJECTIVES + 1]:
        part = lemmatizer.parse(word)[1]
        if part == "NOUN":
            return lemmatizer.lemma(word) if len(word) >= MIN_KIND_WORD else None
        if part not in ADJECTIVES:
            return None
    return None


# A category named by a kind word that heads at least this share of its items («смартфоны»: 7 of 16) is that
# product's shelf, and what else is on it is for the product, not the product (cases, chargers); below it
# («игрушки»: 0 of 63, «книги»: 7 of 27) the word is the general name of everything on the shelf.
PRODUCT_SHELF_SHARE = 1 / 3


def shelf_items_of_kind(word: str, shelf: list, lemmatizer: Lemmatizer) -> list:
    """The items of a category named ``word`` (a lemma) that the word names: all of them when it is the shelf's
    general name; on a product's shelf those it heads and those whose names carry it, or an adjective made from it,
    outside a purpose («Трусики-подгузники», «Капсулы кофейные»), not «Чехол для смартфона» nor «Зарядное
    устройство»."""
    headed = [item for item in shelf if kind_word(item.name, lemmatizer) == word]
    if len(headed) < PRODUCT_SHELF_SHARE * len(shelf):
        return shelf
    return [item for item in shelf if any(
        span == WANTED and (lemmatizer.lemma(token) == word
                            or token.startswith(word) and lemmatizer.parse(token)[1] in ADJECTIVES)
        for token, span in request_words(item.name))]


def english_singular(word: str) -> str:
    """A plain English plural to its singular ("berries" → "berry", "boxes" → "box", "toys" → "toy")."""
    word = word.rstrip("'")  # "kids'" → "kids"
    if word in ENGLISH_IRREGULAR_PLURALS:
        return ENGLISH_IRREGULAR_PLURALS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ives"):  # knives, wives
        return word[:-3] + "fe"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        return word[:-1]
    return word


def english_phrases(name_en: str) -> list[tuple[str, ...]]:
    """The phrases an English category name is made of, each as singular words without the prepositions
    ``request_words`` reads as span marks: "meat and poultry" → [("meat",), ("poultry",)], "toys for toddlers
    (0-2)" → [("toy", "toddler")], "children's books" → [("children's", "book")]."""
    plain = re.sub(r"\([^)]*\)", " ", name_en.lower())
    phrases = [tuple(english_singular(w) for w in ENGLISH_WORD.findall(part) if w not in PURPOSES | NEGATIONS)
               for part in re.split(r"\band\b|,", plain)]
    return [p for p in phrases if p]


def english_words(text: str) -> list[tuple[str, str]]:
    """The request's English words, singular and as the catalog says them (``english_synonyms``: "sneakers" →
    "shoe"), with their spans (``request_words``); a negated word, and a word after "something" / "anything" (an
    adjective there: "something sweet"), is left blank: no phrase holds it."""
    out, previous = [], ""
    for word, span in request_words(with_phrase_synonyms(text)):
        if ENGLISH_WORD.fullmatch(word):
            blank = span == NEGATED or previous in ENGLISH_INDEFINITES
            out.append(("" if blank else catalog_word(english_singular(word)), span))
        previous = word
    return out


def holds_phrase(words: list[tuple[str, str]], phrase: tuple[str, ...]) -> bool:
    """Whether the words hold the phrase starting at a wanted word ("toys for toddlers" may run on into the
    purpose; "gift for a coworker who loves coffee" names no coffee)."""
    n = len(phrase)
    return any(words[i][1] == WANTED and tuple(w for w, _ in words[i:i + n]) == phrase
               for i in range(len(words) - n + 1))


class ProductTerms:
    """Kind word (a lemma) → the items it names, built from one catalog."""

    def __init__(self, kind_items: dict[str, np.ndarray], name_lemmas: list[frozenset[str]],
                 lemmatizer: Lemmatizer | None = None,
                 english_kinds: dict[tuple[str, ...], np.ndarray] | None = None,
                 english_words: list[frozenset[str]] | None = None, missing_goods: frozenset[str] = frozenset(),
                 english_modifiers: dict[str, np.ndarray] | None = None):
        self.kind_items = kind_items
        # an English phrase (a category's name, an item name's head noun) → its items
        self.english_kinds = english_kinds or {}
        # another word of an English item name ("chicken" of "chicken breast fillet") → its items: read only when
        # the request holds no phrase above
        self.english_modifiers = english_modifiers or {}
        self.english_words = english_words or []  # per item id, the singular words of its English name
        self.english_vocabulary = frozenset(w for p in self.english_kinds for w in p).union(*self.english_words)
        self.name_lemmas = name_lemmas  # per item id, the lemmas of its name's words
        self.vocabulary = frozenset().union(*name_lemmas) if name_lemmas else frozenset()
        self.lemmatizer = lemmatizer or Lemmatizer()
        # lemmas of everyday goods the catalog has no item of («чай»; and English ones: "tea")
        self.missing_goods = missing_goods
        # a Russian category name of two content words or more, as its lemmas in order → its items
        self.russian_phrases: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def of(cls, catalog: Catalog, lemmatizer: Lemmatizer | None = None) -> ProductTerms:
        lemmatizer = lemmatizer or Lemmatizer()
        kinds: dict[str, set[int]] = {}
        for item in catalog.items:
            word = kind_word(item.name, lemmatizer)
            if word is not None:
                kinds.setdefault(word, set()).add(item.item_id)
        shelves: dict[str, list[int]] = {}  # a category named by one kind word → the items that word names there
        for category_id, category in catalog.categories.items():  # a kind word that is a category's one-word name
            words = words_of(category.name_ru)
            if len(words) == 1 and lemmatizer.lemma(words[0]) in kinds:
                word = lemmatizer.lemma(words[0])
                shelf = [i for i in catalog.items if category_id in catalog.category_ids_above(i.category_id)]
                shelves[category_id] = [i.item_id for i in shelf_items_of_kind(word, shelf, lemmatizer)]
                kinds[word] |= set(shelves[category_id])
        name_lemmas = [frozenset(lemmatizer.lemma(w) for w in words_of(item.name) if len(w) >= MIN_KIND_WORD)
                       for item in catalog.items]
        categories = english_category_kinds(catalog, shelves)
        phrases = english_kinds(catalog, categories)
        terms = cls({k: np.array(sorted(v), dtype=np.int64) for k, v in kinds.items()}, name_lemmas, lemmatizer,
                    phrases, [frozenset(english_name_words(item.name_en)) for item in catalog.items],
                    english_modifiers=english_modifier_kinds(catalog, frozenset(p[0] for p in phrases if len(p) == 1),
                                                             categories))
        terms.missing_goods = missing_goods(catalog, terms.vocabulary, lemmatizer) | frozenset(
            w for w in EVERYDAY_GOODS_EN if w not in terms.english_vocabulary)
        terms.add_russian_synonyms(RUSSIAN_SYNONYMS)
        terms.russian_phrases = russian_category_phrases(catalog, lemmatizer)
        return terms

    def add_russian_synonyms(self, synonyms: dict[str, tuple[str, ...]]) -> None:
        """Each shopper's word (``russian_synonyms``) names its targets' items; one whose targets are all goods the
        catalog lacks is one too. A word the catalog itself uses keeps its own meaning."""
        for word, targets in synonyms.items():
            if word in self.kind_items or word in self.vocabulary:
                continue
            found = [self.kind_items[t] for t in targets if t in self.kind_items]
            if found:
                self.kind_items[word] = np.unique(np.concatenate(found))
            elif all(t in self.missing_goods for t in targets):
                self.missing_goods = self.missing_goods | {word}

    def named(self, text: str, allowed: np.ndarray | None = None) -> NamedKinds | None:
        """The kinds ``text`` names and their items (of those ``allowed``, a bool per item id, when given), or None
        when it names none (or offers an alternative the catalog has no word for)."""
        words = request_words(text)
        lemmas = [w if w in ALTERNATIVES else ANIMAL_LEMMAS.get(lemma, lemma)
                  for w, lemma in ((w, self.lemmatizer.lemma(w)) for w, _ in words)]
        if self.offers_an_unknown_alternative(words, lemmas):
            return None
        usable = [(lemma, span) for lemma, (word, span) in zip(lemmas, words)
                  if span != NEGATED and len(word) >= MIN_KIND_WORD]
        said = {lemma for lemma, _ in usable}
        # a category's name said whole, its words side by side («спортивное питание», «товары для животных»); a kind
        # word inside it is that category («средства по уходу за кожей»: skincare, not the «Средство …» cleaners), a
        # kind word elsewhere in the request still names its kind
        phrases, inside = self.phrases_said([(lemma, word) for lemma, (word, span) in zip(lemmas, words)
                                             if span != NEGATED and len(word) >= MIN_KIND_WORD])
        terms = tuple(dict.fromkeys(lemma for at, (lemma, span) in enumerate(usable) if span == WANTED
                                    and lemma in self.kind_items and at not in inside))
        others = said - set(terms)
        found = []
        for term in terms:
            items = self.kind_items[term]
            if allowed is not None:
                items = items[allowed[items]]
            if items.size:
                found.append(self.most_specific(items, others))
        for phrase in phrases:
            items = self.russian_phrases[phrase]
            items = items[allowed[items]] if allowed is not None else items
            if items.size:
                found.append(items)
                terms += (" ".join(phrase),)
        english_request = english_words(text)  # read once: the synonyms and singulars are the same for every use
        english = self.english_named(english_request)
        request_english = {w for w, _ in english_request if w}
        wanted_words = [w for w, span in english_request if span == WANTED]
        wanted_english = {w for w in wanted_words if w}
        if not english and not any(w in self.missing_goods for w in wanted_words):
            # "chicken", "salmon", "sunscreen": a noun of item names that heads none ("red wine" is wine, which
            # nothing here is, not the red bell pepper)
            english = [(w,) for w in dict.fromkeys(wanted_words) if w in self.english_modifiers]
        for phrase in english:
            items = self.english_kinds.get(phrase, self.english_modifiers.get(phrase[0]))
            items = items[allowed[items]] if allowed is not None else items
            items = items[[self.for_the_recipient(i, request_english) for i in items.tolist()]] if items.size else items
            if items.size:  # "coffee beans": of the coffee, the beans (a purpose narrows nothing: "toys for my kid")
                found.append(self.most_specific(items, wanted_english - set(phrase), self.english_words))
        if not found:
            missing = tuple(dict.fromkeys([lemma for lemma, span in usable
                                           if span == WANTED and lemma in self.missing_goods]
                                          + [w for w in wanted_words if w in self.missing_goods]))
            # «покажи чай» with no tea: a request for what is not there gets nothing, not the user's usual bread
            return NamedKinds(missing, np.zeros(0, dtype=np.int64)) if missing and not english else None
        return NamedKinds(terms + tuple(" ".join(p) for p in english), np.unique(np.concatenate(found)))

    def phrases_said(self, lemmas: list[tuple[str, str]]) -> tuple[list[tuple[str, ...]], set[int]]:
        """(the Russian category phrases whose lemmas the request says side by side — prepositions between them
        aside —, the positions in ``lemmas`` those phrases cover); ``lemmas`` are (lemma, word) of the request's
        usable words in order."""
        content = [(at, lemma) for at, (lemma, word) in enumerate(lemmas) if word.lower() not in PURPOSES | NEGATIONS]
        found, inside = [], set()
        for phrase in self.russian_phrases:
            for start in range(len(content) - len(phrase) + 1):
                window = content[start:start + len(phrase)]
                if {lemma for _, lemma in window} == set(phrase):
                    found.append(phrase)
                    inside |= {at for at, _ in window}
                    break
        return found, inside

    def english_named(self, words: list[tuple[str, str]]) -> list[tuple[str, ...]]:
        """The English phrases (``english_kinds``) the request's wanted words (``english_words``) hold (a phrase
        inside a longer one that also matched is left out: "toys for toddlers" rather than every toy)."""
        if not words:
            return []
        held = [p for p in self.english_kinds if holds_phrase(words, p)]
        return [p for p in held if not any(len(q) > len(p) and holds_phrase([(w, WANTED) for w in q], p)
                                           for q in held)]

    def offers_an_unknown_alternative(self, words: list[tuple[str, str]], lemmas: list[str]) -> bool:
        """«геймпад или гарнитура»: an «или» between wanted words, one of which no item name has (in English: no
        English item or category name)."""
        for at, lemma in enumerate(lemmas):
            if lemma not in ALTERNATIVES or not 0 < at < len(lemmas) - 1:
                continue
            beside = (at - 1, at + 1)
            if all(words[i][1] == WANTED for i in beside) and any(not self.knows(words[i][0], lemmas[i]) for i in beside):
                return True
        return False

    def for_the_recipient(self, item_id: int, request_english: set[str]) -> bool:
        """Whether the request may get the item for whom it is: an item named for a recipient ("cat treats", "baby
        wipes") only when the request names that recipient ("pet" stands for a cat or a dog): "sugar-free treats"
        is no request for cat treats."""
        recipients = self.english_words[item_id] & ENGLISH_RECIPIENTS.keys() if self.english_words else set()
        return not recipients or any(request_english & ENGLISH_RECIPIENTS[r] for r in recipients)

    def knows(self, word: str, lemma: str) -> bool:
        """Whether an item name (or, for an English word, a category name) has the word."""
        return (lemma in self.vocabulary or lemma in self.kind_items
                or english_singular(word) in self.english_vocabulary)

    def most_specific(self, items: np.ndarray, other_lemmas: set[str],
                      name_words: list[frozenset[str]] | None = None) -> np.ndarray:
        """The items whose names (``name_words``: the lemmas of the Russian names by default) share the most of
        ``other_lemmas`` (all of ``items`` when none shares one)."""
        name_words = self.name_lemmas if name_words is None else name_words
        if not other_lemmas or not name_words:
            return items
        shared = np.array([len(name_words[i] & other_lemmas) for i in items.tolist()])
        return items[shared == shared.max()] if shared.max() > 0 else items


def english_name_words(name_en: str) -> list[str]:
    """An item's English name as singular words ("lactose-free milk" → ["lactose", "free", "milk"])."""
    return [english_singular(w) for w in ENGLISH_WORD.findall(name_en.lower())]


def english_kinds(catalog: Catalog, categories: dict[tuple[str, ...], np.ndarray] | None = None
                  ) -> dict[tuple[str, ...], np.ndarray]:
    """Each phrase of each category's English name → the items of that category and of the categories under it;
    each item's English head noun (its name's last word: "coffee beans" → "bean", "lactose-free milk" → "milk")
    → the items it heads."""
    categories = english_category_kinds(catalog) if categories is None else categories  # (of the same catalog)
    kinds = {p: set(v.tolist()) for p, v in categories.items()}
    for item in catalog.items:
        words = english_name_words(item.name_en)
        if words and len(words[-1]) >= MIN_KIND_WORD:
            kinds.setdefault((words[-1],), set()).add(item.item_id)
        head_phrase = english_head_phrase(item.name_en)
        if head_phrase:
            kinds.setdefault(head_phrase, set()).add(item.item_id)
    return {p: np.array(sorted(v), dtype=np.int64) for p, v in kinds.items()}


def english_head_phrase(name_en: str) -> tuple[str, ...] | None:
    """An English item name's head noun with the word before it, a hyphenated word whole ("face cream" →
    ("face", "cream"), "lactose-free milk" → ("lactose", "free", "milk")): a request holding it wants that item, not
    every cream or milk; None for a one-word name or a filler before the head ("set of pots")."""
    tokens = name_en.lower().split()
    if len(tokens) < 2:
        return None
    before, head = english_name_words(tokens[-2]), english_name_words(tokens[-1])
    if not before or not head or before[-1] in ENGLISH_NAME_FILLERS or len(before[-1]) < MIN_KIND_WORD:
        return None
    return tuple(before + head)


# Words of English item names that describe rather than name ("red bell pepper", "fresh spinach", "gaming mouse"):
# never a kind by themselves — "white wine" must not name the white quinoa. With the suffixes in
# ``english_adjective`` (-ed, -ing, -ic, -al, -ive, -ous, -ful, -less) this covers the default catalog's names.
ENGLISH_DESCRIBING_WORDS = frozenset("""
red white black green yellow orange dark light fresh cold hot warm instant hand wet dry sports sport trail speed
energy whey soft hard big small mini large over ear remote cherry sour sterile vinyl wholegrain homemade ground
""".split())
ENGLISH_NOUNS_THAT_LOOK_DESCRIBING = frozenset({"building", "clothing", "filling"})


def english_adjective(word: str) -> bool:
    """Whether a word of an English item name describes the item rather than naming a kind (by a list and by its
    suffix: "sliced", "wireless", "programmable" no; "building" of "building set" is a noun)."""
    if word in ENGLISH_NOUNS_THAT_LOOK_DESCRIBING:
        return False
    return word in ENGLISH_DESCRIBING_WORDS or word.endswith(
        ("ed", "ing", "ic", "al", "ive", "ous", "ful", "less", "able"))


def english_modifier_kinds(catalog: Catalog, heads: frozenset[str],
                           categories: dict[tuple[str, ...], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each word of the items' English names that is no head noun or one-word category name (``heads``) → the
    items whose names have it ("chicken" → the chicken breast fillet and the chicken caesar salad); not the X of
    "X-free" / "non-X" (what the item has not: "sugar" must not name the sugar-free cola) nor a filler word. And the
    last word of a category's several-word phrase → that category's items ("snack" → the salty and the healthy
    snacks), unless it says only "goods" or the like."""
    kinds: dict[str, set[int]] = {}
    for item in catalog.items:
        name = re.sub(r"\b[a-z]+-free\b|\bnon-[a-z]+\b", " ", item.name_en.lower())
        for word in english_name_words(name):
            if len(word) >= MIN_KIND_WORD and word not in heads and word not in ENGLISH_NAME_FILLERS \
                    and not english_adjective(word):
                kinds.setdefault(word, set()).add(item.item_id)
    for phrase, items in (categories or {}).items():
        if len(phrase) > 1 and phrase[-1] not in heads and phrase[-1] not in ENGLISH_GENERIC_KINDS:
            kinds.setdefault(phrase[-1], set()).update(items.tolist())
    return {w: np.array(sorted(v), dtype=np.int64) for w, v in kinds.items()}


def english_category_kinds(catalog: Catalog, shelves: dict[str, list[int]] | None = None
                           ) -> dict[tuple[str, ...], np.ndarray]:
    """Each phrase of each category's English name → the items of that category and of the categories under it; a
    one-word name ("smartphones") of a category in ``shelves`` (named by one Russian kind word: category id → the
    items that word names there, ``shelf_items_of_kind``) names those: the phones, not the chargers and cases."""
    under = catalog.item_ids_under()
    shelves = shelves or {}
    kinds: dict[tuple[str, ...], set[int]] = {}
    for category_id, category in catalog.categories.items():
        phrases = english_phrases(category.name_en)
        for phrase in phrases:
            named = shelves.get(category_id) if len(phrases) == 1 and len(phrase) == 1 else None
            kinds.setdefault(phrase, set()).update(under.get(category_id, ()) if named is None else named)
    return {p: np.array(sorted(v), dtype=np.int64) for p, v in kinds.items() if v}


# A category name with one of these words says what the items are good for, an intent other shelves answer too
# («полезные перекусы»: fruit is one), not a kind: measured on the build's held-out requests.
INTENT_ADJECTIVES = frozenset({"полезный", "вкусный", "здоровый", "лёгкий", "легкий"})


def russian_category_phrases(catalog: Catalog, lemmatizer: Lemmatizer) -> dict[tuple[str, ...], np.ndarray]:
    """Each Russian category name of two content words or more (prepositions left out; a name listing two kinds with
    «и», «крупы и макароны», is its kinds' business) → the items of that category and the categories under it. A
    request names the category when it says every one of the name's words («спортивное питание», «товары для
    животных», «корма для кошек»: the treats too): one-word names («сладости») and names that say what the items
    are good for (``INTENT_ADJECTIVES``) stay intents (see the module doc)."""
    under = catalog.item_ids_under()
    phrases: dict[tuple[str, ...], set[int]] = {}
    for category_id, category in catalog.categories.items():
        if any(w.lower() in CONJUNCTIONS for w in words_of(category.name_ru)):
            continue
        words = [w for w in words_of(category.name_ru)
                 if w.lower() not in PURPOSES | NEGATIONS and len(w) >= MIN_KIND_WORD]  # (as a request's words are)
        phrase = tuple(lemmatizer.lemma(w) for w in words)
        if len(words) < 2 or set(phrase) & INTENT_ADJECTIVES:
            continue
        phrases.setdefault(phrase, set()).update(under.get(category_id, ()))
    return {p: np.array(sorted(v), dtype=np.int64) for p, v in phrases.items() if v}


def missing_goods(catalog: Catalog, vocabulary: frozenset[str], lemmatizer: Lemmatizer) -> frozenset[str]:
    """The lemmas of the everyday goods (``EVERYDAY_GOODS_RU``) no item name has and no category name starts like
    (the first three letters: «рыба» is in «рыбные продукты», «мясо» in «мясные»): what this catalog does not sell."""
    category_words = {lemmatizer.lemma(w) for c in catalog.categories.values() for w in words_of(c.name_ru)
                      if len(w) >= MIN_KIND_WORD}
    missing = set()
    for word in EVERYDAY_GOODS_RU:
        lemma = lemmatizer.lemma(word)
        if lemma not in vocabulary and not any(c[:3] == lemma[:3] for c in category_words):
            missing.add(lemma)
    return frozenset(missing)
