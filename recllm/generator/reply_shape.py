"""The reply's shape while it is decoded: its language's script, and a list act that names an item first.

Two of the post-generation check's failures (``reply_check``) follow from single tokens, so the decoder can refuse
those tokens instead of letting the check throw the reply away:

* ``wrong_language`` — outside item names and quoted facts a reply writes in its language: an English reply takes no
  token holding a Cyrillic letter («Take a look at … Вот»), a Russian reply none holding a Latin letter («… ere я
  подберу точнее»). Items are SID tokens (no text bytes); a quoted fact's bytes are the fact's own
  (``FactSpanConstraint``), so inside a quote the script is not restricted.
* ``no_item`` / ``empty_list`` — a list act (recommend, refine) names an item before its first sentence ends:
  while the reply has named none and one can still open, no sentence-ending token and no ``<eos>`` («Другие варианты:
  .», "Other options: s.").
* ``broken_list`` — with the generator's own corpus format (``corpus_format``: it knows its training replies'
  words), a label's colon is followed by an item or a quoted fact, never by words or figures («Подешевле: 2) Хлебцы
  …», «Cheaper options: Like last time, …»), except in a clarifying question («Уточните: вам к чаю …»); and the
  reply's own text holds no digit (amounts and sizes live in item names and facts: «… и 6).»); in a list act's
  reply a comma after an item is followed by the next item («Посмотрите Смартфон Xiaomi, Ничего подходящего …»).

Both are stateless over the reply (they read the item and quote constraints' state), so one ``ReplyShape`` may serve
every hypothesis of a request; ``ReplyGenerator.beam_search`` (used by benchmarks, not served) builds its requests
without a language or act, so it runs without them. The byte tables come from ``QuoteTokens`` (built once per
tokenizer). The Russian rule refuses any token holding a Latin letter, stricter than the check (words of two or
more Latin letters): on a byte-level vocabulary a word is split across tokens, so one letter is all a token can
show; a Latin name («витамин D») reaches a Russian reply only as an item's name.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .fact_constraint import FactSpanConstraint, QuoteTokens
from .item_constraint import ItemSpanConstraint
from .reply_check import LIST_ACTS


class ReplyShape:
    def __init__(self, quotes: QuoteTokens, eos_id: int, language: str = "", act: str = "",
                 corpus_format: bool = False):
        """``language`` "en" / "ru" (else the script is free); ``act`` the reply's act (a list act names an item
        before its first sentence ends); ``corpus_format``: the format of the generator's own training replies holds
        too (no digit outside quotes; a colon, except in a clarifying question, introduces items or a quote:
        ``after_label``). The masks a step can need are made here, once (``reply_shape`` caches a shape per
        tokenizer, language, act and format); ``allowed`` returns one of them, never to be written."""
        refused_script = {"en": quotes.cyrillic, "ru": quotes.latin}.get(language)  # [V] or None
        self.list_act = act in LIST_ACTS
        self.free = torch.ones_like(quotes.sentence_end)  # [V]
        self.outside_quote = self.free if refused_script is None else ~refused_script  # [V]
        if corpus_format:
            self.outside_quote = self.outside_quote & ~quotes.digit  # [V]
        # [V] what may follow a label's colon (``ReplyConstraint`` keeps the state): an item span's code, whitespace,
        # a quote's opening; None: anything
        eos = torch.zeros_like(self.free)
        eos[eos_id] = True
        self.after_label = (quotes.textless | quotes.blank | quotes.quote_led) & ~eos \
            if corpus_format and act != "clarify" else None
        # [V] what may follow a list's comma after an item (a list act's reply): the next item's code or whitespace
        self.after_list_comma = (quotes.textless | quotes.blank) & ~eos if corpus_format and self.list_act else None
        ends = quotes.sentence_end.clone()
        ends[eos_id] = True
        self.before_item = self.outside_quote & ~ends  # [V]

    def allowed(self, items: ItemSpanConstraint, facts: FactSpanConstraint | None) -> torch.Tensor:
        """[V] bool: what the shape lets through at this step (the other rules apply on top)."""
        if facts is not None and facts.in_quote:  # a quoted fact's own bytes rule (its «1.5 л» may hold a full stop)
            return self.free
        if self.list_act and not items.named and items.can_open_span:
            return self.before_item
        return self.outside_quote


@lru_cache(maxsize=128)
def reply_shape(quotes: QuoteTokens, eos_id: int, language: str, act: str, corpus_format: bool = False) -> ReplyShape:
    """The shape of every reply in ``language`` with ``act`` (stateless, so shared by the requests)."""
    return ReplyShape(quotes, eos_id, language, act, corpus_format)


__all__ = ["ReplyShape", "reply_shape"]
