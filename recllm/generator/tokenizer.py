"""Byte-level BPE tokenizer for generator prompts and replies, with one token per catalog item.

The generator mentions catalog items through special tokens ``<item_{id}>``: one token per item id, added to
the vocabulary as special tokens so they are never split and can be masked as a group during constrained
decoding. Text (Russian and English) goes through byte-level BPE, so no input character is ever unknown.

Model input layout (see ``encode_prompt``)::

    <bos> prompt tokens <cands> <item_a> <item_b> ... <sep> reply tokens <eos>
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

logger = logging.getLogger(__name__)

PAD, BOS, EOS, SEP, CANDS = "<pad>", "<bos>", "<eos>", "<sep>", "<cands>"
CONTROL_TOKENS = (PAD, BOS, EOS, SEP, CANDS)
ITEM_TOKEN_RE = re.compile(r"<item_(\d+)>")
TOKENIZER_FILE = "tokenizer.json"


def item_token(item_id: int) -> str:
    return f"<item_{item_id}>"


class ReplyTokenizer:
    """Wraps a ``tokenizers.Tokenizer``; item ids are read back from the ``<item_N>`` tokens in its vocabulary."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        missing = [t for t in CONTROL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer is missing control tokens {missing}")
        self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.cands_id = (vocab[t] for t in CONTROL_TOKENS)
        self._item_to_token: dict[int, int] = {}
        for token, token_id in vocab.items():
            match = ITEM_TOKEN_RE.fullmatch(token)
            if match:
                self._item_to_token[int(match.group(1))] = token_id
        self._token_to_item = {t: i for i, t in self._item_to_token.items()}
        self.control_ids = frozenset((self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.cands_id))

    @classmethod
    def train(cls, texts: Iterable[str], item_ids: Sequence[int], vocab_size: int) -> "ReplyTokenizer":
        """Train byte-level BPE on ``texts``; ``vocab_size`` counts BPE tokens only (control and item tokens
        come on top). Item markers inside ``texts`` are cut out so no merges are spent on them."""
        if vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 byte tokens + merges), got {vocab_size}")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item_ids contains duplicates")
        if any(i < 0 for i in item_ids):
            raise ValueError(f"item ids must be >= 0, got min {min(item_ids)}")
        specials = list(CONTROL_TOKENS) + [item_token(i) for i in item_ids]
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size + len(specials),
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator((ITEM_TOKEN_RE.sub(" ", t) for t in texts), trainer=trainer)
        logger.info("trained BPE tokenizer: %d tokens (%d items)", tok.get_vocab_size(), len(item_ids))
        return cls(tok)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / TOKENIZER_FILE))

    @classmethod
    def load(cls, directory: Path) -> "ReplyTokenizer":
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in {directory}")
        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def item_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._item_to_token))

    @property
    def item_token_ids(self) -> tuple[int, ...]:
        return tuple(self._item_to_token[i] for i in self.item_ids)

    def has_item(self, item_id: int) -> bool:
        return item_id in self._item_to_token

    def item_token_id(self, item_id: int) -> int:
        try:
            return self._item_to_token[item_id]
        except KeyError:
            raise ValueError(f"item id {item_id} is not in the tokenizer's item vocabulary") from None

    def item_id_of_token(self, token_id: int) -> int | None:
        return self._token_to_item.get(token_id)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text with ``<item_N>`` markers kept and control tokens dropped."""
        kept = [i for i in ids if i not in self.control_ids]
        return self._tok.decode(kept, skip_special_tokens=False)

    def encode_prompt(self, prompt: str, candidate_item_ids: Sequence[int], max_tokens: int) -> list[int]:
        """``<bos> prompt <cands> items <sep>``, cutting the tail of the prompt text to fit ``max_tokens``."""
        items = [self.item_token_id(i) for i in candidate_item_ids]
        budget = max_tokens - len(items) - 3
        if budget < 1:
            raise ValueError(f"{len(items)} candidates do not fit in {max_tokens} prompt tokens")
        text = self.encode(prompt)
        if len(text) > budget:
            logger.debug("prompt cut from %d to %d tokens", len(text), budget)
            text = text[:budget]
        return [self.bos_id, *text, self.cands_id, *items, self.sep_id]
