"""The reply's own words while it is decoded: outside item names and quoted facts, only words its training replies
write.

The post-generation check (``reply_check``) fails a reply holding a word that none of the generator's training
replies use (``unknown_word``: «подобуйд», "Take a look at ere"): after the shape rules (``reply_shape``) the largest
reason left in ``benchmarks/results/reply_quality.md``. A byte-level BPE model spells such a word a token at a time,
so the decoder can refuse the token where the word goes astray. ``KnownWordRule`` keeps the word being written (its
letters so far, lower-case) and lets a token through only when every word the token finishes is a known word and
the word it leaves open is the start of one. Words are what ``reply_check.reply_words`` reads (runs of letters,
compared lower-case; a digit, a hyphen or an apostrophe ends one), so a reply the rule lets through all the way has
no ``unknown_word``.

A token splits into its lead (the letters that continue the open word), whether a non-letter follows (it finishes
that word), the words wholly inside it and its tail (the letters it leaves open). All but the lead's fit is the
token's own, so ``KnownWordTable`` works it out once per tokenizer, words and UTF-8 bytes left pending (a byte-level
token may end inside a letter: «д» is two bytes); a step's mask is looked up by (open word, pending bytes) and made
the first time that pair comes up. Tokens without text bytes (an item span's SID codes, ``<eos>``) finish the open
word too; inside a quoted fact the rule is off (its bytes are the fact's, ``FactSpanConstraint``). A step at which no
token the other rules allow also keeps this rule (``ReplyConstraint``) is decoded without it, and the check sees the
result.

One of the check's reasons is a word too, so a list act narrows its known words: its opening takes no word that says
another kind of request (``other_frame_words``: "For running:" for cleaning supplies, ``wrong_opening``). The same
narrowing for a nothing-left reply's offer (no word of another relaxation) was tried and dropped: the model, denied
the other offer's word, wrote a broken sentence instead ("Shall I look a little above your pet: …"), 8 failing
replies of 2,100 either way (``benchmarks/results/reply_quality.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import torch

from .fact_constraint import QuoteTokens

NON_LETTER_RE = re.compile(r"[^\w]|[\d_]")  # what ends a letter run as ``reply_check.reply_words`` reads one
MAX_CACHED_MASKS = 8192
# non-letters beyond ASCII a reply may write («», dashes, ₽): a token may leave one half-written, since its first bytes
# can still end as it (no other half-written character may be left: its end could be a letter of no known word)
NON_LETTERS = "«»“”„—–…₽№°×·"
UNKNOWN_WORD = "\x00"  # the open word after a token no table could read: the start of no known word


def split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """``data`` as its whole characters and the bytes of a last character still incomplete; None when the bytes
    are not UTF-8 (a continuation byte with no lead)."""
    cut = len(data)
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for its lead
            continue
        if byte >= 0xC0 and (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) > back:
            cut = len(data) - back
        break
    try:
        return data[:cut].decode("utf-8"), data[cut:]
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class TokenWords:
    """What one token does to the words, after the pending bytes it completes."""

    lead: str       # lower-case letters continuing the open word
    breaks: bool    # a non-letter follows the lead: the open word ends inside this token
    tail: str       # lower-case letters left open at the token's end (breaks only; else the open word goes on)
    pending: bytes  # the bytes of a character the token leaves incomplete


@dataclass(frozen=True)
class PendingTable:
    """Every token read after one run of pending bytes: its ``TokenWords`` (None: refused whatever the open word),
    and the tokens grouped by what decides them per step."""

    words: tuple[TokenWords | None, ...]               # [V]
    groups: dict[tuple[str, bool, bytes], list[int]]   # (lead, breaks, pending bytes left) -> token ids


class KnownWordTable:
    """A tokenizer's tokens against a set of known words, shared by every request (``known_word_table``)."""

    def __init__(self, quotes: QuoteTokens, known_words: Iterable[str]):
        self.quotes = quotes
        self.words = frozenset(w.lower() for w in known_words if w) | {""}  # "" : no open word is fine
        self.prefixes = frozenset(w[:i] for w in self.words for i in range(len(w) + 1))
        self.proper_prefixes = frozenset(w[:i] for w in self.words for i in range(len(w)))
        # (a word's start, the first bytes of its next letter, either case): a token may leave that letter
        # half-written after that start (« в» + the first byte of «с»: «всё» has its «ё» under another lead byte)
        self.letter_starts = frozenset((w[:i], c.encode("utf-8")[:k]) for w in self.words for i in range(len(w))
                                       for c in {w[i], w[i].upper()} for k in range(1, len(c.encode("utf-8"))))
        self.non_letter_starts = frozenset(c.encode("utf-8")[:k] for c in NON_LETTERS
                                           for k in range(1, len(c.encode("utf-8"))))
        self._tables: dict[bytes, PendingTable] = {}
        self._masks: dict[tuple[str, bytes], torch.Tensor] = {}

    def fits(self, word: str, breaks: bool, pending: bytes = b"") -> bool:
        """May the open word become ``word`` with a token: a known word when the token finishes it, the start of
        one when the token goes on with it, with ``pending`` left: the start of a word whose next letter begins with
        those bytes, or a known word before a non-letter that does."""
        if breaks:
            return word in self.words
        if not pending:
            return word in self.prefixes
        return (word, pending) in self.letter_starts or (pending in self.non_letter_starts and word in self.words)

    def token_words(self, data: bytes) -> TokenWords | None:
        """``data`` (pending bytes + a token's bytes) as ``TokenWords``; None when it can never stand (not UTF-8,
        an inner word or a tail no known word allows)."""
        split = split_utf8(data)
        if split is None:
            return None
        text, pending = split
        runs = NON_LETTER_RE.split(text.lower())  # letter runs, by the non-letters between them
        if len(runs) == 1:
            return TokenWords(runs[0], False, "", pending)
        inner, tail = runs[1:-1], runs[-1]
        if any(w not in self.words for w in inner) or not self.fits(tail, False, pending):
            return None
        return TokenWords(runs[0], True, tail, pending)

    def table(self, pending: bytes) -> PendingTable:
        if pending not in self._tables:
            words, groups = [], {}
            for token, data in enumerate(self.quotes.bytes):
                info = self.token_words(pending + data) if data else None
                words.append(info)
                if info is not None:
                    groups.setdefault((info.lead, info.breaks, b"" if info.breaks else info.pending), []).append(token)
            self._tables[pending] = PendingTable(tuple(words), groups)
        return self._tables[pending]

    def mask(self, word: str, pending: bytes) -> torch.Tensor:
        """[V] bool: the tokens allowed with ``word`` open and ``pending`` bytes before them (cached)."""
        key = (word, pending)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.zeros(self.quotes.vocab_size, dtype=torch.bool)  # [V]
            allowed = [token for (lead, breaks, left), tokens in self.table(pending).groups.items()
                       if self.fits(word + lead, breaks, left) for token in tokens]
            mask[torch.tensor(allowed, dtype=torch.long)] = True
            if not pending and word in self.words:  # an item span or <eos> finishes a known word
                mask |= self.quotes.textless  # [V] SID codes, control tokens
            if len(self._masks) >= MAX_CACHED_MASKS:
                self._masks.clear()
            self._masks[key] = mask
        return mask


@lru_cache(maxsize=64)
def known_word_table(quotes: QuoteTokens, known_words: frozenset[str]) -> KnownWordTable:
    return KnownWordTable(quotes, known_words)


@lru_cache(maxsize=256)
def other_frame_words(known_words: frozenset[str], frames: frozenset[str]) -> frozenset[str]:
    """The known words that alone say a reply frame other than ``frames`` («бега», "running", «завтраку»): before a
    list's first item they open a reply to another kind of request (``reply_check.opens_off_frame``)."""
    from .reply_frame import reply_frame  # noqa: PLC0415

    return frozenset(w for w in known_words if reply_frame(w, "recommend") not in frames | {""})


class KnownWordRule:
    """One reply's open word; ``allowed`` before a step, ``advance`` with each token (``in_quote``: the token was
    read inside a quoted fact, where the rule is off). ``opening``: the table in force until the reply names its
    first item (fewer words: none of another frame's); None: ``table`` throughout."""

    def __init__(self, table: KnownWordTable, opening: KnownWordTable | None = None):
        self.table, self.opening = table, opening
        self.word = ""      # lower-case letters of the word being written
        self.pending = b""  # bytes of a character begun and not finished

    def _table(self, before_item: bool) -> KnownWordTable:
        return self.opening if before_item and self.opening is not None else self.table

    def allowed(self, before_item: bool = False) -> torch.Tensor:
        return self._table(before_item).mask(self.word, self.pending)  # [V], shared: never written

    def advance(self, token: int, in_quote: bool = False, before_item: bool = False) -> None:
        table = self._table(before_item)
        data = table.quotes.bytes[token] if token < len(table.quotes.bytes) else b""
        if in_quote or not data:  # a quote, an item span or a control token: no word runs across it
            self.word, self.pending = "", b""
            return
        info = table.table(self.pending).words[token] or self.table.table(self.pending).words[token]
        if info is None:  # decoded without the rule (no allowed token kept it): the word is no known one, and
            self.word, self.pending = UNKNOWN_WORD, b""  # no letter goes on as if it began a new word
            return
        self.word = info.tail if info.breaks else self.word + info.lead
        self.pending = info.pending

    def copy(self) -> "KnownWordRule":
        other = KnownWordRule(self.table, self.opening)
        other.word, other.pending = self.word, self.pending
        return other


__all__ = ["KnownWordRule", "KnownWordTable", "known_word_table", "other_frame_words"]
