"""The reply's own words while decoding (``known_words``): outside item names and quoted facts every word is one the
training replies write, even from a random model that spells garbage, under greedy decoding and sampling; the
rule's bookkeeping (split letters, pending UTF-8 bytes, quotes, item spans) on its own."""

import re

import pytest

from recllm.generator import GeneratorConfig, ReplyRequest, Sampling, build_model
from recllm.generator.decoding import ReplyGenerator
from recllm.generator.fact_constraint import quote_tokens
from recllm.generator.known_words import KnownWordRule, KnownWordTable, split_utf8
from recllm.generator.reply_check import check_reply, reply_words

from .conftest import name

FACT = "каждую неделю берёте кофе"
KNOWN = frozenset(reply_words("Для ужина и на завтрак подойдут. For breakfast and dinner try. Учёл, что вы"))


def test_split_utf8_keeps_a_half_written_letter_apart():
    assert split_utf8("вот".encode()) == ("вот", b"")
    assert split_utf8("во".encode() + "т".encode()[:1]) == ("во", "т".encode()[:1])
    assert split_utf8("т".encode()[1:]) is None  # a continuation byte with no lead is no text
    assert split_utf8(b"") == ("", b"")


@pytest.fixture(scope="module")
def table(tok) -> KnownWordTable:
    return KnownWordTable(quote_tokens(tok, tok.vocab_size), KNOWN)


def spell(rule: KnownWordRule, text: str, tok) -> list[bool]:
    """Feed ``text`` byte by byte (single-byte tokens: every byte-level BPE has them); whether each was allowed."""
    quotes = rule.table.quotes
    verdicts = []
    for byte in text.encode():
        token = quotes.by_bytes[bytes([byte])][0]
        verdicts.append(bool(rule.allowed()[token]))
        rule.advance(token)
    return verdicts


def test_known_words_pass_byte_by_byte_and_an_unknown_one_stops_where_it_goes_astray(table, tok):
    assert all(spell(KnownWordRule(table), "Для ужина, for dinner", tok))
    verdicts = spell(KnownWordRule(table), "Для ужзина", tok)
    assert verdicts.index(False) == len("Для уж".encode()) + 1  # «з» after «уж»: its second byte settles it
    assert not all(spell(KnownWordRule(table), "Для ужин ", tok))  # «ужин» is only the start of «ужина»


def test_a_word_ends_at_an_item_span_or_eos_only_when_known(table, tok):
    sid = tok.sid_token_ids[0]
    rule = KnownWordRule(table)
    spell(rule, "уж", tok)
    assert not rule.allowed()[sid] and not rule.allowed()[tok.eos_id]
    spell(rule, "ина", tok)
    assert rule.allowed()[sid] and rule.allowed()[tok.eos_id]
    rule.advance(sid)
    assert rule.word == "" and rule.pending == b""


def test_inside_a_quote_the_rule_is_off_and_a_quote_starts_words_afresh(table, tok):
    rule = KnownWordRule(table)
    spell(rule, "вы", tok)
    rule.advance(tok.sid_token_ids[0], in_quote=True)
    assert rule.word == "" and rule.pending == b""


def generator_over(tok, codes, words) -> ReplyGenerator:
    config = GeneratorConfig.from_name("test")
    generator = ReplyGenerator(build_model(config, tok), tok, config, codes)
    generator.reply_words = words
    return generator


def replies(generator, language, **fields):
    prompt = f"act: recommend | service: samokat | lang: {language} | query: ужин | profile: " + FACT
    out = []
    for temperature in (0.0, 1.0):
        requests = [ReplyRequest(prompt, tuple(range(12)), Sampling(temperature=temperature, seed=k),
                                 quotable_facts=(FACT,), language=language, act="recommend", **fields)
                    for k in range(8)]
        out += generator.generate_batch(requests, name)
    return out


def unknown_words(reply, budget: int) -> bool:
    """The reply's check fails with ``unknown_word`` — a word cut by the token budget aside (the streamed reply's
    guard ends at what it released)."""
    text = reply.text
    if reply.num_tokens >= budget:  # the open word (and a letter's first byte) or quote the budget cut
        text = re.sub(r"[^\W\d_]*\ufffd?$", "", text)
        if text.count('"') % 2:
            text = text[:text.rfind('"')]
        if text.rfind("«") > text.rfind("»"):
            text = text[:text.rfind("«")]
    problems = check_reply(text, reply.item_ids, range(12), [FACT], [name(i) for i in reply.item_ids],
                           known_words=KNOWN).problems
    return "unknown_word" in problems


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_random_model_writes_only_known_words_under_the_rule(tok, codes, language):
    generator = generator_over(tok, codes, KNOWN)
    budget = generator.config.max_new_tokens
    free = replies(generator, language, corpus_rules=False)
    assert any(unknown_words(r, budget) for r in free)  # the model spells garbage when let
    kept = replies(generator, language)
    assert not any(unknown_words(r, budget) for r in kept), [r.text for r in kept if unknown_words(r, budget)]


def test_without_reply_words_the_rule_is_absent(tok, codes):
    """A checkpoint trained elsewhere knows no training words: nothing is held to them."""
    generator = generator_over(tok, codes, None)
    _, constraint = generator._prepare(ReplyRequest("act: recommend | query: x", (1, 2), language="ru"))
    assert constraint.words is None
    generator.reply_words = KNOWN
    _, constraint = generator._prepare(ReplyRequest("act: recommend | query: x", (1, 2), language="ru"))
    assert constraint.words is not None


def test_another_frame_s_words():
    from recllm.generator.known_words import other_frame_words

    known = frozenset({"для", "бега", "running", "завтрака", "подойдут", "gift", "подарок"})
    assert other_frame_words(known, frozenset({"gift"})) == {"бега", "running", "завтрака"}
    assert other_frame_words(known, frozenset({"gift", "running_gear"})) == {"завтрака"}


def test_the_opening_table_holds_until_the_first_item(tok, table):
    """Before a list's first item the narrower table is in force (no word of another frame), after it the whole."""
    quotes = table.quotes
    opening = KnownWordTable(quotes, KNOWN - {"завтрак"})
    rule = KnownWordRule(table, opening)
    rule.advance(quotes.by_bytes[b"\xd0"][0], before_item=True)  # a letter's lead byte («д», «и», «з», …)
    second = quotes.by_bytes["з".encode()[1:]][0]  # «з»: only «завтрак» of the known words starts so
    assert not rule.allowed(before_item=True)[second] and rule.allowed(before_item=False)[second]


def test_after_a_token_the_rule_could_not_keep_no_letter_starts_a_new_word(tok, table):
    """Review: a step decoded without the rule (nothing else was allowed) reset the open word, so before the first
    item « уж» (refused: «ужина» is another frame's word there) + «и» read «и» as the known word «и». The word is
    now read with the whole table and stays what it is until a non-letter ends it."""
    quotes = table.quotes
    rule = KnownWordRule(table, KnownWordTable(quotes, KNOWN - {"ужина"}))
    spell_before_item = [quotes.by_bytes[bytes([b])][0] for b in "Для".encode()]
    for token in spell_before_item:
        rule.advance(token, before_item=True)
    token = quotes.by_bytes[" уж".encode()][0]
    assert not rule.allowed(before_item=True)[token]
    rule.advance(token, before_item=True)  # decoded although refused
    assert rule.word == "уж"
    lead = quotes.by_bytes["и".encode()[:1]][0]
    rule.advance(lead, before_item=True)
    assert not rule.allowed(before_item=True)[quotes.by_bytes["и".encode()[1:]][0]]  # «ужи» is no opening word
    assert rule.allowed(before_item=False)[quotes.by_bytes["и".encode()[1:]][0]]     # after an item it is «ужина»
