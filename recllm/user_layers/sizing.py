"""What the adaptive user layers cost in memory: per user, per segment and shared, from the configs alone.

Used by ``docs/user_layers_scale.md`` for Qwen2-72B (nothing allocated) and checked against the real modules on
small presets by the tests, so the arithmetic for the big model is the arithmetic the small model measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from recllm.generator.qwen2 import Qwen2Config
from recllm.user_layers.adaptive_model import UserLayersConfig
from recllm.user_layers.lora_adapter import module_dims


@dataclass(frozen=True)
class UserLayerSizes:
    lora_adapter_params: int  # one adapter: Σ over targets r * (d_in + d_out)
    norm_params: int  # all conditional-norm modulations (shared)
    prefix_params: int  # the prefix encoder (shared)
    gate_params: int  # the MoE gate (shared)
    prefix_values_per_user: int  # the K/V a user's prefix adds per request (computed, not stored)
    user_vector_values: int  # u

    def bytes(self, bytes_per_value: int = 2) -> dict[str, int]:
        return {name: value * bytes_per_value for name, value in self.__dict__.items()}


def user_layer_sizes(model: Qwen2Config, layers: UserLayersConfig) -> UserLayerSizes:
    n_layers = model.num_hidden_layers
    dims = module_dims(model)
    lora = n_layers * sum(layers.lora_rank * sum(dims[m]) for m in layers.lora_modules)
    norm_layers = n_layers if layers.norm_layers is None else len(layers.norm_layers)
    norms = norm_layers * len(layers.norm_sites) * (layers.user_dim + 1) * 2 * model.hidden_size
    prefix_layers = n_layers if layers.prefix_layers is None else len(layers.prefix_layers)
    prefix_out = prefix_layers * 2 * layers.num_prefix * model.num_key_value_heads * model.head_dim
    prefix = (layers.user_dim + 1) * layers.prefix_hidden + (layers.prefix_hidden + 1) * prefix_out if prefix_out \
        else 0
    gate = (layers.user_dim + 1) * layers.num_segments
    return UserLayerSizes(lora, norms, prefix, gate, prefix_out, layers.user_dim)


__all__ = ["UserLayerSizes", "user_layer_sizes"]
