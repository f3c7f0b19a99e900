import torch

from recllm.generator.qwen2 import PrefixKV
from recllm.user_layers.layer_context import UserLayerContext
from recllm.user_layers.prefix_attention import UserPrefixEncoder

D_U = 10


def test_shapes_and_mask(tiny_config):
    encoder = UserPrefixEncoder(tiny_config, D_U, layers=(0, 1), num_prefix=3)
    out = encoder(torch.randn(5, D_U), has_user=torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool))
    assert set(out) == {0, 1}
    kv = out[1]
    assert isinstance(kv, PrefixKV)
    assert kv.k.shape == kv.v.shape == (5, tiny_config.num_key_value_heads, 3, tiny_config.head_dim)
    assert kv.mask.tolist()[1] == [False] * 3 and kv.mask.tolist()[0] == [True] * 3


def test_absent_or_masked_prefix_is_the_base_model(tiny_model, tiny_config, tokens):
    base = tiny_model(tokens)
    assert torch.equal(tiny_model(tokens, layer_context=UserLayerContext()), base)
    encoder = UserPrefixEncoder(tiny_config, D_U, layers=(0, 1), init_std=0.5)
    u = torch.randn(tokens.shape[0], D_U)
    masked = encoder(u, has_user=torch.zeros(tokens.shape[0], dtype=torch.bool))
    torch.testing.assert_close(tiny_model(tokens, layer_context=UserLayerContext(prefixes=masked)), base,
                               rtol=1e-6, atol=1e-6)
    real = encoder(u)
    assert not torch.allclose(tiny_model(tokens, layer_context=UserLayerContext(prefixes=real)), base, atol=1e-4)


def test_prefix_gradients_reach_the_encoder(tiny_model, tiny_config, tokens):
    encoder = UserPrefixEncoder(tiny_config, D_U, layers=(1,))
    logits = tiny_model(tokens, layer_context=UserLayerContext(prefixes=encoder(torch.randn(4, D_U))))
    logits.logsumexp(-1).mean().backward()
    assert encoder.mlp[2].weight.grad is not None and encoder.mlp[2].weight.grad.abs().sum() > 0
