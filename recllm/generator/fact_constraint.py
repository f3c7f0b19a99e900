"""Quoted profile facts under a prefix constraint: a reply can only quote a fact its prompt holds, word for word.

Replies cite the user's profile in quotes: «каждую неделю берёте овощи на Купере» / "bought coffee on Samokat". The
post-generation check (``reply_check``) counted a quote that is in no prompt fact as a broken reply (``uncited_fact``,
most of the broken replies of the default build); ``FactSpanConstraint`` makes one impossible, the way
``ItemSpanConstraint`` does for items.

The constraint works on the reply's **bytes**, because the tokenizer is byte-level BPE: a small vocabulary splits
«, » and Cyrillic letters into single-byte tokens, so no token-level rule can see them. Outside a quote nothing is
restricted, except that a quote may not open when the prompt has no fact or the shortest one no longer fits in the
token budget, a closing quote never stands alone, and a quote opens only at the end of a token (never `".` outside a
quote: the ASCII quote both opens and closes). Once the text ends with an opening quote, a token is allowed only if its bytes continue
``fact + closing quote`` for some prompt fact (or, with the closing quote complete, go on with punctuation only:
the ``».`` token); when the closing quote is complete the quote is over.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import torch

from .tokenizer import ReplyTokenizer

QUOTE_PAIRS = (("«", "»"), ("“", "”"), ('"', '"'))
_PAIRS = tuple((o.encode("utf-8"), c.encode("utf-8")) for o, c in QUOTE_PAIRS)
OPENINGS = tuple(o for o, _ in _PAIRS)
CLOSING_ONLY = tuple(c for _, c in _PAIRS if c not in OPENINGS)
LABEL_TOKENS = 2  # a label's colon and the space after it: what a list's first span must still fit after


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2's printable stand-ins for the 256 bytes), inverted: char → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = dict(zip(printable, printable)), 0
    for byte in range(256):
        if byte not in chars:
            chars[byte], extra = 256 + extra, extra + 1
    return {chr(code): byte for byte, code in chars.items()}


def _is_plain_punctuation(data: bytes) -> bool:
    text = data.decode("utf-8", errors="ignore")
    return bool(text) and not any(ch.isalnum() for ch in text)


class QuoteTokens:
    """Byte tables of one tokenizer: each BPE token's bytes, tokens by their bytes, the punctuation tokens."""

    def __init__(self, tokenizer: ReplyTokenizer, model_vocab_size: int):
        decoder = _byte_decoder()
        special = set(tokenizer.control_ids) | set(tokenizer.sid_token_ids)
        self.vocab_size = model_vocab_size
        self.bytes: list[bytes] = [b""] * model_vocab_size
        self.by_bytes: dict[bytes, list[int]] = {}
        for token in range(min(tokenizer.vocab_size, model_vocab_size)):
            piece = tokenizer.token_string(token)
            if token in special or piece is None or any(ch not in decoder for ch in piece):
                continue
            data = bytes(decoder[ch] for ch in piece)
            self.bytes[token] = data
            self.by_bytes.setdefault(data, []).append(token)
        self.punctuation = [t for t, data in enumerate(self.bytes) if data and _is_plain_punctuation(data)]
        # tokens holding an opening quote with more bytes after it in the same token (the byte-level BPE's `".`):
        # outside a quote they would open one and quote those bytes unchecked — an ASCII `"` is also the closing
        # quote, so `".` after plain text came out as a stray closing quote («… from time".»)
        self.inner_opening = torch.tensor(
            [any(o in data and not data.endswith(o) for o in OPENINGS) for data in self.bytes], dtype=torch.bool)
        # tokens whose bytes begin with whitespace: never right after a token that ended with it (``SpacingRule``)
        self.space_led = torch.tensor([data[:1].isspace() for data in self.bytes], dtype=torch.bool)
        self.double_spaced = torch.tensor([b"  " in data for data in self.bytes], dtype=torch.bool)
        # script and sentence tables (``reply_shape``): a token holding a lead byte of a Cyrillic letter (UTF-8
        # 0xD0-0xD3: U+0400-U+04FF), one holding a Latin letter, one ending a sentence
        self.cyrillic = torch.tensor([any(0xD0 <= b <= 0xD3 for b in data) for data in self.bytes], dtype=torch.bool)
        self.latin = torch.tensor([any(chr(b).isascii() and chr(b).isalpha() for b in data) for data in self.bytes],
                                  dtype=torch.bool)
        self.sentence_end = torch.tensor([any(c in data for c in b".!?") for data in self.bytes], dtype=torch.bool)
        # format tables (``reply_shape``'s corpus rules): tokens without text bytes (SID codes, control tokens), ones
        # holding a digit, ones of whitespace only, ones that (after whitespace) open a quote whole (its first byte
        # alone could go on as another character: « is C2 AB, U+009E C2 9E), ones that end a label (a colon, then
        # whitespace at most)
        self.textless = torch.tensor([not data for data in self.bytes], dtype=torch.bool)
        self.item_codes = torch.zeros(model_vocab_size, dtype=torch.bool)  # [V] the SID code tokens of item spans
        self.item_codes[[t for t in tokenizer.sid_token_ids if t < model_vocab_size]] = True
        self.digit = torch.tensor([any(48 <= b <= 57 for b in data) for data in self.bytes], dtype=torch.bool)
        self.ends_label = torch.tensor([data.rstrip().endswith(b":") for data in self.bytes], dtype=torch.bool)
        # a comma with more than whitespace after it in the same token («, Н»): after an item, a list's next item
        # could not follow it
        self.comma_led = torch.tensor([data.lstrip().startswith(b",") for data in self.bytes], dtype=torch.bool)
        self.comma_then_text = torch.tensor([data.lstrip().startswith(b",") and bool(data.lstrip()[1:].strip())
                                             for data in self.bytes], dtype=torch.bool)
        self.blank = torch.tensor([bool(data) and data.isspace() for data in self.bytes], dtype=torch.bool)
        self.quote_led = torch.tensor([data.lstrip().startswith(OPENINGS) for data in self.bytes], dtype=torch.bool)
        self._containing: dict[bytes, torch.Tensor] = {}
        self._starting: dict[bytes, list[int]] = {}

    def _tokens_containing(self, quote: bytes) -> torch.Tensor:
        if quote not in self._containing:
            self._containing[quote] = torch.tensor([quote in data for data in self.bytes], dtype=torch.bool)
        return self._containing[quote]

    def _tokens_ending(self, head: bytes) -> list[int]:
        key = b"end:" + head
        if key not in self._starting:
            self._starting[key] = [t for t, data in enumerate(self.bytes) if data.endswith(head)]
        return self._starting[key]

    def _tokens_starting(self, head: bytes) -> list[int]:
        if head not in self._starting:
            self._starting[head] = [t for t, data in enumerate(self.bytes) if data.startswith(head)]
        return self._starting[head]

    def mark_continuing(self, mask: torch.Tensor, rest: bytes) -> None:
        """Set ``mask`` [V] on every token whose bytes are a (non-empty) prefix of ``rest``."""
        for cut in range(1, len(rest) + 1):
            mask[self.by_bytes.get(rest[:cut], [])] = True

    def completing(self, tail: bytes, quotes: Sequence[bytes], allowed: Sequence[bytes] = ()) -> torch.Tensor:
        """[V] bool: the tokens after which the text (ending in ``tail``) holds one of ``quotes`` anew (a token
        that contains one, or one that finishes a quote whose first bytes end ``tail``), or ends with a quote's
        first bytes (a multi-byte quote begun and then refused would leave a broken character behind) unless an
        ``allowed`` quote begins with them too (« and » share their first byte)."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)  # [V]
        open_heads = {quote[:cut] for quote in allowed for cut in range(1, len(quote))}
        for quote in quotes:
            mask |= self._tokens_containing(quote)
            for cut in range(1, len(quote)):
                if quote[:cut] not in open_heads:
                    mask[self._tokens_ending(quote[:cut])] = True
                if tail.endswith(quote[:cut]):
                    mask[self._tokens_starting(quote[cut:])] = True
        return mask


def spelled_offsets(tokenizer: ReplyTokenizer, quotes: QuoteTokens, target: bytes, at: int, text: str
                    ) -> dict[int, int]:
    """``text`` (``target``'s bytes from ``at`` on, or the part of them to spell) as the tokenizer spells it: byte
    offset in ``target`` -> the token starting there (up to where a token would leave ``target``)."""
    offsets, offset = {}, at
    for token in (tokenizer.encode(text) if text else []):
        data = quotes.bytes[token]
        if not data or not target.startswith(data, offset):
            break
        offsets[offset], offset = token, offset + len(data)
    return offsets


@lru_cache(maxsize=8)
def quote_tokens(tokenizer: ReplyTokenizer, model_vocab_size: int) -> QuoteTokens:
    return QuoteTokens(tokenizer, model_vocab_size)


class FactSpanConstraint:
    """One request's quoting state; ``advance`` with each generated token, ``allowed`` before each step.

    Once the bytes quoted so far fit one fact only, the rest of its words is spelled as the tokenizer spells them (the
    spelling of the training replies): one token allowed per step, which ``DecodeLoop``'s jump-forward then writes
    without a forward of its own; the closing quote is left to the model (alone or with its full stop)."""

    def __init__(self, tokenizer: ReplyTokenizer, facts: Sequence[str], quotes: QuoteTokens, max_new_tokens: int):
        self.tokenizer = tokenizer
        self.quotes, self.max_new_tokens = quotes, max_new_tokens
        texts = [unicodedata.normalize("NFC", f.strip()) for f in dict.fromkeys(facts) if f.strip()]
        self.facts = [t.encode("utf-8") for t in texts]
        self.lengths = [len(tokenizer.encode(t)) for t in texts]   # tokens each fact takes, as a reply spells it
        self.shortest = min(self.lengths, default=0)
        self.quotable: list[bytes] = []       # inside a quote: the facts that fit the budget left when it opened
        self.tail = b""                       # the last bytes of the text outside quotes
        self.closing: bytes | None = None     # inside a quote: the quote that closes it; None outside
        self.quoted = b""                     # inside a quote: the bytes quoted so far
        self._spelling: tuple[bytes, dict[int, int]] | None = None  # (fact + closing, byte offset -> its token)
        self.steps = 0

    @property
    def in_quote(self) -> bool:
        return self.closing is not None

    @property
    def can_open(self) -> bool:
        """A quote may open now: outside one, with a fact to quote and room to quote it whole."""
        return self.can_open_after(0)

    def can_open_after(self, tokens: int) -> bool:
        """``can_open`` after ``tokens`` more text tokens (a label's colon and space before its quote)."""
        return (self.closing is None and bool(self.facts)
                and self.max_new_tokens - self.steps - tokens >= self.shortest + 2)

    def _targets(self) -> list[bytes]:
        return [fact + self.closing for fact in self.quotable if (fact + self.closing).startswith(self.quoted)]

    def allowed(self) -> torch.Tensor:
        """[V] bool of the tokens allowed at this step (all, outside a quote that may still open)."""
        if self.closing is None:
            # a stray closing quote never; an opening one only with a fact to quote and room to quote it whole
            if self.can_open:  # a quote opens at the end of a token; its content then comes under the quote's rule
                return ~(self.quotes.completing(self.tail, CLOSING_ONLY, allowed=OPENINGS)
                         | self.quotes.inner_opening)  # [V]
            return ~self.quotes.completing(self.tail, CLOSING_ONLY + OPENINGS)  # [V]
        mask = torch.zeros(self.quotes.vocab_size, dtype=torch.bool)  # [V]
        spelled = self._spelled_next()
        if spelled is not None:
            mask[spelled] = True
            return mask
        for target in self._targets():
            rest = target[len(self.quoted):]
            self.quotes.mark_continuing(mask, rest)
            if len(self.quoted) >= len(target) - len(self.closing):   # only (part of) the closing quote is left
                for token in self.quotes.punctuation:
                    data = self.quotes.bytes[token]
                    if data.startswith(rest) and _is_plain_punctuation(data[len(rest):] or b"."):
                        mask[token] = True
        return mask

    def _spelled_next(self) -> int | None:
        """Inside a quote whose bytes so far fit one fact: the next token of the rest of that fact as the tokenizer
        spells it (None: several facts fit, only the closing quote is left, or the quote stopped inside a
        character)."""
        targets = self._targets()
        if len(targets) != 1:
            return None
        rest = targets[0][len(self.quoted):len(targets[0]) - len(self.closing)]
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError:
            return None
        target, at = targets[0], len(self.quoted)
        if self._spelling is None or self._spelling[0] != target or at not in self._spelling[1]:
            # spelled once per fact and where it became the only one
            self._spelling = (target, spelled_offsets(self.tokenizer, self.quotes, target, at, text))
        return self._spelling[1].get(at)

    def advance(self, token: int) -> None:
        self.steps += 1
        data = self.quotes.bytes[token] if token < len(self.quotes.bytes) else b""
        if self.closing is None:
            if not data:                       # an item span or a control token: no quote runs across it
                self.tail = b""
                return
            self.tail = (self.tail + data)[-4:]
            for opening, closing in _PAIRS:
                if self.tail.endswith(opening):
                    left = self.max_new_tokens - self.steps
                    self.closing, self.quoted, self.tail = closing, b"", b""
                    self.quotable = [f for f, n in zip(self.facts, self.lengths) if n + 1 <= left] or self.facts
                    return
            return
        self.quoted += data
        if any(self.quoted.startswith(fact + self.closing) for fact in self.quotable):
            self.closing, self.quoted, self.tail = None, b"", data[-4:]

    def copy(self) -> "FactSpanConstraint":
        other = object.__new__(FactSpanConstraint)
        other.__dict__.update(self.__dict__)
        return other


class SpacingRule:
    """No whitespace right after whitespace. The reply frames put a lone space token before an item span («и » +
    item); a byte-level BPE model that then leaves the list takes a word with its own leading space, and the reply
    reads «…, Кола без сахара Чудо 1,5 л и  макароны в Самокате Купере я подберу точнее.» (seen live, greedy, so it
    could not be regenerated). After a token ending in whitespace only tokens that do not begin with it may follow:
    the item span the frame was opening, or a word that really continues the text; a token holding two spaces
    itself never."""

    def __init__(self, quotes: QuoteTokens):
        self.quotes = quotes
        self.after_space = False

    def allowed(self) -> torch.Tensor:
        refused = self.quotes.double_spaced | self.quotes.space_led if self.after_space else self.quotes.double_spaced
        return ~refused  # [V]

    def advance(self, token: int) -> None:
        data = self.quotes.bytes[token] if token < len(self.quotes.bytes) else b""
        self.after_space = data[-1:].isspace()  # an item span or a control token ends in no whitespace

    def copy(self) -> "SpacingRule":
        other = SpacingRule(self.quotes)
        other.after_space = self.after_space
        return other


class DecodeStrain:
    """How hard the corpus-format rules pushed a reply away from what the model wrote: at every decoded step, the
    share of the model's probability (softmax of its logits over the tokens the other rules allow) that the corpus
    rules refused. A measurement for benchmarks (``reply_quality --compare-corpus-rules``), not a check: measured on
    the default build it does not tell a reply the rules steered into a word salad that passes the check («For the
    picks: …», max share 0.56) from one they mended («Другие варианты: <item>.», 0.92), and it flags replies whose
    text is the same as without the rules (a word spelled in other tokens). ``pushed``: some step refused more than
    ``limit`` (a majority by default); ``overrides``: the share refused at each step whose most likely token was
    refused."""

    def __init__(self, limit: float = 0.5):
        if not 0 < limit <= 1:
            raise ValueError(f"DecodeStrain.limit must be in (0, 1], got {limit!r}")
        self.limit = limit
        self.most = 0.0      # the largest share refused at one step
        self.steps = 0       # steps measured
        self.pushed_steps = 0  # steps that refused more than ``limit``
        self.overrides: list[float] = []  # the share refused at each step whose most likely token was refused

    @property
    def pushed(self) -> bool:
        return self.pushed_steps > 0

    def record(self, logits: torch.Tensor, other_rules: torch.Tensor, allowed: torch.Tensor) -> float:
        """Measure one step: logits [V], other_rules [V] bool (what every rule but the corpus ones allows), allowed
        [V] bool (what the step allows, a subset); returns the share refused."""
        if not bool(other_rules.any()):
            return 0.0
        probs = logits.float().masked_fill(~other_rules, float("-inf")).softmax(-1)  # [V]
        refused = max(0.0, 1.0 - float(probs[allowed].sum()))
        if not bool(allowed[int(probs.argmax())]):
            self.overrides.append(round(refused, 3))
        self.steps += 1
        self.most = max(self.most, refused)
        self.pushed_steps += refused > self.limit
        return refused

    def copy(self) -> "DecodeStrain":
        other = DecodeStrain(self.limit)
        other.most, other.steps, other.pushed_steps = self.most, self.steps, self.pushed_steps
        other.overrides = list(self.overrides)
        return other


class ReplyConstraint:
    """Items, quoted facts, spacing and the reply's shape together: a token must pass every rule; ``advance`` returns
    the item id a token completes (``ItemSpanConstraint.advance``). ``facts`` None: the prompt offers none to quote.
    ``shape``: the rules that read the others' state (``reply_shape.ReplyShape``; None: none). ``words``: the reply's
    own words are known ones (``known_words.KnownWordRule``; None: any word). The shape's label rule (after a colon an
    item or a quote comes next) and the words are off inside a quoted fact, and each is dropped for a step at which
    it would leave no token the other rules allow.

    ``strain`` (with the corpus-format rules: ``shape`` built with ``corpus_format`` or ``words``): measures how much
    of the model's probability those rules refuse (``DecodeStrain``, fed by the decoder's logits processor through
    ``measure``); ``plain_shape`` is the same shape without the corpus format, what the other rules allow is read
    through it. A step whose other rules leave a choice is never jumped over, so every choice the rules narrow is
    measured."""

    def __init__(self, items, facts: FactSpanConstraint | None, spacing: SpacingRule, shape=None, words=None,
                 strain: DecodeStrain | None = None, plain_shape=None, offer=None, opening=None, listing=None):
        self.items, self.facts, self.spacing, self.shape, self.words = items, facts, spacing, shape, words
        self.strain, self.plain_shape = strain, plain_shape
        # the spans the prompt decides (``corpus_spans``): a nothing-left reply's offer, a list reply's opening and
        # the separators between its items
        self.offer, self.opening, self.listing = offer, opening, listing
        self.after_label = False  # the text outside quotes ends with a colon (and whitespace at most)
        self.since_item: bytes | None = None  # the text since the last item named (its last bytes); None: none yet
        self._allowed: torch.Tensor | None = None  # this step's mask, once made (``forced`` and the step share it)
        self._other_rules: torch.Tensor | None = None  # [V] with ``strain``: what the non-corpus rules allow

    @property
    def in_quote(self) -> bool:
        return self.facts is not None and self.facts.in_quote

    def allowed(self) -> torch.Tensor:
        """[V] bool: the tokens every rule lets through at this step (made once per step)."""
        if self._allowed is None:
            self._allowed = self._mask()
        return self._allowed

    def forced(self) -> int | None:
        """The one token allowed at this step, if only one is (``DecodeLoop``'s jump-forward); with ``strain``, only
        when the other rules leave that one alone too (a choice the corpus rules made is measured, not jumped)."""
        allowed = self.allowed()
        nonzero = allowed.nonzero()  # [n, 1]
        if len(nonzero) != 1:
            return None
        if self._other_rules is not None and int(self._other_rules.sum()) != 1:
            return None
        return int(nonzero[0, 0])

    def measure(self, logits: torch.Tensor) -> None:
        """Feed ``strain`` this step's logits [V] (before any mask); nothing without a strain meter."""
        if self.strain is not None:
            allowed = self.allowed()
            self.strain.record(logits, allowed if self._other_rules is None else self._other_rules, allowed)

    @property
    def pushed(self) -> bool:
        """Some step's corpus rules refused more than ``DecodeStrain.limit`` of the model's probability."""
        return self.strain is not None and self.strain.pushed

    def _mask(self) -> torch.Tensor:
        mask = self.items.allowed() & self.spacing.allowed()  # [V]
        if self.facts is not None:
            mask &= self.facts.allowed()
        spans = [None if span is None else span.allowed() for span in (self.offer, self.opening)]
        if self.listing is not None and not self.in_quote:
            spans.append(self.listing.allowed(self.items.can_open_span_after(LABEL_TOKENS)))
        for spanned in spans:  # [V] or None each
            if spanned is not None and bool((spanned & mask).any()):  # a training reply's own words: no text rule
                mask = spanned & mask
                if self.strain is not None:
                    self._other_rules = mask
                return mask
        if self.strain is not None:
            plain = mask if self.plain_shape is None else mask & self.plain_shape.allowed(self.items, self.facts)
            self._other_rules = plain  # [V]
        if self.shape is not None:
            mask &= self.shape.allowed(self.items, self.facts)
        if self.in_quote:
            return mask
        if self.shape is not None and self.shape.after_label is not None:
            # a reply gives one list: once it has named items, a label introduces a quote only («Based on your
            # history:» + an item, live for a new user with no fact to quote)
            lists = not self.items.named and self.items.can_open_span_after(LABEL_TOKENS)
            quotes = self.facts is not None and self.facts.can_open_after(LABEL_TOKENS)
            if self.after_label:
                allowed = self.shape.after_label if not self.items.named else \
                    self.shape.after_label & ~self.spacing.quotes.textless
                kept = mask & allowed  # [V] a label's list (or quote) comes next
            elif not (lists or quotes):
                kept = mask & ~self.spacing.quotes.ends_label  # [V] no label with nothing it may introduce
            else:
                kept = mask
            if kept.any():
                mask = kept
        if self.shape is not None and self.shape.after_list_comma is not None and self.since_item is not None:
            kept = mask
            if not self.since_item.strip():  # right after an item: no comma with words glued to it, none at all
                quotes = self.spacing.quotes  # when no item can follow
                refused = quotes.comma_then_text if self.items.can_open_span_after(LABEL_TOKENS) else quotes.comma_led
                kept = mask & ~refused
            elif self.since_item.strip() == b",":  # a list's comma: its next item (whitespace first at most)
                kept = mask & self.shape.after_list_comma
            if kept.any():
                mask = kept
        if self.words is not None:
            kept = mask & self.words.allowed(before_item=not self.items.named)  # [V]
            if kept.any():
                mask = kept
        return mask

    def advance(self, token: int) -> int | None:
        self._allowed = self._other_rules = None
        quoted = self.in_quote
        if self.facts is not None:
            self.facts.advance(token)
        if self.words is not None:  # a token that opens or closes a quote starts the words afresh
            self.words.advance(token, quoted or self.in_quote, before_item=not self.items.named)
        data = self.spacing.quotes.bytes[token] if token < len(self.spacing.quotes.bytes) else b""
        if quoted or self.in_quote or not data:
            self.after_label = False
        elif data.strip():
            self.after_label = data.rstrip().endswith(b":")
        self.spacing.advance(token)
        for span in (self.offer, self.opening):
            if span is not None:
                span.advance(token)
        item = self.items.advance(token)
        if self.listing is not None:
            self.listing.advance(token, item is not None)
        if item is not None:
            self.since_item = b""
        elif self.since_item is not None and data and not (quoted or self.in_quote):
            self.since_item = (self.since_item + data)[-8:]
        elif quoted or self.in_quote:
            self.since_item = None  # a quote: no list goes on across it
        return item

    def copy(self) -> "ReplyConstraint":
        other = ReplyConstraint(self.items.copy(), None if self.facts is None else self.facts.copy(),
                                self.spacing.copy(), self.shape, None if self.words is None else self.words.copy(),
                                None if self.strain is None else self.strain.copy(), self.plain_shape,
                                None if self.offer is None else self.offer.copy(),
                                None if self.opening is None else self.opening.copy(),
                                None if self.listing is None else self.listing.copy())
        other.after_label, other.since_item = self.after_label, self.since_item
        return other
