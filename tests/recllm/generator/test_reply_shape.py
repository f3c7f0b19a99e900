"""The reply's shape while decoding (``reply_shape``): an English reply writes no Cyrillic and a Russian one no Latin
outside quoted facts, and a list act names an item before its first sentence ends — even from models pushed towards
exactly those tokens, under greedy decoding and sampling."""

import re

import pytest
import torch

from recllm.generator import ReplyRequest, Sampling
from recllm.generator.fact_constraint import quote_tokens
from recllm.generator.reply_check import CITATION_RE

from .conftest import name, pushed_generator

FACT = "каждую неделю берёте кофе"
PROMPT = "act: recommend | service: samokat | lang: en | query: breakfast | profile: " + FACT


def replies(generator, **request_fields) -> list:
    out = []
    for temperature in (0.0, 1.0):
        requests = [ReplyRequest(PROMPT, tuple(range(12)), Sampling(temperature=temperature, seed=k),
                                 quotable_facts=(FACT,), **request_fields) for k in range(6)]
        out += generator.generate_batch(requests, name)
    return out


def own_text(reply) -> str:
    """The reply without its item names and quoted facts."""
    text = reply.text
    for item in reply.item_ids:
        text = text.replace(name(item), " ")
    return CITATION_RE.sub(" ", text)


@pytest.mark.parametrize("language, letters", [("en", "[а-яё]"), ("ru", "[a-z]")])
def test_a_reply_keeps_its_language_s_script_outside_quotes(tok, codes, language, letters):
    foreign = re.compile(letters, re.IGNORECASE)
    table = "cyrillic" if language == "en" else "latin"
    generator = pushed_generator(tok, codes, lambda quotes: getattr(quotes, table))
    free = replies(generator)
    assert any(foreign.search(own_text(r)) for r in free)  # the push works: unconstrained, the script leaks
    kept = replies(generator, language=language)
    assert not any(foreign.search(own_text(r)) for r in kept), [r.text for r in kept]


def test_a_list_act_names_an_item_before_its_first_sentence_ends(tok, codes):
    """While a recommend reply has named no item and a span still fits its budget, no token ends a sentence and
    <eos> does not come (a random model may still spend its whole budget on text: then the rule lets it end)."""
    def push(quotes):
        ends = quotes.sentence_end.clone()
        ends[tok.eos_id] = True
        return ends
    generator = pushed_generator(tok, codes, push)
    assert any(not r.item_ids for r in replies(generator))  # the push works: unconstrained, no item is named
    quotes = quote_tokens(tok, generator.model.config.vocab_size)
    budget = generator.config.max_new_tokens
    for temperature in (0.0, 1.0):
        requests = [ReplyRequest(PROMPT, tuple(range(12)), Sampling(temperature=temperature, seed=k), act=act)
                    for k in range(6) for act in ("recommend", "clarify")]
        steps, named, early_ends = [0] * len(requests), [False] * len(requests), [0] * len(requests)
        for j, token, item in generator.stream_batch(requests):
            ends = token == tok.eos_id or bool(quotes.sentence_end[token])
            if ends and not named[j] and budget - steps[j] >= tok.sid_depth:
                early_ends[j] += 1
            named[j] |= item is not None
            steps[j] += 1
        recommend = [n for n, r in zip(early_ends, requests) if r.act == "recommend"]
        clarify = [n for n, r in zip(early_ends, requests) if r.act == "clarify"]
        assert recommend == [0] * len(recommend)
        assert any(clarify)  # not a list act: not held to it (and the push does end sentences early)


def test_inside_a_quote_the_shape_lets_the_fact_s_own_bytes_through(tok):
    """A quoted fact may hold a full stop or another script («1.5 л», "Samokat"): inside a quote the shape refuses
    nothing (the fact constraint alone decides), outside it does."""
    from types import SimpleNamespace

    from recllm.generator.reply_shape import ReplyShape

    shape = ReplyShape(quote_tokens(tok, tok.vocab_size), tok.eos_id, language="ru", act="recommend")
    no_item_yet = SimpleNamespace(named=[], can_open_span=True)
    assert not shape.allowed(no_item_yet, SimpleNamespace(in_quote=False)).all()
    assert shape.allowed(no_item_yet, SimpleNamespace(in_quote=True)).all()


LABEL_GAP = re.compile(r":\s*(?!\[товар|«|\"|$)\S")  # a colon followed by anything but an item, a quote or the end
KNOWN = frozenset({"для", "ужина", "и", "for", "breakfast", "and", "учёл", "что", "вы"})


def format_breaks(reply) -> bool:
    own = CITATION_RE.sub("«q»", reply.text)  # a quoted fact stands after a label as a quote
    return bool(re.search(r"\d", re.sub(r"\[товар \d+\]", " ", own)) or LABEL_GAP.search(own))


@pytest.mark.parametrize("act", ["recommend", "explain"])
def test_the_corpus_format_holds_no_digit_and_puts_a_label_s_items_next(tok, codes, act):
    """A generator that knows its training replies' words keeps their format: no digit of its own, and after a
    colon an item or a quote — from a model pushed towards digits and colons; one trained elsewhere (no reply words)
    is not held to it, nor is a request with ``corpus_rules`` off."""
    def push(quotes):
        return quotes.digit | torch.tensor([data.rstrip().endswith(b":") for data in quotes.bytes])
    generator = pushed_generator(tok, codes, push, strength=4.0)
    generator.reply_words = KNOWN
    assert any(format_breaks(r) for r in replies(generator, language="ru", act=act, corpus_rules=False))
    kept = replies(generator, language="ru", act=act)
    assert not any(format_breaks(r) for r in kept), [r.text for r in kept if format_breaks(r)]
    generator.reply_words = None
    assert any(format_breaks(r) for r in replies(generator, language="ru", act=act))


def test_a_clarifying_question_may_go_on_after_its_colon(tok):
    from recllm.generator.reply_shape import ReplyShape

    quotes = quote_tokens(tok, tok.vocab_size)
    assert ReplyShape(quotes, tok.eos_id, "ru", "clarify", corpus_format=True).after_label is None
    after = ReplyShape(quotes, tok.eos_id, "ru", "recommend", corpus_format=True).after_label
    assert after[tok.sid_token_ids[0]] and not after[tok.eos_id]
    assert after[quotes.by_bytes[b" "][0]] and not after[quotes.by_bytes[b"a"][0]]


LIST_COMMA_GAP = re.compile(r"\[товар \d+\]\s*,\s*(?!\[товар)\S")  # an item's comma followed by anything but an item


def test_a_list_s_comma_after_an_item_is_followed_by_the_next_item(tok, codes):
    """Live: «Посмотрите Смартфон Xiaomi, Ничего подходящего не раскрываю.» — in a list act's reply (with the corpus
    format) a comma after an item goes on with an item, from a model pushed towards commas; not held to it, it
    goes on with words."""
    def push(quotes):  # commas and item codes: lists with commas, and commas going on
        return torch.tensor([b"," in data for data in quotes.bytes]) | quotes.textless
    generator = pushed_generator(tok, codes, push, strength=3.0)
    generator.reply_words = KNOWN
    free = replies(generator, language="ru", act="recommend", corpus_rules=False)
    assert any(LIST_COMMA_GAP.search(r.text) for r in free)
    kept = replies(generator, language="ru", act="recommend")
    assert not any(LIST_COMMA_GAP.search(r.text) for r in kept), [r.text for r in kept if LIST_COMMA_GAP.search(r.text)]


LIST_AGAIN = re.compile(r"\[товар \d+\][^.!?]*[.!?][^.!?:]*:\s*\[товар")  # a label with an item after a list


def test_once_a_reply_has_named_items_a_label_introduces_a_quote_only(tok, codes):
    """Live, a new user: «… и Картофель. Based on your history:Брокколи.» — a reply gives one list; after it a
    label is a citation's, so its colon takes a quote, and with no fact to quote there is no such label."""
    def push(quotes):  # colons, full stops and item codes
        return torch.tensor([data.rstrip().endswith((b":", b".")) for data in quotes.bytes]) | quotes.textless
    generator = pushed_generator(tok, codes, push, strength=3.0)
    generator.reply_words = KNOWN
    prompt = "act: recommend | service: samokat | lang: ru | query: ужин | profile: -"
    found = {}
    for corpus in (False, True):
        requests = [ReplyRequest(prompt, tuple(range(12)), Sampling(temperature=t, seed=k), quotable_facts=(),
                                 language="ru", act="recommend", corpus_rules=corpus)
                    for k in range(6) for t in (0.0, 1.0)]
        found[corpus] = [r.text for r in generator.generate_batch(requests, name) if LIST_AGAIN.search(r.text)]
    assert found[False] and not found[True], found[True]
