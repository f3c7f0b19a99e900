"""All user layers together through the generator's KV-cached decode: a cached step equals the full forward."""

import torch

from recllm.generator.decode_loop import StaticKVCache, prefill
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import random_adapter


def test_prefill_then_decode_equals_the_full_forward_with_every_user_layer(tiny_model, tiny_config, tokens):
    adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=8, num_segments=3, num_slots=3))
    for p in adaptive.user_layer_parameters():
        torch.nn.init.normal_(p, std=0.05)
    for slot in range(3):
        adaptive.slots.write(slot, random_adapter(tiny_config, f"a{slot}", seed=slot))
    B, T = tokens.shape
    batch = UserBatch(user_vectors=torch.randn(B, 8), has_user=torch.tensor([True, True, False, True]),
                      lora_indices=torch.tensor([[0, 2], [1, -1], [-1, -1], [2, 0]]),
                      mix_weights=torch.tensor([[0.5, 0.5], [1.0, 0.0], [1.0, 1.0], [0.3, 0.7]]))
    with torch.no_grad():
        full = adaptive(tokens, batch)  # [B, T, V]
        cache = StaticKVCache.for_model(adaptive.base, B, max_seq_len=T)
        context = adaptive.context(batch)
        last = prefill(adaptive.base, tokens[:, :-1], cache, torch.zeros(B, dtype=torch.long), context)
        step = adaptive.base(tokens[:, -1:], torch.tensor([T - 1]), cache, context)  # [B, 1, V]
    torch.testing.assert_close(last, full[:, -2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step[:, 0], full[:, -1], rtol=1e-5, atol=1e-5)
