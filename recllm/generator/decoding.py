"""Greedy, item-constrained decoding of replies with a KV cache.

Last pipeline stage: the reranker hands over an ordered candidate list and the generator writes a reply that may
mention only those items. The guarantee lives in ``item_constraint_mask``: at every step an item token is allowed
only if it is a candidate, not yet mentioned, and fewer than ``max_items`` items were mentioned; control tokens
other than ``<eos>`` are never allowed. Decoding is ``prefill`` once, then ``decode_one_token`` per step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache, Qwen2ForCausalLM

from .model import GENERATOR_CONFIG_FILE, GeneratorConfig
from .tokenizer import ReplyTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratedReply:
    text: str  # user-facing text, item tokens rendered by item_name
    raw_text: str  # with <item_N> markers
    item_ids: tuple[int, ...]  # mentioned items, in order, unique, all from the candidate list
    num_tokens: int  # generated tokens, <eos> excluded


def text_token_mask(tokenizer: ReplyTokenizer, model_vocab_size: int) -> torch.Tensor:
    """[V] bool: ordinary BPE tokens and ``<eos>``; no item tokens, no other control tokens, no ids the
    tokenizer does not know (a checkpoint may pad its vocabulary)."""
    mask = torch.zeros(model_vocab_size, dtype=torch.bool)  # [V]
    mask[: tokenizer.vocab_size] = True
    mask[list(tokenizer.control_ids)] = False
    mask[list(tokenizer.item_token_ids)] = False
    mask[tokenizer.eos_id] = True
    return mask


def item_constraint_mask(
    text_mask: torch.Tensor, candidate_token_ids: Sequence[int], mentioned_token_ids: Collection[int], max_items: int
) -> torch.Tensor:
    """[V] bool of tokens allowed at this step: ``text_mask`` plus each candidate item token not yet mentioned,
    while fewer than ``max_items`` items were mentioned."""
    allowed = text_mask.clone()  # [V]
    if len(mentioned_token_ids) < max_items:
        open_items = [t for t in candidate_token_ids if t not in mentioned_token_ids]
        allowed[open_items] = True
    return allowed


def constrain_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~allowed, float("-inf"))  # [V]


def prefill(model: Qwen2ForCausalLM, input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """Run the prompt [1, T] through the model, filling ``cache``; logits of the last position [V]."""
    out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[0, -1]  # [V]


def decode_one_token(model: Qwen2ForCausalLM, token: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """Feed one token [1, 1] after the cached prefix; next-token logits [V]."""
    out = model(input_ids=token, past_key_values=cache, use_cache=True)
    return out.logits[0, -1]  # [V]


class ReplyGenerator:
    def __init__(self, model: Qwen2ForCausalLM, tokenizer: ReplyTokenizer, config: GeneratorConfig):
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"model vocab_size={model.config.vocab_size} is smaller than "
                f"tokenizer vocab_size={tokenizer.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self._text_mask = text_token_mask(tokenizer, model.config.vocab_size)  # [V]

    @classmethod
    def load(cls, directory: Path) -> "ReplyGenerator":
        """Load a local directory written by ``train_generator`` (never a hub name)."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not a local model directory (no config.json)")
        model = Qwen2ForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
        tokenizer = ReplyTokenizer.load(directory)
        config_path = directory / GENERATOR_CONFIG_FILE
        if config_path.is_file():
            config = GeneratorConfig.load(config_path)
        else:
            logger.warning("no %s in %s; using default decoding settings", GENERATOR_CONFIG_FILE, directory)
            config = GeneratorConfig()
        return cls(model, tokenizer, config)

    def _check_request(self, prompt: str, candidate_item_ids: Sequence[int]) -> list[int]:
        if not prompt or not prompt.strip():
            raise ValueError("prompt is empty")
        unknown = [i for i in candidate_item_ids if not self.tokenizer.has_item(i)]
        if unknown:
            raise ValueError(f"candidate item ids not in the generator's item vocabulary: {unknown[:10]}")
        return list(dict.fromkeys(candidate_item_ids))  # drop duplicates, keep order

    def tokens(
        self, prompt: str, candidate_item_ids: Sequence[int], max_new_tokens: int | None = None
    ) -> Iterator[int]:
        """Greedy constrained decoding; yields generated token ids, stopping before ``<eos>``.
        Bad requests raise ``ValueError`` here, before the first token."""
        candidates = self._check_request(prompt, candidate_item_ids)
        max_new = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        if max_new <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {max_new}")
        max_prompt = self.model.config.max_position_embeddings - max_new
        input_ids = torch.tensor([self.tokenizer.encode_prompt(prompt, candidates, max_prompt)])  # [1, T]
        candidate_tokens = [self.tokenizer.item_token_id(i) for i in candidates]
        return self._greedy(input_ids, candidate_tokens, max_new)

    @torch.no_grad()
    def _greedy(self, input_ids: torch.Tensor, candidate_tokens: list[int], max_new: int) -> Iterator[int]:
        mentioned: set[int] = set()
        max_items = self.config.max_items_per_reply
        cache = DynamicCache(config=self.model.config)
        logits = prefill(self.model, input_ids, cache)  # [V]
        for step in range(max_new):
            allowed = item_constraint_mask(self._text_mask, candidate_tokens, mentioned, max_items)  # [V]
            token = int(constrain_logits(logits, allowed).argmax())
            if token == self.tokenizer.eos_id:
                return
            if self.tokenizer.item_id_of_token(token) is not None:
                mentioned.add(token)
            yield token
            if step + 1 < max_new:
                logits = decode_one_token(self.model, torch.tensor([[token]]), cache)  # [V]

    def stream(
        self,
        prompt: str,
        candidate_item_ids: Sequence[int],
        item_name: Callable[[int], str],
        max_new_tokens: int | None = None,
    ) -> Iterator[str]:
        """User-visible text deltas as tokens are decoded; item tokens are rendered by ``item_name(id)``."""
        return render_deltas(self.tokens(prompt, candidate_item_ids, max_new_tokens), self.tokenizer, item_name)

    def generate(
        self,
        prompt: str,
        candidate_item_ids: Sequence[int],
        item_name: Callable[[int], str],
        max_new_tokens: int | None = None,
    ) -> GeneratedReply:
        generated: list[int] = []
        tokens = self.tokens(prompt, candidate_item_ids, max_new_tokens)

        def recorded() -> Iterator[int]:
            for token in tokens:
                generated.append(token)
                yield token

        text = "".join(render_deltas(recorded(), self.tokenizer, item_name))
        items = tuple(i for i in map(self.tokenizer.item_id_of_token, generated) if i is not None)
        return GeneratedReply(text, self.tokenizer.decode(generated), items, len(generated))


def render_deltas(tokens: Iterator[int], tokenizer: ReplyTokenizer, item_name: Callable[[int], str]) -> Iterator[str]:
    """Turn token ids into text deltas. Text between items is decoded as a whole so far and only complete
    characters are released (a byte-level token may end inside a multi-byte UTF-8 character)."""
    segment: list[int] = []
    released = 0
    for token in tokens:
        item_id = tokenizer.item_id_of_token(token)
        if item_id is None:
            segment.append(token)
            text = tokenizer.decode(segment)
            if not text.endswith("\ufffd") and len(text) > released:
                yield text[released:]
                released = len(text)
            continue
        if segment:
            text = tokenizer.decode(segment)
            if len(text) > released:
                yield text[released:]
        segment, released = [], 0
        yield item_name(item_id)
    if segment:
        text = tokenizer.decode(segment)
        if len(text) > released:
            yield text[released:]
