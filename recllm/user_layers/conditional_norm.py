"""Conditional RMSNorm: a layer's RMSNorm modulated per user, ``y = rmsnorm(x)·(1 + γ(u)) + β(u)``.

γ and β come from one linear projection of ``u`` whose weight and bias start at zero (DiT's adaLN-Zero), so an
untrained conditional norm is exactly the base RMSNorm (bit for bit in float32: the modulation multiplies by 1.0 and
adds 0.0 after the base arithmetic). On CUDA the arithmetic runs in ``kernels.conditional_rmsnorm`` (the fused
Triton kernel). On CPU in float32 the module runs the base norm (one fused ``F.rms_norm``) and then the
modulation with ``(1 + γ)`` and ``β`` kept per layer context as [B, 1, D] rows (broadcast over the T tokens, in
place at inference): the reference's operations in its order, so bit for bit equal to it, at about the cost of the
base norm plus two element-wise ops (the kernel entry's argument checks and float copies cost more than the norm
itself at decode shapes). A batch of one (a chat turn) folds its ``(1 + γ)`` into the norm's weight, one op fewer
per step, equal to the reference up to float rounding (and still exactly the base norm when untrained). It replaces
``layer.input_layernorm`` / ``layer.post_attention_layernorm`` by attribute assignment and reads ``u`` from the
``UserLayerContext``; with no ``norm_vectors`` it calls the base norm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels.conditional_rmsnorm import conditional_rms_norm
from kernels.conditional_rmsnorm.reference import conditional_rms_norm_reference
from recllm.generator.qwen2 import RMSNorm
from recllm.user_layers.layer_context import context_cached, rows_per_token


class ConditionalRMSNorm(nn.Module):
    takes_layer_context = True

    def __init__(self, base: RMSNorm, user_dim: int):
        super().__init__()
        self.base = base
        dim = base.weight.shape[0]
        self.modulation = nn.Linear(user_dim, 2 * dim)  # -> [γ ; β]
        nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: starts as the identity on the base model
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, layer_context=None) -> torch.Tensor:
        u = getattr(layer_context, "norm_vectors", None)
        if u is None:
            return self.base(x)
        if x.is_cuda or x.dtype != torch.float32:
            return self._kernel_forward(x, layer_context)
        if torch.is_grad_enabled():
            scale, beta = self.modulation_rows(layer_context)
            return self.base(x) * scale + beta  # out of place: autograd
        # inference: prepared once per layer context, so a decode step is one lookup and the norm's own ops
        run = self._cached(layer_context, "run", lambda: self._inference_forward(x, layer_context))
        return run(x)

    def _inference_forward(self, x: torch.Tensor, layer_context) -> Callable[[torch.Tensor], torch.Tensor]:
        """The CPU float32 forward for the context's batch. Rows: F.rms_norm (bit for bit the reference's
        (x * rstd) * weight), then ``mul_(1 + γ)`` and ``add_(β)`` in place — the reference's operations in its
        order. A batch of one folds its (1 + γ) into the norm's weight (one op fewer per step; equal to the
        reference up to float rounding, and exactly the base norm when γ = β = 0)."""
        scale, beta = self._cached(layer_context, ROWS, lambda: self.modulation_rows(layer_context))  # [B, 1, D]
        weight, eps, shape = self.base.weight, self.base.eps, self.base.weight.shape
        if x.shape[0] == 1:
            folded = weight * scale[0, 0]  # [D]
            return lambda x: F.rms_norm(x, shape, folded, eps).add_(beta)
        return lambda x: F.rms_norm(x, shape, weight, eps).mul_(scale).add_(beta)

    def user_modulation(self, layer_context) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β) [B, D] each: this norm's modulation of every row's user; rows without a user get exactly zero."""
        u = layer_context.norm_vectors
        gamma, beta = self.modulation(u.to(self.modulation.weight.dtype)).chunk(2, dim=-1)  # [B, D] each
        mask = getattr(layer_context, "norm_mask", None)
        if mask is not None:
            keep = mask.to(gamma.dtype)[:, None]  # [B, 1]
            gamma, beta = gamma * keep, beta * keep
        return gamma, beta

    def modulation_rows(self, layer_context) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 + γ, β) [B, 1, D] each, broadcast over a row's tokens; rows without a user get exactly (1, 0)."""
        gamma, beta = self.user_modulation(layer_context)
        return (1 + gamma)[:, None], beta[:, None]

    def _kernel_forward(self, x: torch.Tensor, layer_context) -> torch.Tensor:
        """The fused kernel (CUDA; and lower precisions on CPU): x as [B * T, D] rows, γ and β repeated per token."""
        B, T, D = x.shape

        def rows():
            gamma, beta = self.user_modulation(layer_context)  # [B, D]
            return rows_per_token(gamma, T), rows_per_token(beta, T)  # [B * T, D]
        gamma, beta = self._cached(layer_context, ("kernel rows", T), rows)
        # the kernel has no backward; training uses the reference's out-of-place arithmetic (same forward)
        trains = torch.is_grad_enabled() and (gamma.requires_grad or x.requires_grad)
        norm = conditional_rms_norm_reference if trains else conditional_rms_norm
        return norm(x.reshape(B * T, D), self.base.weight, gamma, beta, self.base.eps).view(B, T, D)

    def _cached(self, layer_context, key, compute):
        return context_cached(layer_context, self.cache_key(key), compute)

    def cache_key(self, key) -> tuple:
        return ("norm", id(self), key)


ROWS = "rows"


class StackedModulations:
    """Every conditional norm's modulation of a batch in one matmul: ``precompute(layer_context)`` puts each norm's
    (1 + γ, β) rows into the context's cache, where the norm's forward finds them (instead of eight small linears
    and their element-wise ops per request). The stacked weights are rebuilt when a modulation's weights change."""

    def __init__(self, norms: list[ConditionalRMSNorm]):
        self.norms = norms
        self._version = None

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        version = tuple(t._version for n in self.norms for t in (n.modulation.weight, n.modulation.bias))
        if version != self._version:
            self._weight = torch.cat([n.modulation.weight.detach() for n in self.norms])  # [N * 2D, d_u]
            self._bias = torch.cat([n.modulation.bias.detach() for n in self.norms])  # [N * 2D]
            self._version = version
        return self._weight, self._bias

    def precompute(self, layer_context) -> None:
        u = getattr(layer_context, "norm_vectors", None)
        if u is None or not self.norms or torch.is_grad_enabled() or not hasattr(layer_context, "cached"):
            return
        weight, bias = self._stacked()
        out = torch.nn.functional.linear(u.to(weight.dtype), weight, bias)  # [B, N * 2D]
        out = out.view(u.shape[0], len(self.norms), 2, -1)  # [B, N, 2, D]: γ then β per norm
        mask = getattr(layer_context, "norm_mask", None)
        if mask is not None:
            out = out * mask.to(out.dtype)[:, None, None, None]
        scale, beta = 1 + out[:, :, 0], out[:, :, 1]  # [B, N, D] each
        for i, norm in enumerate(self.norms):
            rows = (scale[:, i, None], beta[:, i, None])  # [B, 1, D] each
            layer_context.cached(norm.cache_key(ROWS), lambda rows=rows: rows)


NORM_SITES = ("input", "post_attention")


def install_conditional_norms(model, user_dim: int, layers: tuple[int, ...],
                              sites: tuple[str, ...] = NORM_SITES) -> list[ConditionalRMSNorm]:
    """Replace the chosen norms of ``model`` (a ``Qwen2``); returns the new modules."""
    installed = []
    for index in layers:
        if not 0 <= index < len(model.model.layers):
            raise ValueError(f"conditional norm layer {index} is not in [0, {len(model.model.layers)})")
        layer = model.model.layers[index]
        for site in sites:
            if site not in NORM_SITES:
                raise ValueError(f"conditional norm site must be one of {NORM_SITES}, got {site!r}")
            name = f"{site}_layernorm"
            current = getattr(layer, name)
            if isinstance(current, ConditionalRMSNorm):
                continue
            module = ConditionalRMSNorm(current, user_dim).to(current.weight.device)
            setattr(layer, name, module)
            installed.append(module)
    return installed


__all__ = ["ConditionalRMSNorm", "NORM_SITES", "StackedModulations", "install_conditional_norms"]
