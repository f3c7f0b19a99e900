"""Item spans under a live prefix trie: a reply can only name the items this request may name, each at most once.

Per request, the trie holds the Semantic IDs of the ranked candidate list the reranker returned (in stock, in the
requested service, not shown in the session, inside budget and diet: the retriever's filters), so a stock change
applies to the next request without touching the model. ``ItemSpanConstraint`` is the state machine one request's
decoding walks through: outside an item span, text tokens plus the first code of every item not yet named (while
fewer than ``max_items`` were named and a whole span still fits); inside a span, only the codes that continue it
towards some open item. A completed span names exactly one candidate, which then leaves the trie, so invalid and
duplicate items are impossible under greedy, sampling and beam search alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recllm.sid.prefix_trie import SidTrie

from .item_codes import ItemCodes
from .tokenizer import ReplyTokenizer


def text_token_mask(tokenizer: ReplyTokenizer, model_vocab_size: int) -> torch.Tensor:
    """[V] bool: ordinary BPE tokens and ``<eos>``; no SID tokens, no other control tokens, no ids the tokenizer
    does not know (a checkpoint may pad its vocabulary)."""
    mask = torch.zeros(model_vocab_size, dtype=torch.bool)  # [V]
    mask[: tokenizer.vocab_size] = True
    mask[list(tokenizer.control_ids)] = False
    mask[list(tokenizer.sid_token_ids)] = False
    mask[tokenizer.eos_id] = True
    return mask


class ItemSpanConstraint:
    """One request's allowed-token state; ``advance`` with each generated token, ``allowed`` before each step."""

    def __init__(self, tokenizer: ReplyTokenizer, codes: ItemCodes, candidate_item_ids: Sequence[int],
                 text_mask: torch.Tensor, max_items: int, max_new_tokens: int):
        self.tokenizer, self.text_mask, self.max_items = tokenizer, text_mask, max_items
        self.max_new_tokens = max_new_tokens
        by_sid: dict[tuple[int, ...], int] = {}
        for item in candidate_item_ids:  # a SID names one item of the list: the best-ranked holder
            by_sid.setdefault(codes.sid_of(int(item)), int(item))
        self._sids = by_sid
        self._open = list(by_sid.values())
        self._sid_of_item = {item: sid for sid, item in by_sid.items()}
        self._trie = self._trie_of(self._open)
        self._level_tokens = [torch.tensor(tokenizer.level_token_ids(level)) for level in range(tokenizer.sid_depth)]
        self.prefix: list[int] = []
        self.named: list[int] = []
        self.steps = 0
        self.done = False

    def _trie_of(self, items: Sequence[int]) -> SidTrie | None:
        if not items:
            return None
        sids = np.array([self._sid_of_item[i] for i in items], dtype=np.int64)
        return SidTrie(sids, items, self.tokenizer.sid_vocab_sizes)

    @property
    def in_span(self) -> bool:
        return bool(self.prefix)

    @property
    def can_open_span(self) -> bool:
        """An item span may start now: an open candidate is left, the reply names fewer than ``max_items`` and a
        whole span still fits in the token budget."""
        return self.can_open_span_after(0)

    def can_open_span_after(self, tokens: int) -> bool:
        """``can_open_span`` after ``tokens`` more text tokens (a label's colon and space before its list)."""
        return (self._trie is not None and len(self.named) < self.max_items
                and self.max_new_tokens - self.steps - tokens >= self.tokenizer.sid_depth)

    def allowed(self) -> torch.Tensor:
        """[V] bool of the tokens allowed at this step."""
        if self.prefix:
            mask = torch.zeros_like(self.text_mask)  # [V]
            codes = self._trie.allowed_next(self.prefix)
            mask[self._level_tokens[len(self.prefix)][codes]] = True
            return mask
        mask = self.text_mask.clone()  # [V]
        if self.can_open_span:
            mask[self._level_tokens[0][self._trie.allowed_next(())]] = True
        return mask

    def advance(self, token: int) -> int | None:
        """Record a generated token; returns the item id when it completes a span."""
        self.steps += 1
        if token == self.tokenizer.eos_id:
            self.done = True
        sid = self.tokenizer.sid_of_token(token)
        if sid is None:
            if self.prefix:
                raise ValueError(f"token {token} inside an item span: the constraint was not applied")
            return None
        level, code = sid
        if level != len(self.prefix):
            raise ValueError(f"SID token of level {level} at span position {len(self.prefix)}")
        self.prefix.append(code)
        if len(self.prefix) < self.tokenizer.sid_depth:
            return None
        item = self._sids.get(tuple(self.prefix))
        if item is None or item not in self._open:
            raise ValueError(f"span {self.prefix} names no open candidate: the constraint was not applied")
        self.prefix = []
        self.named.append(item)
        self._open.remove(item)
        self._trie = self._trie_of(self._open)
        return item

    def copy(self) -> "ItemSpanConstraint":
        """An independent state (beam search forks hypotheses)."""
        other = object.__new__(ItemSpanConstraint)
        other.__dict__.update(self.__dict__)
        other.prefix, other.named, other._open = list(self.prefix), list(self.named), list(self._open)
        return other
