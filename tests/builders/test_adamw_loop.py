"""The shared AdamW loop: its losses and the after-step callback."""

import torch

from builders.adamw_loop import adamw_loop


def test_the_loop_minimises_and_calls_back_after_every_step():
    weight = torch.tensor([3.0], requires_grad=True)
    seen = []

    def after_step(n):
        seen.append((n, weight.item()))

    losses = adamw_loop("probe", 5, [weight], lambda: (weight ** 2).sum(), 0.5, False, after_step=after_step)
    assert [n for n, _ in seen] == [1, 2, 3, 4, 5] and len(losses) == 5
    assert losses[-1] < losses[0] and seen[-1][1] == weight.item() < 3.0  # called after the step was taken
