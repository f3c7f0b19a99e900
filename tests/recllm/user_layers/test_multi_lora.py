import copy

import pytest
import torch

from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.layer_context import UserLayerContext
from recllm.user_layers.lora_adapter import LORA_MODULES, MLP_MODULES, module_block, module_dims, random_adapter
from recllm.user_layers.mixture_gate import MixtureGate
from recllm.user_layers.multi_lora import install_multi_lora


def merged_model(model, adapter):
    """Reference: a copy of the base model with B @ A * scale added to each target weight."""
    merged = copy.deepcopy(model)
    for (layer, module), a in adapter.a.items():
        linear = getattr(getattr(merged.model.layers[layer], module_block(module)), module)
        with torch.no_grad():
            linear.weight += adapter.b[(layer, module)] @ a * adapter.scale
    return merged


@pytest.mark.parametrize("path", ["kernel", "per_request", "merged", "stacked"])
def test_mlp_projections_take_adapters_too(tiny_model, tiny_config, tokens, path):
    """gate/up/down (TensorRT-LLM's mlp_gate / mlp_h_to_4h / mlp_4h_to_h) wrapped like the attention projections:
    each row equals the base model with its adapter merged in, a row without one equals the base model."""
    base = copy.deepcopy(tiny_model)
    slots = install_multi_lora(tiny_model, num_slots=2, rank=8, modules=LORA_MODULES, path=path)
    assert type(tiny_model.model.layers[1].mlp.down_proj).__name__ == "MultiLoRALinear"
    adapters = [random_adapter(tiny_config, f"user/{i}", seed=i, modules=modules)
                for i, modules in enumerate((LORA_MODULES, MLP_MODULES))]
    for slot, adapter in enumerate(adapters):
        slots.write(slot, adapter)
    indices = torch.tensor([[0], [1], [-1], [1]])
    with torch.no_grad():
        batch = tiny_model(tokens, layer_context=UserLayerContext(lora_indices=indices))
        for row, slot in enumerate(indices[:, 0].tolist()):
            model = base if slot < 0 else merged_model(base, adapters[slot])
            torch.testing.assert_close(batch[row:row + 1], model(tokens[row:row + 1]), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(batch[1], base(tokens[1:2])[0], atol=1e-4)  # an MLP-only adapter does change it


def test_module_dims_follow_gqa(tiny_config):
    dims = module_dims(tiny_config)
    assert dims["q_proj"] == (64, 64) and dims["k_proj"] == (64, 32) and dims["o_proj"] == (64, 64)
    assert dims["up_proj"] == (64, 128) and dims["down_proj"] == (128, 64)


def test_mixed_batch_equals_each_row_alone_and_the_merged_model(tiny_model, tiny_config, tokens):
    base = copy.deepcopy(tiny_model)
    adapters = [random_adapter(tiny_config, f"user/{i}", rank=r, seed=i) for i, r in enumerate((8, 4, 8))]
    slots = install_multi_lora(tiny_model, num_slots=4, rank=8)
    for slot, adapter in enumerate(adapters):
        slots.write(slot, adapter)
    indices = torch.tensor([[2], [-1], [0], [1]])
    batch = tiny_model(tokens, layer_context=UserLayerContext(lora_indices=indices))
    for row in range(4):
        alone = tiny_model(tokens[row:row + 1], layer_context=UserLayerContext(lora_indices=indices[row:row + 1]))
        torch.testing.assert_close(batch[row:row + 1], alone, rtol=1e-5, atol=1e-5)
        slot = int(indices[row, 0])
        reference = base(tokens[row:row + 1]) if slot < 0 else merged_model(base, adapters[slot])(tokens[row:row + 1])
        torch.testing.assert_close(batch[row:row + 1], reference, rtol=1e-4, atol=1e-4)


def test_mixture_of_adapters_is_the_weighted_sum_of_deltas(tiny_model, tiny_config, tokens):
    """With one projection: y = base + Σ w_k Δ_k (checked on q_proj of layer 0 directly)."""
    a0, a1 = (random_adapter(tiny_config, f"segment/{i}", seed=10 + i) for i in range(2))
    slots = install_multi_lora(tiny_model, num_slots=2, rank=8)
    slots.write(0, a0)
    slots.write(1, a1)
    wrapper = tiny_model.model.layers[0].self_attn.q_proj
    x = torch.randn(2, 3, 64)
    ctx = UserLayerContext(lora_indices=torch.tensor([[0, 1], [1, -1]]),
                           mix_weights=torch.tensor([[0.25, 0.75], [1.0, 0.6]]))
    y = wrapper(x, ctx)
    delta = {i: x @ (a.b[(0, "q_proj")] @ a.a[(0, "q_proj")]).T * a.scale for i, a in enumerate((a0, a1))}
    base = wrapper.base(x)
    torch.testing.assert_close(y[0], (base + 0.25 * delta[0] + 0.75 * delta[1])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[1], (base + delta[1])[1], rtol=1e-5, atol=1e-5)


def test_gate_picks_top_k_and_maps_experts_to_slots():
    gate = MixtureGate(user_dim=3, num_experts=4, top_k=2)
    centroids = torch.eye(4, 3) * 2
    gate.init_from_centroids(centroids)
    expert_slots = torch.tensor([5, -1, 2, 7])
    indices, weights = gate(torch.tensor([[2.0, 0.1, 0.0], [0.0, 0.0, 2.0]]), expert_slots)
    assert indices[0, 0] == 5 and indices[1, 0] == 2  # nearest centroid first
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert (weights[:, 0] >= weights[:, 1]).all()


def test_gated_batch_equals_rows_alone_and_gate_gets_gradients(tiny_model, tiny_config, tokens):
    adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=6, num_segments=3, gate_top_k=2, num_slots=3,
                                                          prefix_layers=()))
    for s in range(3):
        adaptive.slots.write(s, random_adapter(tiny_config, f"segment/{s}", seed=20 + s))
    torch.nn.init.normal_(adaptive.gate.proj.weight)
    u = torch.randn(4, 6)
    indices, weights = adaptive.gate(u, torch.arange(3))
    logits = adaptive(tokens, UserBatch(lora_indices=indices, mix_weights=weights))
    for row in range(4):
        alone = adaptive(tokens[row:row + 1], UserBatch(lora_indices=indices[row:row + 1],
                                                        mix_weights=weights[row:row + 1]))
        torch.testing.assert_close(logits[row:row + 1], alone, rtol=1e-5, atol=1e-5)
    logits.logsumexp(-1).mean().backward()
    assert adaptive.gate.proj.weight.grad.abs().sum() > 0


def test_slot_errors(tiny_model, tiny_config):
    slots = install_multi_lora(tiny_model, num_slots=2, rank=4)
    with pytest.raises(ValueError, match="rank 8 > slot rank 4"):
        slots.write(0, random_adapter(tiny_config, "x", rank=8))
    with pytest.raises(ValueError, match="slot 2"):
        slots.write(2, random_adapter(tiny_config, "x", rank=4))
    with pytest.raises(ValueError, match="LoRA modules must be among"):
        install_multi_lora(tiny_model, 2, 4, modules=("mlp",))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 3), st.integers(-1, 3), st.floats(0.0, 1.0)), min_size=1, max_size=6),
       st.integers(1, 5))
def test_any_adapter_mix_in_a_batch_equals_each_row_alone(rows, seq_len):
    from recllm.generator.qwen2 import Qwen2Config, build_qwen2

    config = Qwen2Config.from_name("tiny")
    model = build_qwen2(config, seed=0).eval()
    slots = install_multi_lora(model, num_slots=4, rank=8)
    for slot in range(4):
        slots.write(slot, random_adapter(config, f"a{slot}", rank=(4, 8)[slot % 2], seed=slot))
    indices = torch.tensor([[a, b] for a, b, _ in rows])
    weights = torch.tensor([[w, 1 - w] for _, _, w in rows])
    tokens = torch.randint(0, config.vocab_size, (len(rows), seq_len), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = model(tokens, layer_context=UserLayerContext(lora_indices=indices, mix_weights=weights))
        for i in range(len(rows)):
            alone = model(tokens[i:i + 1], layer_context=UserLayerContext(lora_indices=indices[i:i + 1],
                                                                          mix_weights=weights[i:i + 1]))
            torch.testing.assert_close(batch[i:i + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seq_len", [1, 5])
def test_every_cpu_path_equals_the_kernel_path(tiny_config, seq_len):
    from recllm.generator.qwen2 import build_qwen2

    models = {}
    for path in ("kernel", "per_request", "merged", "stacked", "auto"):
        model = build_qwen2(tiny_config, seed=0).eval()
        slots = install_multi_lora(model, num_slots=3, rank=8, path=path)
        for slot in range(3):
            slots.write(slot, random_adapter(tiny_config, f"a{slot}", rank=(8, 4, 8)[slot], seed=slot))
        models[path] = model
    tokens = torch.randint(0, tiny_config.vocab_size, (4, seq_len), generator=torch.Generator().manual_seed(3))
    for indices, mix in [(torch.tensor([[0], [-1], [2], [1]]), None),
                         (torch.tensor([[0, 1], [-1, 2], [2, 2], [-1, -1]]), torch.rand(4, 2))]:
        ctx = dict(lora_indices=indices, mix_weights=mix)
        with torch.no_grad():
            expected = models["kernel"](tokens, layer_context=UserLayerContext(**ctx))
            for path in ("per_request", "merged", "stacked", "auto"):
                torch.testing.assert_close(models[path](tokens, layer_context=UserLayerContext(**ctx)), expected,
                                           rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # no row with an adapter: the base projections themselves
        for path in ("merged", "stacked"):
            no_adapter = UserLayerContext(lora_indices=torch.full((4, 1), -1))
            assert torch.equal(models[path](tokens, layer_context=no_adapter), models["kernel"](tokens))
    with pytest.raises(ValueError, match="path"):
        install_multi_lora(build_qwen2(tiny_config), 2, 4, path="fast")


def test_a_batch_of_one_merges_once_per_context_and_equals_the_kernel_path(tiny_config, monkeypatch):
    """One request under "merged": its weight is merged once per layer context (prefill), every later step reuses
    it through the base linear, and the logits equal the kernel path's."""
    from recllm.generator.qwen2 import build_qwen2
    import recllm.user_layers.multi_lora as multi_lora

    models = {}
    for path in ("kernel", "merged"):
        model = build_qwen2(tiny_config, seed=0).eval()
        slots = install_multi_lora(model, num_slots=2, rank=8, path=path)
        for slot in range(2):
            slots.write(slot, random_adapter(tiny_config, f"a{slot}", rank=8, seed=slot))
        models[path] = model
    merges = []
    real = multi_lora.merged_weight
    monkeypatch.setattr(multi_lora, "merged_weight", lambda *a: merges.append(1) or real(*a))
    tokens = torch.randint(0, tiny_config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(4))
    ctx = dict(lora_indices=torch.tensor([[0, 1]]), mix_weights=torch.tensor([[0.7, 0.3]]))
    merged_context = UserLayerContext(**ctx)
    with torch.inference_mode():
        for t in range(3, 7):  # the prefill of 3 tokens, then three more calls under the same context
            expected = models["kernel"](tokens[:, :t], layer_context=UserLayerContext(**ctx))
            got = models["merged"](tokens[:, :t], layer_context=merged_context)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert len(merges) == tiny_config.num_hidden_layers * 4  # q, k, v, o of every layer, once
    with torch.inference_mode():
        assert not torch.allclose(got, models["merged"](tokens), atol=1e-4)  # the adapters do change the logits


def test_auto_merges_small_batches_on_cpu_and_falls_back_for_big_ones_and_training():
    from recllm.user_layers.multi_lora import MERGED_WEIGHTS_LIMIT_BYTES, choose_lora_path

    x = torch.zeros(2, 1, 192)
    with torch.no_grad():
        assert choose_lora_path("auto", x, 192) == "merged"
        rows = MERGED_WEIGHTS_LIMIT_BYTES // (192 * 192 * 4) + 1
        assert choose_lora_path("auto", torch.zeros(rows, 1, 192), 192) == "stacked"
        assert choose_lora_path("kernel", x, 192) == "kernel"
    assert choose_lora_path("auto", x, 192) == "per_request"  # gradients on: training


@pytest.mark.parametrize("path", ["kernel", "per_request", "merged", "stacked"])
def test_a_layer_context_is_freed_with_its_batch(tiny_config, tokens, path):
    """What a projection prepares for a batch is cached in the batch's layer context and holds tensors only, never
    the context itself: the context (and its prefix keys/values) goes as soon as the batch is done, no cycle left
    for the garbage collector."""
    import gc
    import weakref

    from recllm.generator.qwen2 import build_qwen2

    model = build_qwen2(tiny_config, seed=0).eval()
    slots = install_multi_lora(model, num_slots=2, rank=8, path=path)
    slots.write(0, random_adapter(tiny_config, "a0", seed=0))
    context = UserLayerContext(lora_indices=torch.tensor([[0], [-1], [0], [0]]))
    with torch.no_grad():
        model(tokens, layer_context=context)
        model(tokens[:, -1:], layer_context=context)  # a step reusing the plans
    gone = weakref.ref(context)
    gc.disable()
    try:
        del context
        assert gone() is None
    finally:
        gc.enable()
