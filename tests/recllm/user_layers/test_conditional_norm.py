import pytest
import torch

from kernels.conditional_rmsnorm.reference import conditional_rms_norm_reference
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.conditional_norm import ConditionalRMSNorm, install_conditional_norms
from recllm.user_layers.layer_context import UserLayerContext

D_U = 12


def test_untrained_conditional_norms_are_the_base_model_bit_for_bit(tiny_model, tokens):
    base_logits = tiny_model(tokens)
    install_conditional_norms(tiny_model, D_U, layers=(0, 1))
    u = torch.randn(tokens.shape[0], D_U)
    logits = tiny_model(tokens, layer_context=UserLayerContext(norm_vectors=u))
    assert torch.equal(logits, base_logits)


def test_a_batch_of_one_folds_its_scale_into_the_norm_weight_at_inference(tiny_model, tokens):
    """Inference with one request: (1 + γ) folded into the weight; untrained it is still the base model bit for
    bit, trained it equals the reference up to rounding, and decode steps reuse what the context prepared."""
    one = tokens[:1]
    with torch.inference_mode():
        base_logits = tiny_model(one)
    norms = install_conditional_norms(tiny_model, D_U, layers=(0, 1))
    u = torch.randn(1, D_U)
    with torch.inference_mode():
        assert torch.equal(tiny_model(one, layer_context=UserLayerContext(norm_vectors=u)), base_logits)
    norm = norms[0]
    torch.nn.init.normal_(norm.modulation.weight, std=0.3)
    torch.nn.init.normal_(norm.modulation.bias, std=0.3)
    x = torch.randn(1, 5, 64)
    context = UserLayerContext(norm_vectors=u)
    with torch.inference_mode():
        y = norm(x, context)
        step = norm(x[:, -1:], context)  # a decode step: the prepared forward, one token
        gamma, beta = norm.modulation(u).chunk(2, -1)
    expected = conditional_rms_norm_reference(x[0], norm.base.weight, gamma.expand(5, -1), beta.expand(5, -1),
                                              norm.base.eps)
    torch.testing.assert_close(y[0], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(step[0], expected[-1:], rtol=1e-6, atol=1e-6)


def test_trained_modulation_matches_the_formula_and_is_per_row(tiny_model):
    norm = ConditionalRMSNorm(tiny_model.model.layers[0].input_layernorm, D_U)
    torch.nn.init.normal_(norm.modulation.weight, std=0.3)
    torch.nn.init.normal_(norm.modulation.bias, std=0.3)
    x, u = torch.randn(3, 5, 64), torch.randn(3, D_U)
    y = norm(x, UserLayerContext(norm_vectors=u))
    gamma, beta = norm.modulation(u).chunk(2, -1)
    for row in range(3):
        expected = conditional_rms_norm_reference(x[row], norm.base.weight, gamma[row].expand(5, -1),
                                                  beta[row].expand(5, -1), norm.base.eps)
        torch.testing.assert_close(y[row], expected, rtol=1e-6, atol=1e-6)
    masked = norm(x, UserLayerContext(norm_vectors=u, norm_mask=torch.tensor([True, False, True])))
    assert torch.equal(masked[1], norm.base(x[1:2])[0])
    assert not torch.allclose(masked[0], norm.base(x[0:1])[0])


def test_cpu_fast_path_is_the_kernel_arithmetic_bit_for_bit_and_bf16_takes_the_kernel(tiny_model, monkeypatch):
    norm = ConditionalRMSNorm(tiny_model.model.layers[0].input_layernorm, D_U)
    torch.nn.init.normal_(norm.modulation.weight, std=0.3)
    torch.nn.init.normal_(norm.modulation.bias, std=0.3)
    x, u = torch.randn(3, 4, 64), torch.randn(3, D_U)
    context = UserLayerContext(norm_vectors=u, norm_mask=torch.tensor([True, False, True]))
    with torch.inference_mode():
        fast = norm(x, context)
        again = norm(x, context)  # (1 + γ, β) from the context's cache
        kernel = norm._kernel_forward(x, UserLayerContext(norm_vectors=u, norm_mask=context.norm_mask))
    assert torch.equal(fast, kernel) and torch.equal(again, fast)
    import recllm.user_layers.conditional_norm as module

    calls = []
    monkeypatch.setattr(module, "conditional_rms_norm", lambda *a: calls.append(1) or conditional_rms_norm_reference(*a))
    with torch.inference_mode():
        norm.to(torch.bfloat16)(x.bfloat16(), UserLayerContext(norm_vectors=u))
    assert calls == [1]


def test_only_the_chosen_layers_and_sites_are_conditioned(tiny_model):
    install_conditional_norms(tiny_model, D_U, layers=(1,), sites=("post_attention",))
    assert isinstance(tiny_model.model.layers[1].post_attention_layernorm, ConditionalRMSNorm)
    assert not isinstance(tiny_model.model.layers[1].input_layernorm, ConditionalRMSNorm)
    assert not isinstance(tiny_model.model.layers[0].post_attention_layernorm, ConditionalRMSNorm)
    with pytest.raises(ValueError, match="layer 5"):
        install_conditional_norms(tiny_model, D_U, layers=(5,))


def test_adaptive_model_without_a_batch_is_the_base_model(tiny_model, tokens):
    base_logits = tiny_model(tokens).clone()
    adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=D_U, num_segments=4))
    for p in adaptive.user_layer_parameters():
        torch.nn.init.normal_(p, std=0.1)
    assert torch.equal(adaptive(tokens), base_logits)
    assert torch.equal(adaptive(tokens, UserBatch()), base_logits)
    u = torch.randn(tokens.shape[0], D_U)
    no_user = UserBatch(user_vectors=u, has_user=torch.zeros(tokens.shape[0], dtype=torch.bool))
    torch.testing.assert_close(adaptive(tokens, no_user), base_logits, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(adaptive(tokens, UserBatch(user_vectors=u)), base_logits, atol=1e-4)


def test_training_path_equals_the_kernel_path_and_has_gradients(tiny_model):
    norm = ConditionalRMSNorm(tiny_model.model.layers[0].input_layernorm, D_U)
    torch.nn.init.normal_(norm.modulation.weight, std=0.3)
    x, u = torch.randn(2, 3, 64), torch.randn(2, D_U)
    with torch.no_grad():
        fast = norm(x, UserLayerContext(norm_vectors=u))
    trained = norm(x, UserLayerContext(norm_vectors=u))
    assert torch.equal(fast, trained.detach())
    trained.sum().backward()
    assert norm.modulation.weight.grad.abs().sum() > 0


def test_user_layers_save_and_load(tmp_path, tiny_config, tokens):
    from recllm.generator.qwen2 import build_qwen2

    config = UserLayersConfig(user_dim=D_U, num_segments=3)
    trained = AdaptiveQwen2(build_qwen2(tiny_config, seed=0), config)
    for p in [*trained.user_layer_parameters(), *trained.gate.parameters()]:
        torch.nn.init.normal_(p, std=0.1)
    trained.save_user_layers(tmp_path / "layers.safetensors")
    fresh = AdaptiveQwen2(build_qwen2(tiny_config, seed=0), config)
    fresh.load_user_layers(tmp_path / "layers.safetensors")
    batch = UserBatch(user_vectors=torch.randn(tokens.shape[0], D_U))
    with torch.no_grad():
        assert torch.equal(fresh(tokens, batch), trained(tokens, batch))


def test_stacked_modulations_fill_every_norm_s_rows_in_one_matmul(tiny_model, tokens):
    adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=D_U, num_segments=2, prefix_layers=()))
    for p in adaptive.user_layer_parameters():
        torch.nn.init.normal_(p, std=0.2)
    u, has_user = torch.randn(tokens.shape[0], D_U), torch.tensor([True] + [False] * (tokens.shape[0] - 1))
    with torch.inference_mode():
        context = adaptive.context(UserBatch(user_vectors=u, has_user=has_user))
        for norm in adaptive.norms:
            stacked = context.cached(norm.cache_key("rows"), lambda: pytest.fail("rows were not precomputed"))
            for got, expected in zip(stacked, norm.modulation_rows(context)):
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        one_by_one = UserLayerContext(norm_vectors=u, norm_mask=has_user)  # no precompute: each norm its own
        torch.testing.assert_close(tiny_model(tokens, layer_context=context),
                                   tiny_model(tokens, layer_context=one_by_one), rtol=1e-5, atol=1e-5)
        for p in adaptive.user_layer_parameters():  # new weights: the stacked copy is rebuilt
            p.mul_(2)
        again = adaptive.context(UserBatch(user_vectors=u, has_user=has_user))
        norm = adaptive.norms[0]
        torch.testing.assert_close(again.cached(norm.cache_key("rows"), lambda: None)[1],
                                   norm.modulation_rows(again)[1], rtol=1e-6, atol=1e-6)
