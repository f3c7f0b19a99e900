"""Typos in a request, corrected to the words of the catalog before anything reads the request.

Tried as a user: «йогрут» was refused as small talk, «купить плнашет» as something the assistant does not help with,
"any cold mediicine?" as off-topic: every rule and lexicon downstream (named kinds, the health rule, moderation's
rule cues) matches words, and one wrong letter hides the word. The classifiers' character n-grams tolerate typos,
the word rules do not.

A word is corrected only when nothing knows it: not the catalog (item and category names, Russian and English),
not pymorphy3's Russian dictionary (so names, «маша», and every real Russian word stay as written), not the English
frequency dictionary that ships with ``symspellpy`` (82,765 words). Then it becomes the nearest word of the catalog
(or, for a Latin word, of the English dictionary's most frequent words) within one edit (a transposition is one),
two from ``long_word`` letters, the catalog's words first at the same distance, then the more frequent. Words
shorter than ``min_length``, with digits, written in capitals mid-word or capitalised after the text's first word
(a brand, a name) are left alone. Lookups are SymSpell's (``symspellpy``: precomputed deletes, microseconds per
word).
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from dataclasses import dataclass
from importlib.resources import files

from symspellpy import SymSpell, Verbosity

from recllm.catalog.product_catalog import Catalog
from recllm.config.field_checks import require_above

WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")  # «что-нибудь» is one word: never split into «нибудь»
TOKEN = re.compile(r"\S+")
NOT_WORDS = re.compile(r"[@/\\_\d]")  # an e-mail, a link, an identifier, a quantity
CYRILLIC = re.compile(r"[а-яё]+")
LATIN = re.compile(r"[a-z]+")
ENGLISH_DICTIONARY = "frequency_dictionary_en_82_765.txt"  # in the symspellpy wheel: "word count" per line
# the services' names as people write them, in the cases a request puts them (known, and what a typo of one becomes)
SERVICE_WORDS = tuple("""самокат самоката самокате самокатом мегамаркет мегамаркета мегамаркете мегамаркетом купер
купера купере купером samokat megamarket kuper""".split())
PREFIX_LENGTH = 5  # SymSpell indexes the deletes of a word's first 5 letters: ~2 MB for 20k words (7: ~30 MB)


@dataclass(frozen=True)
class SpellingConfig:
    """Which words are corrected and how far."""

    min_length: int = 5             # shorter words are never corrected («сыр», «чай», names like «Маша»)
    long_word: int = 8              # from this length two edits are allowed, below it one
    english_candidates: int = 20000  # the English dictionary's most frequent words a Latin typo may become

    def __post_init__(self) -> None:
        require_above(self, "min_length", 2)
        require_above(self, "long_word", self.min_length - 1)
        require_above(self, "english_candidates", -1)


def catalog_words(catalog: Catalog) -> Counter:
    """Every word of the catalog's item and category names (Russian and English), lower-case, «ё» as «е», with
    how many names use it."""
    counts: Counter = Counter()
    texts = [text for item in catalog.items for text in (item.name, item.name_en)]
    texts += [text for category in catalog.categories.values() for text in (category.name_ru, category.name_en)]
    for text in texts:
        counts.update(normalized(w) for w in WORD.findall(text or ""))
    return counts


def normalized(word: str) -> str:
    return word.lower().replace("ё", "е")


def english_dictionary() -> list[tuple[str, int]]:
    """(word, count) of symspellpy's English frequency dictionary, the most frequent first."""
    rows = []
    for line in (files("symspellpy") / ENGLISH_DICTIONARY).read_text(encoding="utf-8").splitlines():
        word, _, count = line.partition(" ")
        if word and count.isdigit():
            rows.append((word, int(count)))
    return sorted(rows, key=lambda row: -row[1])


# A SymSpell lookup computes edit distances in scratch lists kept on its comparer: two threads looking up at once
# (the chat serves several turns on threads of one process) overwrite each other's rows and get wrong distances,
# which the corrector's cache then keeps. The English SymSpell is shared by every corrector, hence one lock.
_LOOKUP_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def english_symspell(candidates: int) -> tuple[SymSpell, frozenset[str]]:
    """SymSpell over the English dictionary's ``candidates`` most frequent words, and the whole dictionary as a set;
    built once per process (about half a second, ~30 MB) and shared by every corrector."""
    english = english_dictionary()
    symspell = SymSpell(max_dictionary_edit_distance=2, prefix_length=PREFIX_LENGTH)
    for word, count in english[:candidates]:
        symspell.create_dictionary_entry(word, count)
    return symspell, frozenset(word for word, _ in english)


class SpellingCorrector:
    """``correct(text)`` → the text with its unknown words replaced by the catalog's nearest ones."""

    def __init__(self, domain_words: Counter, russian_is_known, config: SpellingConfig | None = None):
        self.config = config or SpellingConfig()
        domain_words = domain_words + Counter(SERVICE_WORDS)  # «в мегамаркте» → «в мегамаркете»
        self.domain = frozenset(w for w in domain_words if len(w) >= 2)
        self.english_symspell, self.english = english_symspell(self.config.english_candidates)
        self.russian_is_known = russian_is_known  # word -> bool (pymorphy3's dictionary)
        self.domain_symspell = SymSpell(max_dictionary_edit_distance=2, prefix_length=PREFIX_LENGTH)
        for word in self.domain:
            self.domain_symspell.create_dictionary_entry(word, domain_words[word])
        self.corrected_word = functools.lru_cache(maxsize=65536)(self._corrected_word)

    @classmethod
    def of(cls, catalog: Catalog, russian_is_known, config: SpellingConfig | None = None) -> SpellingCorrector:
        return cls(catalog_words(catalog), russian_is_known, config)

    def knows(self, word: str) -> bool:
        """``word`` (lower-case) is the catalog's, a Russian dictionary word, or an English one."""
        if word in self.domain:
            return True
        if CYRILLIC.fullmatch(word):
            return bool(self.russian_is_known(word))
        return word in self.english or not LATIN.fullmatch(word)  # another script: not ours to correct

    def _corrected_word(self, word: str) -> str | None:
        """The correction of a lower-case word, or None when it stays (a hyphenated one always does)."""
        if len(word) < self.config.min_length or "-" in word or self.knows(word):
            return None
        distance = 2 if len(word) >= self.config.long_word else 1
        with _LOOKUP_LOCK:
            suggestions = [(rank, s) for rank, symspell in enumerate((self.domain_symspell, self.english_symspell))
                           for s in symspell.lookup(word, Verbosity.TOP, max_edit_distance=distance)]
        found = [(s.distance, rank, -s.count, s.term) for rank, s in suggestions
                 if bool(CYRILLIC.fullmatch(s.term)) == bool(CYRILLIC.fullmatch(word))]
        return min(found)[3] if found else None  # nearest; the catalog's first, then the more frequent

    def corrections(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, corrected) for each word of ``text`` that is corrected, in order. Words of a token that
        holds «@», «/», «_» or a digit (an e-mail, a link, an id, «2шт») are left as written."""
        found, index = [], 0
        for token in TOKEN.finditer(text):
            if NOT_WORDS.search(token.group(0)):
                index += 1
                continue
            for match in WORD.finditer(token.group(0)):
                word, first, index = match.group(0), index == 0, index + 1
                if any(c.isupper() for c in word[1:]) or (not first and word[0].isupper()):
                    continue  # «iPhone», «ЖКХ»; a capitalised word after the first: a brand or a name
                fixed = self.corrected_word(normalized(word))
                if fixed is not None:
                    start = token.start() + match.start()
                    found.append((start, start + len(word), fixed.capitalize() if word[0].isupper() else fixed))
        return found

    def correct(self, text: str, max_chars: int | None = None) -> str:
        """``text`` with its corrected words replaced, everything else as written; as written when the corrected
        text would be longer than ``max_chars``."""
        corrected = text
        for start, end, fixed in reversed(self.corrections(text)):
            corrected = corrected[:start] + fixed + corrected[end:]
        return text if max_chars is not None and len(corrected) > max_chars else corrected
