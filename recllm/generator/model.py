"""Generator configuration and the Qwen2 model built from it (our ``qwen2.Qwen2``, HF-compatible checkpoints).

``GeneratorConfig`` holds model, Semantic-ID, training and decoding hyper-parameters; ``qwen2_config`` maps it onto
``qwen2.Qwen2Config`` (saved as the HF ``config.json`` by ``qwen2_checkpoint.save_qwen2``, so ``transformers``
reads the folder too), and ``generator_config.json`` repeats it (plus ``vocab_size``) for engine builders.
``init_sid_embeddings`` starts every Semantic-ID code token from its RQ-KMeans centroid projected to the model
width, so an item the model never saw in training is still written with meaningful tokens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from recllm.config.field_checks import require_positive_ints

from .qwen2 import Qwen2, Qwen2Config, build_qwen2
from .tokenizer import ReplyTokenizer

logger = logging.getLogger(__name__)

GENERATOR_CONFIG_FILE = "generator_config.json"


@dataclass
class GeneratorConfig:
    # architecture (Qwen2)
    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 192
    rope_theta: float = 10000.0
    # tokenizer: BPE tokens on top of the control and Semantic-ID code tokens
    bpe_vocab_size: int = 2000
    # Semantic IDs of the items: levels x codebook_size codes + a collision level
    sid_levels: int = 3
    sid_codebook_size: int = 256
    # training
    train_steps: int = 600
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    # decoding
    max_new_tokens: int = 64
    max_items_per_reply: int = 5

    def __post_init__(self):
        positive = (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
            "max_position_embeddings", "train_steps", "batch_size", "max_new_tokens", "max_items_per_reply",
            "sid_levels",
        )
        require_positive_ints(self, positive)
        if self.sid_codebook_size < 2:
            raise ValueError(f"GeneratorConfig.sid_codebook_size must be >= 2, got {self.sid_codebook_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"GeneratorConfig.hidden_size={self.hidden_size} must be divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"GeneratorConfig.num_attention_heads={self.num_attention_heads} must be divisible by "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.bpe_vocab_size < 300:
            raise ValueError(f"GeneratorConfig.bpe_vocab_size must be >= 300, got {self.bpe_vocab_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"GeneratorConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_steps < self.train_steps:
            raise ValueError(
                f"GeneratorConfig.warmup_steps must be in [0, train_steps={self.train_steps}), got {self.warmup_steps}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"GeneratorConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_new_tokens >= self.max_position_embeddings:
            raise ValueError(
                f"GeneratorConfig.max_new_tokens={self.max_new_tokens} must be < "
                f"max_position_embeddings={self.max_position_embeddings}"
            )

    @classmethod
    def from_name(cls, name: str) -> "GeneratorConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown GeneratorConfig preset {name!r}; known: {sorted(PRESETS)}")
        return cls(**PRESETS[name])

    def save(self, path: Path, vocab_size: int) -> None:
        """Write the config plus the full ``vocab_size`` (BPE + control + SID tokens) as JSON."""
        data = {**asdict(self), "vocab_size": vocab_size, "model_type": "qwen2"}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "GeneratorConfig":
        data = json.loads(Path(path).read_text())
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


PRESETS: dict[str, dict] = {
    # trains in well under a minute on 2 CPU cores; enough to learn the reply shapes of every act
    "test": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        max_position_embeddings=160, bpe_vocab_size=500, sid_codebook_size=32, train_steps=300, batch_size=16,
        learning_rate=1e-2, warmup_steps=20, max_new_tokens=56,
    ),
    # ~2.2M parameters (1.6M in the layers); estimated ~0.75 s a step on 2 idle CPU cores (the old 1M-parameter
    # default took 0.35 s), so ~8 min: not measured on an idle machine yet
    "default": dict(),
}


def qwen2_config(config: GeneratorConfig, vocab_size: int, bos_id: int, eos_id: int) -> Qwen2Config:
    """Our ``Qwen2Config`` for a ``GeneratorConfig``; ``vocab_size`` is the full tokenizer vocabulary."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        # tied embeddings: a SID token copied from the candidate list is scored by its own embedding
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )


def build_model(config: GeneratorConfig, tokenizer: ReplyTokenizer) -> Qwen2:
    """A randomly initialised Qwen2 (seeded by ``config.seed``) in float32 over the tokenizer's vocabulary."""
    model = build_qwen2(qwen2_config(config, tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id),
                        seed=config.seed)
    logger.info("built Qwen2 generator: %.2fM parameters", model.num_parameters() / 1e6)
    return model


@torch.no_grad()
def init_sid_embeddings(model: Qwen2, tokenizer: ReplyTokenizer, codebooks: list[np.ndarray], seed: int = 0) -> None:
    """Set each k-means level's code-token embeddings to its centroids through a fixed random projection to the
    model width, rescaled to the model's init scale; each level also gets its own random offset so that the
    levels stay apart. The collision level keeps its random init (it carries no content)."""
    width, std = model.config.hidden_size, model.config.initializer_range
    embedding = model.model.embed_tokens.weight  # [V, D]
    generator = torch.Generator().manual_seed(seed)
    for level, book in enumerate(codebooks):
        centroids = torch.as_tensor(np.asarray(book), dtype=torch.float32)  # [K, C]
        projection = torch.randn(centroids.shape[1], width, generator=generator)  # [C, D]
        projected = centroids @ projection  # [K, D]
        projected = projected / projected.std().clamp(min=1e-8) * std
        offset = torch.randn(width, generator=generator) * std  # [D]
        rows = tokenizer.level_token_ids(level)[: len(centroids)]
        embedding[rows] = (projected[: len(rows)] + offset).to(embedding.dtype)
