"""One LoRA adapter as data: per (layer, module) ``A`` [r, d_in] and ``B`` [d_out, r], scale ``alpha / r``.

``delta_W = B @ A * alpha / r`` for each target projection, PEFT's convention (and TensorRT-LLM's after it folds the
scale into B). ``module`` is the projection's name in our Qwen2 (and in HF's): ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj`` in the attention, ``gate_proj``, ``up_proj``, ``down_proj`` in the MLP. ``trained_at`` (unix seconds)
and ``num_events`` feed the staleness policy of the adapter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from recllm.generator.qwen2 import Qwen2Config

ATTENTION_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
LORA_MODULES: tuple[str, ...] = ATTENTION_MODULES + MLP_MODULES


def module_block(module: str) -> str:
    """The decoder layer's submodule that holds a projection (``self_attn`` or ``mlp``), as in HF's names."""
    if module in ATTENTION_MODULES:
        return "self_attn"
    if module in MLP_MODULES:
        return "mlp"
    raise ValueError(f"no LoRA-able projection {module!r}; known: {LORA_MODULES}")


def checked_lora_modules(modules, owner: str) -> tuple[str, ...]:
    """``modules`` as a tuple (a JSON config gives a list), refused unless a non-empty subset of ``LORA_MODULES``."""
    modules = tuple(modules)
    if not modules or set(modules) - set(LORA_MODULES):
        raise ValueError(f"{owner}.lora_modules must be a non-empty subset of {LORA_MODULES}, got {modules!r}")
    return modules


def module_dims(config: Qwen2Config) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each LoRA-able projection."""
    d, q, kv = config.hidden_size, config.num_attention_heads * config.head_dim, \
        config.num_key_value_heads * config.head_dim
    inner = config.intermediate_size
    return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
            "gate_proj": (d, inner), "up_proj": (d, inner), "down_proj": (inner, d)}


@dataclass
class LoRAAdapter:
    name: str
    rank: int
    alpha: float
    a: dict[tuple[int, str], torch.Tensor]  # (layer, module) -> [r, d_in]
    b: dict[tuple[int, str], torch.Tensor]  # (layer, module) -> [d_out, r]
    trained_at: int = 0  # unix seconds
    num_events: int = 0  # events the adapter was trained on
    kind: str = "user"  # "user" or "segment"
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"LoRAAdapter.rank must be a positive int, got {self.rank!r}")
        if set(self.a) != set(self.b):
            raise ValueError(f"LoRAAdapter {self.name!r}: A and B cover different modules")
        for key, a in self.a.items():
            b = self.b[key]
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != self.rank or b.shape[1] != self.rank:
                raise ValueError(f"LoRAAdapter {self.name!r} {key}: A {tuple(a.shape)} / B {tuple(b.shape)} do not "
                                 f"have rank {self.rank}")
        if self.kind not in ("user", "segment"):
            raise ValueError(f"LoRAAdapter.kind must be 'user' or 'segment', got {self.kind!r}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(sorted({module for _, module in self.a}))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.a.values(), *self.b.values()])

    def check_fits(self, config: Qwen2Config) -> None:
        dims = module_dims(config)
        for (layer, module), a in self.a.items():
            if module not in dims or not 0 <= layer < config.num_hidden_layers:
                raise ValueError(f"LoRAAdapter {self.name!r}: no target {module!r} in layer {layer}")
            d_in, d_out = dims[module]
            if a.shape[1] != d_in or self.b[(layer, module)].shape[0] != d_out:
                raise ValueError(f"LoRAAdapter {self.name!r} {module} layer {layer}: A {tuple(a.shape)} / B "
                                 f"{tuple(self.b[(layer, module)].shape)}, expected d_in={d_in}, d_out={d_out}")


def random_adapter(config: Qwen2Config, name: str, rank: int = 8, alpha: float = 16.0, seed: int = 0,
                   std: float = 0.05, modules: tuple[str, ...] = ATTENTION_MODULES, **kwargs) -> LoRAAdapter:
    """An adapter with random A and B (tests and benchmarks: distinct seeds give distinct users)."""
    generator = torch.Generator().manual_seed(seed)
    dims = module_dims(config)
    a, b = {}, {}
    for layer in range(config.num_hidden_layers):
        for module in modules:
            d_in, d_out = dims[module]
            a[(layer, module)] = torch.randn(rank, d_in, generator=generator) * std
            b[(layer, module)] = torch.randn(d_out, rank, generator=generator) * std
    return LoRAAdapter(name, rank, alpha, a, b, **kwargs)


__all__ = ["ATTENTION_MODULES", "LORA_MODULES", "LoRAAdapter", "MLP_MODULES", "checked_lora_modules", "module_block",
           "module_dims", "random_adapter"]
