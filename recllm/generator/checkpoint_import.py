"""Drop in a Hugging Face Qwen2 checkpoint folder as the reply generator (``recllm serve --generator-checkpoint``).

A checkpoint folder (``config.json`` + safetensors, sharded or not, + ``tokenizer.json``: what
``save_pretrained`` writes for Qwen2 models) knows neither our control tokens nor the catalog's Semantic-ID code
tokens. ``import_qwen2_checkpoint`` converts it into the folder format ``ReplyGenerator.load`` reads, the same one
``train_generator`` writes:

- the checkpoint's tokenizer gets ``<pad> <bos> <eos> <sep> <cands>`` and one ``<sid_{l}_{c}>`` token per code of
  the build's ``item_codes.npz`` as added special tokens (its own vocabulary and merges are kept);
- the embedding (and an untied ``lm_head``) is extended to the new vocabulary: tokens whose ids fall inside the
  checkpoint's padded rows reuse them, larger ids get new rows. Every k-means level's code tokens start from the
  codebook centroids (``model.init_sid_embeddings``, as the build does for our own model); the control tokens and
  the collision level start from the mean of the checkpoint's embeddings plus small noise;
- ``item_codes.npz`` and ``generator_config.json`` (the checkpoint's architecture, the build's decoding settings)
  are written beside the weights.

The result is not fine-tuned: a checkpoint that never saw our prompt layout writes whatever it writes, but the
live prefix trie still lets it name only the turn's ranked items, and the reply check still counts broken replies.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer

from .item_codes import ItemCodes
from .model import GENERATOR_CONFIG_FILE, GeneratorConfig, init_sid_embeddings
from .qwen2 import Qwen2
from .qwen2_checkpoint import CheckpointError, load_qwen2, save_qwen2
from .tokenizer import CONTROL_TOKENS, TOKENIZER_FILE, ReplyTokenizer, sid_token

logger = logging.getLogger(__name__)


def extend_tokenizer(tokenizer: Tokenizer, codes: ItemCodes) -> ReplyTokenizer:
    """``tokenizer`` with our control tokens and every SID code token added as special tokens (existing ones kept)."""
    sid_tokens = [sid_token(level, code) for level, size in enumerate(codes.vocab_sizes) for code in range(size)]
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    taken = [t for t in sid_tokens if t in vocab]
    if taken and len(taken) != len(sid_tokens):
        raise CheckpointError(f"the checkpoint's tokenizer already has {len(taken)} of the {len(sid_tokens)} "
                              f"SID code tokens (e.g. {taken[0]!r}): convert from the original checkpoint")
    new = [t for t in (*CONTROL_TOKENS, *sid_tokens) if t not in vocab]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
    return ReplyTokenizer(tokenizer)


@torch.no_grad()
def resize_vocabulary(model: Qwen2, vocab_size: int, new_rows: list[int], seed: int = 0) -> Qwen2:
    """``model`` with at least ``vocab_size`` embedding (and lm_head) rows; rows ``new_rows`` set to the mean of the
    existing rows plus noise at the model's init scale (an untied lm_head gets the same rows)."""
    config = model.config
    size = max(vocab_size, config.vocab_size)
    old = model.model.embed_tokens.weight  # [V_old, D]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(new_rows), old.shape[1], generator=generator) * config.initializer_range  # [N, D]
    fresh = old.float().mean(0, keepdim=True) + noise  # [N, D]

    def grown(weight: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(size, weight.shape[1], dtype=weight.dtype)  # [V, D]
        out[: weight.shape[0]] = weight
        out[new_rows] = fresh.to(weight.dtype)
        return out

    state = dict(model.state_dict())
    state["model.embed_tokens.weight"] = grown(old)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    else:
        state["lm_head.weight"] = grown(model.lm_head.weight)
    with torch.device("meta"):
        resized = Qwen2(dataclasses.replace(config, vocab_size=size))
    resized.load_state_dict(state, strict=not config.tie_word_embeddings, assign=True)
    resized.tie_weights()
    resized.reset_rotary("cpu")
    return resized.eval()


def generator_config_for(model: Qwen2, codes: ItemCodes, decoding: GeneratorConfig | None) -> GeneratorConfig:
    """The checkpoint's architecture with the build's decoding settings (``max_new_tokens``, items per reply)."""
    c, base = model.config, decoding or GeneratorConfig()
    return dataclasses.replace(
        base, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings,
        rope_theta=float(c.rope_theta), sid_levels=len(codes.codebooks),
        sid_codebook_size=max(len(book) for book in codes.codebooks))


def import_qwen2_checkpoint(source: Path, target: Path, codes: ItemCodes, decoding: GeneratorConfig | None = None,
                            seed: int = 0) -> Path:
    """Convert the checkpoint folder ``source`` into a generator folder ``target`` for ``codes`` (see above)."""
    source, target = Path(source), Path(target)
    if not (source / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{source} has no {TOKENIZER_FILE}: a checkpoint folder needs its tokenizer "
                              "(save it with the model, e.g. tokenizer.save_pretrained(folder))")
    if source.resolve() == target.resolve():
        raise CheckpointError(f"convert into another folder than the checkpoint itself ({source})")
    model = load_qwen2(source, dtype=torch.float32)
    old_vocab = model.config.vocab_size
    tokenizer = extend_tokenizer(Tokenizer.from_file(str(source / TOKENIZER_FILE)), codes)
    base_size = Tokenizer.from_file(str(source / TOKENIZER_FILE)).get_vocab_size(with_added_tokens=True)
    new_rows = list(range(base_size, tokenizer.vocab_size))
    model = resize_vocabulary(model, tokenizer.vocab_size, new_rows, seed)
    # the code tokens of every k-means level start from the codebook centroids, as in a fresh build
    init_sid_embeddings(model, tokenizer, codes.codebooks, seed)
    if not model.config.tie_word_embeddings:
        sid_rows = list(tokenizer.sid_token_ids)
        with torch.no_grad():
            model.lm_head.weight[sid_rows] = model.model.embed_tokens.weight[sid_rows]
    model.config = dataclasses.replace(model.config, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    target.mkdir(parents=True, exist_ok=True)
    save_qwen2(model, target)
    tokenizer.save(target)
    codes.save(target)
    generator_config_for(model, codes, decoding).save(target / GENERATOR_CONFIG_FILE, vocab_size=model.config.vocab_size)
    logger.info("imported Qwen2 checkpoint %s into %s: vocabulary %d -> %d (%d new tokens)", source, target,
                old_vocab, model.config.vocab_size, len(new_rows))
    return target


__all__ = ["extend_tokenizer", "generator_config_for", "import_qwen2_checkpoint", "resize_vocabulary"]
