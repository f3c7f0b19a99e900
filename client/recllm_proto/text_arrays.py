"""Strings as numpy object arrays of UTF-8 bytes: the form of Triton BYTES tensors on both sides of the wire."""

from __future__ import annotations

from typing import Iterable

import numpy as np


def utf8_array(texts: Iterable[str | bytes]) -> np.ndarray:
    return np.array([t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts], dtype=np.object_)


def decode_utf8_array(array: np.ndarray | None) -> list[str]:
    if array is None:
        return []
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(array).reshape(-1)]
