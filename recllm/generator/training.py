"""Train the reply generator (tokenizer + our Qwen2) from scratch on ``GeneratorExample`` records.

Each example becomes ``<bos> prompt <cands> candidate SID spans <sep> reply <eos>`` and the loss covers only the
reply and ``<eos>``: the model learns to write a reply for the prompt's act and to copy SID spans from the candidate
list. ``train_generator`` writes an HF-format folder (``qwen2_checkpoint.save_qwen2``: ``config.json`` +
safetensors, which ``transformers`` also reads) plus ``tokenizer.json``, ``generator_config.json`` and
``item_codes.npz``; ``ReplyGenerator.load`` reads it back.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .item_codes import ItemCodes
from .corpus_spans import save_reply_spans
from .model import GENERATOR_CONFIG_FILE, GeneratorConfig, build_model, init_sid_embeddings
from .qwen2 import Qwen2
from .qwen2_checkpoint import save_qwen2
from .reply_check import REPLY_WORD_PAIRS_FILE, REPLY_WORDS_FILE, own_word_pairs, own_words
from .tokenizer import ReplyTokenizer

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels ignored by the cross-entropy loss


@dataclass(frozen=True)
class GeneratorExample:
    prompt: str  # build_prompt(...): "act: ... | service: ... | lang: ... | query: ... | profile: ..."
    candidate_item_ids: tuple[int, ...]  # ordered best-first; the items the reply may mention
    reply: str  # target reply with <item_N> markers
    user_id: str = ""  # whose request this is (the user layers are trained per user); "" unknown


def encode_example(tokenizer: ReplyTokenizer, codes: ItemCodes, example: GeneratorExample, max_len: int,
                   max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (``IGNORE_INDEX`` on the prompt part) for one example, at most ``max_len`` long."""
    candidates = [codes.sid_of(i) for i in example.candidate_item_ids]
    prompt = tokenizer.encode_prompt(example.prompt, candidates, max_len - max_new_tokens)
    reply = tokenizer.encode_reply(example.reply, codes.sid_of)[: max_len - len(prompt) - 1] + [tokenizer.eos_id]
    return prompt + reply, [IGNORE_INDEX] * len(prompt) + reply


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a batch: input ids and labels [B, T]. Causal attention means real tokens never see the padding on
    their right, and padded positions carry no label."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    for row, (ids, lab) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
    return input_ids, labels


def reply_loss(model: Qwen2, input_ids: torch.Tensor, labels: torch.Tensor, **forward_kwargs) -> torch.Tensor:
    """Next-token cross-entropy on labelled (reply) positions only; ``forward_kwargs`` go to the model (e.g. an
    ``AdaptiveQwen2``'s ``batch=UserBatch(...)``: the reply loss under each row's user layers)."""
    logits = model(input_ids, **forward_kwargs)[:, :-1]  # [B, T-1, V]; position t predicts token t+1
    targets = labels[:, 1:]  # [B, T-1]
    keep = targets != IGNORE_INDEX  # [B, T-1]
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep])


def lr_at(step: int, config: GeneratorConfig) -> float:
    """Linear warmup then cosine decay to 10% of ``learning_rate``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.train_steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_generator(model: Qwen2, tokenizer: ReplyTokenizer, config: GeneratorConfig, codes: ItemCodes,
                   out_dir: Path) -> Path:
    """Write the HF-format checkpoint + ``tokenizer.json``, ``generator_config.json`` and ``item_codes.npz``."""
    out_dir = Path(out_dir)
    save_qwen2(model, out_dir)
    tokenizer.save(out_dir)
    codes.save(out_dir)
    config.save(out_dir / GENERATOR_CONFIG_FILE, vocab_size=model.config.vocab_size)
    return out_dir


def train_generator(
    examples: Sequence[GeneratorExample],
    codes: ItemCodes,
    config: GeneratorConfig,
    out_dir: Path,
    progress: bool = True,
) -> Path:
    """Train tokenizer and model on ``examples``, save them to ``out_dir`` and return ``out_dir``."""
    if not examples:
        raise ValueError("train_generator needs at least one example")
    for example in examples:
        unknown = [i for i in example.candidate_item_ids if not codes.has(i)]
        if unknown:
            raise ValueError(f"example candidate ids {sorted(unknown)[:5]} have no Semantic ID")
    texts = [t for e in examples for t in (e.prompt, e.reply)]
    tokenizer = ReplyTokenizer.train(texts, codes.vocab_sizes, config.bpe_vocab_size)
    rows = [encode_example(tokenizer, codes, e, config.max_position_embeddings, config.max_new_tokens)
            for e in examples]
    model = build_model(config, tokenizer)
    init_sid_embeddings(model, tokenizer, codes.codebooks, config.seed)
    loss = train_loop(model, rows, tokenizer.pad_id, config, progress)
    logger.info("generator trained: %d steps, final loss %.4f", config.train_steps, loss)
    save_generator(model.eval(), tokenizer, config, codes, out_dir)
    save_reply_words(examples, out_dir)
    return Path(out_dir)


def save_reply_words(examples: Sequence[GeneratorExample], out_dir: Path) -> Path:
    """``reply_words.json``: every word the training replies write themselves (not item names, not quoted facts),
    which the reply check holds a generated reply to."""
    words = sorted(set().union(*(own_words(e.reply) for e in examples)))
    path = Path(out_dir) / REPLY_WORDS_FILE
    path.write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    save_reply_word_pairs(examples, out_dir)
    save_reply_spans(examples, out_dir)
    return path


def save_reply_word_pairs(examples: Sequence[GeneratorExample], out_dir: Path) -> Path:
    """``reply_word_pairs.json``: every pair of adjacent words the training replies write themselves
    (``reply_check.own_word_pairs``), which the reply check holds a generated reply's word order to."""
    pairs = sorted(set().union(*(own_word_pairs(e.reply) for e in examples)))
    path = Path(out_dir) / REPLY_WORD_PAIRS_FILE
    path.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    return path


def train_loop(model: Qwen2, rows: list[tuple[list[int], list[int]]], pad_id: int, config: GeneratorConfig,
               progress: bool) -> float:
    """AdamW over random batches; returns the mean loss of the last 10% of steps."""
    rng = random.Random(config.seed)
    params = list({id(p): p for p in model.parameters()}.values())  # tied embeddings once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.95),
    )
    model.train()
    tail, start = [], time.perf_counter()
    bar = tqdm(range(config.train_steps), desc="generator", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        input_ids, labels = collate([rows[rng.randrange(len(rows))] for _ in range(config.batch_size)], pad_id)
        loss = reply_loss(model, input_ids, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step >= config.train_steps * 0.9:
            tail.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    logger.info("training took %.1f s", time.perf_counter() - start)
    return sum(tail) / len(tail)
