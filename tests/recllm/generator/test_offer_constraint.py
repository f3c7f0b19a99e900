"""A nothing-left reply's offer (``offer_constraint``): after its first sentence the reply goes on with one of its
training replies' offers for the prompt's relaxation and ends there — from a model pushed to end sentences and to
write another relaxation's offer; not held without the offers, for another act, or without room."""

import re

import torch

from recllm.generator import ReplyRequest, Sampling
from recllm.generator.fact_constraint import quote_tokens
from recllm.generator.model import GeneratorConfig
from recllm.generator.offer_constraint import OfferSpanConstraint, offers_of
from recllm.generator.training import GeneratorExample

from .conftest import name, pushed_generator

OFFERS = {"budget": {"ru": ["Могу поискать чуть дороже — поднять бюджет?"]},
          "seen": {"ru": ["Показать ещё раз то, что уже видели?"]}}
BUDGET = 100  # the test tokenizer spells the Russian offer nearly byte by byte (36 tokens)
PROMPT = "act: nothing_left | relax: seen | service: samokat | lang: ru | query: завтрак до 100 рублей | profile: -"


def test_the_offers_are_read_from_the_nothing_left_training_replies():
    budget = PROMPT.replace("relax: seen", "relax: budget")
    examples = [GeneratorExample(budget, (), "Ничего подходящего не нашлось. Могу поискать чуть дороже — поднять бюджет?"),
                GeneratorExample(PROMPT.replace("lang: ru", "lang: en"), (),
                                 "Nothing fits this request. Shall I show the ones you have already seen again?"),
                GeneratorExample("act: recommend | service: samokat | lang: ru | query: x | profile: -", (1,),
                                 "Вот: <item_1>. Ещё что-нибудь?")]
    assert offers_of(examples) == {"budget": {"ru": ["Могу поискать чуть дороже — поднять бюджет?"]},
                                   "seen": {"en": ["Shall I show the ones you have already seen again?"]}}


def wrong_offer_loving(tok, codes):
    """A model pushed to end sentences and to write the «budget» offer's tokens."""
    seen = set(tok.encode(" " + OFFERS["budget"]["ru"][0]))
    def push(quotes):
        return quotes.sentence_end | torch.tensor([t in seen for t in range(quotes.vocab_size)])
    generator = pushed_generator(tok, codes, push, strength=4.0)
    return generator


def replies(generator, **fields):
    requests = [ReplyRequest(PROMPT, (), Sampling(temperature=t, seed=k), BUDGET, language="ru", act="nothing_left",
                             **fields) for k in range(6) for t in (0.0, 1.0)]
    return generator.generate_batch(requests, name)


def test_after_its_first_sentence_a_nothing_left_reply_offers_its_relaxation(tok, codes):
    """The test model knows nothing; pushed to the «budget» offer's tokens, held to the «seen» one."""
    generator = wrong_offer_loving(tok, codes)
    offer = " " + OFFERS["seen"]["ru"][0]
    free = replies(generator, relaxation="seen")
    assert not any(r.text.endswith(offer) for r in free)  # the push works: the model does not offer the seen ones
    generator.reply_offers = OFFERS
    held = replies(generator, relaxation="seen")
    budget = BUDGET
    for reply in held:
        first = re.match(r"^.+?[.!?]", reply.text)
        if first is None or reply.num_tokens >= budget:  # no sentence ended in the budget: nothing to hold
            continue
        assert reply.text == first.group(0) + offer, reply.text
        assert reply.token_ids[-1] != tok.eos_id and reply.num_tokens < budget  # it ended on eos (dropped)
    assert sum(r.text.endswith(offer) for r in held) >= len(held) // 2
    # another act, or no relaxation: not held
    assert not any(r.text.endswith(offer) for r in replies(generator))


def test_no_room_for_an_offer_holds_nothing(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    offer = OfferSpanConstraint(tok, OFFERS["budget"]["ru"], quotes, tok.eos_id, max_new_tokens=8)
    for token in tok.encode("Нет."):
        offer.advance(token)
    assert not offer.in_offer and offer.allowed() is None
    roomy = OfferSpanConstraint(tok, OFFERS["budget"]["ru"], quotes, tok.eos_id, max_new_tokens=400)
    for token in tok.encode("Нет."):
        roomy.advance(token)
    allowed = roomy.allowed()
    assert roomy.in_offer and allowed is not None and int(allowed.sum()) == 1  # spelled: one token at a time
    assert GeneratorConfig.from_name("test").max_new_tokens > 8
