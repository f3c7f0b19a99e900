"""Dropping in a Hugging Face Qwen2 checkpoint: a tiny random ``transformers`` checkpoint (sharded, tied and untied)
with its own tokenizer.json, converted for our item codes, loads as a ReplyGenerator and keeps its original
logits; SID code embeddings come from the codebook centroids. Nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from recllm.generator import GREEDY, ItemCodes, ReplyGenerator, ReplyTokenizer, build_prompt
from recllm.generator.checkpoint_import import import_qwen2_checkpoint
from recllm.generator.qwen2_checkpoint import CheckpointError, load_qwen2

transformers = pytest.importorskip("transformers")

TEXTS = ["что приготовить на ужин", "молоко без лактозы", "healthy snacks for the office", "подарок сыну"] * 20
PADDED_ROWS = 5  # Qwen checkpoints pad the embedding beyond the tokenizer; the import reuses such rows


def tiny_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS, trainer=trainer)
    return tok


def hf_checkpoint(folder, tied: bool):
    tok = tiny_tokenizer()
    config = transformers.Qwen2Config(
        vocab_size=tok.get_vocab_size() + PADDED_ROWS, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder, max_shard_size="40KB")  # sharded: model.safetensors.index.json + shards
    tok.save(str(folder / "tokenizer.json"))
    return model, tok


def item_codes(n_items=12, seed=0) -> ItemCodes:
    rng = np.random.default_rng(seed)
    books = [rng.normal(size=(4, 2)).astype(np.float32) for _ in range(2)]  # 2 levels x 4 codes, 2-d centroids
    sids = np.stack([rng.integers(0, 4, n_items), rng.integers(0, 4, n_items), np.zeros(n_items, int)], 1)
    sids[:, 2] = [sum((sids[:i, :2] == sids[i, :2]).all(1)) for i in range(n_items)]  # collision level
    return ItemCodes(sids, books)


@pytest.mark.parametrize("tied", [True, False])
def test_imported_checkpoint_serves_replies_and_keeps_its_logits(tmp_path, tied):
    source = tmp_path / "hf"
    hf_model, tok = hf_checkpoint(source, tied)
    assert len(list(source.glob("model-*-of-*.safetensors"))) > 1
    codes = item_codes()
    target = import_qwen2_checkpoint(source, tmp_path / "imported", codes)

    tokenizer = ReplyTokenizer.load(target)
    assert list(tokenizer.sid_vocab_sizes) == codes.vocab_sizes
    assert tokenizer.encode("молоко без лактозы") == tok.encode("молоко без лактозы").ids  # own merges kept
    ours = load_qwen2(target, dtype=torch.float32)
    assert ours.config.vocab_size == tokenizer.vocab_size > hf_model.config.vocab_size
    ids = torch.tensor([tok.encode("что приготовить на ужин").ids])
    with torch.no_grad():
        expected = hf_model(ids).logits[0, -1]  # [V_hf]
        logits = ours(ids)[0, -1]  # [V]
    old = tok.get_vocab_size()
    torch.testing.assert_close(logits[:old], expected[:old], atol=1e-4, rtol=1e-4)

    # each k-means level's code rows are an affine image of its 2-d centroids: row differences have rank 2
    embedding = ours.model.embed_tokens.weight.detach()
    for level in range(len(codes.codebooks)):
        rows = embedding[tokenizer.level_token_ids(level)]  # [4, D]
        assert torch.linalg.matrix_rank(rows[1:] - rows[0], atol=1e-6) == 2
    if not tied:
        sid_rows = list(tokenizer.sid_token_ids)
        torch.testing.assert_close(ours.lm_head.weight[sid_rows], embedding[sid_rows])

    generator = ReplyGenerator.load(target)
    candidates = [3, 7, 1]
    prompt = build_prompt("samokat", "ru", "молоко без лактозы", ["вы часто берёте кефир"], "recommend")
    reply = generator.generate(prompt, candidates, lambda i: f"[item {i}]", GREEDY, max_new_tokens=40)
    assert set(reply.item_ids) <= set(candidates) and len(set(reply.item_ids)) == len(reply.item_ids)
    assert 0 < reply.num_tokens <= 40


def test_import_refuses_a_folder_without_tokenizer_or_onto_itself(tmp_path):
    source = tmp_path / "hf"
    hf_checkpoint(source, tied=True)
    with pytest.raises(CheckpointError, match="another folder"):
        import_qwen2_checkpoint(source, source, item_codes())
    (source / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        import_qwen2_checkpoint(source, tmp_path / "out", item_codes())
