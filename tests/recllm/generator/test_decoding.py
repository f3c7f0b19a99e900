"""Constrained decoding: the item mask on its own (incl. a hypothesis property) and end to end on random models."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.generator import (
    GeneratorConfig,
    ReplyGenerator,
    ReplyTokenizer,
    build_model,
    constrain_logits,
    decode_one_token,
    item_constraint_mask,
    prefill,
    render_deltas,
    save_generator,
    text_token_mask,
)
from transformers import DynamicCache

ITEM_IDS = list(range(50))
TEXTS = ["service: samokat | lang: ru | query: что приготовить на ужин?", "Для ужина: <item_3>, <item_5>.",
         "service: kuper | lang: en | query: breakfast | profile: buys coffee", "For breakfast: <item_1> and <item_2>."]


def name(item_id: int) -> str:
    return f"[товар {item_id}]"


@pytest.fixture(scope="module")
def tok():
    return ReplyTokenizer.train(TEXTS * 5, ITEM_IDS, vocab_size=320)


@pytest.fixture(scope="module")
def random_generator(tok):
    config = GeneratorConfig.from_name("test")
    return ReplyGenerator(build_model(config, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id), tok, config)


@pytest.fixture
def item_loving_generator(tok):
    """A random model whose LM head strongly prefers every item token, including forbidden ones."""
    config = GeneratorConfig.from_name("test")
    model = build_model(config, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id)
    bias = torch.zeros(tok.vocab_size)
    bias[list(tok.item_token_ids)] = 100.0
    bias[list(tok.control_ids)] = 50.0  # <bos>/<sep>/... must still never be emitted
    model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return ReplyGenerator(model, tok, config)


# -- the mask on its own -------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(data=st.data(), vocab=st.integers(8, 64), max_items=st.integers(1, 6))
def test_masked_argmax_is_never_a_forbidden_token(data, vocab, max_items):
    item_tokens = data.draw(st.sets(st.integers(2, vocab - 1), min_size=1, max_size=vocab - 2))
    control = data.draw(st.sets(st.sampled_from(sorted(set(range(vocab)) - item_tokens)), max_size=3))
    eos = data.draw(st.sampled_from(sorted(set(range(vocab)) - item_tokens)))
    text_mask = torch.ones(vocab, dtype=torch.bool)
    text_mask[list(item_tokens | control)] = False
    text_mask[eos] = True
    candidates = data.draw(st.lists(st.sampled_from(sorted(item_tokens)), unique=True))
    mentioned = data.draw(st.sets(st.sampled_from(sorted(item_tokens))))
    logits = torch.tensor(data.draw(st.lists(st.floats(-1e4, 1e4), min_size=vocab, max_size=vocab)))

    allowed = item_constraint_mask(text_mask, candidates, mentioned, max_items)
    token = int(constrain_logits(logits, allowed).argmax())

    assert allowed[eos]
    assert token not in control - {eos}
    if token in item_tokens:
        assert token in candidates and token not in mentioned and len(mentioned) < max_items


def test_mask_opens_only_unmentioned_candidates_until_the_limit(tok):
    text_mask = text_token_mask(tok, tok.vocab_size + 7)  # padded checkpoint vocab
    assert not text_mask[tok.vocab_size :].any()
    assert text_mask[tok.eos_id] and not text_mask[[tok.bos_id, tok.sep_id, tok.cands_id, tok.pad_id]].any()
    cands = [tok.item_token_id(i) for i in (4, 9, 11)]
    allowed = item_constraint_mask(text_mask, cands, {cands[1]}, max_items=2)
    assert allowed[cands[0]] and allowed[cands[2]] and not allowed[cands[1]]
    assert not allowed[tok.item_token_id(5)]
    assert not item_constraint_mask(text_mask, cands, {cands[0], cands[1]}, max_items=2)[cands[2]]


# -- end to end ----------------------------------------------------------------------------------------------------

def test_random_model_mentions_only_candidates_once(random_generator):
    rng = random.Random(0)
    for _ in range(10):
        cands = rng.sample(ITEM_IDS, rng.randint(0, 6))
        reply = random_generator.generate(rng.choice(TEXTS[::2]), cands, name, max_new_tokens=24)
        assert set(reply.item_ids) <= set(cands) and len(set(reply.item_ids)) == len(reply.item_ids)
        assert reply.num_tokens <= 24


def test_item_loving_model_is_held_to_candidates_and_limit(item_loving_generator):
    gen, tok = item_loving_generator, item_loving_generator.tokenizer
    cands = [7, 3, 42, 0, 19, 25, 8]
    reply = gen.generate("что приготовить на ужин?", cands, name, max_new_tokens=12)
    assert len(reply.item_ids) == gen.config.max_items_per_reply
    assert set(reply.item_ids) <= set(cands) and len(set(reply.item_ids)) == len(reply.item_ids)
    assert "<bos>" not in reply.raw_text and "<sep>" not in reply.raw_text and "<cands>" not in reply.raw_text
    assert all(name(i) in reply.text for i in reply.item_ids)
    assert reply.raw_text.count("<item_") == len(reply.item_ids)
    assert gen.generate("ужин", [], name, max_new_tokens=6).item_ids == ()


def test_bad_requests_raise_before_decoding(random_generator):
    with pytest.raises(ValueError, match="empty"):
        random_generator.stream("  ", [1, 2], name)
    with pytest.raises(ValueError, match=r"\[777, 1000\]"):
        random_generator.stream("ужин", [1, 777, 1000], name)
    with pytest.raises(ValueError, match="max_new_tokens"):
        random_generator.generate("ужин", [1], name, max_new_tokens=0)


def test_kv_cache_decoding_matches_full_forward(random_generator):
    model = random_generator.model
    ids = torch.tensor([[1, 10, 11, 12, 13]])  # [1, T]
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        first = prefill(model, ids[:, :-1], cache)  # [V]
        second = decode_one_token(model, ids[:, -1:], cache)  # [V]
        full = model(input_ids=ids).logits[0]  # [T, V]
    torch.testing.assert_close(first, full[-2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, full[-1], atol=1e-5, rtol=1e-5)


def test_render_deltas_never_splits_a_character(tok):
    text = "Для ужина: <item_3>, ёжик 🙂 <item_5>."
    ids = tok.encode(text)
    deltas = list(render_deltas(iter(ids), tok, name))
    assert "".join(deltas) == text.replace("<item_3>", name(3)).replace("<item_5>", name(5))
    assert all("\ufffd" not in d for d in deltas)


def test_stream_matches_generate_and_load_round_trip(random_generator, tmp_path):
    save_generator(random_generator.model, random_generator.tokenizer, random_generator.config, tmp_path)
    loaded = ReplyGenerator.load(tmp_path)
    prompt, cands = "service: samokat | query: ужин", [5, 6, 7]
    reply = loaded.generate(prompt, cands, name, max_new_tokens=16)
    assert reply == random_generator.generate(prompt, cands, name, max_new_tokens=16)
    assert "".join(loaded.stream(prompt, cands, name, max_new_tokens=16)) == reply.text


def test_load_refuses_non_local_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReplyGenerator.load(tmp_path / "Qwen/Qwen2-0.5B")
