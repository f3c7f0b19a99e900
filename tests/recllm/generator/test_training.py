"""Training the generator on a tiny synthetic corpus: it must learn to mention the first candidates first."""

import json
import logging
import random
import time

import pytest
import torch

from recllm.generator import (
    GeneratorConfig,
    GeneratorExample,
    ReplyGenerator,
    ReplyTokenizer,
    encode_example,
    train_generator,
)
from recllm.generator.training import IGNORE_INDEX

ITEM_IDS = list(range(100, 140))
NAMES = {i: f"товар-{i}" for i in ITEM_IDS}
STYLES = [  # (service, lang, query, reply opening, joiner)
    ("samokat", "ru", "что приготовить на ужин, чтобы было полезно?", "Для полезного ужина подойдут", " и"),
    ("kuper", "ru", "нужны продукты на завтрак", "На завтрак возьмите", " и"),
    ("megamarket", "en", "gift ideas for a runner", "For a runner, consider", " and"),
]
PROFILES = ["каждую неделю берёте овощи в Купере", "buys running shoes on Megamarket", "любите кофе", "no profile facts"]


def make_example(rng: random.Random) -> GeneratorExample:
    service, lang, query, opening, joiner = rng.choice(STYLES)
    candidates = tuple(rng.sample(ITEM_IDS, 4))
    n = rng.choice([2, 3])
    items = [f"<item_{i}>" for i in candidates[:n]]
    reply = f"{opening} {', '.join(items[:-1])}{joiner} {items[-1]}."
    prompt = f"service: {service} | lang: {lang} | query: {query} | profile: {rng.choice(PROFILES)}"
    return GeneratorExample(prompt, candidates, reply)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = random.Random(0)
    examples = [make_example(rng) for _ in range(300)]
    out = tmp_path_factory.mktemp("generator")
    start = time.perf_counter()
    train_generator(examples, ITEM_IDS, GeneratorConfig.from_name("test"), out, progress=False)
    logging.getLogger(__name__).info("test preset trained in %.1f s", time.perf_counter() - start)
    return out


def test_encode_example_masks_prompt_and_ends_with_eos():
    example = make_example(random.Random(1))
    tok = ReplyTokenizer.train([example.prompt, example.reply], ITEM_IDS, 300)
    ids, labels = encode_example(tok, example, max_len=160, max_new_tokens=48)
    sep = ids.index(tok.sep_id)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == len(labels)
    assert all(label == IGNORE_INDEX for label in labels[: sep + 1])
    assert labels[sep + 1 :] == ids[sep + 1 :]
    assert ids[ids.index(tok.cands_id) + 1 : sep] == [tok.item_token_id(i) for i in example.candidate_item_ids]


def test_saved_directory_layout(trained):
    out = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generator_config.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "generator_config.json").read_text())
    arch = json.loads((out / "config.json").read_text())
    assert saved["num_hidden_layers"] == arch["num_hidden_layers"] == 2
    assert saved["vocab_size"] == arch["vocab_size"] == ReplyTokenizer.load(out).vocab_size
    assert GeneratorConfig.load(out / "generator_config.json") == GeneratorConfig.from_name("test")


def test_trained_model_mentions_first_candidate_first(trained):
    generator = ReplyGenerator.load(trained)
    rng = random.Random(123)  # held-out candidate sets and prompt/profile combinations
    hits, first_two, total = 0, 0, 60
    for _ in range(total):
        example = make_example(rng)
        reply = generator.generate(example.prompt, example.candidate_item_ids, NAMES.__getitem__)
        assert set(reply.item_ids) <= set(example.candidate_item_ids)
        hits += bool(reply.item_ids) and reply.item_ids[0] == example.candidate_item_ids[0]
        first_two += reply.item_ids[:2] == example.candidate_item_ids[:2]
    # chance is 1/4 for the first item and 1/12 for the first two in order
    assert hits / total > 0.6, (hits, first_two)
    assert first_two / total > 0.25, (hits, first_two)


def test_trained_model_follows_the_reply_template(trained):
    generator = ReplyGenerator.load(trained)
    example = make_example(random.Random(7))
    reply = generator.generate(example.prompt, example.candidate_item_ids, NAMES.__getitem__)
    opening = next(s[3] for s in STYLES if s[2] in example.prompt)
    assert reply.raw_text.startswith(opening), reply.raw_text
    assert "".join(generator.stream(example.prompt, example.candidate_item_ids, NAMES.__getitem__)) == reply.text
    assert all(NAMES[i] in reply.text for i in reply.item_ids)
