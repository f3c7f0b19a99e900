"""Our Qwen2 with the adaptive user layers plugged into its hooks, and the batch description one forward takes.

``AdaptiveQwen2(base, UserLayersConfig(...))`` replaces the chosen norms by ``ConditionalRMSNorm``, the attention
projections by ``MultiLoRALinear`` (with ``slots`` for the adapter store), and owns the ``UserPrefixEncoder`` and
the ``MixtureGate``. Nothing of the base model is copied or forked: ``base`` is modified in place and driven
through ``Qwen2.forward(..., layer_context=...)``. ``UserBatch`` says per row which user layers apply; a batch with
nothing set is the base model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recllm.generator.qwen2 import Qwen2
from recllm.user_layers.conditional_norm import NORM_SITES, StackedModulations, install_conditional_norms
from recllm.user_layers.layer_context import UserLayerContext
from recllm.user_layers.lora_adapter import ATTENTION_MODULES
from recllm.user_layers.mixture_gate import MixtureGate
from recllm.user_layers.multi_lora import install_multi_lora
from recllm.user_layers.prefix_attention import UserPrefixEncoder


@dataclass
class UserLayersConfig:
    user_dim: int
    norm_layers: tuple[int, ...] | None = None  # None: every layer
    norm_sites: tuple[str, ...] = NORM_SITES
    prefix_layers: tuple[int, ...] | None = None  # None: every layer; () none
    num_prefix: int = 4
    prefix_hidden: int = 64
    lora_rank: int = 8
    lora_modules: tuple[str, ...] = ATTENTION_MODULES
    num_slots: int = 8
    num_segments: int = 8
    gate_top_k: int = 2
    lora_path: str = "auto"  # multi_lora.LORA_PATHS: "kernel", "per_request", "merged", "stacked" or "auto"

    def __post_init__(self):
        for name in ("user_dim", "num_prefix", "prefix_hidden", "lora_rank", "num_slots", "num_segments",
                     "gate_top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"UserLayersConfig.{name} must be a positive int, got {value!r}")
        if self.gate_top_k > self.num_segments:
            raise ValueError(f"UserLayersConfig.gate_top_k={self.gate_top_k} must be <= num_segments="
                             f"{self.num_segments}")
        for name in ("norm_layers", "prefix_layers", "norm_sites", "lora_modules"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(value))


@dataclass
class UserBatch:
    """Which user layers apply to each row of a batch (any field None: that layer is off for the batch)."""

    user_vectors: torch.Tensor | None = None  # [B, d_u]
    has_user: torch.Tensor | None = None  # [B] bool: False rows get neither norm modulation nor prefix
    lora_indices: torch.Tensor | None = None  # [B, K] slot ids, -1 none
    mix_weights: torch.Tensor | None = None  # [B, K]
    use_norm: bool = True
    use_prefix: bool = True


class AdaptiveQwen2(nn.Module):
    def __init__(self, base: Qwen2, config: UserLayersConfig):
        super().__init__()
        self.base, self.config = base, config
        n_layers = base.config.num_hidden_layers
        norm_layers = tuple(range(n_layers)) if config.norm_layers is None else config.norm_layers
        prefix_layers = tuple(range(n_layers)) if config.prefix_layers is None else config.prefix_layers
        self.norms = nn.ModuleList(install_conditional_norms(base, config.user_dim, norm_layers, config.norm_sites))
        self.stacked_modulations = StackedModulations(list(self.norms))
        self.prefix = UserPrefixEncoder(base.config, config.user_dim, prefix_layers, config.num_prefix,
                                        config.prefix_hidden) if prefix_layers else None
        self.slots = install_multi_lora(base, config.num_slots, config.lora_rank, config.lora_modules,
                                        path=config.lora_path)
        self.gate = MixtureGate(config.user_dim, config.num_segments, config.gate_top_k)
        self.to(base.lm_head.weight.device)

    def context(self, batch: UserBatch | None) -> UserLayerContext | None:
        if batch is None:
            return None
        u = batch.user_vectors
        norm_vectors = prefixes = None
        if u is not None:
            if batch.use_norm:
                norm_vectors = u
            if batch.use_prefix and self.prefix is not None:
                prefixes = self.prefix(u, batch.has_user)
        context = UserLayerContext(norm_vectors, prefixes, batch.lora_indices, batch.mix_weights, batch.has_user)
        self.stacked_modulations.precompute(context)  # at inference: every norm's rows in one matmul
        return context

    def forward(self, tokens: torch.Tensor, batch: UserBatch | None = None, **kwargs) -> torch.Tensor:
        return self.base(tokens, layer_context=self.context(batch), **kwargs)

    def user_layer_parameters(self) -> list[nn.Parameter]:
        """Conditional-norm modulations and the prefix encoder (what joint user-layer training updates)."""
        params = [p for norm in self.norms for p in norm.modulation.parameters()]
        return params + (list(self.prefix.parameters()) if self.prefix is not None else [])

    def user_layer_state(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()
                if name.startswith(("norms.", "prefix.", "gate."))}  # norms.* are the modules inside base

    def save_user_layers(self, path: Path | str) -> None:
        meta = {k: str(v) for k, v in asdict(self.config).items()}
        save_file(self.user_layer_state(), str(path), metadata=meta)

    def load_user_layers(self, path: Path | str) -> None:
        state = load_file(str(path))
        missing = sorted(set(self.user_layer_state()) - set(state))
        if missing:
            raise ValueError(f"{path}: user-layer tensors missing: {missing[:5]}")
        self.load_state_dict(state, strict=False)


__all__ = ["AdaptiveQwen2", "UserBatch", "UserLayersConfig"]
