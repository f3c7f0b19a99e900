"""Our Qwen2 against transformers' Qwen2ForCausalLM, its config mapping, KV cache, padding and the user-layer hooks."""

import dataclasses

import pytest
import torch
import transformers
from torch import nn

from recllm.generator.decode_loop import StaticKVCache
from recllm.generator.qwen2 import PRESETS, PrefixKV, Qwen2, Qwen2Config, build_qwen2, num_parameters_estimate

TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine more threads only wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides) -> Qwen2Config:
    return dataclasses.replace(Qwen2Config.from_name("tiny"), **overrides)


def randomize(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Every parameter random (biases and norm weights included), so that each one matters in comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if p.ndim == 1 and "norm" in _name(model, p)
                                                               else 0.0))
    return model


def _name(model, param):
    return next(n for n, p in model.named_parameters() if p is param)


def hf_pair(config: Qwen2Config, seed: int = 0):
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config.to_hf_config())).eval()
    randomize(hf, seed)
    ours = Qwen2(config).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    return hf, ours


# --- config -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    config = Qwen2Config.from_name(name)
    assert config.hidden_size % config.num_attention_heads == 0


@pytest.mark.parametrize("name, billions", [("qwen2-0.5b", 0.494), ("qwen2-7b", 7.616), ("qwen2-72b", 72.71)])
def test_published_presets_have_published_sizes(name, billions):
    assert num_parameters_estimate(Qwen2Config.from_name(name)) / 1e9 == pytest.approx(billions, rel=0.01)


def test_estimate_matches_a_real_model():
    for tie in (True, False):
        model = Qwen2(tiny(tie_word_embeddings=tie))
        assert model.num_parameters() == num_parameters_estimate(model.config)


def test_unknown_preset():
    with pytest.raises(ValueError, match="'huge'"):
        Qwen2Config.from_name("huge")


@pytest.mark.parametrize("field, value", [
    ("hidden_size", 0), ("vocab_size", -1), ("num_attention_heads", 5), ("num_key_value_heads", 3),
    ("rope_theta", 0.0), ("rms_norm_eps", -1e-6), ("num_hidden_layers", 1.5), ("tie_word_embeddings", "yes"),
])
def test_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*{value!r}|{field}={value}"):
        tiny(**{field: value})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_hf_config_round_trip(name):
    config = Qwen2Config.from_name(name)
    hf_dict = config.to_hf_config()
    assert Qwen2Config.from_hf_config(hf_dict) == config
    hf = transformers.Qwen2Config(**hf_dict)
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"):
        assert getattr(hf, key) == getattr(config, key), key
    assert hf.rope_parameters["rope_theta"] == config.rope_theta
    assert Qwen2Config.from_hf_config(hf.to_dict()) == config


@pytest.mark.parametrize("hf_dict, match", [
    ({"model_type": "llama"}, "model_type.*'llama'"),
    ({"hidden_act": "gelu"}, "hidden_act.*'gelu'"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling rope type.*'yarn'"),
])
def test_from_hf_config_rejects(hf_dict, match):
    with pytest.raises(ValueError, match=match):
        Qwen2Config.from_hf_config(tiny().to_hf_config() | hf_dict)


# --- equality with transformers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("heads, kv_heads, tie", [(4, 4, True), (4, 2, False), (8, 2, True), (4, 1, False)])
def test_logits_equal_transformers(heads, kv_heads, tie):
    config = tiny(num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=tie,
                  rope_theta=500.0)
    hf, ours = hf_pair(config, seed=heads + kv_heads)
    tokens = torch.randint(0, config.vocab_size, (3, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = hf(tokens).logits, ours(tokens)
    assert expected.abs().max() > 1.0  # weights large enough for the comparison to mean something
    assert (got - expected).abs().max() <= TOL
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tie


def test_left_padded_rows_equal_unpadded_rows():
    config = tiny()
    _, ours = hf_pair(config)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(1, config.vocab_size, (n,), generator=g) for n in (7, 3, 5)]
    T = 7
    tokens = torch.stack([torch.cat([torch.zeros(T - len(p), dtype=torch.long), p]) for p in prompts])  # [3, 7]
    left_pad = torch.tensor([T - len(p) for p in prompts])
    with torch.no_grad():
        batch = ours(tokens, left_pad=left_pad)
        for i, p in enumerate(prompts):
            alone = ours(p[None])
            assert (batch[i, T - len(p):] - alone[0]).abs().max() <= TOL


def test_kv_cache_decode_equals_full_forward():
    config = tiny(num_key_value_heads=1)
    _, ours = hf_pair(config, seed=3)
    tokens = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    cache = StaticKVCache.for_model(ours, batch_size=2, max_seq_len=16)
    with torch.no_grad():
        full = ours(tokens)  # [2, 12, V]
        steps = [ours(tokens[:, :5], torch.arange(5), cache)]  # prefill 5 tokens
        for t in range(5, 12):
            steps.append(ours(tokens[:, t:t + 1], torch.tensor([t]), cache))
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL


def test_last_token_only():
    _, ours = hf_pair(tiny())
    tokens = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert (ours(tokens, last_token_only=True) - ours(tokens)[:, -1:]).abs().max() <= TOL


def test_build_is_seeded_and_bf16_runs():
    a, b = build_qwen2(tiny(), seed=5), build_qwen2(tiny(), seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    half = build_qwen2(tiny(), seed=5, dtype=torch.bfloat16)
    with torch.no_grad():
        assert half(torch.randint(0, 128, (1, 4))).dtype == torch.bfloat16


# --- hooks for the adaptive user layers ----------------------------------------------------------------------------

class _Context:
    def __init__(self, prefix=None, scale=None):
        self.prefix, self.scale, self.seen = prefix, scale, []

    def prefix_kv(self, layer_index):
        return None if self.prefix is None else self.prefix[layer_index]


class _ScaledNorm(nn.Module):
    """Stands in for a conditional RMSNorm: wraps the base norm and scales each row by ctx.scale[row]."""
    takes_layer_context = True

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x, ctx):
        out = self.base(x)
        if ctx is None or ctx.scale is None:
            return out
        ctx.seen.append("norm")
        return out * ctx.scale[:, None, None]


class _ZeroLoRA(nn.Module):
    """Stands in for a multi-LoRA linear: base(x) + (x A) B with B = 0, so it starts as the identity."""
    takes_layer_context = True

    def __init__(self, base, rank=2):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(base.in_features, rank))
        self.b = nn.Parameter(torch.zeros(rank, base.out_features))

    def forward(self, x, ctx):
        if ctx is not None:
            ctx.seen.append("lora")
        return self.base(x) + (x @ self.a) @ self.b


def test_context_modules_plug_in_by_assignment():
    _, ours = hf_pair(tiny())
    tokens = torch.randint(0, 128, (2, 6))
    with torch.no_grad():
        base = ours(tokens)
        for layer in ours.model.layers:
            layer.input_layernorm = _ScaledNorm(layer.input_layernorm)
            layer.post_attention_layernorm = _ScaledNorm(layer.post_attention_layernorm)
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(layer.self_attn, name, _ZeroLoRA(getattr(layer.self_attn, name)))
        assert (ours(tokens) - base).abs().max() <= TOL  # no context: the base model
        ctx = _Context(scale=torch.tensor([1.0, 1.0]))
        assert (ours(tokens, layer_context=ctx) - base).abs().max() <= TOL
        assert ctx.seen.count("norm") == 4 and ctx.seen.count("lora") == 8  # 2 layers x (2 norms, 4 linears)
        ctx = _Context(scale=torch.tensor([1.0, 0.5]))
        out = ours(tokens, layer_context=ctx)
        assert (out[0] - base[0]).abs().max() <= TOL and (out[1] - base[1]).abs().max() > 1e-2


def test_prefix_kv_equals_attending_to_prefix_tokens():
    """Prefix keys/values taken from the cache of real prefix tokens reproduce the logits of prefix + tokens; a row
    whose prefix is masked out reproduces the logits without a prefix; an absent prefix changes nothing."""
    config = tiny()
    _, ours = hf_pair(config, seed=4)
    g = torch.Generator().manual_seed(4)
    prefix_tokens = torch.randint(0, config.vocab_size, (2, 4), generator=g)
    tokens = torch.randint(0, config.vocab_size, (2, 5), generator=g)
    cache = StaticKVCache.for_model(ours, batch_size=2, max_seq_len=4)
    with torch.no_grad():
        ours(prefix_tokens, torch.arange(4), cache)
        mask = torch.tensor([[True] * 4, [False] * 4])
        prefix = [PrefixKV(cache.k[i], cache.v[i], mask) for i in range(config.num_hidden_layers)]
        with_prefix = ours(tokens, torch.arange(4, 9), layer_context=_Context(prefix=prefix))
        full = ours(torch.cat([prefix_tokens, tokens], dim=1))[:, 4:]
        assert (with_prefix[0] - full[0]).abs().max() <= TOL
        # row 1 has no prefix: it is the plain forward at positions 4..8
        plain = ours(tokens, torch.arange(4, 9))
        assert (with_prefix[1] - plain[1]).abs().max() <= TOL
        assert torch.equal(ours(tokens, layer_context=_Context()), ours(tokens))
