from recllm.generator.qwen2 import Qwen2Config, build_qwen2
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserLayersConfig
from recllm.user_layers.lora_adapter import random_adapter
from recllm.user_layers.sizing import user_layer_sizes


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_formulas_match_the_real_modules():
    model_config = Qwen2Config.from_name("tiny")
    layers = UserLayersConfig(user_dim=52, num_prefix=3, num_segments=5, norm_layers=(1,), lora_rank=4)
    adaptive = AdaptiveQwen2(build_qwen2(model_config), layers)
    sizes = user_layer_sizes(model_config, layers)
    assert sizes.norm_params == sum(count(n.modulation) for n in adaptive.norms)
    assert sizes.prefix_params == count(adaptive.prefix)
    assert sizes.gate_params == count(adaptive.gate)
    adapter = random_adapter(model_config, "x", rank=4)
    assert sizes.lora_adapter_params * 4 == adapter.nbytes()  # fp32
    assert sizes.lora_adapter_params * 4 + 4 * 2 * 4 == adaptive.slots.slot_nbytes()  # + one fp32 scale per target


def test_qwen2_72b_rank8_attention_lora_is_65_5_mb_in_fp16():
    sizes = user_layer_sizes(Qwen2Config.from_name("qwen2-72b"), UserLayersConfig(user_dim=52))
    assert sizes.lora_adapter_params == 80 * 8 * (2 * (8192 + 8192) + 2 * (8192 + 1024))
    assert round(sizes.bytes(2)["lora_adapter_params"] / 1e6, 1) == 65.5


def test_qwen2_72b_rank8_lora_with_the_mlp_is_210_5_mb_in_fp16():
    from recllm.user_layers.lora_adapter import LORA_MODULES

    sizes = user_layer_sizes(Qwen2Config.from_name("qwen2-72b"), UserLayersConfig(user_dim=52,
                                                                                   lora_modules=LORA_MODULES))
    mlp = 80 * 3 * 8 * (8192 + 29568)
    assert sizes.lora_adapter_params == 80 * 8 * (2 * (8192 + 8192) + 2 * (8192 + 1024)) + mlp
    assert round(sizes.bytes(2)["lora_adapter_params"] / 1e6, 1) == 210.5
