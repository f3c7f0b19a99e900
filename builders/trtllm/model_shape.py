"""Qwen2 model dimensions: the three presets we build engines for, and reading them from a HF checkpoint.

The Semantic-ID (SID) vocabulary extension is part of the *base* model: its rows are appended to ``embed_tokens``
and ``lm_head`` before the engine is built. A LoRA that carries embedding or lm_head weights replaces the base ones
in TensorRT-LLM, so SID rows never live in an adapter (``builders.trtllm.build_engine`` rejects such checkpoints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

# recllm/sid: RQ-KMeans 3 levels x 256 codes plus a collision level of up to 256 codes, one token range per level.
SID_LEVELS = 4
SID_CODES_PER_LEVEL = 256
SID_VOCAB_SIZE = SID_LEVELS * SID_CODES_PER_LEVEL
# Optional key a checkpoint's config.json may carry to say how many of its vocab rows are SID rows.
SID_CONFIG_KEY = "recllm_sid_vocab_size"


@dataclass(frozen=True)
class QwenShape:
    """Dimensions of a Qwen2 decoder. ``vocab_size`` counts every embedding row, SID rows included."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    sid_vocab_size: int = SID_VOCAB_SIZE
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False

    def __post_init__(self):
        for field in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
                      "max_position_embeddings"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"QwenShape.{field} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"QwenShape.hidden_size={self.hidden_size} is not a multiple of "
                             f"num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"QwenShape.num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}")
        if not 0 <= self.sid_vocab_size < self.vocab_size:
            raise ValueError(f"QwenShape.sid_vocab_size={self.sid_vocab_size} must be in [0, vocab_size="
                             f"{self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim            # attn_q output width (= hidden_size for Qwen2)

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim         # attn_k / attn_v output width (GQA)

    def layer_linear_params(self) -> int:
        """Weights of the projections TensorRT-LLM splits across tensor-parallel ranks, one layer."""
        attention = self.hidden_size * (self.q_dim + 2 * self.kv_dim) + self.q_dim * self.hidden_size
        mlp = 3 * self.hidden_size * self.intermediate_size                  # gate, up, down
        return attention + mlp

    def layer_small_params(self) -> int:
        """q/k/v biases (Qwen2 has them) and the two RMSNorm weights, one layer; kept in bf16."""
        return self.q_dim + 2 * self.kv_dim + 2 * self.hidden_size

    def total_params(self) -> int:
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * (self.layer_linear_params() + self.layer_small_params()) + embeddings \
            + self.hidden_size


# Published Qwen2 configs (Qwen/Qwen2-0.5B, -7B, -72B config.json), vocab extended by our SID tokens.
PRESET_SHAPES = {
    "0.5b": QwenShape("qwen2-0.5b", hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                      intermediate_size=4864, vocab_size=151936 + SID_VOCAB_SIZE, tie_word_embeddings=True),
    "7b": QwenShape("qwen2-7b", hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4,
                    intermediate_size=18944, vocab_size=152064 + SID_VOCAB_SIZE),
    "72b": QwenShape("qwen2-72b", hidden_size=8192, num_layers=80, num_heads=64, num_kv_heads=8,
                     intermediate_size=29568, vocab_size=152064 + SID_VOCAB_SIZE),
}


def shape_from_hf_config(config_path: Path, fallback: QwenShape) -> QwenShape:
    """The shape a Qwen2 HF ``config.json`` describes; its ``vocab_size`` already includes the SID rows.

    ``fallback`` supplies the SID row count when the file does not carry ``recllm_sid_vocab_size``.
    """
    config = json.loads(Path(config_path).read_text())
    architectures = config.get("architectures") or []
    if architectures and "Qwen2ForCausalLM" not in architectures:
        raise ValueError(f"{config_path}: architectures={architectures}, expected Qwen2ForCausalLM")
    try:
        return replace(
            fallback,
            name=str(config.get("_name_or_path") or fallback.name),
            hidden_size=int(config["hidden_size"]), num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            num_kv_heads=int(config.get("num_key_value_heads", config["num_attention_heads"])),
            intermediate_size=int(config["intermediate_size"]), vocab_size=int(config["vocab_size"]),
            sid_vocab_size=int(config.get(SID_CONFIG_KEY, fallback.sid_vocab_size)),
            max_position_embeddings=int(config.get("max_position_embeddings", fallback.max_position_embeddings)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", fallback.tie_word_embeddings)),
        )
    except KeyError as missing:
        raise ValueError(f"{config_path}: missing key {missing} in a Qwen2 config.json") from None
