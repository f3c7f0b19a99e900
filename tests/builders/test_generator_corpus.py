"""The generator's training corpus: every act, both languages, facts cited only from the prompt."""

import random
from collections import Counter

from builders.generator_corpus import CorpusTurn, corpus_examples, turn_examples
from recllm.generator import ACTS, check_reply
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
        check = check_reply(text, named, example.candidate_item_ids, facts,
                            [f"Item{i}" for i in named])
        assert check.ok, (example.reply, check.problems)


def test_deterministic_for_a_seed():
    assert corpus_examples(turns(50), seed=3) == corpus_examples(turns(50), seed=3)
    assert turn_examples(turns(1)[0], random.Random(0))
