"""Content-feature matrices for the sequential model: per item, the ids of its attributes and Semantic-ID codes.

``SASRec`` adds the mean embedding of an item's features to its ID embedding, so an item seen a handful of times
still lands near items of the same brand and category. The matrix is [n_items + 1, F] of 1-based feature ids with
0 for "none"; row 0 is the padding item. Feature groups (attributes, each SID level) get disjoint id ranges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def attribute_matrix(item_attributes: Mapping[int, Sequence[int]], n_items: int) -> np.ndarray:
    """[n_items + 1, max attributes] int64 from ``{item_id: [attribute id >= 1, ...]}`` (missing items: no features)."""
    width = max((len(attrs) for attrs in item_attributes.values()), default=0)
    matrix = np.zeros((n_items + 1, max(width, 1)), dtype=np.int64)
    for item_id, attributes in item_attributes.items():
        if not 1 <= item_id <= n_items:
            raise ValueError(f"attribute_matrix: item id {item_id} outside 1..{n_items}")
        if any(a < 1 for a in attributes):
            raise ValueError(f"attribute_matrix: item {item_id} has attribute ids < 1: {list(attributes)}")
        matrix[item_id, :len(attributes)] = attributes
    return matrix


def sid_matrix(item_sids: np.ndarray, levels: int | None = None) -> np.ndarray:
    """Semantic-ID codes [n_items + 1, L] (0-based codes per level) → 1-based feature ids, one range per level.

    Level ``l`` code ``c`` becomes ``1 + sum(codebook sizes of levels < l) + c``; ``levels`` keeps the first levels only
    (the collision level says nothing about content). Row 0 stays all zeros.
    """
    codes = np.asarray(item_sids, dtype=np.int64)[:, :levels]
    if codes.ndim != 2 or (codes[1:] < 0).any():
        raise ValueError("sid_matrix: expected a [n_items + 1, L] array of non-negative codes")
    sizes = codes[1:].max(axis=0) + 1
    offsets = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = codes + offsets[None, :]
    out[0] = 0
    return out


def concat_features(*matrices: np.ndarray) -> np.ndarray:
    """Side-by-side feature groups with disjoint id ranges: each group's ids are shifted past the previous ones."""
    shifted, offset = [], 0
    for matrix in matrices:
        matrix = np.asarray(matrix, dtype=np.int64)
        shifted.append(np.where(matrix > 0, matrix + offset, 0))
        offset += int(matrix.max())
    return np.concatenate(shifted, axis=1)


def read_item_attributes(path: str | Path) -> dict[int, list[int]]:
    """``<Name>_item2attributes.json`` of the S3-Rec Amazon data: ``{"item id": [attribute ids]}``."""
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    return {int(item): [int(a) for a in attributes] for item, attributes in raw.items()}
