"""Reply decoding on random models: item spans only name open candidates, once, under greedy, sampling and beam
search; batches equal single requests; streaming equals generation; per-request errors; a live trie."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.generator import (GeneratorConfig, ItemSpanConstraint, ReplyGenerator, ReplyRequest, Sampling,
                              build_model, text_token_mask)

from .conftest import N_ITEMS, name

PROMPT = "act: recommend | service: samokat | lang: ru | query: ужин | profile: -"


def generator_of(tok, codes, item_bias: float = 0.0) -> ReplyGenerator:
    """A random model; ``item_bias`` pushes every SID token up (forbidden ones included)."""
    config = GeneratorConfig.from_name("test")
    model = build_model(config, tok)
    if item_bias:
        bias = torch.zeros(tok.vocab_size)
        bias[list(tok.sid_token_ids)] = item_bias
        bias[list(tok.control_ids)] = item_bias / 2  # <bos>/<sep>/... must still never be emitted
        model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return ReplyGenerator(model, tok, config, codes)


@pytest.fixture(scope="module")
def item_loving(tok, codes):
    return generator_of(tok, codes, item_bias=30.0)


@pytest.fixture(scope="module")
def plain(tok, codes):
    return generator_of(tok, codes)


def test_constraint_walks_spans_and_closes_items(tok, codes):
    mask = text_token_mask(tok, tok.vocab_size)
    c = ItemSpanConstraint(tok, codes, [4, 9], mask, max_items=5, max_new_tokens=40)
    first = set(torch.nonzero(c.allowed()).flatten().tolist()) & set(tok.sid_token_ids)
    assert first == {tok.sid_token_id(0, codes.sid_of(4)[0]), tok.sid_token_id(0, codes.sid_of(9)[0])}
    items = [c.advance(t) for t in tok.sid_span(codes.sid_of(4))]
    assert items[-1] == 4 and items[:-1] == [None] * 3
    allowed = c.allowed()
    assert not allowed[tok.sid_token_id(0, codes.sid_of(4)[0])] or codes.sid_of(4)[0] == codes.sid_of(9)[0]
    with pytest.raises(ValueError):  # a span that names no open candidate cannot be fed
        for t in tok.sid_span(codes.sid_of(4)):
            c.advance(t)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 8), temperature=st.sampled_from([0.0, 0.7, 1.5]))
def test_only_open_candidates_once(item_loving, seed, n, temperature):
    rng = random.Random(seed)
    candidates = tuple(rng.sample(range(N_ITEMS), n))
    reply = item_loving.generate(PROMPT, candidates, name, Sampling(temperature, seed=seed), max_new_tokens=30)
    assert set(reply.item_ids) <= set(candidates)
    assert len(set(reply.item_ids)) == len(reply.item_ids) <= item_loving.config.max_items_per_reply
    assert all(t not in item_loving.tokenizer.control_ids for t in reply.token_ids)
    for item in reply.item_ids:
        assert name(item) in reply.text


def test_out_of_stock_item_is_never_generated(item_loving):
    """The trie is built per request from the ranked list: an item dropped from it (out of stock) is gone at once,
    with the same model."""
    before = item_loving.generate(PROMPT, (1, 2, 3), name, max_new_tokens=30)
    assert before.item_ids
    dropped = before.item_ids[0]
    after = [item_loving.generate(PROMPT, tuple(i for i in (1, 2, 3) if i != dropped), name,
                                  Sampling(1.0, seed=s), max_new_tokens=30) for s in range(20)]
    assert all(dropped not in r.item_ids for r in after)


def test_beam_search_names_valid_unique_items(item_loving, plain):
    for gen in (item_loving, plain):
        reply = gen.beam_search(PROMPT, (5, 6, 7, 8), name, beam_width=3, max_new_tokens=24)
        assert set(reply.item_ids) <= {5, 6, 7, 8}
        assert len(set(reply.item_ids)) == len(reply.item_ids)
    greedy = plain.generate(PROMPT, (5, 6), name, max_new_tokens=16)
    beam1 = plain.beam_search(PROMPT, (5, 6), name, beam_width=1, max_new_tokens=16)
    assert beam1.token_ids[: len(greedy.token_ids)] == greedy.token_ids[: len(beam1.token_ids)]


def test_batch_equals_single_and_isolates_bad_requests(plain):
    requests = [ReplyRequest(PROMPT, (1, 2)), ReplyRequest("", (1,)), ReplyRequest(PROMPT + " и ещё", (3, 4, 5)),
                ReplyRequest(PROMPT, (10_000,)), ReplyRequest(PROMPT, (7,), Sampling(0.9, seed=3))]
    batch = plain.generate_batch(requests, name)
    assert isinstance(batch[1], ValueError) and isinstance(batch[3], ValueError)
    for i in (0, 2, 4):
        alone = plain.generate_batch([requests[i]], name)[0]
        assert batch[i].token_ids == alone.token_ids and batch[i].text == alone.text


def test_stream_equals_generate(plain, item_loving):
    for gen in (plain, item_loving):
        streamed = "".join(gen.stream(PROMPT, (2, 3, 4), name, max_new_tokens=30))
        assert streamed == gen.generate(PROMPT, (2, 3, 4), name, max_new_tokens=30).text
    with pytest.raises(ValueError, match="prompt is empty"):
        plain.stream(" ", (1,), name)


def test_save_load_round_trip_and_transformers_reads_it(plain, tmp_path):
    from recllm.generator import save_generator

    save_generator(plain.model, plain.tokenizer, plain.config, plain.codes, tmp_path)
    back = ReplyGenerator.load(tmp_path)
    a = plain.generate(PROMPT, (1, 2), name, max_new_tokens=12)
    assert back.generate(PROMPT, (1, 2), name, max_new_tokens=12).token_ids == a.token_ids
    transformers = pytest.importorskip("transformers")
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path, local_files_only=True, dtype=torch.float32).eval()
    ids = torch.tensor([plain.tokenizer.encode_prompt(PROMPT, [plain.codes.sid_of(1)], 100)])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, plain.model(ids), atol=1e-4, rtol=1e-4)


def test_jump_forward_names_the_same_items_with_fewer_forwards(tok, codes):
    """An item span's codes after its first are forced once one candidate is left: they ride on the next forward.
    Greedy and sampled replies, alone and batched, are the same token for token as with a forward per token."""
    requests = [ReplyRequest(PROMPT, (1, 2, 3, 4, 5), Sampling(temperature, seed=k), max_new_tokens=30)
                for k, temperature in enumerate((0.0, 0.0, 1.0, 0.7))]
    replies, forwards = {}, {}
    for jump in (False, True):
        generator = generator_of(tok, codes, item_bias=30.0)
        generator.loop.jump_forward = jump
        count = [0]
        generator.model.register_forward_hook(lambda module, args, out: count.__setitem__(0, count[0] + 1))
        replies[jump] = [generator.generate_batch([r], name)[0] for r in requests]
        replies[jump] += generator.generate_batch(requests, name)
        forwards[jump] = count[0]
    assert [r.token_ids for r in replies[True]] == [r.token_ids for r in replies[False]]
    assert any(r.item_ids for r in replies[True])
    assert forwards[True] < forwards[False]
