"""Byte-level BPE tokenizer for generator prompts and replies, with catalog items as Semantic-ID code tokens.

Items are not one token each: an item is the span of its Semantic ID (``recllm.sid``: ``levels`` RQ-KMeans codes of
``codebook_size`` each plus a collision code), written with one special token per (level, code) ``<sid_{l}_{c}>``.
The vocabulary therefore grows with the codebook (3 × 256 + collisions), not with the catalog, and a new item is
written with tokens the model already knows. Text (Russian and English) goes through byte-level BPE, so no input
character is ever unknown.

Model input layout (see ``encode_prompt``)::

    <bos> prompt tokens <cands> sid span of item a, sid span of item b ... <sep> reply tokens <eos>

Training replies name items with ``<item_{id}>`` markers; ``encode_reply`` swaps each for the item's SID span.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

logger = logging.getLogger(__name__)

PAD, BOS, EOS, SEP, CANDS = "<pad>", "<bos>", "<eos>", "<sep>", "<cands>"
CONTROL_TOKENS = (PAD, BOS, EOS, SEP, CANDS)
ITEM_TOKEN_RE = re.compile(r"<item_(\d+)>")
SID_TOKEN_RE = re.compile(r"<sid_(\d+)_(\d+)>")
TOKENIZER_FILE = "tokenizer.json"


def item_token(item_id: int) -> str:
    """The marker naming an item in training replies (not a vocabulary token: it becomes the item's SID span)."""
    return f"<item_{item_id}>"


def sid_token(level: int, code: int) -> str:
    return f"<sid_{level}_{code}>"


class ReplyTokenizer:
    """Wraps a ``tokenizers.Tokenizer``; the SID code tokens are read back from its ``<sid_l_c>`` vocabulary."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        missing = [t for t in CONTROL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer is missing control tokens {missing}")
        self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.cands_id = (vocab[t] for t in CONTROL_TOKENS)
        self._sid_to_token: dict[tuple[int, int], int] = {}
        for token, token_id in vocab.items():
            match = SID_TOKEN_RE.fullmatch(token)
            if match:
                self._sid_to_token[(int(match.group(1)), int(match.group(2)))] = token_id
        self._token_to_sid = {t: s for s, t in self._sid_to_token.items()}
        levels = sorted({level for level, _ in self._sid_to_token})
        if levels != list(range(len(levels))):
            raise ValueError(f"tokenizer SID levels must be 0..L-1, got {levels}")
        self.sid_vocab_sizes = tuple(
            max(code for lv, code in self._sid_to_token if lv == level) + 1 for level in levels)
        self.control_ids = frozenset((self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.cands_id))

    @classmethod
    def train(cls, texts: Iterable[str], sid_vocab_sizes: Sequence[int], vocab_size: int) -> "ReplyTokenizer":
        """Train byte-level BPE on ``texts``; ``vocab_size`` counts BPE tokens only (control and SID tokens come
        on top: ``sum(sid_vocab_sizes)``). Item markers inside ``texts`` are cut out so no merges are spent on them."""
        if vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 byte tokens + merges), got {vocab_size}")
        if not sid_vocab_sizes or any(int(size) < 1 for size in sid_vocab_sizes):
            raise ValueError(f"sid_vocab_sizes must be positive per level, got {list(sid_vocab_sizes)}")
        specials = list(CONTROL_TOKENS) + [
            sid_token(level, code) for level, size in enumerate(sid_vocab_sizes) for code in range(int(size))]
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
        logger.info("trained BPE tokenizer: %d tokens (%d SID code tokens)", tok.get_vocab_size(),
                    sum(sid_vocab_sizes))
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
    def sid_depth(self) -> int:
        """Tokens per item span (k-means levels + the collision level)."""
        return len(self.sid_vocab_sizes)

    @property
    def sid_token_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._token_to_sid))

    def sid_token_id(self, level: int, code: int) -> int:
        try:
            return self._sid_to_token[(int(level), int(code))]
        except KeyError:
            raise ValueError(f"SID code {code} at level {level} is not in the tokenizer's vocabulary") from None

    def level_token_ids(self, level: int) -> list[int]:
        """Token id of every code of ``level``, index = code."""
        return [self._sid_to_token[(level, code)] for code in range(self.sid_vocab_sizes[level])]

    def token_string(self, token_id: int) -> str | None:
        """The token as the vocabulary spells it (byte-level BPE: GPT-2's printable stand-ins for bytes)."""
        return self._tok.id_to_token(int(token_id))

    def sid_of_token(self, token_id: int) -> tuple[int, int] | None:
        """(level, code) of a SID token, None for any other token."""
        return self._token_to_sid.get(token_id)

    def sid_span(self, sid: Sequence[int]) -> list[int]:
        if len(sid) != self.sid_depth:
            raise ValueError(f"a SID has {self.sid_depth} codes here, got {list(sid)}")
        return [self.sid_token_id(level, code) for level, code in enumerate(sid)]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text with ``<sid_l_c>`` tokens kept and control tokens dropped."""
        kept = [i for i in ids if i not in self.control_ids]
        return self._tok.decode(kept, skip_special_tokens=False)

    def encode_reply(self, text: str, sid_of_item: Callable[[int], Sequence[int]]) -> list[int]:
        """Reply text whose ``<item_N>`` markers become the items' SID spans."""
        ids: list[int] = []
        position = 0
        for match in ITEM_TOKEN_RE.finditer(text):
            if match.start() > position:
                ids += self.encode(text[position:match.start()])
            ids += self.sid_span(sid_of_item(int(match.group(1))))
            position = match.end()
        if position < len(text):
            ids += self.encode(text[position:])
        return ids

    def encode_prompt(self, prompt: str, candidate_sids: Sequence[Sequence[int]], max_tokens: int) -> list[int]:
        """``<bos> prompt <cands> SID spans <sep>``, cutting the tail of the prompt text to fit ``max_tokens``."""
        items = [token for sid in candidate_sids for token in self.sid_span(sid)]
        budget = max_tokens - len(items) - 3
        if budget < 1:
            raise ValueError(f"{len(candidate_sids)} candidates do not fit in {max_tokens} prompt tokens")
        text = self.encode(prompt)
        if len(text) > budget:
            logger.debug("prompt cut from %d to %d tokens", len(text), budget)
            text = text[:budget]
        return [self.bos_id, *text, self.cands_id, *items, self.sep_id]
