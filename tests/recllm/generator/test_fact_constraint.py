"""Quoted facts under the prefix constraint: a reply quotes only its prompt's facts, whole, under greedy, sampling
and beam search, even from a model that loves quote tokens, and even when the tokenizer splits « into bytes; no
facts, no quotes."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.generator import ReplyGenerator, ReplyRequest, Sampling
from recllm.generator.fact_constraint import FactSpanConstraint, quote_tokens
from recllm.generator.reply_check import cited_facts

from .conftest import name, pushed_generator

FACT = "каждую неделю берёте кофе"
OTHER = "берёте кофе"
PROMPT = f"act: recommend | service: samokat | lang: ru | query: завтрак | profile: {FACT}"
QUOTE_CHARS = "«»“”\""


def quote_byte_tokens(quotes) -> list[int]:
    """The tokens that spell quote characters, whole or byte by byte (the test tokenizer splits «)."""
    wanted = set()
    for q in QUOTE_CHARS:
        data = q.encode()
        wanted |= {data, data[:1], data[1:]} - {b""}
    return [t for data, ids in quotes.by_bytes.items() for t in ids if data.strip() in wanted]


@pytest.fixture(scope="module")
def quote_loving(tok, codes) -> ReplyGenerator:
    """A random model pushed towards every token that spells a quote, whole or a byte of it."""
    return pushed_generator(tok, codes, quote_byte_tokens, strength=8.0)


def walk(tok, constraint, text: str) -> str | None:
    """Feed ``text``'s tokens; the first token the constraint refuses, or None."""
    for token in tok.encode(text):
        if not constraint.allowed()[token]:
            return tok.decode([token])
        constraint.advance(token)
    return None


def test_the_test_tokenizer_splits_the_russian_quote(tok):
    """The case a token-level rule cannot see: « is two byte tokens here."""
    assert len(tok.encode("«")) == 2


def test_a_quote_walks_a_fact_and_closes_only_when_whole(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    c = FactSpanConstraint(tok, [FACT, OTHER], quotes, max_new_tokens=400)
    assert walk(tok, c, f"Учёл, что вы «{FACT}». Ещё") is None and not c.in_quote
    c = FactSpanConstraint(tok, [FACT, OTHER], quotes, max_new_tokens=400)
    assert walk(tok, c, "Учёл, что вы «каждую неделю покупаете") is not None       # not a prompt fact
    c = FactSpanConstraint(tok, [FACT], quotes, max_new_tokens=400)
    assert walk(tok, c, "Учёл, что вы «каждую неделю»") is not None                   # half a fact cannot close
    c = FactSpanConstraint(tok, [OTHER], quotes, max_new_tokens=400)
    assert walk(tok, c, f'I kept in mind that "{OTHER}". And') is None and not c.in_quote


def test_no_facts_no_quotes_and_no_room_no_quotes(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    assert walk(tok, FactSpanConstraint(tok, [], quotes, 400), "Учёл, что вы «") is not None
    assert walk(tok, FactSpanConstraint(tok, [], quotes, 400), 'I kept "') is not None
    tight = FactSpanConstraint(tok, [FACT], quotes, max_new_tokens=len(tok.encode(FACT)) + 1)
    assert walk(tok, tight, "«") is not None


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.sampled_from([0.0, 0.8, 1.5]), with_fact=st.booleans())
def test_every_quote_is_a_prompt_fact(quote_loving, seed, temperature, with_fact):
    facts = (FACT,) if with_fact else ()
    request = ReplyRequest(PROMPT, (1, 2, 3), Sampling(temperature, seed=seed), 120, quotable_facts=facts)
    reply = quote_loving.generate_batch([request], name)[0]
    assert all(quoted in facts for quoted in cited_facts(reply.text)), reply.text
    if not with_fact:
        assert not any(q in reply.text for q in QUOTE_CHARS), reply.text


def test_beam_search_quotes_only_prompt_facts(quote_loving):
    reply = quote_loving.beam_search(PROMPT, (1, 2), name, beam_width=3, max_new_tokens=80, quotable_facts=(FACT,))
    assert all(quoted == FACT for quoted in cited_facts(reply.text)), reply.text


def test_the_model_does_quote_when_free(quote_loving):
    """The bias is real: unconstrained, the same model writes quote characters."""
    free = [quote_loving.generate(PROMPT, (1, 2, 3), name, Sampling(1.0, seed=s), max_new_tokens=60)
            for s in range(5)]
    assert any(q in reply.text for reply in free for q in QUOTE_CHARS)


def test_a_quote_holds_only_facts_that_fit_the_budget_left(tok):
    """Live: «покупали средства для уборки в» was cut by the token budget; a fact too long for what is left
    cannot be started once the quote opens."""
    quotes = quote_tokens(tok, tok.vocab_size)
    opening = tok.encode("Учёл, что вы «")
    budget = len(opening) + len(tok.encode(OTHER)) + 2
    c = FactSpanConstraint(tok, [FACT, OTHER], quotes, max_new_tokens=budget)
    assert walk(tok, c, "Учёл, что вы «") is None and c.in_quote
    assert walk(tok, c, FACT) is not None                 # the long fact no longer fits
    c = FactSpanConstraint(tok, [FACT, OTHER], quotes, max_new_tokens=budget)
    assert walk(tok, c, f"Учёл, что вы «{OTHER}»") is None and not c.in_quote


def test_outside_a_quote_no_token_opens_one_with_more_bytes_after_it():
    """Live (default build): «… Зарядное устройство realme 65 Вт and  running shoes on Megamarket from time".» — the
    byte-level token `".` after plain text opened an ASCII quote and put "." in it unchecked: a stray closing quote.
    Outside a quote, a quote may open only at the end of a token; inside one, `".` still closes it."""
    from types import SimpleNamespace

    pieces = ["you", " buy", " tea", '"', '".', " ", "."]
    fake = SimpleNamespace(control_ids=(), sid_token_ids=(), vocab_size=len(pieces),
                           token_string=lambda t: pieces[t].replace(" ", "Ġ"),
                           encode=lambda text: [0] * max(1, len(text.split())))
    quotes = quote_tokens.__wrapped__(fake, len(pieces))
    assert quotes.inner_opening.tolist() == [False, False, False, False, True, False, False]
    constraint = FactSpanConstraint(fake, ["you buy tea"], quotes, max_new_tokens=50)
    allowed = constraint.allowed()
    assert not allowed[4] and allowed[3] and allowed[2]  # `".` refused, a bare `"` may open a quote
    constraint.advance(3)  # the quote opens
    for token in (0, 1, 2):
        assert constraint.allowed()[token]
        constraint.advance(token)
    assert constraint.allowed()[4]  # `".` closes it
    constraint.advance(4)
    assert not constraint.in_quote


def test_spacing_rule_refuses_whitespace_right_after_whitespace():
    """Live (default build, greedy): «… Кола без сахара Чудо 1,5 л и  макароны в Самокате Купере я подберу точнее.» —
    after the frame's lone space before an item the model took " макароны" with its own space. After a token ending
    in whitespace, no token beginning with it; an item span (no bytes) or a plain word may follow."""
    from types import SimpleNamespace

    from recllm.generator.fact_constraint import SpacingRule

    pieces = [" and", " ", " pasta", "pasta", "."]  # byte-level pieces are Latin here; the rule reads bytes
    fake = SimpleNamespace(control_ids=(), sid_token_ids=(), vocab_size=len(pieces),
                           token_string=lambda t: pieces[t].replace(" ", "Ġ"))
    quotes = quote_tokens.__wrapped__(fake, len(pieces))
    rule = SpacingRule(quotes)
    assert rule.allowed().all()
    rule.advance(0)  # " and": ends in a letter
    assert rule.allowed().all()
    rule.advance(1)  # the lone space
    assert rule.allowed().tolist() == [False, False, False, True, True]
    copy = rule.copy()
    rule.advance(3)
    assert rule.allowed().all() and not copy.allowed()[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_reply_spaces_twice_even_from_a_model_that_loves_spaces(tok, codes, seed):
    """A random model pushed towards every token that begins with whitespace (the lone space included): greedy and
    sampled replies never put whitespace right after whitespace, nor a token holding two spaces (the test tokenizer
    has one). Checked on the tokens: a random model also emits bytes that are no UTF-8, which render as nothing."""
    generator = pushed_generator(tok, codes, lambda quotes: quotes.space_led | quotes.double_spaced)
    quotes = quote_tokens(tok, generator.model.config.vocab_size)
    assert quotes.double_spaced.any()
    for temperature in (0.0, 1.0):
        requests = [ReplyRequest(PROMPT, list(range(12)), Sampling(temperature=temperature, seed=seed * 100 + k))
                    for k in range(8)]
        previous: dict[int, bytes] = {}
        spaced = 0
        for j, token, _ in generator.stream_batch(requests):
            data = quotes.bytes[token] if token < len(quotes.bytes) else b""
            assert b"  " not in data
            assert not (previous.get(j, b"")[-1:].isspace() and data[:1].isspace()), (previous.get(j), data)
            spaced += data[:1].isspace()
            previous[j] = data
        assert spaced  # the bias did pull spaces in: the rule had something to refuse


def test_once_one_fact_fits_its_rest_is_spelled_as_the_tokenizer_spells_it(tok):
    """Inside a quote that fits one fact only, one token is allowed per step — the rest of the fact as the tokenizer
    spells it — and then the closing quote (here two byte tokens, each the only one allowed)."""
    quotes = quote_tokens(tok, tok.vocab_size)
    c = FactSpanConstraint(tok, [FACT, "you buy coffee"], quotes, max_new_tokens=60)
    assert walk(tok, c, "Учёл, что вы «") is None and c.in_quote
    assert int(c.allowed().sum()) > 1                      # two facts could open here
    first = tok.encode(FACT)[0]
    c.advance(first)                                       # «к…» fits the Russian fact only
    spelled = []
    while int(c.allowed().sum()) == 1:
        token = int(c.allowed().nonzero()[0, 0])
        spelled.append(token)
        c.advance(token)
    n = len(tok.encode(FACT))
    assert [first, *spelled][:n] == tok.encode(FACT)
    assert tok.decode(spelled[n - 1:]) == "»" and not c.in_quote


def test_the_strain_is_the_share_of_the_model_s_probability_the_corpus_rules_refused():
    from recllm.generator.fact_constraint import DecodeStrain

    strain = DecodeStrain()
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1, 0.5]))  # token 3 the other rules refuse: not counted
    others = torch.tensor([True, True, True, False])
    assert abs(strain.record(logits, others, torch.tensor([False, True, True, False])) - 0.6) < 1e-6
    assert strain.pushed and strain.pushed_steps == 1 and abs(strain.most - 0.6) < 1e-6
    nudged = DecodeStrain()
    assert abs(nudged.record(logits, others, torch.tensor([True, False, True, False])) - 0.3) < 1e-6
    assert not nudged.pushed and nudged.steps == 1
    assert nudged.record(logits, torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)) == 0.0
    with pytest.raises(ValueError, match="limit"):
        DecodeStrain(limit=0)


def test_a_request_under_the_corpus_rules_measures_them_against_the_other_rules(tok, codes):
    """The step's logits are read against what every rule but the corpus ones allows: a model sure of a digit (the
    corpus format has none) is pushed; one sure of a token every rule allows is not; without the rules no strain."""
    from recllm.generator import GeneratorConfig, ReplyGenerator, build_model

    config = GeneratorConfig.from_name("test")
    generator = ReplyGenerator(build_model(config, tok), tok, config, codes)
    generator.reply_words = frozenset({"для", "ужина"})
    request = ReplyRequest(PROMPT, (1, 2, 3), quotable_facts=(FACT,), language="ru", act="explain")
    quotes = quote_tokens(tok, generator.model.config.vocab_size)
    digit = int(quotes.digit.nonzero()[0, 0])
    _, first = generator._prepare(request)
    allowed = int(first.allowed().nonzero()[0, 0])
    for sure_of, pushed in ((digit, True), (allowed, False)):
        _, constraint = generator._prepare(request)
        logits = torch.zeros(generator.model.config.vocab_size)
        logits[sure_of] = 20.0
        constraint.measure(logits)
        assert constraint.pushed is pushed and constraint.strain.steps == 1
    _, free = generator._prepare(replace(request, corpus_rules=False))
    free.measure(logits)
    assert free.strain is None and not free.pushed
