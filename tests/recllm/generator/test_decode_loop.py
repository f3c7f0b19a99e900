"""The decode loop: batch = one by one, greedy = transformers, seeded sampling, stop conditions, streaming, hooks."""

import dataclasses

import pytest
import torch
import transformers

from recllm.generator.decode_loop import DecodeLoop, Request, StaticKVCache, decode_one_token, prefill, sample
from recllm.generator.qwen2 import Qwen2, Qwen2Config, build_qwen2

V = 128


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models decode fastest on one thread; on a busy 2-core machine more threads only wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Qwen2:
    # weights larger than HF's init so that greedy choices are far from ties
    config = Qwen2Config.from_name("tiny")
    return build_qwen2(config, seed=0).init_weights(std=0.3, generator=torch.Generator().manual_seed(1)).eval()


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, V, (n,), generator=g).tolist() for n in (5, 12, 1, 8)]


def test_batch_with_different_lengths_equals_one_by_one(model, prompts):
    loop = DecodeLoop(model)
    requests = [Request(p, max_new_tokens=12) for p in prompts]
    batch = loop.generate(requests)
    assert batch == [loop.generate([r])[0] for r in requests]
    assert all(len(out) == 12 for out in batch)


def test_greedy_equals_transformers_generate(model, prompts):
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**model.config.to_hf_config())).eval()
    hf.load_state_dict(model.state_dict())
    prompt = prompts[1]
    expected = hf.generate(torch.tensor([prompt]), max_new_tokens=10, min_new_tokens=10, do_sample=False,
                           eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert DecodeLoop(model).generate([Request(prompt, max_new_tokens=10)]) == [expected]


def test_prefill_and_decode_one_token_equal_full_forward(model, prompts):
    prompt = torch.tensor([prompts[3]])  # [1, 8]
    cache = StaticKVCache.for_model(model, 1, 12)
    left_pad = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        full = model(torch.cat([prompt, torch.tensor([[7, 9]])], dim=1))  # [1, 10, V]
        first = prefill(model, prompt, cache, left_pad)
        second = decode_one_token(model, torch.tensor([[7]]), torch.tensor([8]), cache, left_pad)
        third = decode_one_token(model, torch.tensor([[9]]), torch.tensor([9]), cache, left_pad)
    assert cache.k.shape == (2, 1, 2, 12, 16)  # [layers, B, kv_heads, max_seq, head_dim]
    for got, t in ((first, 7), (second, 8), (third, 9)):
        assert (got - full[:, t]).abs().max() <= 1e-4


def test_seeded_sampling_is_reproducible_and_batch_independent(model, prompts):
    loop = DecodeLoop(model)
    requests = [Request(p, max_new_tokens=10, temperature=1.0, top_k=20, top_p=0.9, seed=i)
                for i, p in enumerate(prompts)]
    first, second = loop.generate(requests), loop.generate(requests)
    assert first == second
    assert first == [loop.generate([r])[0] for r in requests]
    other_seed = loop.generate([dataclasses.replace(requests[0], seed=123)])[0]
    assert other_seed != first[0]
    assert first[0] != loop.generate([Request(prompts[0], max_new_tokens=10)])[0]  # not greedy


def test_greedy_and_sampled_rows_in_one_batch(model, prompts):
    loop = DecodeLoop(model)
    greedy = Request(prompts[0], max_new_tokens=6)
    sampled = Request(prompts[1], max_new_tokens=6, temperature=0.8, seed=7)
    assert loop.generate([greedy, sampled]) == [loop.generate([greedy])[0], loop.generate([sampled])[0]]


def test_top_k_one_and_tiny_top_p_are_greedy(model, prompts):
    loop = DecodeLoop(model)
    greedy = loop.generate([Request(prompts[2], max_new_tokens=8)])
    assert loop.generate([Request(prompts[2], max_new_tokens=8, temperature=2.0, top_k=1, seed=0)]) == greedy
    assert loop.generate([Request(prompts[2], max_new_tokens=8, temperature=2.0, top_p=1e-6, seed=0)]) == greedy


def test_sample_respects_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).log_softmax(-1)
    g = torch.Generator().manual_seed(0)

    def draws(top_k, top_p):
        return {sample(logits, torch.tensor([1.0]), torch.tensor([top_k]), torch.tensor([top_p]), [g]).item()
                for _ in range(300)}

    assert draws(2, 1.0) == {0, 1}
    probs = logits.softmax(-1)[0]  # ~[.64, .24, .09, .03, .01]
    assert draws(0, float(probs[0] + probs[1]) - 0.01) == {0, 1}
    assert draws(0, 1.0) >= {0, 1, 2, 3}


def test_stop_on_eos_and_per_request_max_new_tokens(model, prompts):
    loop = DecodeLoop(model)
    free = loop.generate([Request(prompts[0], max_new_tokens=10)])[0]
    eos = free[4]
    stop_at = free.index(eos)  # the first occurrence
    requests = [Request(prompts[0], max_new_tokens=10, eos_token_ids=(eos,)), Request(prompts[1], max_new_tokens=3),
                Request(prompts[3], max_new_tokens=7)]
    out = loop.generate(requests)
    assert out[0] == free[:stop_at + 1]  # eos emitted, then nothing more
    assert len(out[1]) == 3 and len(out[2]) == 7
    assert out[2] == loop.generate([requests[2]])[0]  # finished rows do not disturb the others


def test_streaming_order(model, prompts):
    requests = [Request(prompts[0], max_new_tokens=3), Request(prompts[1], max_new_tokens=1),
                Request(prompts[2], max_new_tokens=2)]
    events = list(DecodeLoop(model).stream(requests))
    assert [i for i, _ in events] == [0, 1, 2, 0, 2, 0]  # step by step, by index within a step
    collected = [[t for i, t in events if i == r] for r in range(3)]
    assert collected == DecodeLoop(model).generate(requests)


def test_stream_is_lazy(model, prompts):
    stream = DecodeLoop(model).stream([Request(prompts[0], max_new_tokens=50)])
    first = next(stream)
    assert first[0] == 0
    stream.close()


def test_logits_processor_sees_history_and_constrains(model, prompts):
    seen = []

    def only_even_tokens(request_index, generated, logits):
        seen.append((request_index.tolist(), generated.clone()))
        banned = torch.zeros(logits.shape[-1], dtype=torch.bool)
        banned[1::2] = True
        return logits.masked_fill(banned, float("-inf"))  # [B, V]

    requests = [Request(prompts[0], max_new_tokens=5), Request(prompts[1], max_new_tokens=5, temperature=1.0,
                                                                 seed=3)]
    out = DecodeLoop(model).generate(requests, logits_processor=only_even_tokens)
    assert all(t % 2 == 0 for row in out for t in row)
    assert len(seen) == 5 and seen[0][0] == [0, 1] and seen[0][1].shape == (2, 0)
    assert seen[-1][1].tolist() == [row[:4] for row in out]


def test_layer_context_reaches_the_model(model, prompts):
    class Spy:
        calls = 0

        def prefix_kv(self, layer_index):
            Spy.calls += 1
            return None

    DecodeLoop(model).generate([Request(prompts[0], max_new_tokens=3)], layer_context=Spy())
    # one probe (may the prefix live in the KV cache? layer 0 has none: no), then prefill + 2 decode steps
    assert Spy.calls == 1 + 3 * model.config.num_hidden_layers


def test_user_prefix_in_the_kv_cache_decodes_exactly_as_concatenated_per_layer(model, prompts):
    from recllm.generator.decode_loop import cacheable_prefix_len
    from recllm.generator.qwen2 import PrefixKV

    g = torch.Generator().manual_seed(5)
    n_kv, hd = model.config.num_key_value_heads, model.config.head_dim
    prefixes = {layer: PrefixKV(torch.randn(2, n_kv, 3, hd, generator=g), torch.randn(2, n_kv, 3, hd, generator=g),
                                torch.tensor([[True] * 3, [False] * 3]))  # row 1 has no user: masked out
                for layer in range(model.config.num_hidden_layers)}

    class Prefixes:
        def __init__(self, layers):
            self.layers = layers

        def prefix_kv(self, layer_index):
            return self.layers.get(layer_index)

    everywhere, partly = Prefixes(prefixes), Prefixes({0: prefixes[0]})
    assert cacheable_prefix_len(everywhere, model.config.num_hidden_layers) == 3
    assert cacheable_prefix_len(partly, model.config.num_hidden_layers) == 0
    assert cacheable_prefix_len(None, model.config.num_hidden_layers) == 0
    requests = [Request(prompts[0], max_new_tokens=6), Request(prompts[1], max_new_tokens=6)]
    loop = DecodeLoop(model)
    cached = loop.generate(requests, layer_context=everywhere)
    # the reference: a plain full-sequence forward per step, the prefix concatenated in every layer
    for row, request in enumerate(requests):
        tokens = list(request.prompt)
        one_row = Prefixes({i: PrefixKV(p.k[row:row + 1], p.v[row:row + 1], p.mask[row:row + 1])
                            for i, p in prefixes.items()})
        with torch.no_grad():
            for _ in range(6):
                tokens.append(int(model(torch.tensor([tokens]), layer_context=one_row)[0, -1].argmax()))
        assert cached[row] == tokens[len(request.prompt):]
    with torch.no_grad():
        no_prefix = loop.generate(requests[1:])
    assert cached[1] == no_prefix[0]  # a masked-out prefix is the base model


def test_too_long_is_rejected(model):
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=256"):
        DecodeLoop(model).generate([Request([1] * 250, max_new_tokens=10)])


@pytest.mark.parametrize("field, value", [("max_new_tokens", 0), ("temperature", -1.0), ("top_k", -2),
                                          ("top_p", 0.0), ("top_p", 1.5)])
def test_request_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"Request.{field}.*{value}"):
        Request([1, 2], **{field: value})


def test_empty_prompt_rejected():
    with pytest.raises(ValueError, match="Request.prompt"):
        Request([])


def test_stream_does_not_leak_inference_mode(model, prompts):
    for _ in DecodeLoop(model).stream([Request(prompts[0], max_new_tokens=2)]):
        assert not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("bucket", [1, 7, 1000])
def test_cache_bucket_does_not_change_tokens(model, prompts, bucket):
    requests = [Request(p, max_new_tokens=6) for p in prompts]
    assert DecodeLoop(model, seq_len_bucket=bucket).generate(requests) == DecodeLoop(model).generate(requests)


def test_bad_bucket_rejected(model):
    with pytest.raises(ValueError, match="seq_len_bucket.*0"):
        DecodeLoop(model, seq_len_bucket=0)


class Forcing:
    """A processor and a ``forced`` hook that agree: at steps 1, 2, 3 of each row (and 7, 8) only one token is
    allowed (one per row and step); at other steps anything goes. Counts the model's forwards."""

    FORCED_STEPS = {1, 2, 3, 7, 8}

    def __init__(self, model, rows: int):
        self.steps = [0] * rows
        self.forwards = 0
        model.register_forward_hook(self._count)

    def _count(self, module, args, output):
        self.forwards += 1

    def token(self, i: int, step: int) -> int | None:
        return 3 + (11 * i + 5 * step) % (V - 3) if step in self.FORCED_STEPS else None

    def processor(self, request_index, generated, logits):
        for row, i in enumerate(request_index.tolist()):
            token = self.token(i, generated.shape[1])
            if token is not None:
                only = torch.full_like(logits[row], float("-inf"))
                only[token] = 0.0
                logits[row] = logits[row] + only
        return logits

    def forced(self, i: int) -> int | None:
        return self.token(i, self.steps[i])

    def run(self, loop, requests):
        out = [[] for _ in requests]
        for i, token in loop.stream(requests, self.processor, forced=self.forced):
            out[i].append(token)
            self.steps[i] += 1
        return out


@pytest.mark.parametrize("rows", [1, 3])
def test_jump_forward_yields_the_same_tokens_with_fewer_forwards(prompts, rows):
    """Forced tokens ride on the next forward: the tokens equal those of one forward per token (greedy and
    sampled rows), with one forward for each run of forced steps instead of one per step."""
    config = Qwen2Config.from_name("tiny")
    requests = [Request(p, max_new_tokens=12, temperature=0.0 if i % 2 == 0 else 1.0, seed=i)
                for i, p in enumerate(prompts[:rows])]
    results = {}
    for jump in (False, True):
        model = build_qwen2(config, seed=0).init_weights(std=0.3, generator=torch.Generator().manual_seed(1)).eval()
        forcing = Forcing(model, rows)
        results[jump] = (forcing.run(DecodeLoop(model, jump_forward=jump), requests), forcing.forwards)
    (plain, plain_forwards), (jumped, jumped_forwards) = results[False], results[True]
    assert jumped == plain
    assert all(row[s] == Forcing(build_qwen2(config), rows).token(i, s) for i, row in enumerate(jumped)
               for s in Forcing.FORCED_STEPS)
    # prefill + 11 forwards (the 12th token needs none) without; with: steps 1-3 and 7-8 ride on one forward each
    assert plain_forwards == 12 and jumped_forwards == 12 - 3 - 2


def test_jump_forward_waits_for_every_row(prompts):
    """A batch jumps only when every unfinished row is forced: one row with a free choice keeps one forward per
    step (and a finished row never blocks)."""
    model = build_qwen2(Qwen2Config.from_name("tiny"), seed=0)
    forcing = Forcing(model, 2)
    forcing.forced = lambda i: forcing.token(i, forcing.steps[i]) if i == 0 else None
    forcing.run(DecodeLoop(model), [Request(prompts[0], max_new_tokens=10), Request(prompts[1], max_new_tokens=10)])
    assert forcing.forwards == 10
    forcing = Forcing(model, 2)
    forcing.run(DecodeLoop(model), [Request(prompts[0], max_new_tokens=10), Request(prompts[1], max_new_tokens=1)])
    assert forcing.forwards == 10 - 3 - 2


class ScriptedJoiner:
    """Hands requests to a running batch at given step boundaries (continuous batching)."""

    def __init__(self, arrivals: dict[int, list[Request]], max_rows: int = 8):
        self.arrivals, self.max_rows = dict(arrivals), max_rows
        self.boundary = 0
        self.contexts: list[list[int]] = []

    def take(self, free_rows: int) -> list[Request]:
        self.boundary += 1
        due = self.arrivals.pop(self.boundary, [])
        taken, rest = due[:free_rows], due[free_rows:]
        if rest:  # no room: they come at the next boundary
            self.arrivals[self.boundary + 1] = rest + self.arrivals.get(self.boundary + 1, [])
        return taken

    def layer_context(self, request_indices):
        self.contexts.append(list(request_indices))
        return None


@pytest.mark.parametrize("jump", [False, True])
def test_a_request_that_joins_a_running_batch_decodes_as_it_would_alone(model, prompts, jump):
    """Continuous batching: requests join at later step boundaries (shorter and longer prompts than the batch has
    filled, greedy and sampled, one arriving when the batch is full) and rows leave when they finish; each yields
    the tokens it yields alone, and the user layers are asked for each new set of rows."""
    loop = DecodeLoop(model, jump_forward=jump)
    first = [Request(prompts[0], max_new_tokens=6), Request(prompts[1], max_new_tokens=14, temperature=1.0, seed=5)]
    later = {2: [Request(prompts[2], max_new_tokens=9)],
             4: [Request(prompts[3] * 3, max_new_tokens=7, temperature=0.8, top_k=20, seed=1),
                 Request(prompts[1], max_new_tokens=5), Request(prompts[0], max_new_tokens=4)]}
    everyone = first + [r for boundary in sorted(later) for r in later[boundary]]
    joiner = ScriptedJoiner(later, max_rows=3)
    out: dict[int, list[int]] = {}
    for i, token in loop.stream(first, joiner=joiner):
        out.setdefault(i, []).append(token)
    alone = [loop.generate([r])[0] for r in everyone]
    assert [out.get(i) for i in range(len(everyone))] == alone
    assert joiner.contexts[0] == [0, 1] and [2] in joiner.contexts and max(len(c) for c in joiner.contexts) <= 3


def test_a_request_arriving_as_the_batch_empties_starts_it_afresh(model, prompts):
    loop = DecodeLoop(model)
    first = [Request(prompts[0], max_new_tokens=2)]
    joiner = ScriptedJoiner({2: [Request(prompts[1], max_new_tokens=4)]})
    out: dict[int, list[int]] = {}
    for i, token in loop.stream(first, joiner=joiner):
        out.setdefault(i, []).append(token)
    assert out == {0: loop.generate(first)[0], 1: loop.generate([Request(prompts[1], max_new_tokens=4)])[0]}
