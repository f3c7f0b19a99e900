"""Train the reply generator (tokenizer + Qwen2 model) from scratch on ``GeneratorExample`` records.

Each example becomes ``<bos> prompt <cands> candidate item tokens <sep> reply <eos>`` and the loss covers only the
reply and ``<eos>``: the model learns to write a reply conditioned on the prompt and to copy item tokens from the
candidate list. ``train_generator`` writes a directory that ``ReplyGenerator.load`` reads back.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import Qwen2ForCausalLM

from .model import GENERATOR_CONFIG_FILE, GeneratorConfig, build_model
from .tokenizer import ReplyTokenizer

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels ignored by the cross-entropy loss


@dataclass(frozen=True)
class GeneratorExample:
    prompt: str  # e.g. "service: samokat | lang: ru | query: ... | profile: ..."
    candidate_item_ids: tuple[int, ...]  # ordered best-first; the items the reply may mention
    reply: str  # target reply with <item_N> markers


def encode_example(
    tokenizer: ReplyTokenizer, example: GeneratorExample, max_len: int, max_new_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels (``IGNORE_INDEX`` on the prompt part) for one example, at most ``max_len`` long."""
    prompt = tokenizer.encode_prompt(example.prompt, example.candidate_item_ids, max_len - max_new_tokens)
    reply = tokenizer.encode(example.reply)[: max_len - len(prompt) - 1] + [tokenizer.eos_id]
    return prompt + reply, [IGNORE_INDEX] * len(prompt) + reply


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked out of attention and loss."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, T]
    for row, (ids, lab) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def reply_loss(model: Qwen2ForCausalLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy on labelled (reply) positions only. Same value as ``model(**batch).loss``, but the
    LM head runs only where a label exists, which on CPU saves most of its cost (prompts are the bulk of tokens)."""
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]  # [B, T-1]; position t predicts token t+1
    keep = targets != IGNORE_INDEX  # [B, T-1]
    logits = model.lm_head(hidden[:, :-1][keep])  # [N, V]
    return torch.nn.functional.cross_entropy(logits, targets[keep])


def lr_at(step: int, config: GeneratorConfig) -> float:
    """Linear warmup then cosine decay to 10% of ``learning_rate``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.train_steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_generator(model: Qwen2ForCausalLM, tokenizer: ReplyTokenizer, config: GeneratorConfig, out_dir: Path) -> Path:
    """Write weights (safetensors) + ``config.json``, ``tokenizer.json`` and ``generator_config.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save(out_dir)
    config.save(out_dir / GENERATOR_CONFIG_FILE, vocab_size=model.config.vocab_size)
    return out_dir


def train_generator(
    examples: Sequence[GeneratorExample],
    item_ids: Sequence[int],
    config: GeneratorConfig,
    out_dir: Path,
    progress: bool = True,
) -> Path:
    """Train tokenizer and model on ``examples``, save them to ``out_dir`` and return ``out_dir``."""
    if not examples:
        raise ValueError("train_generator needs at least one example")
    known = set(item_ids)
    for example in examples:
        unknown = set(example.candidate_item_ids) - known
        if unknown:
            raise ValueError(f"example candidate ids {sorted(unknown)[:5]} are not in item_ids")
    texts = [t for e in examples for t in (e.prompt, e.reply)]
    tokenizer = ReplyTokenizer.train(texts, item_ids, config.bpe_vocab_size)
    rows = [encode_example(tokenizer, e, config.max_position_embeddings, config.max_new_tokens) for e in examples]
    model = build_model(config, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    loss = train_loop(model, rows, tokenizer.pad_id, config, progress)
    logger.info("generator trained: %d steps, final loss %.4f", config.train_steps, loss)
    return save_generator(model.eval(), tokenizer, config, out_dir)


def train_loop(
    model: Qwen2ForCausalLM, rows: list[tuple[list[int], list[int]]], pad_id: int, config: GeneratorConfig,
    progress: bool,
) -> float:
    """AdamW over random batches; returns the mean loss of the last 10% of steps."""
    rng = random.Random(config.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
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
        batch = collate([rows[rng.randrange(len(rows))] for _ in range(config.batch_size)], pad_id)
        loss = reply_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= config.train_steps * 0.9:
            tail.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    logger.info("training took %.1f s", time.perf_counter() - start)
    return sum(tail) / len(tail)
