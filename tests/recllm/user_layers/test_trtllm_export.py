import copy

import numpy as np
import pytest
import torch

from builders.trtllm import lora_tensors
from builders.trtllm.model_shape import QwenShape
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LORA_MODULES, module_block, random_adapter
from recllm.user_layers.trtllm_export import (
    CONFIG_NPY, WEIGHTS_NPY, TRTLLM_MODULE_IDS, TRTLLM_MODULE_OF, export_adapter, lora_task_id, to_trtllm,
    unpack_trtllm_lora,
)


def reference_logits(base, tokens, weights, config, model_config):
    """A plain re-application of the exported tensors: W += B_scaled @ A on a copy of the base model."""
    model = copy.deepcopy(base)
    for (layer, module), (a, b) in unpack_trtllm_lora(weights, config, model_config).items():
        linear = getattr(getattr(model.model.layers[layer], module_block(module)), module)
        with torch.no_grad():
            linear.weight += torch.from_numpy(b.astype(np.float32)) @ torch.from_numpy(a.astype(np.float32))
    return model(tokens)


def test_layout_and_module_ids(tiny_config):
    adapter = random_adapter(tiny_config, "user/u1", rank=4, alpha=8.0)
    weights, config = to_trtllm(adapter)
    assert weights.dtype == np.float16 and config.dtype == np.int32
    assert config.tolist()[:4] == [[1, 0, 4], [2, 0, 4], [3, 0, 4], [4, 0, 4]]
    assert config.tolist()[4] == [1, 1, 4]
    row = weights[2].astype(np.float32)  # attn_v of layer 0: A [4, 64] then B [32, 4] * alpha / r
    np.testing.assert_allclose(row[:256], adapter.a[(0, "v_proj")].numpy().reshape(-1), atol=1e-3)
    np.testing.assert_allclose(row[256:256 + 128], (adapter.b[(0, "v_proj")] * 2).numpy().reshape(-1), atol=1e-3)
    assert np.all(row[384:] == 0)  # k/v rows are shorter than q/o rows: zero-padded


MODULE_SETS = pytest.mark.parametrize("modules", [ATTENTION_MODULES, LORA_MODULES], ids=["attention", "attention+mlp"])


@MODULE_SETS
def test_matches_the_gpu_builders_packing(tiny_config, modules):
    adapter = random_adapter(tiny_config, "user/u1", rank=4, alpha=8.0, seed=5, modules=modules)
    shape = QwenShape("tiny", tiny_config.hidden_size, tiny_config.num_hidden_layers, tiny_config.num_attention_heads,
                      tiny_config.num_key_value_heads, tiny_config.intermediate_size, tiny_config.vocab_size,
                      sid_vocab_size=0)
    ours = to_trtllm(adapter)
    a = {(TRTLLM_MODULE_OF[m], layer): t.numpy() for (layer, m), t in adapter.a.items()}
    b = {(TRTLLM_MODULE_OF[m], layer): t.numpy() for (layer, m), t in adapter.b.items()}
    theirs = lora_tensors.pack_adapter(a, b, shape, rank=4, alpha=8.0)
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert lora_task_id("u1") == lora_tensors.lora_task_id("u1")


@MODULE_SETS
def test_round_trip_gives_our_logits(tmp_path, tiny_model, tiny_config, tokens, modules):
    base = copy.deepcopy(tiny_model)
    adapter = random_adapter(tiny_config, "user/u7", rank=8, alpha=16.0, seed=7, modules=modules)
    folder = export_adapter(adapter, tmp_path, dtype=np.float32)
    assert folder.name == str(lora_task_id("user/u7"))
    weights, config = np.load(folder / WEIGHTS_NPY), np.load(folder / CONFIG_NPY)
    # TensorRT-LLM's ids and its loader's HF names (lora_manager: mlp_h_to_4h is gate_proj, mlp_gate is up_proj)
    trtllm_table = {"q_proj": 1, "k_proj": 2, "v_proj": 3, "o_proj": 4, "gate_proj": 5, "down_proj": 6, "up_proj": 7}
    assert sorted({row[0] for row in config.tolist()}) == sorted(trtllm_table[m] for m in modules)
    for module, module_id in trtllm_table.items():
        assert TRTLLM_MODULE_IDS[TRTLLM_MODULE_OF[module]] == module_id
    adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=4, num_segments=2, prefix_layers=(),
                                                          lora_modules=modules))
    adaptive.slots.write(0, adapter)
    with torch.no_grad():
        ours = adaptive(tokens, UserBatch(lora_indices=torch.zeros(tokens.shape[0], 1, dtype=torch.int32)))
        reference = reference_logits(base, tokens, weights, config, tiny_config)
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        fp16 = reference_logits(base, tokens, *to_trtllm(adapter), tiny_config)  # the served precision
        torch.testing.assert_close(ours, fp16, rtol=2e-3, atol=2e-3)
        assert not torch.allclose(ours, base(tokens), atol=1e-3)


def test_export_records_what_the_fallback_policy_reads(tmp_path, tiny_config):
    from recllm.user_layers.trtllm_export import exported_info, load_exported
    adapter = random_adapter(tiny_config, "user/u8", rank=4, trained_at=1_700_000_000, num_events=42)
    folder = export_adapter(adapter, tmp_path)
    info = exported_info(tmp_path, "user/u8")
    assert (info.name, info.folder, info.kind, info.trained_at, info.num_events) == \
        ("user/u8", folder, "user", 1_700_000_000, 42)
    weights, config = load_exported(tmp_path, "user/u8")
    np.testing.assert_array_equal(config, to_trtllm(adapter)[1])
    assert config.dtype == np.int32
    assert weights.shape == to_trtllm(adapter)[0].shape
    assert exported_info(tmp_path, "user/nobody") is None
    (folder / CONFIG_NPY).unlink()                              # half an export is no adapter
    assert exported_info(tmp_path, "user/u8") is None


def test_user_segments_are_keyed_by_task_id_without_user_ids(tmp_path):
    from recllm.user_layers.trtllm_export import read_user_segments, write_user_segments
    assert read_user_segments(tmp_path) == {}
    path = write_user_segments(tmp_path, {"alice@example.com": 3, "u2": 0})
    assert "alice" not in path.read_text() and "u2" not in path.read_text()
    assert read_user_segments(tmp_path) == {lora_task_id("user/alice@example.com"): 3, lora_task_id("user/u2"): 0}
