"""Which catalog items a request names by their kind: «молоко», «кофе в зёрнах», «корм для кошек».

A request that names a kind of product wants that kind; the rest of the request (budget, diet, service) narrows it.
Without this, a user who buys coffee every week and asks for «молоко» gets coffee beside the milk (the reranker's
history features outweigh a query it learned from intent-level requests only), and «кофе в зёрнах до 200 ₽», which
no coffee meets, gets milk and kefir instead of «nothing that cheap here».

The kinds are the catalog's own words: an item's **kind word** is the first word of its name, stemmed with the
Snowball Russian stemmer («Молоко безлактозное …» → «молок»), unless it is an adjective («Игровая мышь»,
«Зарядное устройство»: a modifier shared across kinds, not a kind). A request names a kind when one of its words
has that stem, outside these spans:

* after a negation («без молока и сахара», «кроме кефира») up to the end of the clause: what the item is not;
* after a purpose preposition («для любителя кофе», «к кофе», «за час») up to the clause's end or «и»: what the
  item is for, or when;

and not when it offers an alternative the catalog has no kind word for («геймпад или гарнитура»: the headsets are
named «Наушники …», so reading only «геймпад» would drop what the user also asked for). Of the kind's items, those
whose names share the most of the request's other words (purpose words too, negated ones not) are the ones named
(«кофе в зёрнах» → the beans, «корм для кошек» → the cat food, «молоко Простоквашино» → that brand's milk), when
any share one. A kind word that is also
a category's one-word name names that category too («игрушка»: the pet toys named «Игрушка …» and every toy under
«игрушки»).

Category names («сладости», "sweets") are deliberately not kinds: measured on the build's held-out requests they
mostly carry an intent («хочу сладкого» — sweet yoghurt is a fine answer) and restricting to the category cost
Recall@10 (0.853 → 0.773 with categories and kind words; see ``benchmarks/results/named_kinds.md``). English
requests name no kind (the catalog's names are Russian).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import snowballstemmer

from recllm.catalog.product_catalog import Catalog

WORD = re.compile(r"[a-zа-яё]+|[,.;:!?()]", re.IGNORECASE)
CLAUSE_BREAK = frozenset(",.;:!?()")
NEGATIONS = frozenset({"без", "не", "нет", "кроме", "вместо", "no", "not", "without", "except", "instead"})
PURPOSES = frozenset({"для", "к", "ко", "за", "через", "под", "после", "от", "for", "to", "within", "after", "than"})
CONJUNCTIONS = frozenset({"и", "and"})
ALTERNATIVES = frozenset({"или", "либо", "or"})
ADJECTIVE_ENDINGS = ("ый", "ий", "ой", "ая", "яя", "ое", "ее", "ые", "ие")
MIN_KIND_WORD = 3  # shorter first words are no kind


@dataclass(frozen=True)
class NamedKinds:
    """What a request names: the kind-word stems it matched and the items they name (sorted ids)."""

    terms: tuple[str, ...]
    item_ids: np.ndarray  # [N] int64


class RussianStemmer:
    """Snowball's Russian stemmer, «ё» read as «е»."""

    def __init__(self):
        self._stemmer = snowballstemmer.stemmer("russian")

    def stem(self, word: str) -> str:
        return self._stemmer.stemWord(word.lower().replace("ё", "е"))


WANTED, PURPOSE, NEGATED = "wanted", "purpose", "negated"


def request_words(text: str) -> list[tuple[str, str]]:
    """Each word of ``text``, lower-case, with its span: ``WANTED`` (may name a kind), ``PURPOSE`` (after «для»,
    «к», …: may only narrow the kind, «корм для кошек») or ``NEGATED`` (after «без», «не», …: neither). The
    alternatives' «или» / "or" are kept as words for ``named``'s check."""
    words, span = [], WANTED
    for token in WORD.findall(text.lower()):
        if token in CLAUSE_BREAK:
            span = WANTED
        elif token in CONJUNCTIONS and span == PURPOSE:
            span = WANTED
        elif token in NEGATIONS:
            span = NEGATED
        elif token in PURPOSES:
            span = span if span == NEGATED else PURPOSE
        else:
            words.append((token, span))
    return words


def kind_word(name: str) -> str | None:
    """The first word of an item's name when it can be a kind (long enough, not an adjective), else None."""
    first = next((w for w in WORD.findall(name.lower()) if w not in CLAUSE_BREAK), "")
    if len(first) < MIN_KIND_WORD or first.endswith(ADJECTIVE_ENDINGS):
        return None
    return first


class ProductTerms:
    """Kind-word stem → the items it names, built from one catalog."""

    def __init__(self, kind_items: dict[str, np.ndarray], name_stems: list[frozenset[str]],
                 stemmer: RussianStemmer | None = None):
        self.kind_items = kind_items
        self.name_stems = name_stems  # per item id, the stems of its name's words
        self.stemmer = stemmer or RussianStemmer()

    @classmethod
    def of(cls, catalog: Catalog) -> ProductTerms:
        stemmer = RussianStemmer()
        kinds: dict[str, set[int]] = {}
        for item in catalog.items:
            word = kind_word(item.name)
            if word is not None:
                kinds.setdefault(stemmer.stem(word), set()).add(item.item_id)
        for category_id, category in catalog.categories.items():  # a kind word that is a category's one-word name
            words = [w for w in WORD.findall(category.name_ru.lower()) if w not in CLAUSE_BREAK]
            if len(words) == 1 and stemmer.stem(words[0]) in kinds:
                kinds[stemmer.stem(words[0])] |= {i.item_id for i in catalog.items
                                                  if category_id in catalog.category_ids_above(i.category_id)}
        name_stems = [frozenset(stemmer.stem(w) for w in WORD.findall(item.name.lower())
                                if w not in CLAUSE_BREAK and len(w) >= MIN_KIND_WORD) for item in catalog.items]
        return cls({k: np.array(sorted(v), dtype=np.int64) for k, v in kinds.items()}, name_stems, stemmer)

    def named(self, text: str) -> NamedKinds | None:
        """The kinds ``text`` names and their items, or None when it names none (or offers an alternative the
        catalog has no kind word for)."""
        words = request_words(text)
        stems = [self.stemmer.stem(w) if w not in ALTERNATIVES else w for w, _ in words]
        for at, stem in enumerate(stems):
            if stem in ALTERNATIVES:
                beside = [stems[i] for i in (at - 1, at + 1) if 0 <= i < len(stems)]
                if any(s not in self.kind_items for s in beside):
                    return None
        usable = [(s, span) for s, (word, span) in zip(stems, words) if span != NEGATED and len(word) >= MIN_KIND_WORD]
        terms = tuple(dict.fromkeys(s for s, span in usable if span == WANTED and s in self.kind_items))
        if not terms:
            return None
        items = np.unique(np.concatenate([self.kind_items[s] for s in terms]))
        return NamedKinds(terms, self.most_specific(items, {s for s, _ in usable} - set(terms)))

    def most_specific(self, items: np.ndarray, other_stems: set[str]) -> np.ndarray:
        """The items whose names share the most of ``other_stems`` (all of ``items`` when none shares one)."""
        if not other_stems:
            return items
        shared = np.array([len(self.name_stems[i] & other_stems) for i in items.tolist()])
        return items[shared == shared.max()] if shared.max() > 0 else items
