"""GeneratorConfig presets/validation, the Qwen2 built from it, and SID embeddings from the codebook centroids."""

import dataclasses

import numpy as np
import pytest
import torch

from recllm.generator import GeneratorConfig, build_model, init_sid_embeddings, qwen2_config
from recllm.generator.qwen2 import Qwen2, num_parameters_estimate


@pytest.mark.parametrize("name", ["test", "default"])
def test_presets_are_valid(name):
    config = GeneratorConfig.from_name(name)
    assert config.max_items_per_reply == 5 and config.sid_levels == 3


def test_default_is_a_few_million_parameters():
    config = GeneratorConfig.from_name("default")
    assert config.sid_codebook_size == 256
    vocab = config.bpe_vocab_size + 5 + 3 * 256 + 2
    assert 2e6 < num_parameters_estimate(qwen2_config(config, vocab, 1, 2)) < 8e6


def test_unknown_preset():
    with pytest.raises(ValueError, match="'huge'"):
        GeneratorConfig.from_name("huge")


@pytest.mark.parametrize("field, value", [
    ("hidden_size", 0), ("num_attention_heads", 5), ("num_key_value_heads", 3), ("bpe_vocab_size", 10),
    ("learning_rate", 0.0), ("max_new_tokens", 10_000), ("warmup_steps", 10_000), ("sid_codebook_size", 1),
    ("sid_levels", 0),
])
def test_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*{value}|{value}.*{field}|{field}={value}"):
        dataclasses.replace(GeneratorConfig.from_name("test"), **{field: value})


def test_qwen2_config_mapping():
    config = GeneratorConfig.from_name("default")
    q = qwen2_config(config, vocab_size=1234, bos_id=1, eos_id=2)
    assert (q.vocab_size, q.hidden_size, q.num_hidden_layers) == (1234, config.hidden_size, config.num_hidden_layers)
    assert (q.num_attention_heads, q.num_key_value_heads) == (config.num_attention_heads, config.num_key_value_heads)
    assert q.max_position_embeddings == config.max_position_embeddings and q.tie_word_embeddings
    assert q.to_hf_config()["model_type"] == "qwen2" and q.eos_token_id == 2


def test_build_model_is_seeded_qwen2(tok):
    config = GeneratorConfig.from_name("test")
    a, b = build_model(config, tok), build_model(config, tok)
    assert isinstance(a, Qwen2)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert a(torch.tensor([[1, 5, 9]])).shape == (1, 3, tok.vocab_size)


def test_sid_embeddings_follow_the_centroids(tok, codes):
    """Code tokens whose centroids are close start close: a new item is meaningful before any training."""
    model = build_model(GeneratorConfig.from_name("test"), tok)
    init_sid_embeddings(model, tok, codes.codebooks, seed=0)
    emb = model.model.embed_tokens.weight.detach()
    for level, book in enumerate(codes.codebooks):
        rows = emb[tok.level_token_ids(level)]  # [K, D]
        centroid_d = torch.cdist(torch.tensor(book), torch.tensor(book)).flatten()
        embed_d = torch.cdist(rows, rows).flatten()
        corr = np.corrcoef(centroid_d.numpy(), embed_d.numpy())[0, 1]
        assert corr > 0.8, (level, corr)
        assert abs(rows.std().item() - model.config.initializer_range) < 0.01


def test_config_json_round_trip(tmp_path):
    config = GeneratorConfig.from_name("test")
    config.save(tmp_path / "generator_config.json", vocab_size=777)
    assert GeneratorConfig.load(tmp_path / "generator_config.json") == config
