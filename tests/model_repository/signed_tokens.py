"""Signed USER_TOKEN tensors for the adapter tests: one keyring per test session, saved where the adapters read it
(``RECLLM_KEYRING``), as ``recllm serve`` does."""

from __future__ import annotations

import numpy as np

from recllm_proto.user_token import Keyring

KEYRING = Keyring.generate()


def text(value: str | bytes) -> np.ndarray:
    return np.array([value.encode() if isinstance(value, str) else value], dtype=np.object_)


def token(user_id: str, **kwargs) -> np.ndarray:
    """A USER_TOKEN tensor the calling backend would send for ``user_id``."""
    return text(KEYRING.sign(user_id, **kwargs))
