"""Reply generator: the last pipeline stage (encoder → retriever → reranker → generator).

Our Qwen2 (``qwen2.py``, HF-format checkpoints via ``qwen2_checkpoint.py``) writes a short reply for the turn's
act in the user's language and names catalog items by their Semantic-ID code spans; each request's live prefix
trie over its ranked candidates (``item_constraint.py``) guarantees that only those items can be named, each once,
and ``reply_check.py`` checks the finished reply. Decoding runs on the lean decode loop (``decode_loop.py``).
"""

from .decoding import GREEDY, GeneratedReply, ReplyGenerator, ReplyRenderer, ReplyRequest, Sampling
from .item_codes import ITEM_CODES_FILE, ItemCodes, catalog_item_codes
from .item_constraint import ItemSpanConstraint, text_token_mask
from .model import GENERATOR_CONFIG_FILE, PRESETS, GeneratorConfig, build_model, init_sid_embeddings, qwen2_config
from .reply_act import derive_act
from .reply_frame import FRAMES, reply_frame
from .reply_check import ReplyCheck, ReplyCheckCounters, check_reply
from .reply_prompt import ACTS, RELAXATIONS, build_prompt
from .tokenizer import ReplyTokenizer, item_token, sid_token
from .training import GeneratorExample, encode_example, save_generator, train_generator

__all__ = [
    "ACTS", "FRAMES", "GENERATOR_CONFIG_FILE", "GREEDY", "ITEM_CODES_FILE", "PRESETS", "RELAXATIONS", "GeneratedReply",
    "GeneratorConfig", "GeneratorExample", "ItemCodes", "ItemSpanConstraint", "ReplyCheck", "ReplyCheckCounters",
    "ReplyGenerator", "ReplyRenderer", "ReplyRequest", "ReplyTokenizer", "Sampling", "build_model", "build_prompt",
    "catalog_item_codes", "check_reply", "derive_act", "encode_example", "init_sid_embeddings", "item_token",
    "qwen2_config", "reply_frame", "save_generator", "sid_token", "text_token_mask", "train_generator",
]
