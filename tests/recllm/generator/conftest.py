"""Shared fixtures: a small item-code table (3 levels x 8 codes + collisions) and a tokenizer over it."""

import numpy as np
import pytest
import torch

from recllm.generator import GeneratorConfig, ItemCodes, ReplyGenerator, ReplyTokenizer, build_model
from recllm.generator.fact_constraint import quote_tokens

N_ITEMS = 60
TEXTS = ["act: recommend | service: samokat | lang: ru | query: что приготовить на ужин? | profile: -",
         "Для ужина: <item_3>, <item_5> и <item_7>.",
         "act: clarify | service: kuper | lang: en | query: breakfast | profile: you buy coffee every week",
         "For breakfast: <item_1> and <item_2>. Учёл, что вы «каждую неделю берёте кофе»."]


def make_codes(n_items: int = N_ITEMS, seed: int = 0) -> ItemCodes:
    rng = np.random.default_rng(seed)
    prefixes = rng.integers(0, 8, size=(n_items, 3))
    _, inverse = np.unique(prefixes, axis=0, return_inverse=True)
    collision = np.zeros(n_items, dtype=np.int64)
    seen: dict[int, int] = {}
    for row, group in enumerate(inverse.ravel().tolist()):
        collision[row] = seen.get(group, 0)
        seen[group] = collision[row] + 1
    books = [rng.normal(size=(8, 16)).astype(np.float32) for _ in range(3)]
    return ItemCodes(np.concatenate([prefixes, collision[:, None]], axis=1), books)


@pytest.fixture(scope="session")
def codes() -> ItemCodes:
    return make_codes()


@pytest.fixture(scope="session")
def tok(codes) -> ReplyTokenizer:
    return ReplyTokenizer.train(TEXTS * 5, codes.vocab_sizes, vocab_size=320)


def name(item_id: int) -> str:
    return f"[товар {item_id}]"


def pushed_generator(tok, codes, push, strength: float = 6.0) -> ReplyGenerator:
    """A random test-preset model whose logits favour the tokens ``push(quote_tokens)`` marks (a bool mask or ids):
    what a decoding rule must hold against."""
    config = GeneratorConfig.from_name("test")
    model = build_model(config, tok)
    bias = torch.zeros(model.config.vocab_size)
    bias[push(quote_tokens(tok, model.config.vocab_size))] = strength
    model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return ReplyGenerator(model, tok, config, codes)
