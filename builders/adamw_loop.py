"""The optimisation loop the user-layer builders share: AdamW over chosen tensors, a progress bar, the losses."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def adamw_loop(desc: str, steps: int, params: list[torch.Tensor], step_loss: Callable[[], torch.Tensor], lr: float,
               progress: bool, clip_grad_norm: float | None = None,
               after_step: Callable[[int], None] | None = None) -> list[float]:
    """``steps`` AdamW steps (no weight decay) on ``params``, each on ``step_loss()`` (a fresh batch per call);
    gradients clipped to ``clip_grad_norm`` when set; ``after_step(n)`` is called after the n-th step (1-based),
    e.g. to keep checkpoints. Returns the loss of every step."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for index in bar:
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(index + 1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    log.info("%s: loss %.3f -> %.3f over %d steps", desc, losses[0] if losses else math.nan,
             losses[-1] if losses else math.nan, steps)
    return losses


__all__ = ["adamw_loop"]
