from __future__ import annotations

import pytest
import torch

from recllm.generator.qwen2 import Qwen2Config, build_qwen2


@pytest.fixture
def tiny_config() -> Qwen2Config:
    return Qwen2Config.from_name("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return build_qwen2(tiny_config, seed=0).eval()


@pytest.fixture
def tokens(tiny_config):
    return torch.randint(0, tiny_config.vocab_size, (4, 7), generator=torch.Generator().manual_seed(1))
