"""The engine builder's commands per preset, its memory arithmetic and every rejection (no GPU needed)."""

from __future__ import annotations

import json

import pytest

from builders.trtllm import build_engine, memory_plan
from builders.trtllm.engine_config import EngineBuildConfig
from builders.trtllm.model_shape import PRESET_SHAPES, SID_VOCAB_SIZE, QwenShape


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _config(preset: str, **overrides) -> EngineBuildConfig:
    return EngineBuildConfig.for_preset(preset, checkpoint_dir="/ckpt", output_dir="/out", **overrides)


@pytest.mark.parametrize("preset", ["0.5b", "7b", "72b"])
def test_trtllm_build_command_has_lora_paged_kv_and_limits(preset):
    config = _config(preset)
    command = build_engine.build_command(config)
    assert command[0] == "trtllm-build"
    assert _flag(command, "--lora_plugin") == "auto" and _flag(command, "--gemm_plugin") == "auto"
    assert _flag(command, "--gpt_attention_plugin") == "auto"
    modules = command[command.index("--lora_target_modules") + 1: command.index("--max_lora_rank")]
    assert modules == ["attn_q", "attn_k", "attn_v", "attn_dense"]
    assert _flag(command, "--max_lora_rank") == "8"
    assert _flag(command, "--kv_cache_type") == "paged"
    assert _flag(command, "--max_batch_size") == str(config.max_batch_size)
    assert _flag(command, "--max_num_tokens") == str(config.max_num_tokens)
    assert _flag(command, "--max_input_len") == str(config.max_input_len)
    assert _flag(command, "--max_seq_len") == str(config.max_seq_len)
    # 16 user-prefix rows + the conditional norms' user-context row, per request: 1,088 at batch 64
    assert _flag(command, "--max_prompt_embedding_table_size") == str(17 * config.max_batch_size)
    assert _flag(command, "--checkpoint_dir") == _flag(build_engine.convert_command(config), "--output_dir")


@pytest.mark.parametrize("prefix,batch", [(16, 64), (0, 8), (4, 3)])
def test_prompt_table_size_is_the_conditional_norm_plan_s(prefix, batch):
    """The builder's flag and the network plan's requirement are one number (the plan gathers row ``prefix``)."""
    from builders.trtllm import conditional_norm_network as network
    config = _config("0.5b", user_prefix_tokens=prefix, max_batch_size=batch)
    plan = network.plan_for_engine(config, (0,))
    flag = int(_flag(build_engine.build_command(config), "--max_prompt_embedding_table_size"))
    assert flag == plan.user_context.max_prompt_embedding_table_size == (prefix + 1) * batch
    assert plan.user_context.row < plan.user_context.prompt_vocab_size == prefix + 1


def test_bf16_uses_convert_checkpoint_with_tp():
    command = build_engine.convert_command(_config("7b", tp=2), python="py")
    assert command[:2] == ["py", "/opt/TensorRT-LLM/examples/models/core/qwen/convert_checkpoint.py"]
    assert _flag(command, "--model_dir") == "/ckpt"
    assert _flag(command, "--dtype") == "bfloat16" and _flag(command, "--tp_size") == "2"
    assert "--qformat" not in command


def test_fp8_uses_modelopt_with_fp8_kv_cache():
    command = build_engine.convert_command(_config("72b"), python="py")
    assert command[1].endswith("examples/quantization/quantize.py")
    assert _flag(command, "--qformat") == "fp8" and _flag(command, "--kv_cache_dtype") == "fp8"
    assert _flag(command, "--tp_size") == "4"


def test_int4_awq_uses_modelopt_with_block_size():
    command = build_engine.convert_command(_config("7b", quant="int4_awq", tp=2), python="py")
    assert _flag(command, "--qformat") == "int4_awq" and _flag(command, "--awq_block_size") == "128"
    assert "--kv_cache_dtype" not in command


def test_dry_run_prints_commands_and_writes_plan(tmp_path, capsys):
    out = tmp_path / "engine72"
    rc = build_engine.main(["--preset", "72b", "--checkpoint", str(tmp_path / "ckpt"), "--output", str(out),
                            "--tp", "8", "--quant", "bf16", "--max-lora-rank", "16", "--dry-run"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "convert_checkpoint.py" in printed and "trtllm-build" in printed
    plan = json.loads((out / "build_plan.json").read_text())
    assert plan["ran_on_gpu"] is False
    assert plan["config"]["tp"] == 8 and plan["config"]["max_lora_rank"] == 16
    assert plan["commands"][1][plan["commands"][1].index("--max_lora_rank") + 1] == "16"
    memory = plan["memory_per_gpu"]
    assert memory["fits"] and memory["kv_bytes_per_token"] == 2 * 80 * 8 * 128 * 2
    assert memory["kv_cache_bytes_per_gpu"] == 2 * 80 * 1 * 128 * 2 * 64 * 4096


def test_without_dry_run_fails_clearly_when_tools_are_absent(tmp_path, capsys):
    rc = build_engine.main(["--preset", "0.5b", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o"),
                            "--trtllm-examples-dir", str(tmp_path / "no-examples")])
    assert rc == 3
    err = capsys.readouterr().err
    assert "TensorRT-LLM build tools are not available" in err and "trtllm-build" in err


def test_checkpoint_config_json_sets_the_shape(tmp_path):
    hf = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "num_hidden_layers": 24,
          "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864,
          "vocab_size": 151936 + 2048, "recllm_sid_vocab_size": 2048, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    args = build_engine.parse_args(["--preset", "0.5b", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o")])
    config = build_engine.config_from_args(args)
    assert config.shape.vocab_size == 151936 + 2048 and config.shape.sid_vocab_size == 2048
    weights = config.memory_report().weights
    assert weights["embedding"] == (151936 + 2048) * 896 * 2


def test_adapter_folder_is_rejected_as_checkpoint(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    args = build_engine.parse_args(["--preset", "7b", "--checkpoint", str(tmp_path), "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="LoRA adapter.*SID rows"):
        build_engine.config_from_args(args)


def test_cli_rejects_with_exit_code_2(tmp_path, capsys):
    rc = build_engine.main(["--preset", "72b", "--checkpoint", str(tmp_path), "--output", str(tmp_path),
                            "--tp", "3", "--dry-run"])
    assert rc == 2 and "tp=3" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    ({"preset": "72b", "tp": 3}, r"tp=3 does not divide num_heads=64"),
    ({"preset": "0.5b", "tp": 4}, r"tp=4 does not divide num_heads=14"),
    ({"preset": "72b", "tp": 16}, r"tp=16 exceeds 8"),
    ({"preset": "72b", "tp": 2, "quant": "bf16"}, r"gpu_memory_gib=80.0 does not fit .* bf16 tp=2"),
    ({"preset": "72b", "tp": 8, "quant": "int4_awq"}, r"int4_awq' with tp=8: intermediate_size=29568"),
    ({"preset": "0.5b", "tp": 2, "quant": "int4_awq"}, r"num_heads\*head_dim=896 is not a multiple of"),
    ({"preset": "7b", "max_lora_rank": 128}, r"max_lora_rank=128 exceeds 64"),
    ({"preset": "7b", "max_lora_rank": 0}, r"max_lora_rank must be a positive int"),
    ({"preset": "7b", "quant": "int8"}, r"quant='int8'"),
    ({"preset": "7b", "max_input_len": 4096, "max_seq_len": 4096}, r"max_input_len=4096 must be < max_seq_len"),
    ({"preset": "7b", "max_seq_len": 65536, "max_input_len": 1024}, r"max_seq_len=65536 exceeds"),
    ({"preset": "7b", "max_num_tokens": 1024}, r"max_num_tokens=1024 < max_input_len"),
    ({"preset": "7b", "gpu_memory_gib": 16.0}, r"gpu_memory_gib=16.0 does not fit"),
    ({"preset": "7b", "user_prefix_tokens": -1}, r"user_prefix_tokens must be >= 0"),
])
def test_impossible_combinations_are_rejected(overrides, message):
    overrides = dict(overrides)
    with pytest.raises(ValueError, match=message):
        EngineBuildConfig.for_preset(overrides.pop("preset"), **overrides)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="preset='13b'"):
        EngineBuildConfig.for_preset("13b")


def test_tp_neither_dividing_nor_multiple_of_kv_heads_is_rejected():
    shape = QwenShape("custom", hidden_size=3072, num_layers=2, num_heads=24, num_kv_heads=8,
                      intermediate_size=8192, vocab_size=32000)
    with pytest.raises(ValueError, match="tp=6 neither divides num_kv_heads=8"):
        EngineBuildConfig(preset="7b", tp=6, shape=shape)


def test_tp_above_kv_heads_replicates_them():
    shape = PRESET_SHAPES["7b"]                     # 4 KV heads
    assert memory_plan.kv_heads_per_gpu(shape, 2) == 2
    assert memory_plan.kv_heads_per_gpu(shape, 8) == 1


def test_parameter_counts_match_published_model_sizes():
    # Qwen2 reports 0.49B / 7.6B / 72.7B parameters (base vocab); our SID rows add vocab rows only.
    for preset, billions in (("0.5b", 0.494), ("7b", 7.616), ("72b", 72.71)):
        shape = PRESET_SHAPES[preset]
        sid_rows = SID_VOCAB_SIZE * shape.hidden_size * (1 if shape.tie_word_embeddings else 2)
        assert (shape.total_params() - sid_rows) / 1e9 == pytest.approx(billions, rel=0.005)


def test_kv_bytes_per_token_formula():
    shape = PRESET_SHAPES["72b"]
    assert memory_plan.kv_bytes_per_token(shape, 2) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert memory_plan.kv_bytes_per_token_per_gpu(shape, 4, 1) == 2 * 80 * 2 * 128 * 1


def test_rank8_qkvo_lora_of_72b_is_about_65_mb():
    # r * (in + out) per module: q 8*(8192+8192), k/v 8*(8192+1024), o 8*(8192+8192); x 80 layers x 2 bytes.
    size = memory_plan.lora_adapter_bytes(PRESET_SHAPES["72b"], rank=8)
    assert size == 80 * 8 * (16384 + 9216 + 9216 + 16384) * 2 == 65_536_000   # 65.5 MB = 62.5 MiB


def test_fp8_halves_linear_weights_and_int4_quarters_them():
    shape = PRESET_SHAPES["72b"]
    bf16 = memory_plan.weight_bytes_per_gpu(shape, 8, "bf16")["linear"]
    assert memory_plan.weight_bytes_per_gpu(shape, 8, "fp8")["linear"] == bf16 // 2
    int4 = memory_plan.weight_bytes_per_gpu(shape, 8, "int4_awq")["linear"]
    assert int4 == pytest.approx(bf16 / 4 * (1 + 4 / 128), rel=1e-6)    # + one 16-bit scale per 128 weights


def test_backend_fractions_cover_the_planned_caches():
    report = _config("72b").memory_report()
    free = report.gpu_memory_bytes - report.weights["total"] - report.runtime_reserve_bytes
    assert report.kv_cache_free_gpu_mem_fraction * free >= report.kv_cache_bytes_per_gpu
    assert report.lora_cache_gpu_memory_fraction * (free - report.kv_cache_bytes_per_gpu) \
        >= report.lora_cache_bytes_per_gpu


def test_mlp_lora_targets_reach_the_build_and_the_memory_plan(tmp_path):
    out = tmp_path / "engine7"
    modules = ["attn_q", "attn_k", "attn_v", "attn_dense", "mlp_h_to_4h", "mlp_gate", "mlp_4h_to_h"]
    rc = build_engine.main(["--preset", "7b", "--checkpoint", str(tmp_path / "ckpt"), "--output", str(out),
                            "--lora-modules", *modules, "--dry-run"])
    assert rc == 0
    plan = json.loads((out / "build_plan.json").read_text())
    build = plan["commands"][1]
    assert build[build.index("--lora_target_modules") + 1: build.index("--max_lora_rank")] == modules
    shape, rank = PRESET_SHAPES["7b"], plan["config"]["max_lora_rank"]
    attention = memory_plan.lora_adapter_bytes(shape, rank)
    mlp = rank * 3 * (shape.hidden_size + shape.intermediate_size) * shape.num_layers * 2  # bf16 A and B
    assert plan["memory_per_gpu"]["lora_adapter_bytes"] == attention + mlp
    with pytest.raises(ValueError, match="lora_modules"):
        EngineBuildConfig(preset="7b", lora_modules=("mlp_up",))
