"""Generator configuration and the Qwen2 model built from it.

The reply generator is a plain ``transformers.Qwen2ForCausalLM``: small and trained from scratch here, Qwen-2 72B in
production. ``GeneratorConfig`` holds model and training hyper-parameters; ``qwen2_config`` maps it onto the
``Qwen2Config`` that is saved as ``config.json`` next to the weights, and ``generator_config.json`` repeats the
architecture (plus ``vocab_size``) so an engine builder can read it without importing this package.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from recllm.config_validation import require_positive_ints

logger = logging.getLogger(__name__)

GENERATOR_CONFIG_FILE = "generator_config.json"


@dataclass
class GeneratorConfig:
    # architecture (Qwen2)
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0
    # tokenizer: BPE tokens on top of the control and item tokens
    bpe_vocab_size: int = 2000
    # training
    train_steps: int = 500
    batch_size: int = 16
    learning_rate: float = 5e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    # decoding
    max_new_tokens: int = 48
    max_items_per_reply: int = 5

    def __post_init__(self):
        positive = (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
            "max_position_embeddings", "train_steps", "batch_size", "max_new_tokens", "max_items_per_reply",
        )
        require_positive_ints(self, positive)
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
        """Write the config plus the full ``vocab_size`` (BPE + control + item tokens) as JSON."""
        data = {**asdict(self), "vocab_size": vocab_size, "model_type": "qwen2"}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "GeneratorConfig":
        data = json.loads(Path(path).read_text())
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


PRESETS: dict[str, dict] = {
    # trains in well under 20 s on 2 CPU cores; enough to learn "mention the first candidates"
    "test": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        max_position_embeddings=160, bpe_vocab_size=400, train_steps=300, batch_size=16, learning_rate=1e-2,
        warmup_steps=20,
    ),
    # ~2-4 min on 2 CPU cores; fluent replies on the synthetic corpus
    "default": dict(),
}


def qwen2_config(config: GeneratorConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> Qwen2Config:
    """The ``Qwen2Config`` for a ``GeneratorConfig``; ``vocab_size`` is the full tokenizer vocabulary."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        # tied embeddings: an item token copied from the candidate list is scored by its own embedding
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )


def build_model(
    config: GeneratorConfig, vocab_size: int, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2
) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 causal LM (seeded by ``config.seed``) in float32."""
    torch.manual_seed(config.seed)
    model = Qwen2ForCausalLM(qwen2_config(config, vocab_size, pad_id, bos_id, eos_id))
    logger.info("built Qwen2 generator: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return model
