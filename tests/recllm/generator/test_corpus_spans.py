"""The spans a prompt decides (``corpus_spans``): a nothing-left reply's offer — after its first sentence one of its
training replies' offers for the prompt's relaxation, then the end — and a list reply's opening — one of the
openings of its act, frame and language, then an item — from models pushed to write other ones; not held without
the training spans, for another act, or without room."""

import re

import torch

from recllm.generator import ReplyRequest, Sampling
from recllm.generator.fact_constraint import quote_tokens
from recllm.generator.model import GeneratorConfig
from recllm.generator.corpus_spans import OfferSpanConstraint, OpeningSpanConstraint, spans_of
from recllm.generator.training import GeneratorExample

from .conftest import name, pushed_generator

OFFERS = {"budget": {"ru": ["Могу поискать чуть дороже — поднять бюджет?"]},
          "seen": {"ru": ["Показать ещё раз то, что уже видели?"]}}
SPANS = {"offers": {"seen|ru": OFFERS["seen"]["ru"], "budget|ru": OFFERS["budget"]["ru"]},
         "openings": {"recommend|dinner|ru": ["К ужину подойдут ", "На ужин: "]},
         "separators": {"recommend|ru": [", ", " и "]}, "endings": {"recommend|ru": ["."]}}
BUDGET = 100  # the test tokenizer spells the Russian offer nearly byte by byte (36 tokens)
PROMPT = "act: nothing_left | relax: seen | service: samokat | lang: ru | query: завтрак до 100 рублей | profile: -"


def test_the_spans_are_read_from_the_training_replies():
    budget = PROMPT.replace("relax: seen", "relax: budget")
    examples = [GeneratorExample(budget, (), "Ничего подходящего не нашлось. Могу поискать чуть дороже — поднять бюджет?"),
                GeneratorExample(PROMPT.replace("lang: ru", "lang: en"), (),
                                 "Nothing fits this request. Shall I show the ones you have already seen again?"),
                GeneratorExample("act: recommend | service: samokat | lang: ru | query: x | profile: -", (1,),
                                 "Вот: <item_1>. Ещё что-нибудь?"),
                GeneratorExample("act: recommend | frame: dinner | service: kuper | lang: ru | query: x | profile: -",
                                 (1, 2), "К ужину подойдут <item_1> и <item_2>."),
                GeneratorExample("act: refine | service: kuper | lang: ru | query: x | profile: -", (1,),
                                 "Учёл, что вы «берёте кефир»: <item_1>."),  # an opening that quotes: none
                GeneratorExample("act: explain | service: kuper | lang: ru | query: x | profile: -", (1, 2),
                                 "<item_1> и <item_2> — потому что вы «берёте кефир»."),
                GeneratorExample("act: explain | service: kuper | lang: en | query: x | profile: -", (1, 2),
                                 'I picked <item_1> and <item_2> because "you buy kefir".'),
                GeneratorExample("act: explain | service: kuper | lang: en | query: x | profile: -", (1,),
                                 "<item_1> matches your request."),
                GeneratorExample("act: clarify | service: kuper | lang: ru | query: x | profile: -", (1, 2),
                                 "Сладкое или солёное? Пока несколько идей: <item_1> и <item_2>.")]
    assert spans_of(examples) == {
        "offers": {"budget|ru": ["Могу поискать чуть дороже — поднять бюджет?"],
                   "seen|en": ["Shall I show the ones you have already seen again?"]},
        "openings": {"clarify||ru": ["Сладкое или солёное? Пока несколько идей: "], "explain||en": ["", "I picked "],
                     "explain||ru": [""], "recommend||ru": ["Вот: "], "recommend|dinner|ru": ["К ужину подойдут "]},
        "separators": {"clarify|ru": [" и "], "explain|en": [" and "], "explain|ru": [" и "], "recommend|ru": [" и "],
                       "refine|ru": []},
        # an explain list ends where its quote opens, or with its sentence when it quotes nothing
        "endings": {"clarify|ru": ["."], "explain|en": [' because "', " matches your request."],
                    "explain|ru": [" — потому что вы «"], "recommend|ru": ["."], "refine|ru": ["."]}}


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
    generator.reply_spans = SPANS
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


DINNER = "act: recommend | frame: dinner | service: kuper | lang: ru | query: что на ужин? | profile: -"


def party_loving(tok, codes):
    """A model pushed to write another frame's opening («На вечеринку: ») and to end sentences."""
    party = set(tok.encode("На вечеринку: "))
    def push(quotes):
        return quotes.sentence_end | torch.tensor([t in party for t in range(quotes.vocab_size)])
    return pushed_generator(tok, codes, push, strength=4.0)


def test_a_list_reply_opens_with_an_opening_of_its_frame_and_then_names_an_item(tok, codes):
    generator = party_loving(tok, codes)
    requests = [ReplyRequest(DINNER, tuple(range(12)), Sampling(temperature=t, seed=k), 100, language="ru",
                             act="recommend", frame="dinner") for k in range(6) for t in (0.0, 1.0)]
    openings = SPANS["openings"]["recommend|dinner|ru"]
    free = generator.generate_batch(requests, name)
    assert not any(r.text.startswith(tuple(openings)) for r in free)  # the push works
    generator.reply_spans = SPANS
    held = generator.generate_batch(requests, name)
    for reply in held:
        opening = next((o for o in openings if reply.text.startswith(o)), None)
        assert opening is not None, reply.text
        assert reply.item_ids and reply.text[len(opening):].startswith(name(reply.item_ids[0])), reply.text
    # another frame, or none known: not held
    other = [ReplyRequest(DINNER, tuple(range(12)), Sampling(), 100, language="ru", act="recommend", frame="party")]
    assert not generator.generate_batch(other, name)[0].text.startswith(tuple(openings))


def test_an_opening_without_room_is_not_held(tok):
    quotes = quote_tokens(tok, tok.vocab_size)
    openings = SPANS["openings"]["recommend|dinner|ru"]
    assert OpeningSpanConstraint(tok, openings, quotes, max_new_tokens=5, item_tokens=4).allowed() is None
    roomy = OpeningSpanConstraint(tok, openings, quotes, max_new_tokens=200, item_tokens=4)
    assert roomy.allowed() is not None and not bool(roomy.allowed()[tok.eos_id])


# an item followed by other than the list's separators or its full stop (or a separator the token budget cut)
AFTER_ITEM = re.compile(r"\[товар \d+\](?!, \[товар| и \[товар|\.|,? ?$| и? ?$)")


def test_between_its_items_a_list_reply_writes_its_separators_and_ends_with_a_full_stop(tok, codes):
    """Live: «Подешевле: Носки беговые Under Armour 5 пар и ит вам к чаю или продукты.» — from a model pushed to go
    on from an item with words, the list's items are joined by the training replies' separators and the list ends
    with a full stop."""
    words = set(tok.encode(" и ит вам к чаю, 6)))"))
    def push(quotes):
        return quotes.item_codes | torch.tensor([t in words for t in range(quotes.vocab_size)])
    generator = pushed_generator(tok, codes, push, strength=3.0)
    requests = [ReplyRequest(DINNER, tuple(range(12)), Sampling(temperature=t, seed=k), 100, language="ru",
                             act="recommend", frame="dinner") for k in range(6) for t in (0.0, 1.0)]
    free = generator.generate_batch(requests, name)
    assert any(AFTER_ITEM.search(r.text) for r in free)  # the push works
    generator.reply_spans = SPANS
    held = generator.generate_batch(requests, name)
    for reply in held:
        assert not AFTER_ITEM.search(reply.text), reply.text
    assert sum(len(r.item_ids) > 1 for r in held) >= len(held) // 2  # lists, not single items


EXPLAIN = "act: explain | service: kuper | lang: ru | query: почему это? | profile: берёте кефир"
EXPLAIN_SPANS = {"openings": {"explain||ru": ["", "Я выбрал "]}, "separators": {"explain|ru": [" и "]},
                 "endings": {"explain|ru": [", потому что вы «", " подходят под ваш запрос и популярны у покупателей."]}}


def explain_tail(text: str) -> str | None:
    """The text after an explain reply's last item (None without one)."""
    names = list(re.finditer(r"\[товар \d+\]", text))
    return text[names[-1].end():] if names else None


def test_an_explain_list_goes_on_to_its_quote_or_its_whole_sentence(tok, codes):
    """Live: «Я выбрал A и B, потому что вы любите, потому что вы любите, …» — from a model pushed to write other
    text after its items, an explain list ends with what its training replies write up to their quote's opening,
    and the quote is the prompt's fact (or the whole sentence of a reply that quotes nothing); with no fact to quote,
    the ending that opens a quote is not offered."""
    generator = pushed_generator(tok, codes, lambda quotes: quotes.item_codes, strength=3.0)
    quoted = ", потому что вы «берёте кефир»"
    endings = (quoted, EXPLAIN_SPANS["endings"]["explain|ru"][1])
    def requests(facts):
        return [ReplyRequest(EXPLAIN, tuple(range(8)), Sampling(temperature=t, seed=k), 100, language="ru",
                             act="explain", frame="", quotable_facts=facts) for k in range(6) for t in (0.0, 1.0)]
    def ends_well(tail, allowed):  # one of the endings (or what the budget left of one, a cut character dropped)
        tail = None if tail is None else tail.rstrip("\ufffd")
        return tail is not None and any(tail.startswith(e) or e.startswith(tail) for e in allowed)
    free = generator.generate_batch(requests(("берёте кефир",)), name)
    assert not all(ends_well(explain_tail(r.text), endings) for r in free)  # the push works
    generator.reply_spans = EXPLAIN_SPANS
    for reply in generator.generate_batch(requests(("берёте кефир",)), name):
        assert ends_well(explain_tail(reply.text), endings), reply.text
        assert reply.text.startswith(("Я выбрал [товар", "[товар")), reply.text
    for reply in generator.generate_batch(requests(()), name):
        assert ends_well(explain_tail(reply.text), endings[1:]), reply.text
