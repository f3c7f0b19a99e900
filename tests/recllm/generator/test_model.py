"""GeneratorConfig presets/validation and the Qwen2 model built from it."""

import dataclasses

import pytest
import torch
from transformers import Qwen2ForCausalLM

from recllm.generator import GeneratorConfig, build_model, qwen2_config


@pytest.mark.parametrize("name", ["test", "default"])
def test_presets_are_valid(name):
    config = GeneratorConfig.from_name(name)
    assert config.max_new_tokens == 48 and config.max_items_per_reply == 5


def test_unknown_preset():
    with pytest.raises(ValueError, match="'huge'"):
        GeneratorConfig.from_name("huge")


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_size", 0),
        ("num_attention_heads", 5),
        ("num_key_value_heads", 3),
        ("bpe_vocab_size", 10),
        ("learning_rate", 0.0),
        ("max_new_tokens", 10_000),
        ("warmup_steps", 10_000),
    ],
)
def test_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*{value}|{value}.*{field}|{field}={value}"):
        dataclasses.replace(GeneratorConfig.from_name("test"), **{field: value})


def test_qwen2_config_mapping():
    config = GeneratorConfig.from_name("default")
    q = qwen2_config(config, vocab_size=1234, pad_id=0, bos_id=1, eos_id=2)
    assert q.model_type == "qwen2"
    assert (q.vocab_size, q.hidden_size, q.num_hidden_layers) == (1234, config.hidden_size, config.num_hidden_layers)
    assert (q.num_attention_heads, q.num_key_value_heads) == (config.num_attention_heads, config.num_key_value_heads)
    assert q.intermediate_size == config.intermediate_size
    assert q.max_position_embeddings == config.max_position_embeddings
    assert q.eos_token_id == 2 and q.tie_word_embeddings


def test_build_model_is_seeded_qwen2():
    config = GeneratorConfig.from_name("test")
    a, b = build_model(config, 500), build_model(config, 500)
    assert isinstance(a, Qwen2ForCausalLM)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    logits = a(input_ids=torch.tensor([[1, 5, 9]])).logits  # [1, 3, V]
    assert logits.shape == (1, 3, 500)


def test_config_json_round_trip(tmp_path):
    config = GeneratorConfig.from_name("test")
    config.save(tmp_path / "generator_config.json", vocab_size=777)
    assert GeneratorConfig.load(tmp_path / "generator_config.json") == config
