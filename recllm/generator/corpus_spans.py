"""Spans of a reply that its prompt decides, held to what the training replies write there.

Two spans of a reply carry what the prompt asked for, and the tiny model wrote other requests' there:

* the **opening** of a list reply (recommend, refine; explain; clarify, whose question comes first), its text before
  the first item: the training replies of one
  act, frame and language open with one or two phrasings («К ужину подойдут », «На ужин можно взять »), and the model
  opened dinner with «For the party: » or a label with words after it («Вот что я подобрал: Как в прошлый раз, …»):
  ``reply_check``'s ``wrong_opening`` and many ``broken_list`` / ``unknown_word`` failures. ``OpeningSpanConstraint``
  holds the text before the first item to one of the openings the training replies of the request's act, frame and
  language wrote, then an item;
* the **list** of a list reply: between its items the training replies write only their separators («, », « и »,
  ", ", " and ") and end it with a full stop, and the model went on from an item with words («… 5 пар и ит вам к
  чаю», "… 50 мл and ike, lactose-free …", «…, 6)))»: ``broken_list``). ``ListSpanConstraint`` holds the text after
  each item of a list reply to a separator and then the next item, or the list's ending, while another item can
  still be named (else the ending);
* a **nothing-left reply's offer** («… under 200 rubles» was offered "the ones you have already seen": ``wrong_offer``,
  14 of the 52 broken held-out replies of the default build): ``OfferSpanConstraint`` holds the text after the
  reply's first sentence to " " + one of the offers its training replies wrote for the prompt's relaxation, then
  ``<eos>``.

The spans come from the trained generator's own corpus (``reply_spans.json`` beside it, ``spans_of``); once one
target fits, its rest is spelled as the tokenizer spells it (so ``DecodeLoop``'s jump-forward writes it without
forwards of its own). What the model writes outside them — which items, the first sentence of a nothing-left reply,
the rest of a list reply — stays the model's, and the check still reads it. A span is not held when the budget
leaves no room for it, or when the training replies have none for the request.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import torch

from .fact_constraint import QUOTE_PAIRS, QuoteTokens, spelled_offsets
from .reply_check import LIST_ACTS
from .tokenizer import ReplyTokenizer

# beside a trained generator: {"openings": {act|frame|language: [...]}, "offers": {relaxation|language: [...]},
# "separators": {act|language: [...]}, "endings": {act|language: [...]}}
REPLY_SPANS_FILE = "reply_spans.json"
_PROMPT_RE = re.compile(r"^act: (\w+)(?: \| relax: (\w+))?(?: \| frame: (\w+))? \| service: \w+ \| lang: (\w+) ")
_FIRST_SENTENCE_RE = re.compile(r"^(.+?[.!?])\s+(\S.*)$", re.DOTALL)
_QUOTES = tuple(dict.fromkeys(q for pair in QUOTE_PAIRS for q in pair))
# acts whose replies name items in a list: their opening, separators and the list's ending are held (a clarify reply
# of the generator — the ``recllm`` ensemble's to a vague wish; the chat asks its own question — opens with its
# question and then lists a few ideas)
SPAN_ACTS = (*sorted(LIST_ACTS), "clarify", "explain")
# what ends a list: a sentence end, or the first word after the last item with what leads to it («, потому», " because")
_ENDING_RE = re.compile(r"^[.!?]|^[\s,—–-]*[^\W\d_]+")
# an explain reply's list ends with what leads to its quoted fact, the quote's opening included («, потому что вы «»,
# ' because "'), or with its whole sentence when it quotes none (« подходят под ваш запрос и популярны у покупателей.»)
_EXPLAIN_ENDING_RE = re.compile(r"^[^«\"“]*[«\"“]|^[^«\"“]+$")


def opening_key(act: str, frame: str, language: str) -> str:
    return f"{act}|{frame}|{language}"


def offer_key(relaxation: str, language: str) -> str:
    return f"{relaxation}|{language}"


def list_key(act: str, language: str) -> str:
    return f"{act}|{language}"


def spans_of(examples: Iterable) -> dict[str, dict[str, list[str]]]:
    """{"openings": {act|frame|language: openings}, "offers": {relaxation|language: offers}} of the training replies
    (``GeneratorExample``: the prompt names act, relaxation, frame and language). An opening is the text of a reply
    of ``SPAN_ACTS`` before its first ``<item_N>`` (empty when it names one first; none that quotes a fact); an offer
    is a nothing-left reply's text after its first sentence; separators (by act and language) are what those replies
    write between two items, endings what ends their list (``_ENDING_RE``: «.», «, потому», " because"; an explain
    reply's up to its quote's opening, ``_EXPLAIN_ENDING_RE``: «, потому что вы «», ' because "')."""
    spans: dict[str, dict[str, set[str]]] = {"openings": {}, "offers": {}, "separators": {}, "endings": {}}
    for example in examples:
        prompt = _PROMPT_RE.match(example.prompt)
        if prompt is None:
            continue
        act, relaxation, frame, language = prompt.group(1), prompt.group(2), prompt.group(3) or "", prompt.group(4)
        reply = example.reply.strip()
        if act in SPAN_ACTS and "<item_" in reply:
            parts = re.split(r"<item_\d+>", reply)
            opening = parts[0]
            if not opens_a_quote(opening):
                spans["openings"].setdefault(opening_key(act, frame, language), set()).add(opening)
            spans["separators"].setdefault(list_key(act, language), set()).update(s for s in parts[1:-1] if s)
            if ending := (_EXPLAIN_ENDING_RE if act == "explain" else _ENDING_RE).match(parts[-1]):
                spans["endings"].setdefault(list_key(act, language), set()).add(ending.group(0))
        elif act == "nothing_left" and relaxation and (sentences := _FIRST_SENTENCE_RE.match(reply)):
            spans["offers"].setdefault(offer_key(relaxation, language), set()).add(sentences.group(2).strip())
    return {kind: {key: sorted(texts) for key, texts in by_key.items()} for kind, by_key in spans.items()}


def save_reply_spans(examples: Iterable, out_dir: Path) -> Path:
    path = Path(out_dir) / REPLY_SPANS_FILE
    path.write_text(json.dumps(spans_of(examples), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def opens_a_quote(text: str) -> bool:
    return any(q in text for q in _QUOTES)


def load_reply_spans(directory: Path) -> dict[str, dict[str, list[str]]] | None:
    path = Path(directory) / REPLY_SPANS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class SpanTargets:
    """The byte strings a span may be; the tokens that go on with one of them after ``written``, spelled as the
    tokenizer spells the rest once only one fits."""

    def __init__(self, tokenizer: ReplyTokenizer, quotes: QuoteTokens, texts: Sequence[str]):
        self.tokenizer, self.quotes = tokenizer, quotes
        self.targets = [t.encode("utf-8") for t in dict.fromkeys(texts)]  # "" too: an opening may be empty
        self.longest_tokens = max((len(tokenizer.encode(t)) for t in dict.fromkeys(texts) if t), default=0)
        self._spelling: dict[bytes, dict[int, int]] = {}  # target -> byte offset -> the token spelled there

    def fitting(self, written: bytes) -> list[bytes]:
        return [t for t in self.targets if t.startswith(written)]

    def complete(self, written: bytes) -> bool:
        return written in self.targets

    def continuing(self, written: bytes) -> torch.Tensor:
        """[V] bool: tokens whose bytes go on with a target that ``written`` begins (not past its end)."""
        mask = torch.zeros(self.quotes.vocab_size, dtype=torch.bool)  # [V]
        fitting = [t for t in self.fitting(written) if len(t) > len(written)]
        if len(fitting) == 1:
            spelled = self._spelled_next(fitting[0], len(written))
            if spelled is not None:
                mask[spelled] = True
                return mask
        for target in fitting:
            self.quotes.mark_continuing(mask, target[len(written):])
        return mask

    def _spelled_next(self, target: bytes, at: int) -> int | None:
        offsets = self._spelling.setdefault(target, {})
        if at not in offsets:
            try:
                text = target[at:].decode("utf-8")
            except UnicodeDecodeError:
                return None
            offsets.update(spelled_offsets(self.tokenizer, self.quotes, target, at, text) or {at: None})
        return offsets[at]


@lru_cache(maxsize=256)
def span_targets(tokenizer: ReplyTokenizer, quotes: QuoteTokens, texts: tuple[str, ...]) -> SpanTargets:
    """The ``SpanTargets`` of ``texts``, made (and their tokens counted) once per tokenizer and texts, not per
    request; shared, so nothing a request does is kept on it but the spelling memo."""
    return SpanTargets(tokenizer, quotes, texts)


class OpeningSpanConstraint:
    """One list request's opening: from the first token the text is one of ``openings``, and once one is whole an
    item begins (or a longer opening goes on); the rule ends with the first item's first code. ``allowed`` None:
    nothing restricted (the rule ended, or was not held)."""

    def __init__(self, tokenizer: ReplyTokenizer, openings: Sequence[str], quotes: QuoteTokens, max_new_tokens: int,
                 item_tokens: int):
        self.spans = span_targets(tokenizer, quotes, tuple(openings))
        self.quotes = quotes
        self.written = b""
        # not held without openings or without room for the longest and an item after it
        self.held = bool(self.spans.targets) and max_new_tokens >= self.spans.longest_tokens + item_tokens + 1
        if self.held and self.spans.targets == [b""]:
            self.held = False  # the training replies name an item first: nothing to hold before it

    def allowed(self) -> torch.Tensor | None:
        if not self.held:
            return None
        mask = self.spans.continuing(self.written)  # [V]
        if self.spans.complete(self.written):
            mask = mask | self.quotes.item_codes  # an item's first code (the item rule says which)
        return mask

    def advance(self, token: int) -> None:
        if not self.held:
            return
        data = self.quotes.bytes[token] if token < len(self.quotes.bytes) else b""
        if not data or not self.spans.fitting(self.written + data):
            self.held = False  # an item began (or the rule was dropped for a step): the opening is over
            return
        self.written += data

    def copy(self) -> "OpeningSpanConstraint":
        return copy.copy(self)


class ListSpanConstraint:
    """One list request's list: after each item the text is one of ``separators`` and then an item (while one can
    still be named), or one of ``endings``, which ends the list (the rest of the reply is free until the next item).
    ``allowed(can_name_another)`` None: nothing restricted."""

    def __init__(self, tokenizer: ReplyTokenizer, separators: Sequence[str], endings: Sequence[str],
                 quotes: QuoteTokens):
        self.separators = span_targets(tokenizer, quotes, tuple(separators))
        self.endings = span_targets(tokenizer, quotes, tuple(endings))
        self.both = span_targets(tokenizer, quotes, (*separators, *endings))
        self.quotes = quotes
        self.after_item = False
        self.written = b""

    def allowed(self, can_name_another: bool) -> torch.Tensor | None:
        if not self.after_item:
            return None
        if self.separators.complete(self.written):
            return self.quotes.item_codes  # the next item's first code (the item rule says which)
        spans = self.both if can_name_another else self.endings
        return spans.continuing(self.written)

    def advance(self, token: int, item_completed: bool) -> None:
        if item_completed:
            self.after_item, self.written = True, b""
            return
        if not self.after_item:
            return
        data = self.quotes.bytes[token] if token < len(self.quotes.bytes) else b""
        self.written += data
        if not data or self.endings.complete(self.written) or not self.both.fitting(self.written):
            self.after_item = False  # the next item began, the list ended, or the rule was dropped for a step

    def copy(self) -> "ListSpanConstraint":
        return copy.copy(self)


class OfferSpanConstraint:
    """One nothing-left request's offer: before the first sentence ends nothing is restricted; then the text goes on
    as " " + one of ``offers`` and ends there (``<eos>``)."""

    def __init__(self, tokenizer: ReplyTokenizer, offers: Sequence[str], quotes: QuoteTokens, eos_id: int,
                 max_new_tokens: int):
        self.spans = span_targets(tokenizer, quotes, tuple(f" {o.strip()}" for o in offers if o.strip()))
        self.quotes, self.eos_id, self.max_new_tokens = quotes, eos_id, max_new_tokens
        self.room = self.spans.longest_tokens + 1
        self.steps = 0
        self.text = b""                    # the reply's bytes before the offer
        self.written: bytes | None = None  # the offer's bytes so far; None before it begins
        self.held = bool(self.spans.targets)  # False once the reply left no room, or its first sentence ran on

    @property
    def in_offer(self) -> bool:
        return self.held and self.written is not None

    def allowed(self) -> torch.Tensor | None:
        """[V] bool of the tokens the offer allows at this step; None when it restricts nothing."""
        if not self.in_offer:
            return None
        if self.spans.complete(self.written):
            mask = torch.zeros(self.quotes.vocab_size, dtype=torch.bool)  # [V]
            mask[self.eos_id] = True  # the offer is whole: the reply ends
            return mask
        return self.spans.continuing(self.written)

    def advance(self, token: int) -> None:
        self.steps += 1
        if not self.held:
            return
        data = self.quotes.bytes[token] if token < len(self.quotes.bytes) else b""
        if self.written is not None:
            self.written += data
            return
        self.text += data
        end = max(self.text.rfind(c) for c in (b".", b"!", b"?"))
        if end < 0 or not self.text[:end].strip():
            return
        after = self.text[end + 1:]
        if self.max_new_tokens - self.steps < self.room or after and not after.isspace():
            self.held = False  # no room for an offer, or the sentence's token ran on into text
            return
        self.written = after
        if not self.spans.fitting(after):
            self.held = False

    def copy(self) -> "OfferSpanConstraint":
        return copy.copy(self)


__all__ = ["SPAN_ACTS", "opens_a_quote", "span_targets", "ListSpanConstraint", "OfferSpanConstraint", "OpeningSpanConstraint", "REPLY_SPANS_FILE", "SpanTargets", "load_reply_spans",
           "list_key", "offer_key", "opening_key", "save_reply_spans", "spans_of"]
