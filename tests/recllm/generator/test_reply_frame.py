"""The reply frame read from a request: every synthetic request template gets its own intent's frame, live
phrasings get the frame a person would give them, and a refined request is framed by what was said last."""

import pytest

from recllm.generator import FRAMES, build_prompt, reply_frame
from recllm.synthetic.intents import INTENTS


def templates():
    for name, intent in INTENTS.items():
        for template in intent.templates_ru + intent.templates_en:
            for child in ("сыну", "son"):
                yield name, template.format(child=child, age="7")


@pytest.mark.parametrize("intent, query", list(templates()))
def test_every_synthetic_request_gets_its_intents_frame(intent, query):
    assert reply_frame(query, "recommend") == ("" if intent == "vague" else intent)


@pytest.mark.parametrize("query, frame", [
    ("есть что-то от давления?", "health"),          # was answered «В подарок подойдут …»
    ("Anything for a headache?", "health"),
    ("подарок маме на день рождения", "gift"),
    ("подарок внуку 6 лет", "kid_gift"),
    ("что приготовить на ужин, чтобы было полезно?", "healthy_dinner"),
    ("корм для кошки", "pet_food"),
    ("игрушку для собаки", "pet_food"),
    ("хочу новые наушники", ""),                      # no frame fits: the generic opening
])
def test_live_requests(query, frame):
    assert reply_frame(query, "recommend") == frame


@pytest.mark.parametrize("query, frame", [
    ("подарок маме на день рождения cheaper please", "cheaper"),   # was answered «Sugar-free: …»
    ("что-нибудь без сахара подешевле", "cheaper"),
    ("что-нибудь подешевле без сахара", "sugar_free"),
    ("ужин не то", "other"),
    ("кефир на завтрак без лактозы", "lactose_free"),
    ("snacks something else", "other"),
    ("ужин", ""),
])
def test_a_refinement_is_framed_by_what_was_said_last(query, frame):
    assert reply_frame(query, "refine") == frame


@pytest.mark.parametrize("act", ["clarify", "nothing_left", "decline", "explain"])
def test_other_acts_have_no_frame(act):
    assert reply_frame("подарок маме подешевле", act) == ""


def test_the_prompt_carries_a_known_frame_only():
    assert "| frame: health |" in build_prompt("kuper", "ru", "от давления", [], "recommend", frame="health")
    assert "frame" not in build_prompt("kuper", "ru", "наушники", [], "recommend")
    assert set(FRAMES) >= {"gift", "health", "cheaper", "other"}
    with pytest.raises(ValueError, match="frame must be one of"):
        build_prompt("kuper", "ru", "ужин", [], "recommend", frame="birthday")
