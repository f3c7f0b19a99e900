"""Our Qwen2 decoder: the reply generator's LLM as one readable module.

Same architecture and parameter names as Hugging Face ``Qwen2ForCausalLM`` (so checkpoints load by name, see
``qwen2_checkpoint.py``), written so that the decode loop (``decode_loop.py``) can drive it with a static KV cache
and so that Rec-LLM's adaptive user layers can plug in without forking the model.

Hooks for the adaptive user layers (the layers themselves live elsewhere):

* ``Qwen2.forward(..., layer_context=ctx)`` passes ``ctx`` (any object; ``None`` = the base model) down to every
  decoder layer, its norms, its attention and MLP, and their q/k/v/o and gate/up/down projections.
* Norms and projections are called through ``call_with_context(module, x, ctx)``: a plain ``RMSNorm`` /
  ``nn.Linear`` gets ``module(x)``; a replacement module whose class sets ``takes_layer_context = True`` gets
  ``module(x, ctx)``. So a conditional RMSNorm (per-row user modulation read from ``ctx``, DiT adaLN-Zero style)
  replaces ``layer.input_layernorm`` / ``layer.post_attention_layernorm``, and a multi-LoRA wrapper (per-row adapter
  index read from ``ctx``) replaces ``layer.self_attn.q_proj``, ``layer.mlp.up_proj`` etc. by plain attribute
  assignment.
* User prefix key/values: if ``ctx`` has a ``prefix_kv(layer_index)`` method returning a ``PrefixKV`` (or ``None``),
  its keys/values are prepended to that layer's attention keys/values for every query; ``mask`` says per batch row
  which prefix slots are real, so rows without a user prefix simply mask them out. ``ctx=None`` or a ``None`` return
  adds no work at all. Prefix keys are used as given: any rotary encoding is the producer's business. A KV cache
  that already holds the prefix (``kv_cache.holds_prefix``: ``decode_loop.StaticKVCache`` with prefix slots, written
  once at prefill) returns it with the keys/values, so a decode step concatenates nothing per layer; the forward
  then puts ``kv_cache.prefix_mask`` [B, P] in front of the mask once.

Load base weights (``qwen2_checkpoint.load_qwen2``) before wrapping modules: a wrapper holding the base linear as
``.base`` renames its tensors (``q_proj.base.weight``), and checkpoints keep HF's names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Qwen2Config:
    vocab_size: int = 5120
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # GQA: each kv head serves num_attention_heads // num_key_value_heads query heads
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Qwen2Config.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"Qwen2Config.hidden_size={self.hidden_size} must be divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.head_dim % 2:
            raise ValueError(f"Qwen2Config.head_dim={self.head_dim} (hidden_size / num_attention_heads) must be even "
                             "for rotary embeddings")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"Qwen2Config.num_attention_heads={self.num_attention_heads} must be divisible by "
                             f"num_key_value_heads={self.num_key_value_heads}")
        for name in ("rope_theta", "rms_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Qwen2Config.{name} must be a positive number, got {value!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"Qwen2Config.tie_word_embeddings must be a bool, got {self.tie_word_embeddings!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_name(cls, name: str) -> "Qwen2Config":
        if name not in PRESETS:
            raise ValueError(f"unknown Qwen2Config preset {name!r}; known: {sorted(PRESETS)}")
        return cls(**PRESETS[name])

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> "Qwen2Config":
        """From a Hugging Face ``config.json`` dict; rejects features this model does not implement."""
        model_type = hf.get("model_type", "qwen2")
        if model_type != "qwen2":
            raise ValueError(f"config.json model_type must be 'qwen2', got {model_type!r}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json hidden_act must be 'silu', got {hf['hidden_act']!r}")
        if hf.get("use_sliding_window", False):
            raise ValueError("config.json use_sliding_window=true is not supported (no published Qwen2 uses it)")
        for key in ("rope_parameters", "rope_scaling"):  # transformers >= 5 / older spelling
            rope = hf.get(key) or {}
            rope_type = rope.get("rope_type", rope.get("type", "default"))
            if rope_type != "default":
                raise ValueError(f"config.json {key} rope type must be 'default', got {rope_type!r}")
        rope_theta = (hf.get("rope_parameters") or {}).get("rope_theta", hf.get("rope_theta", 10000.0))
        if "num_attention_heads" in hf and "hidden_size" in hf and hf.get("head_dim") not in (
                None, hf["hidden_size"] // hf["num_attention_heads"]):
            raise ValueError(f"config.json head_dim={hf['head_dim']} must equal hidden_size / num_attention_heads")
        known = {f.name for f in fields(cls)} - {"rope_theta"}
        kwargs = {k: hf[k] for k in known if k in hf}
        kwargs.setdefault("num_key_value_heads", hf.get("num_attention_heads", cls.num_attention_heads))
        return cls(rope_theta=float(rope_theta), **kwargs)

    def to_hf_config(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict (``transformers.Qwen2Config(**d)`` builds the same model)."""
        d = asdict(self)
        rope_theta = d.pop("rope_theta")
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            **d,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            # both spellings: transformers >= 5 reads rope_parameters, older readers rope_theta
            "rope_theta": rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": self.num_hidden_layers,
            "use_cache": True,
        }


_QWEN2_SHARED = dict(rope_theta=1_000_000.0, max_position_embeddings=131072, bos_token_id=151643,
                     eos_token_id=151643)
PRESETS: dict[str, dict] = {
    # unit tests: builds and runs in milliseconds
    "tiny": dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256),
    # the size the product trains on CPU (~6M parameters with tied embeddings)
    "small": dict(vocab_size=5120, hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
    # published Qwen2 base models (Qwen/Qwen2-0.5B, Qwen/Qwen2-7B, Qwen/Qwen2-72B config.json)
    "qwen2-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       **_QWEN2_SHARED),
    "qwen2-7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=False,
                     **_QWEN2_SHARED),
    "qwen2-72b": dict(vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                      num_attention_heads=64, num_key_value_heads=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      **_QWEN2_SHARED),
}


class PrefixKV(NamedTuple):
    """Extra keys/values prepended to one layer's attention (user prefix)."""
    k: torch.Tensor  # [B, n_kv_heads, P, head_dim]
    v: torch.Tensor  # [B, n_kv_heads, P, head_dim]
    mask: torch.Tensor  # [B, P] bool, True where the row has a real prefix slot


def call_with_context(module: nn.Module, x: torch.Tensor, layer_context: Any) -> torch.Tensor:
    """The injection point for adaptive layers: see the module docstring."""
    if getattr(module, "takes_layer_context", False):
        return module(x, layer_context)
    return module(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)  # one fused op: same numbers in fp32
        # lower precision: normalise in float32, then scale in the input dtype (as HF does, bit for bit)
        h = x.float()  # [B, T, D]
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotary_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """Rotary tables at integer ``positions`` [B, T]: cos and a signed sin, both [B, 1, T, head_dim].

    The head dimension is rotated as pairs (x1, x2) of its two halves: (x1 cos - x2 sin, x2 cos + x1 sin). With
    sin's first half negated that is ``x * cos + roll(x, head_dim / 2) * signed_sin``: one roll instead of a
    split, a negation and a concatenation per call, and the table is built once per forward for all layers.
    """
    freqs = positions.float()[..., None] * inv_freq  # [B, T, head_dim / 2]
    cos, sin = freqs.cos(), freqs.sin()  # [B, T, head_dim / 2]
    cos = torch.cat((cos, cos), dim=-1).to(dtype)[:, None]  # [B, 1, T, head_dim]
    signed_sin = torch.cat((-sin, sin), dim=-1).to(dtype)[:, None]  # [B, 1, T, head_dim]
    return cos, signed_sin


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin  # [B, H, T, head_dim]


class Attention(nn.Module):
    def __init__(self, config: Qwen2Config, layer_index: int):
        super().__init__()
        self.layer_index = layer_index
        self.n_heads, self.n_kv_heads, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                         config.head_dim)
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, mask, input_pos, kv_cache=None, layer_context=None) -> torch.Tensor:
        B, T, _ = x.shape
        ctx = layer_context
        q = call_with_context(self.q_proj, x, ctx).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = call_with_context(self.k_proj, x, ctx).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = call_with_context(self.v_proj, x, ctx).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # [B, H, T, hd], [B, KV, T, hd]
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, input_pos, k, v)  # [B, KV, S, hd]
        prefix = None
        if ctx is not None and hasattr(ctx, "prefix_kv") and not getattr(kv_cache, "holds_prefix", False):
            prefix = ctx.prefix_kv(self.layer_index)  # (a cache holding the prefix returned it with k, v above)
        if prefix is not None:
            k = torch.cat((prefix.k.to(k.dtype), k), dim=2)  # [B, KV, P + S, hd]
            v = torch.cat((prefix.v.to(v.dtype), v), dim=2)  # [B, KV, P + S, hd]
            prefix_mask = prefix.mask[:, None, None, :].expand(B, 1, T, -1)  # [B, 1, T, P]
            mask = torch.cat((prefix_mask, mask.expand(B, 1, T, -1)), dim=-1)  # [B, 1, T, P + S]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           enable_gqa=self.n_kv_heads != self.n_heads)  # [B, H, T, hd]
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # [B, T, H * hd]
        return call_with_context(self.o_proj, y, ctx)  # [B, T, D]


class MLP(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, layer_context: Any = None) -> torch.Tensor:
        ctx = layer_context
        h = F.silu(call_with_context(self.gate_proj, x, ctx)) * call_with_context(self.up_proj, x, ctx)  # [B, T, I]
        return call_with_context(self.down_proj, h, ctx)  # [B, T, D]


class DecoderLayer(nn.Module):
    def __init__(self, config: Qwen2Config, layer_index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, input_pos, kv_cache=None, layer_context=None) -> torch.Tensor:
        h = call_with_context(self.input_layernorm, x, layer_context)  # [B, T, D]
        x = x + self.self_attn(h, cos, sin, mask, input_pos, kv_cache, layer_context)  # [B, T, D]
        h = call_with_context(self.post_attention_layernorm, x, layer_context)  # [B, T, D]
        return x + self.mlp(h, layer_context)  # [B, T, D]


class Qwen2Backbone(nn.Module):
    """Embeddings, decoder layers and final norm; named ``model`` inside ``Qwen2`` as in HF checkpoints."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Qwen2(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.model = Qwen2Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tie_weights()
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)  # [head_dim / 2]

    def _inv_freq(self) -> torch.Tensor:
        hd = self.config.head_dim
        return 1.0 / (self.config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))

    def reset_rotary(self, device: torch.device | str | None = None) -> None:
        """Recompute the (non-persistent) rotary buffer, e.g. after building the model on the meta device."""
        self.inv_freq = self._inv_freq().to(device if device is not None else self.lm_head.weight.device)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, std: float | None = None, generator: torch.Generator | None = None) -> "Qwen2":
        """Random init as in HF Qwen2: normal(0, std) linears and embeddings, zero biases, unit norms."""
        std = self.config.initializer_range if std is None else std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        return self

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None, kv_cache=None,
                layer_context: Any = None, left_pad: torch.Tensor | None = None,
                last_token_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with ``last_token_only``).

        tokens [B, T]; input_pos [T] the sequence slots of these tokens (default ``arange(T)``), which are also the
        KV-cache slots they are written to; kv_cache an object with ``update(layer, input_pos, k, v) -> (k, v)`` over
        all its slots (``decode_loop.StaticKVCache``) or None for a plain full-sequence forward; left_pad [B] number
        of padding slots at the start of each row (left-padded batches): padded key slots are masked out and
        rotary positions count from each row's first real token. layer_context: see the module docstring.
        """
        B, T = tokens.shape
        if input_pos is None:
            input_pos = torch.arange(T, device=tokens.device)  # [T]
        key_slots = input_pos if kv_cache is None else torch.arange(kv_cache.max_seq_len, device=tokens.device)
        causal = key_slots[None, :] <= input_pos[:, None]  # [T, S]
        if left_pad is None:
            positions = input_pos[None].expand(B, T)  # [B, T]
            mask = causal[None, None]  # [1, 1, T, S]
        else:
            positions = (input_pos[None] - left_pad[:, None]).clamp(min=0)  # [B, T]
            real = key_slots[None, :] >= left_pad[:, None]  # [B, S]
            # a padding query sees only itself, so no softmax row is empty; no real token ever sees it
            own = key_slots[None, :] == input_pos[:, None]  # [T, S]
            mask = (causal & (real[:, None, :] | own))[:, None]  # [B, 1, T, S]
        if getattr(kv_cache, "holds_prefix", False):  # user prefix slots in front of the cache's token slots
            prefix_mask = kv_cache.prefix_mask[:, None, None, :].expand(B, 1, T, -1)  # [B, 1, T, P]
            mask = torch.cat((prefix_mask, mask.expand(B, 1, T, -1)), dim=-1)  # [B, 1, T, P + S]

        x = self.model.embed_tokens(tokens)  # [B, T, D]
        cos, sin = rotary_cos_sin(positions, self.inv_freq, x.dtype)  # [B, 1, T, hd]
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, input_pos, kv_cache, layer_context)  # [B, T, D]
        if last_token_only:
            x = x[:, -1:]  # [B, 1, D]
        x = call_with_context(self.model.norm, x, layer_context)  # [B, T, D]
        return self.lm_head(x)  # [B, T, V]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def build_qwen2(config: Qwen2Config, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Qwen2:
    """A randomly initialised model (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    return Qwen2(config).init_weights(generator=generator).to(dtype)


def num_parameters_estimate(config: Qwen2Config) -> int:
    """Parameter count from the config alone (what a preset means without allocating it)."""
    d, hd, L = config.hidden_size, config.head_dim, config.num_hidden_layers
    attn = d * config.num_attention_heads * hd * 2 + 2 * d * config.num_key_value_heads * hd
    attn += (config.num_attention_heads + 2 * config.num_key_value_heads) * hd  # q/k/v biases
    layer = attn + 3 * d * config.intermediate_size + 2 * d
    embed = config.vocab_size * d * (1 if config.tie_word_embeddings else 2)
    return L * layer + embed + d


__all__ = ["PRESETS", "Attention", "DecoderLayer", "MLP", "PrefixKV", "Qwen2", "Qwen2Backbone", "Qwen2Config",
           "RMSNorm", "apply_rotary", "build_qwen2", "call_with_context", "num_parameters_estimate",
           "rotary_cos_sin"]

