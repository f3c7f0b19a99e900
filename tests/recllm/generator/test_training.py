"""Training our Qwen2 generator on a tiny corpus: the saved folder, and that it learns act-dependent replies that
name the first candidates first."""

import json
import random
import re

import pytest

from recllm.generator import (GeneratorConfig, GeneratorExample, ReplyGenerator, ReplyTokenizer, build_prompt,
                              encode_example, train_generator)
from recllm.generator.training import IGNORE_INDEX

from .conftest import N_ITEMS

NAMES = {i: f"товар-{i}" for i in range(N_ITEMS)}
STYLES = [  # (service, lang, query, reply opening, joiner)
    ("samokat", "ru", "что приготовить на ужин, чтобы было полезно?", "Для полезного ужина подойдут", " и"),
    ("kuper", "ru", "нужны продукты на завтрак", "На завтрак возьмите", " и"),
    ("megamarket", "en", "gift ideas for a runner", "For a runner, consider", " and"),
]
DECLINE = {"ru": "Я помогаю только с покупками.", "en": "I can only help with shopping."}


def make_example(rng: random.Random) -> GeneratorExample:
    service, lang, query, opening, joiner = rng.choice(STYLES)
    candidates = tuple(rng.sample(range(N_ITEMS), 4))
    if rng.random() < 0.2:
        return GeneratorExample(build_prompt(service, lang, "расскажи анекдот", [], "decline"), candidates,
                                DECLINE[lang])
    items = [f"<item_{i}>" for i in candidates[: rng.choice([2, 3])]]
    reply = f"{opening} {', '.join(items[:-1])}{joiner} {items[-1]}."
    return GeneratorExample(build_prompt(service, lang, query, [], "recommend"), candidates, reply)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, codes):
    rng = random.Random(0)
    examples = [make_example(rng) for _ in range(300)]
    out = tmp_path_factory.mktemp("generator")
    config = GeneratorConfig.from_name("test")
    config = type(config)(**{**config.__dict__, "sid_codebook_size": 8})
    train_generator(examples, codes, config, out, progress=False)
    return out


def test_encode_example_masks_prompt_and_ends_with_eos(tok, codes):
    example = make_example(random.Random(1))
    ids, labels = encode_example(tok, codes, example, max_len=160, max_new_tokens=48)
    sep = ids.index(tok.sep_id)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == len(labels)
    assert all(label == IGNORE_INDEX for label in labels[: sep + 1])
    assert labels[sep + 1:] == ids[sep + 1:]
    spans = [t for i in example.candidate_item_ids for t in tok.sid_span(codes.sid_of(i))]
    assert ids[ids.index(tok.cands_id) + 1: sep] == spans


def test_saved_folder_is_hf_format(trained):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generator_config.json", "item_codes.npz"):
        assert (trained / name).is_file(), name
    saved = json.loads((trained / "generator_config.json").read_text())
    arch = json.loads((trained / "config.json").read_text())
    assert arch["model_type"] == "qwen2" and arch["architectures"] == ["Qwen2ForCausalLM"]
    assert saved["num_hidden_layers"] == arch["num_hidden_layers"] == 2
    assert saved["vocab_size"] == arch["vocab_size"] == ReplyTokenizer.load(trained).vocab_size


def test_trained_model_names_first_candidate_first_and_declines(trained):
    generator = ReplyGenerator.load(trained)
    rng = random.Random(123)  # held-out candidate sets
    hits = declines = n_decline = total = 0
    for _ in range(60):
        example = make_example(rng)
        reply = generator.generate(example.prompt, example.candidate_item_ids, NAMES.__getitem__)
        assert set(reply.item_ids) <= set(example.candidate_item_ids)
        if "act: decline" in example.prompt:
            n_decline += 1
            declines += not reply.item_ids
            continue
        total += 1
        hits += bool(reply.item_ids) and reply.item_ids[0] == example.candidate_item_ids[0]
    assert hits / total > 0.6, hits  # chance is 1/4
    assert declines == n_decline


def test_the_training_replies_words_are_saved_and_loaded(trained):
    """``reply_words.json``: the words the replies wrote themselves, never an item token or a digit."""
    words = json.loads((trained / "reply_words.json").read_text(encoding="utf-8"))
    expected = set()
    for style in STYLES:
        expected |= set(re.findall(r"[^\W\d_]+", f"{style[3]} {style[4]}".lower()))
    assert expected <= set(words) and not any("item" in w or any(c.isdigit() for c in w) for w in words)
    assert ReplyGenerator.load(trained).reply_words == frozenset(words)


def test_the_training_replies_word_pairs_are_saved_and_loaded(trained):
    """``reply_word_pairs.json``: the adjacent words of the replies' own text; an item or a quote ends a run."""
    pairs = json.loads((trained / "reply_word_pairs.json").read_text(encoding="utf-8"))
    assert pairs and all(len(p.split()) == 2 for p in pairs)
    assert not any("item" in p or any(c.isdigit() for c in p) for p in pairs)
    assert ReplyGenerator.load(trained).reply_word_pairs == frozenset(pairs)
