"""The generator's training corpus: every act, both languages, facts cited only from the prompt."""

import random
from collections import Counter

from builders.generator_corpus import (COLD_START_CLOSING, CorpusTurn, corpus_examples, recommend_reply,
                                       turn_examples)
from recllm.generator import ACTS, check_reply
from recllm.generator.reply_check import LIST_ACTS
from recllm.generator.tokenizer import ITEM_TOKEN_RE

FACTS = ("каждую неделю берёте овощи на Купере", "покупали кофе на Самокате")


def turns(n: int = 300) -> list[CorpusTurn]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        lang = rng.choice(("ru", "en"))
        out.append(CorpusTurn(intent=rng.choice(("dinner", "vague", "coffee", "gift")), language=lang,
                              service="kuper", query="ужин" if lang == "ru" else "dinner",
                              facts=FACTS if i % 3 else (), items=tuple(rng.sample(range(100), rng.choice((0, 3, 5)))),
                              cold_user=i % 7 == 0, has_budget=i % 5 == 0))
    return out


def test_every_act_in_both_languages():
    examples = corpus_examples(turns(), seed=1)
    acts = Counter((e.prompt.split(" | ")[0].removeprefix("act: "), "lang: en" in e.prompt) for e in examples)
    for act in ACTS:
        assert acts[(act, False)] > 0 and acts[(act, True)] > 0, act


def test_targets_are_clean_and_name_only_candidates():
    for example in corpus_examples(turns(), seed=2):
        named = [int(m) for m in ITEM_TOKEN_RE.findall(example.reply)]
        assert set(named) <= set(example.candidate_item_ids)
        act = example.prompt.split(" | ")[0].removeprefix("act: ")
        if act in ("decline", "nothing_left"):
            assert not named
        facts = example.prompt.split("profile: ")[1].split("; ")
        text = ITEM_TOKEN_RE.sub(lambda m: f"Item{m.group(1)}", example.reply)
        language = "en" if "lang: en" in example.prompt else "ru"
        check = check_reply(text, named, example.candidate_item_ids, facts,
                            [f"Item{i}" for i in named], language, act in LIST_ACTS)
        assert check.ok, (example.reply, check.problems)


def test_deterministic_for_a_seed():
    assert corpus_examples(turns(50), seed=3) == corpus_examples(turns(50), seed=3)
    assert turn_examples(turns(1)[0], random.Random(0))


def test_openings_follow_the_prompts_frame():
    """A recommend / refine target opens with its frame's opening (the generic one without a frame), so the model
    learns the opening from the frame serving gives it, not from guessing at the query's wording."""
    from builders.generator_corpus import GENERIC_OPENING, OPENINGS, REFINE

    rng = random.Random(5)
    queries = {"gift": "нужен подарок коллеге", "health": "нужны витамины", "dinner": "что приготовить на ужин?",
               "coffee": "good coffee for home"}
    framed = Counter()
    for i in range(400):
        intent = rng.choice(sorted(queries))
        turn = CorpusTurn(intent=intent, language="en" if intent == "coffee" else "ru", service="kuper",
                          query=queries[intent], facts=(), items=(1, 2, 3), cold_user=False)
        for example in turn_examples(turn, rng):
            act = example.prompt.split(" | ")[0].removeprefix("act: ")
            if act not in ("recommend", "refine"):
                continue
            frame = example.prompt.split("frame: ")[1].split(" | ")[0] if "| frame: " in example.prompt else ""
            table = OPENINGS if act == "recommend" else {k: v[2] for k, v in REFINE.items()}
            lang = 1 if "lang: en" in example.prompt else 0
            heads = [t.split("{items}")[0] for t in table.get(frame, GENERIC_OPENING)[lang]]
            assert any(example.reply.startswith(h) for h in heads), (example.prompt, example.reply)
            framed[(act, bool(frame))] += 1
            if act == "recommend" and frame:
                assert frame == intent
    assert all(framed[(act, has)] > 0 for act in ("recommend", "refine") for has in (True, False)), framed


def test_fact_citation_follows_the_users_explanation_style():
    """Detailed-style users always get a quoted fact in a recommendation, short-style users never, others about
    half of the time; the prompt is the same for all three (only the user layers can tell them apart)."""
    base = CorpusTurn(intent="dinner", language="ru", service="kuper", query="ужин", facts=FACTS, items=(1, 2, 3),
                      cold_user=False, user_id="u1")
    rates, prompts = {}, {}
    for style in ("detailed", "short", None):
        turn = CorpusTurn(**{**base.__dict__, "style": style})
        rng = random.Random(1)
        recommends = [e for _ in range(200) for e in turn_examples(turn, rng) if "act: recommend" in e.prompt]
        rates[style] = sum("«" in e.reply for e in recommends) / len(recommends)
        prompts[style] = {e.prompt for e in recommends}
        assert all(e.user_id == "u1" for e in recommends)
    assert rates["detailed"] == 1.0 and rates["short"] == 0.0 and 0.3 < rates[None] < 0.7
    assert prompts["detailed"] == prompts["short"] == prompts[None]


def test_some_turns_keep_only_one_or_two_items():
    rng = random.Random(3)
    long_turns = [t for t in turns(400) if len(t.items) == 5]
    lengths = Counter(len(e.candidate_item_ids) for t in long_turns for e in turn_examples(t, rng)
                      if "act: recommend" in e.prompt)
    assert lengths[1] > 0 and lengths[2] > 0 and lengths[5] > 5 * (lengths[1] + lengths[2])
    one = [e for t in long_turns for e in turn_examples(t, rng)
           if "act: recommend" in e.prompt and len(e.candidate_item_ids) == 1]
    assert all(len(ITEM_TOKEN_RE.findall(e.reply)) == 1 for e in one)


def test_a_newcomer_s_closing_never_ends_a_medicine_or_present_reply():
    """Live: cough lozenges ended «Расскажите, что вы любите» (a health turn cites no fact, so the model read the
    buyer as a newcomer); a present is not about what the buyer likes either."""
    for frame in ("health", "gift", "kid_gift"):
        turn = CorpusTurn(intent="health", language="ru", service="kuper", query="от кашля", facts=(), items=(1, 2, 3),
                          cold_user=True)
        assert COLD_START_CLOSING[0] not in recommend_reply(turn, frame, random.Random(0))
    turn = CorpusTurn(intent="dinner", language="ru", service="samokat", query="ужин", facts=(), items=(1, 2, 3),
                      cold_user=True)
    assert recommend_reply(turn, "dinner", random.Random(0)).endswith(COLD_START_CLOSING[0])
