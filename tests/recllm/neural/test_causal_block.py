"""The shared causal block: causal, and the parameter names the saved SASRec / SID checkpoints rely on."""

from __future__ import annotations

import pytest
import torch

from recllm.neural.causal_block import CausalBlock


def test_parameter_names_are_stable():
    names = {name.split(".")[0] for name, _ in CausalBlock(8, 2, 16, 0.0, residual_dropout=True).named_parameters()}
    assert names == {"attn_norm", "qkv", "out", "ffn_norm", "ffn"}


def test_future_positions_do_not_change_the_past():
    torch.manual_seed(0)
    block = CausalBlock(8, 2, 16, 0.0, residual_dropout=False).eval()
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    x = torch.randn(1, 5, 8)
    y = block(x, causal)
    x2 = x.clone()
    x2[:, 3:] = torch.randn(1, 2, 8)
    torch.testing.assert_close(block(x2, causal)[:, :3], y[:, :3])
    assert not torch.allclose(block(x2, causal)[:, 3:], y[:, 3:])


def test_hidden_must_split_into_heads():
    with pytest.raises(ValueError, match="hidden=10 must be divisible by n_heads=4"):
        CausalBlock(10, 4, 16, 0.0, residual_dropout=True)
