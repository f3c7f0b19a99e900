"""A nothing-left reply's offer, held to the relaxation its prompt names.

A nothing-left reply says nothing fits and offers the nearest relaxation the dialogue found ("relax: budget" in the
prompt: «Могу поискать чуть дороже — поднять бюджет?»). The training replies write one of a few offer sentences per
relaxation and language after their first sentence, and the model often wrote another relaxation's («… under 200
rubles» was offered "the ones you have already seen"): 14 of the 52 broken held-out replies of the default build
(``reply_check``'s ``wrong_offer``). ``OfferSpanConstraint`` holds the text after the reply's first sentence to " " +
one of the offers its training replies wrote for the prompt's relaxation (``reply_offers.json`` beside a trained
generator, ``offers_of``), spelled as the tokenizer spells it once one offer fits (so ``DecodeLoop``'s jump-forward
writes it without forwards of its own), then ``<eos>``. The first sentence stays the model's, and the check still
reads it; a reply whose budget or first sentence leaves no room for an offer is not held.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .fact_constraint import QuoteTokens, spelled_offsets
from .tokenizer import ReplyTokenizer

REPLY_OFFERS_FILE = "reply_offers.json"  # beside a trained generator: {relaxation: {language: [offer, ...]}}
_PROMPT_RE = re.compile(r"^act: nothing_left \| relax: (\w+) .*?\| lang: (\w+) ")
_FIRST_SENTENCE_RE = re.compile(r"^(.+?[.!?])\s+(\S.*)$", re.DOTALL)


def offers_of(examples: Iterable) -> dict[str, dict[str, list[str]]]:
    """{relaxation: {language: offers}} of the nothing-left training replies (``GeneratorExample``: the prompt names
    the relaxation and language, the reply's text after its first sentence is the offer)."""
    offers: dict[str, dict[str, set[str]]] = {}
    for example in examples:
        prompt = _PROMPT_RE.match(example.prompt)
        reply = _FIRST_SENTENCE_RE.match(example.reply.strip())
        if prompt and reply:
            offers.setdefault(prompt.group(1), {}).setdefault(prompt.group(2), set()).add(reply.group(2).strip())
    return {relax: {lang: sorted(texts) for lang, texts in by_lang.items()} for relax, by_lang in offers.items()}


def save_reply_offers(examples: Iterable, out_dir: Path) -> Path:
    path = Path(out_dir) / REPLY_OFFERS_FILE
    path.write_text(json.dumps(offers_of(examples), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_reply_offers(directory: Path) -> dict[str, dict[str, list[str]]] | None:
    path = Path(directory) / REPLY_OFFERS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class OfferSpanConstraint:
    """One nothing-left request's offer state; ``advance`` with each generated token, ``allowed`` before each step.
    Before the first sentence ends nothing is restricted; then the text must go on as " " + one of ``offers`` and
    end there (``<eos>``)."""

    def __init__(self, tokenizer: ReplyTokenizer, offers: Sequence[str], quotes: QuoteTokens, eos_id: int,
                 max_new_tokens: int):
        self.tokenizer, self.quotes, self.eos_id = tokenizer, quotes, eos_id
        self.offers = [f" {o.strip()}".encode("utf-8") for o in dict.fromkeys(offers) if o.strip()]
        self.room = max((len(tokenizer.encode(o.decode("utf-8"))) for o in self.offers), default=0) + 1
        self.max_new_tokens = max_new_tokens
        self.steps = 0
        self.text = b""                  # the reply's bytes before the offer
        self.written: bytes | None = None  # the offer's bytes so far; None before it begins (or not held)
        self.held = bool(self.offers)    # False once the reply left no room or its first sentence ran into text
        self._spelling: tuple[bytes, dict[int, int]] | None = None

    @property
    def in_offer(self) -> bool:
        return self.held and self.written is not None

    def _targets(self) -> list[bytes]:
        return [o for o in self.offers if o.startswith(self.written)]

    def allowed(self) -> torch.Tensor | None:
        """[V] bool of the tokens the offer allows at this step; None when it restricts nothing."""
        if not self.in_offer:
            return None
        mask = torch.zeros(self.quotes.vocab_size, dtype=torch.bool)  # [V]
        targets = self._targets()
        if any(len(t) == len(self.written) for t in targets):
            mask[self.eos_id] = True  # the offer is whole: the reply ends
            return mask
        spelled = self._spelled_next(targets)
        if spelled is not None:
            mask[spelled] = True
            return mask
        for target in targets:
            rest = target[len(self.written):]
            for cut in range(1, len(rest) + 1):
                mask[self.quotes.by_bytes.get(rest[:cut], [])] = True
        return mask

    def _spelled_next(self, targets: list[bytes]) -> int | None:
        """Once one offer fits: its next token as the tokenizer spells the rest (None: several fit, or the text
        stopped inside a character)."""
        if len(targets) != 1:
            return None
        target, at = targets[0], len(self.written)
        if self._spelling is None or self._spelling[0] != target or at not in self._spelling[1]:
            try:
                text = target[at:].decode("utf-8")
            except UnicodeDecodeError:
                return None
            self._spelling = (target, spelled_offsets(self.tokenizer, self.quotes, target, at, text))
        return self._spelling[1].get(at)

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
        if self.max_new_tokens - self.steps < self.room or not after.isspace() and after:
            self.held = False  # no room for an offer, or the sentence's token ran on into text
            return
        self.written = after
        if not self._targets():
            self.held = False

    def copy(self) -> "OfferSpanConstraint":
        other = object.__new__(OfferSpanConstraint)
        other.__dict__.update(self.__dict__)
        return other


__all__ = ["OfferSpanConstraint", "REPLY_OFFERS_FILE", "load_reply_offers", "offers_of", "save_reply_offers"]
