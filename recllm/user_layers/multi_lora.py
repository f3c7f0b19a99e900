"""Multi-LoRA projections: each batch row applies its own adapter(s) from preallocated slot tensors.

``MultiLoRALinear`` replaces a projection of our Qwen2 (attention ``q_proj``/``k_proj``/``v_proj``/``o_proj``, MLP
``gate_proj``/``up_proj``/``down_proj``) and owns its slots:
``lora_a`` [S, R, d_in], ``lora_b`` [S, d_out, R], ``scales`` [S]. Per batch row the ``UserLayerContext`` names
K slots (``lora_indices`` [B, K], -1 = none) and their mixture weights, and the whole batch runs as one
``kernels.multi_lora.apply_multi_lora`` call::

    y[i] = base(x[i]) + Σ_k w[i, k] * (x[i] @ A[s].T) @ B[s].T * scales[s]      s = indices[i, k] >= 0

so a batch mixing users with different adapters, a mixture of segment adapters, or no adapter equals running each
row alone. ``AdapterSlots`` groups the wrappers of one model and writes/clears a slot across all of them. An adapter
of lower rank than the slots is zero-padded (zero rows of A and columns of B add nothing).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels.multi_lora import apply_multi_lora
from recllm.user_layers.layer_context import context_cached, rows_per_token
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LORA_MODULES, LoRAAdapter, module_block


LORA_PATHS = ("kernel", "per_request", "merged", "stacked", "auto")
# "auto" merges each request's adapters into its own copy of the weight while the batch's copies of one projection
# stay this small: a decode step then reads B copies of every projection, which stops paying once they fall out of
# cache (default build, hidden 192, decode step vs base: merged 1.05 / 1.17 / 1.24 / 1.37 at batch 1 / 2 / 4 / 8,
# per-request bmm 1.22 / 1.23 / 1.24 / 1.30), so q/o merge up to batch 3 here; Qwen2-0.5B's 896 x 896 never does.
# Bigger batches take the stacked path (the same model with 12 slots and a 2-of-4 segment mix plus one user adapter,
# decode step vs base over 15 interleaved rounds: stacked 1.14 / 1.12-1.14, per-request 1.19 / 1.19-1.25, merged
# 1.24 / 1.44-1.48 at batch 4 / 8)
MERGED_WEIGHTS_LIMIT_BYTES = 512 << 10


def gathered_lora(lora_a: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor, indices: torch.Tensor,
                  mix_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each request's K adapters as one adapter of rank K·R (float32): ``A`` [B, K·R, d_in] (the K slots' A stacked)
    and ``B`` [B, d_out, K·R] with each slot's scale and mixture weight folded in (zero where the index is -1), so
    ``(x @ A.T) @ B.T = Σ_k w[k] * (x @ A[s_k].T) @ B[s_k].T * scales[s_k]``. Depends only on the batch's adapters:
    a decode step reuses the prefill's."""
    valid = indices >= 0  # [B, K]
    slots = indices.clamp(min=0).long()  # [B, K]
    coeff = scales.float().index_select(0, slots.reshape(-1)).view_as(slots) * valid  # [B, K]
    if mix_weights is not None:
        coeff = coeff * mix_weights.float()
    B, K = slots.shape
    a = lora_a.index_select(0, slots.reshape(-1)).float()  # [B*K, R, d_in]
    b = lora_b.index_select(0, slots.reshape(-1)).float() * coeff.reshape(-1, 1, 1)  # [B*K, d_out, R]
    R = a.shape[1]
    return a.reshape(B, K * R, -1), b.view(B, K, -1, R).permute(0, 2, 1, 3).reshape(B, -1, K * R)


def per_request_lora(x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor,
                     indices: torch.Tensor, mix_weights: torch.Tensor | None,
                     gathered: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The LoRA delta [B, T, d_out] (float32) when every token of a request uses its request's adapters:
    ``delta[b, t] = Σ_k w[b, k] * (x[b, t] @ A[s].T) @ B[s].T * scales[s]`` for ``s = indices[b, k] >= 0``.
    The kernel's loop with rows grouped by request instead of by slot: each request's adapters are gathered once
    (``gathered_lora``: one rank-K·R adapter per request, not per token) and two bmm calls cover all T tokens.
    """
    a, b = gathered if gathered is not None else gathered_lora(lora_a, lora_b, scales, indices, mix_weights)
    return torch.bmm(torch.bmm(x.float(), a.transpose(1, 2)), b.transpose(1, 2))  # [B, T, d_out]


def stacked_lora(lora_a: torch.Tensor, lora_b: torch.Tensor, scales: torch.Tensor, indices: torch.Tensor,
                 mix_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The batch's adapters once each (float32): ``A`` [U·R, d_in] and ``B`` [d_out, U·R] stacked over the U distinct
    slots the batch uses, and each row's coefficients ``C`` [B, U·R] (its mixture weight times the scale over each of
    its slots' R rank rows, zero over the slots it does not use), so that
    ``((x[b] @ A.T) * C[b]) @ B.T = Σ_k w[b, k] * (x[b] @ A[s].T) @ B[s].T * scales[s]``. Unlike ``gathered_lora``,
    a slot shared by many rows (the segment adapters of the MoE gate) is read once per step, not once per row.
    None when no row has an adapter."""
    valid = indices >= 0  # [B, K]
    if not bool(valid.any()):
        return None
    used = torch.unique(indices[valid])  # [U], sorted
    slots = indices.clamp(min=0).long()  # [B, K]
    coeff = scales.float().index_select(0, slots.reshape(-1)).view_as(slots) * valid  # [B, K]
    if mix_weights is not None:
        coeff = coeff * mix_weights.float()
    position = torch.searchsorted(used, slots)  # [B, K]: where each slot sits among the used ones (-1 entries: 0)
    per_slot = coeff.new_zeros(indices.shape[0], used.numel()).scatter_add_(1, position, coeff)  # [B, U]
    R = lora_a.shape[1]
    a = lora_a.index_select(0, used).float().reshape(used.numel() * R, -1)  # [U·R, d_in]
    b = lora_b.index_select(0, used).float().permute(1, 0, 2).reshape(lora_b.shape[1], -1)  # [d_out, U·R]
    return a, b, per_slot.repeat_interleave(R, dim=1)  # C [B, U·R]


def merged_weights(weight: torch.Tensor, gathered: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Each request's own weight with its adapters merged in, transposed for ``bmm``: [B, d_in, d_out] =
    ``(W + B_b @ A_b).T`` from ``gathered_lora``'s ``A_b`` [B, K·R, d_in], ``B_b`` [B, d_out, K·R]. A request with
    no adapter gets exactly ``W.T`` (its ``B_b`` is zero)."""
    a, b = gathered
    wt = weight.float().t()  # [d_in, d_out]
    return torch.baddbmm(wt.expand(a.shape[0], *wt.shape), a.transpose(1, 2), b.transpose(1, 2))


def merged_weight(weight: torch.Tensor, gathered: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A batch of one request: its weight with its adapters merged in, [d_out, d_in] = ``W + B_0 @ A_0`` (the layout
    of ``nn.Linear``, so the step runs the same linear as the base projection)."""
    a, b = gathered
    return torch.addmm(weight.float(), b[0], a[0])


def choose_lora_path(path: str, x: torch.Tensor, out_features: int) -> str:
    """What "auto" means for this call: the Triton kernel on CUDA; on CPU per-request merged weights while the batch's
    copies stay under ``MERGED_WEIGHTS_LIMIT_BYTES`` (one bmm per projection and step, no LoRA work left in the
    decode step), else the stacked path (each used adapter read once per step, two ops more than the base);
    training (gradients on) takes the per-request path."""
    if path != "auto":
        return path
    if x.is_cuda:
        return "kernel"
    if torch.is_grad_enabled():
        return "per_request"
    batch_bytes = x.shape[0] * x.shape[-1] * out_features * 4
    return "merged" if batch_bytes <= MERGED_WEIGHTS_LIMIT_BYTES else "stacked"


class MultiLoRALinear(nn.Module):
    """``path``: "kernel" flattens the batch to tokens and calls ``kernels.multi_lora.apply_multi_lora`` (Triton on
    GPU, the grouped torch path on CPU); "per_request" runs ``per_request_lora`` (same arithmetic, two bmm per
    mixture position; cheaper on CPU when each request's tokens share its adapters, which is always the case here);
    "merged" merges each request's adapters into its own weight once per layer context (``merged_weights``) and runs
    one ``bmm`` per step, the base projection included (a batch of one: ``merged_weight`` through ``F.linear``, the
    base projection's own op) — the LoRA-merge of PEFT/vLLM done per request: cheapest on CPU for small models,
    memory ``B · d_in · d_out`` per projection; "stacked" stacks the base weight with the batch's used adapters' A
    (``stacked_lora``) so one linear gives the projection and every shrink, then one addmm adds each row's weighted
    expand; "auto" picks per layer context (``choose_lora_path``)."""

    takes_layer_context = True

    def __init__(self, base: nn.Linear, num_slots: int, rank: int, path: str = "kernel"):
        super().__init__()
        if path not in LORA_PATHS:
            raise ValueError(f"MultiLoRALinear path must be one of {LORA_PATHS}, got {path!r}")
        self.base, self.path = base, path
        weight = base.weight
        self.register_buffer("lora_a", torch.zeros(num_slots, rank, base.in_features, dtype=weight.dtype,
                                                   device=weight.device))
        self.register_buffer("lora_b", torch.zeros(num_slots, base.out_features, rank, dtype=weight.dtype,
                                                   device=weight.device))
        self.register_buffer("scales", torch.zeros(num_slots, dtype=weight.dtype, device=weight.device))

    def forward(self, x: torch.Tensor, layer_context=None) -> torch.Tensor:
        indices = getattr(layer_context, "lora_indices", None)
        if indices is None:
            return self.base(x)
        # what depends only on the batch's adapters is decided and prepared once per layer context at inference
        # (the path, the gathered or merged weights): a decode step is one lookup and the projection's own matmuls
        run = context_cached(layer_context, self, lambda: self._plan(x, layer_context))
        if run is None:  # the kernel path: it reads the context's per-token rows at every call
            return self._kernel_forward(x, layer_context, indices)
        return run(x)

    def _plan(self, x: torch.Tensor, layer_context) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """This projection's forward for the context's batch (x: any call of it; the path depends on the batch's
        shape, not on how many tokens it brings); None for the kernel path. A plan holds tensors, never the context
        it is cached in (no reference cycle: the context is freed with its batch)."""
        indices = layer_context.lora_indices
        path = choose_lora_path(self.path, x, self.base.out_features)
        if path == "kernel":
            return None
        if path == "stacked":
            return self._stacked_plan(x, layer_context, indices)
        gathered = self._gathered(layer_context, indices)
        if gathered is None:  # no row of the batch has an adapter: the base projection itself
            return self.base
        weight, bias = self.base.weight, self.base.bias
        if path == "merged":
            if x.shape[0] == 1:  # one request: its merged weight goes through the base projection's own linear
                merged = merged_weight(weight, gathered).to(x.dtype)  # [d_out, d_in]
                return lambda x: F.linear(x, merged, bias)
            weights = merged_weights(weight, gathered).to(x.dtype)  # [B, d_in, d_out]
            if bias is None:
                return lambda x: torch.bmm(x, weights)  # [B, T, d_out]
            return lambda x: torch.baddbmm(bias, x, weights)  # [B, T, d_out]

        mix = layer_context.mix_weights

        def per_request(x: torch.Tensor) -> torch.Tensor:
            delta = per_request_lora(x, self.lora_a, self.lora_b, self.scales, indices, mix, gathered)
            y = self.base(x)  # [B, T, d_out]
            return y + delta.to(y.dtype)
        return per_request

    def _stacked_plan(self, x: torch.Tensor, layer_context, indices: torch.Tensor
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The "stacked" path's forward (inference): the base weight and the used adapters' A in one matrix, so one
        linear gives the projection and every adapter's shrink; each row's coefficients select and weight its
        adapters' rank rows, and one addmm adds the expand: two ops per step more than the base projection, whatever
        the mix. The price is a copy of the base weight per batch (layer context), cheap at the CPU sizes "auto"
        gives it (on CUDA the kernel path runs)."""
        stacked = stacked_lora(self.lora_a, self.lora_b, self.scales, indices, layer_context.mix_weights)
        if stacked is None:
            return self.base
        a, b, coeff = stacked
        weight, bias = self.base.weight, self.base.bias
        d_out = weight.shape[0]
        fused_weight = torch.cat((weight, a.to(weight.dtype)))  # [d_out + U·R, d_in]
        fused_bias = None if bias is None else torch.cat((bias, bias.new_zeros(a.shape[0])))
        expand = b.t().to(x.dtype).contiguous()  # [U·R, d_out]
        coeff = coeff[:, None, :].to(x.dtype)  # [B, 1, U·R]

        def stacked_forward(x: torch.Tensor) -> torch.Tensor:
            B, T, _ = x.shape
            out = F.linear(x, fused_weight, fused_bias)  # [B, T, d_out + U·R]
            y, shrunk = out[..., :d_out], out[..., d_out:]
            return torch.addmm(y.reshape(B * T, d_out), (shrunk * coeff).reshape(B * T, -1), expand).view(B, T, d_out)
        return stacked_forward

    def _kernel_forward(self, x: torch.Tensor, layer_context, indices: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        y = self.base(x)  # [B, T, d_out]
        if hasattr(layer_context, "lora_rows"):
            row_indices, row_mix = layer_context.lora_rows(T)
        else:
            mix = layer_context.mix_weights
            row_indices, row_mix = rows_per_token(indices, T), None if mix is None else rows_per_token(mix, T)
        apply_multi_lora(y.view(B * T, -1), x.reshape(B * T, -1), self.lora_a, self.lora_b, self.scales,
                         row_indices, row_mix)
        return y

    def _gathered(self, layer_context, indices):
        """This projection's per-request adapters (``gathered_lora``), once per layer context at inference; None
        when no row has one."""
        def gather():
            if not context_cached(layer_context, "any lora", lambda: bool((indices >= 0).any())):
                return None
            return gathered_lora(self.lora_a, self.lora_b, self.scales, indices, layer_context.mix_weights)
        return context_cached(layer_context, ("lora", id(self)), gather)


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
                       layers: tuple[int, ...] | None = None, path: str = "kernel") -> AdapterSlots:
    """Wrap the chosen projections of ``model`` (a ``Qwen2``: attention q/k/v/o, MLP gate/up/down); returns their
    slots."""
    if num_slots <= 0 or rank <= 0:
        raise ValueError(f"install_multi_lora needs num_slots > 0 and rank > 0, got {num_slots}, {rank}")
    bad = sorted(set(modules) - set(LORA_MODULES))
    if bad:
        raise ValueError(f"LoRA modules must be among {LORA_MODULES}, got {bad}")
    layers = tuple(range(len(model.model.layers))) if layers is None else layers
    wrappers = {}
    for index in layers:
        for module in modules:
            block = getattr(model.model.layers[index], module_block(module))
            wrapper = MultiLoRALinear(getattr(block, module), num_slots, rank, path)
            setattr(block, module, wrapper)
            wrappers[(index, module)] = wrapper
    return AdapterSlots(wrappers, num_slots, rank)


__all__ = ["LORA_PATHS", "MERGED_WEIGHTS_LIMIT_BYTES", "AdapterSlots", "MultiLoRALinear", "choose_lora_path",
           "gathered_lora", "install_multi_lora", "merged_weight", "merged_weights", "per_request_lora",
           "stacked_lora"]
