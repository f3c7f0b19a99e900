"""Quoted facts under the prefix constraint: a reply quotes only its prompt's facts, whole, under greedy, sampling
and beam search, even from a model that loves opening quotes; no facts, no quotes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.generator import GeneratorConfig, ReplyGenerator, ReplyRequest, Sampling, build_model
from recllm.generator.fact_constraint import FactSpanConstraint, quote_tokens
from recllm.generator.reply_check import cited_facts

from .conftest import name

FACT = "каждую неделю берёте кофе"
OTHER = "берёте кофе"
PROMPT = f"act: recommend | service: samokat | lang: ru | query: завтрак | profile: {FACT}"


@pytest.fixture(scope="module")
def quote_loving(tok, codes) -> ReplyGenerator:
    """A random model pushed towards every quote token, opening and closing."""
    config = GeneratorConfig.from_name("test")
    model = build_model(config, tok)
    quotes = quote_tokens(tok, model.config.vocab_size)
    bias = torch.zeros(model.config.vocab_size)
    bias[quotes.opens | quotes.closes] = 12.0
    model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return ReplyGenerator(model, tok, config, codes)


def test_the_tokenizer_has_opening_and_closing_quotes(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    assert quotes.opens.any() and quotes.closes.any()
    assert all(tok.decode([t]).rstrip().endswith(("«", "“", '"')) for t in torch.nonzero(quotes.opens).flatten())


def test_a_quote_walks_a_fact_and_closes_only_when_whole(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    c = FactSpanConstraint(tok, [FACT, OTHER], quotes, max_new_tokens=200)
    opening = int(torch.nonzero(quotes.opens).flatten()[0])
    assert c.allowed()[opening]
    c.advance(opening)
    first = set(torch.nonzero(c.allowed()).flatten().tolist())
    assert first == {tok.encode(FACT)[0], tok.encode(OTHER)[0]}
    for token in tok.encode(FACT)[:-1]:
        c.advance(token)
        assert not (c.allowed() & quotes.closes).any()          # half a fact cannot be closed
    c.advance(tok.encode(FACT)[-1])
    assert (c.allowed() == quotes.closes).all()
    c.advance(int(torch.nonzero(quotes.closes).flatten()[0]))
    assert not c.in_quote and c.allowed().all()


def test_no_facts_no_quotes_and_no_room_no_quotes(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    assert not (FactSpanConstraint(tok, [], quotes, 40).allowed() & quotes.opens).any()
    tight = FactSpanConstraint(tok, [FACT], quotes, max_new_tokens=len(tok.encode(FACT)) + 1)
    assert not (tight.allowed() & quotes.opens).any()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.sampled_from([0.0, 0.8, 1.5]), with_fact=st.booleans())
def test_every_quote_is_a_prompt_fact(quote_loving, seed, temperature, with_fact):
    facts = (FACT,) if with_fact else ()
    request = ReplyRequest(PROMPT, (1, 2, 3), Sampling(temperature, seed=seed), 40, quotable_facts=facts)
    reply = quote_loving.generate_batch([request], name)[0]
    assert all(quoted in facts for quoted in cited_facts(reply.text)), reply.text
    if not with_fact:
        assert not any(q in reply.text for q in "«»“”\"")


def test_beam_search_quotes_only_prompt_facts(quote_loving):
    reply = quote_loving.beam_search(PROMPT, (1, 2), name, beam_width=3, max_new_tokens=40, quotable_facts=(FACT,))
    assert all(quoted == FACT for quoted in cited_facts(reply.text)), reply.text


def test_the_model_does_quote_when_free(quote_loving):
    """The bias is real: unconstrained, the same model opens quotes it never closes with a fact."""
    free = quote_loving.generate(PROMPT, (1, 2, 3), name, max_new_tokens=40)
    assert any(q in free.text for q in "«“\"")
