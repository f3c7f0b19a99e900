"""Reply generator: the last pipeline stage (encoder → retriever → reranker → generator).

A Qwen2 causal LM writes a short reply in the user's language and mentions catalog items through ``<item_{id}>``
tokens; constrained decoding guarantees that only the reranker's candidates can be mentioned.
"""

from .decoding import (
    GeneratedReply,
    ReplyGenerator,
    constrain_logits,
    decode_one_token,
    item_constraint_mask,
    prefill,
    render_deltas,
    text_token_mask,
)
from .model import GENERATOR_CONFIG_FILE, PRESETS, GeneratorConfig, build_model, qwen2_config
from .tokenizer import ReplyTokenizer, item_token
from .training import GeneratorExample, encode_example, save_generator, train_generator

__all__ = [
    "GENERATOR_CONFIG_FILE",
    "PRESETS",
    "GeneratedReply",
    "GeneratorConfig",
    "GeneratorExample",
    "ReplyGenerator",
    "ReplyTokenizer",
    "build_model",
    "constrain_logits",
    "decode_one_token",
    "encode_example",
    "item_constraint_mask",
    "item_token",
    "prefill",
    "qwen2_config",
    "render_deltas",
    "save_generator",
    "text_token_mask",
    "train_generator",
]
