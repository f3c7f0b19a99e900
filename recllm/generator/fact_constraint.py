"""Quoted profile facts under a prefix constraint: a reply can only quote a fact its prompt holds, word for word.

Replies cite the user's profile in quotes: «каждую неделю берёте овощи на Купере» / "bought coffee on Samokat". The
post-generation check (``reply_check``) counted a quote that is in no prompt fact as a broken reply (``uncited_fact``,
most of the broken replies of the default build); ``FactSpanConstraint`` makes one impossible, the way
``ItemSpanConstraint`` does for items. Outside a quote nothing is restricted, except that a quote may open only when
the prompt has a fact and the shortest one still fits in the token budget. After an opening quote the
allowed tokens are the next tokens of the prompt facts (each encoded as in a reply: byte-level BPE splits the quote
from the word after it) that the quote so far is a prefix of, plus a closing quote once a whole fact is quoted.

Tokens are classified once per tokenizer (``QuoteTokens``): a token whose text ends with an opening quote opens,
one whose text starts with a closing quote and holds no letters or digits closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from .tokenizer import ReplyTokenizer

OPENING_QUOTES = ("«", "“", '"')
CLOSING_QUOTES = ("»", "”", '"')


class QuoteTokens:
    """[V] bool masks of the tokens that open and close a quote."""

    def __init__(self, tokenizer: ReplyTokenizer, model_vocab_size: int):
        self.opens = torch.zeros(model_vocab_size, dtype=torch.bool)   # [V]
        self.closes = torch.zeros(model_vocab_size, dtype=torch.bool)  # [V]
        special = set(tokenizer.control_ids) | set(tokenizer.sid_token_ids)
        for token in range(min(tokenizer.vocab_size, model_vocab_size)):
            if token in special:
                continue
            text = tokenizer.decode([token])
            if text.rstrip().endswith(OPENING_QUOTES):
                self.opens[token] = True
            if text.startswith(CLOSING_QUOTES) and not any(ch.isalnum() for ch in text):
                self.closes[token] = True


@lru_cache(maxsize=8)
def quote_tokens(tokenizer: ReplyTokenizer, model_vocab_size: int) -> QuoteTokens:
    return QuoteTokens(tokenizer, model_vocab_size)


class FactSpanConstraint:
    """One request's quoting state; ``advance`` with each generated token, ``allowed`` before each step."""

    def __init__(self, tokenizer: ReplyTokenizer, facts: Sequence[str], quotes: QuoteTokens, max_new_tokens: int):
        self.quotes, self.max_new_tokens = quotes, max_new_tokens
        self.facts = [tuple(tokenizer.encode(f.strip())) for f in dict.fromkeys(facts) if f.strip()]
        self.shortest = min((len(f) for f in self.facts), default=0)
        self.quote: list[int] | None = None    # tokens quoted so far; None outside a quote
        self.steps = 0

    @property
    def in_quote(self) -> bool:
        return self.quote is not None

    def allowed(self) -> torch.Tensor:
        """[V] bool of the tokens allowed at this step (all, outside a quote that may still open)."""
        if self.quote is None:
            mask = torch.ones_like(self.quotes.opens)  # [V]
            if not self.facts or self.max_new_tokens - self.steps < self.shortest + 2:
                mask &= ~self.quotes.opens           # nothing to quote, or no room to quote it whole
            return mask
        mask = torch.zeros_like(self.quotes.opens)  # [V]
        depth = len(self.quote)
        for fact in self.facts:
            if fact[:depth] == tuple(self.quote):
                if len(fact) > depth:
                    mask[fact[depth]] = True
                else:
                    mask |= self.quotes.closes
        return mask

    def advance(self, token: int) -> None:
        self.steps += 1
        if self.quote is None:
            if self.quotes.opens[token]:
                self.quote = []
        elif self.quotes.closes[token] and tuple(self.quote) in self.facts:
            self.quote = None
        else:
            self.quote.append(token)

    def copy(self) -> "FactSpanConstraint":
        other = object.__new__(FactSpanConstraint)
        other.__dict__.update(self.__dict__)
        other.quote = None if self.quote is None else list(self.quote)
        return other


class ReplyConstraint:
    """Items and quoted facts of one reply together: a token must pass both; ``advance`` returns the item id a
    token completes (``ItemSpanConstraint.advance``)."""

    def __init__(self, items, facts: FactSpanConstraint):
        self.items, self.facts = items, facts

    def allowed(self) -> torch.Tensor:
        return self.items.allowed() & self.facts.allowed()  # [V]

    def advance(self, token: int) -> int | None:
        self.facts.advance(token)
        return self.items.advance(token)

    def copy(self) -> "ReplyConstraint":
        return ReplyConstraint(self.items.copy(), self.facts.copy())
