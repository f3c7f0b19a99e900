"""Multi-LoRA projections: each batch row applies its own adapter(s) from preallocated slot tensors.

``MultiLoRALinear`` replaces a ``q_proj``/``k_proj``/``v_proj``/``o_proj`` of our Qwen2 and owns its slots:
``lora_a`` [S, R, d_in], ``lora_b`` [S, d_out, R], ``scales`` [S]. Per batch row the ``UserLayerContext`` names
K slots (``lora_indices`` [B, K], -1 = none) and their mixture weights, and the whole batch runs as one
``kernels.multi_lora.apply_multi_lora`` call::

    y[i] = base(x[i]) + Σ_k w[i, k] * (x[i] @ A[s].T) @ B[s].T * scales[s]      s = indices[i, k] >= 0

so a batch mixing users with different adapters, a mixture of segment adapters, or no adapter equals running each
row alone. ``AdapterSlots`` groups the wrappers of one model and writes/clears a slot across all of them. An adapter
of lower rank than the slots is zero-padded (zero rows of A and columns of B add nothing). The generator's MLP
calls its projections without the layer context, so only attention projections are LoRA targets here.
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.multi_lora import apply_multi_lora
from recllm.user_layers.layer_context import rows_per_token
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LoRAAdapter


class MultiLoRALinear(nn.Module):
    takes_layer_context = True

    def __init__(self, base: nn.Linear, num_slots: int, rank: int):
        super().__init__()
        self.base = base
        weight = base.weight
        self.register_buffer("lora_a", torch.zeros(num_slots, rank, base.in_features, dtype=weight.dtype,
                                                   device=weight.device))
        self.register_buffer("lora_b", torch.zeros(num_slots, base.out_features, rank, dtype=weight.dtype,
                                                   device=weight.device))
        self.register_buffer("scales", torch.zeros(num_slots, dtype=weight.dtype, device=weight.device))

    def forward(self, x: torch.Tensor, layer_context=None) -> torch.Tensor:
        y = self.base(x)  # [B, T, d_out]
        indices = getattr(layer_context, "lora_indices", None)
        if indices is None:
            return y
        B, T, _ = x.shape
        if hasattr(layer_context, "lora_rows"):
            row_indices, row_mix = layer_context.lora_rows(T)
        else:
            mix = layer_context.mix_weights
            row_indices, row_mix = rows_per_token(indices, T), None if mix is None else rows_per_token(mix, T)
        apply_multi_lora(y.view(B * T, -1), x.reshape(B * T, -1), self.lora_a, self.lora_b, self.scales,
                         row_indices, row_mix)
        return y


class AdapterSlots:
    """The slot tensors of every ``MultiLoRALinear`` of one model, written and cleared slot by slot."""

    def __init__(self, wrappers: dict[tuple[int, str], MultiLoRALinear], num_slots: int, rank: int):
        self.wrappers, self.num_slots, self.rank = wrappers, num_slots, rank

    def write(self, slot: int, adapter: LoRAAdapter) -> None:
        self._check_slot(slot)
        if adapter.rank > self.rank:
            raise ValueError(f"adapter {adapter.name!r} has rank {adapter.rank} > slot rank {self.rank}")
        unknown = sorted(set(adapter.a) - set(self.wrappers))
        if unknown:
            raise ValueError(f"adapter {adapter.name!r} targets {unknown[:3]}, which have no LoRA slots")
        with torch.no_grad():
            for key, wrapper in self.wrappers.items():
                wrapper.lora_a[slot].zero_()
                wrapper.lora_b[slot].zero_()
                wrapper.scales[slot] = 0.0
                if key in adapter.a:
                    wrapper.lora_a[slot, :adapter.rank].copy_(adapter.a[key])
                    wrapper.lora_b[slot, :, :adapter.rank].copy_(adapter.b[key])
                    wrapper.scales[slot] = adapter.scale

    def clear(self, slot: int) -> None:
        self._check_slot(slot)
        with torch.no_grad():
            for wrapper in self.wrappers.values():
                wrapper.lora_a[slot].zero_()
                wrapper.lora_b[slot].zero_()
                wrapper.scales[slot] = 0.0

    def slot_nbytes(self) -> int:
        """Bytes one slot occupies across all wrappers (the memory of one active adapter)."""
        return sum((w.lora_a[0].numel() + w.lora_b[0].numel() + 1) * w.lora_a.element_size()
                   for w in self.wrappers.values())

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"slot {slot} is not in [0, {self.num_slots})")


def install_multi_lora(model, num_slots: int, rank: int, modules: tuple[str, ...] = ATTENTION_MODULES,
                       layers: tuple[int, ...] | None = None) -> AdapterSlots:
    """Wrap the chosen attention projections of ``model`` (a ``Qwen2``); returns their slots."""
    if num_slots <= 0 or rank <= 0:
        raise ValueError(f"install_multi_lora needs num_slots > 0 and rank > 0, got {num_slots}, {rank}")
    bad = sorted(set(modules) - set(ATTENTION_MODULES))
    if bad:
        raise ValueError(f"LoRA modules must be among {ATTENTION_MODULES} (the MLP gets no layer context), got {bad}")
    layers = tuple(range(len(model.model.layers))) if layers is None else layers
    wrappers = {}
    for index in layers:
        attention = model.model.layers[index].self_attn
        for module in modules:
            wrapper = MultiLoRALinear(getattr(attention, module), num_slots, rank)
            setattr(attention, module, wrapper)
            wrappers[(index, module)] = wrapper
    return AdapterSlots(wrappers, num_slots, rank)


__all__ = ["AdapterSlots", "MultiLoRALinear", "install_multi_lora"]
