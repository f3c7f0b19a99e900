"""End-to-end Semantic IDs of a data set: content → vectors → RQ-KMeans codes, and their files on disk.

``amazon_semantic_ids`` (Amazon-format folders such as ``../shared/data/amazon_beauty``) and
``catalog_semantic_ids`` (the unified synthetic catalog: one SID per product family, shared by its copies in several
services) are what ``builders.build_sids`` runs. ``beauty_item_sids`` / ``load_item_sids`` give the
``[n_items + 1, levels + 1]`` table (row = item id, row 0 = padding) that sequential models index by item id, and
``sid_feature_ids`` turns it into 1-based feature ids for ``recllm.seqrec.sasrec.ItemTable``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from recllm.catalog.product_catalog import SERVICES, Catalog
from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR
from recllm.sid.content_encoder import (ContentEncoderConfig, amazon_item_contents, catalog_family_contents,
                                        encode_contents)
from recllm.sid.residual_quantization import RQKMeansConfig, SemanticIds, fit_rq_kmeans, quantization_stats

logger = logging.getLogger(__name__)

SIDS_FILE = "sids.npy"
ITEM_IDS_FILE = "item_ids.npy"
CODEBOOKS_FILE = "codebooks.npz"
STATS_FILE = "sid_stats.json"


@dataclass
class SidBuildConfig:
    """Encoder and quantizer settings of one SID build; ``seed`` overrides both components' seeds."""

    encoder: ContentEncoderConfig = field(default_factory=ContentEncoderConfig)
    rq: RQKMeansConfig = field(default_factory=RQKMeansConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SidBuildConfig.seed must be an int, got {self.seed!r}")
        self.encoder = replace(self.encoder, seed=self.seed)
        self.rq = replace(self.rq, seed=self.seed)


@dataclass
class ItemSemanticIds:
    """SIDs of the items ``item_ids`` (row i of ``sids.codes`` is item ``item_ids[i]``) and their stats."""

    item_ids: np.ndarray
    sids: SemanticIds
    stats: dict
    vectors: np.ndarray | None = None   # [N, D] the content vectors that were quantized (row i = item_ids[i])


def _quantize(item_ids: list[int], vectors: np.ndarray, config: SidBuildConfig,
              on_level: Callable[[int], None] | None) -> ItemSemanticIds:
    sids = fit_rq_kmeans(vectors, config.rq, on_level)
    return ItemSemanticIds(np.asarray(item_ids, dtype=np.int64), sids, quantization_stats(sids))


def amazon_semantic_ids(data_dir: str | Path, config: SidBuildConfig | None = None,
                        on_level: Callable[[int], None] | None = None) -> ItemSemanticIds:
    """SIDs of every item of an Amazon-format folder (``items.jsonl`` or ``<Name>_item2attributes.json``)."""
    config = config or SidBuildConfig(encoder=ContentEncoderConfig.from_name("amazon"))
    contents = amazon_item_contents(data_dir)
    vectors = encode_contents(contents, config.encoder)
    result = _quantize([content.key for content in contents], vectors, config, on_level)
    result.vectors = vectors
    return result


def catalog_semantic_ids(catalog: Catalog, config: SidBuildConfig | None = None,
                         on_level: Callable[[int], None] | None = None) -> ItemSemanticIds:
    """SIDs of the product families of the unified catalog, one codebook across all services (``item_ids`` =
    family ids). ``catalog_item_sids`` spreads them onto the catalog's item ids."""
    config = config or SidBuildConfig(encoder=ContentEncoderConfig.from_name("synthetic"))
    contents = catalog_family_contents(catalog)
    vectors = encode_contents(contents, config.encoder)
    result = _quantize([content.key for content in contents], vectors, config, on_level)
    result.stats["catalog_items"] = len(catalog)
    result.stats["items_in_several_services"] = sum(
        1 for family in result.item_ids.tolist() if len(catalog.family_members(family)) > 1)
    return result


def catalog_item_sids(catalog: Catalog, family_sids: ItemSemanticIds) -> np.ndarray:
    """[len(catalog), L] SID of every catalog item id: its family's SID (copies in two services share it)."""
    row_of_family = {family: row for row, family in enumerate(family_sids.item_ids.tolist())}
    missing = next((item for item in catalog.items if item.family_id not in row_of_family), None)
    if missing is not None:
        raise ValueError(f"catalog_item_sids: item {missing.item_id} has family {missing.family_id} without a SID")
    return family_sids.sids.codes[[row_of_family[item.family_id] for item in catalog.items]]


def service_sid_counts(catalog: Catalog, item_sids: np.ndarray) -> dict[str, dict[str, int]]:
    """Per service: items and distinct SIDs among them (equal when a SID names one item inside a service)."""
    counts = {}
    for service in SERVICES:
        rows = [item.item_id for item in catalog.in_service(service)]
        counts[service] = {"items": len(rows), "distinct_sids": int(len(np.unique(item_sids[rows], axis=0)))}
    return counts


def save_item_sids(directory: str | Path, result: ItemSemanticIds) -> Path:
    """Writes ``sids.npy`` [N, L] int64, ``item_ids.npy`` [N], ``codebooks.npz`` (level_1 …), ``sid_stats.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / SIDS_FILE, result.sids.codes.astype(np.int64))
    np.save(directory / ITEM_IDS_FILE, result.item_ids.astype(np.int64))
    np.savez(directory / CODEBOOKS_FILE, **{f"level_{i + 1}": book for i, book in enumerate(result.sids.codebooks)})
    (directory / STATS_FILE).write_text(json.dumps(result.stats, indent=2), encoding="utf-8")
    logger.info("saved %d SIDs to %s", len(result.item_ids), directory)
    return directory


def padded_item_table(item_ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[max id + 1, L] (the dtype of ``codes``) with row ``item_ids[i]`` = ``codes[i]`` and row 0 all zeros (padding).

    The ids must be exactly 1..N (the Amazon convention; 0 is padding), else ValueError.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if not np.array_equal(np.sort(item_ids), np.arange(1, len(item_ids) + 1)):
        raise ValueError(f"item ids must be exactly 1..{len(item_ids)} (0 = padding); got ids from "
                         f"{int(item_ids.min())} to {int(item_ids.max())}")
    codes = np.asarray(codes)
    table = np.zeros((len(item_ids) + 1, codes.shape[1]), dtype=codes.dtype)
    table[item_ids] = codes
    return table


def load_item_sids(path: str | Path) -> np.ndarray:
    """``[n_items + 1, L]`` int64 SIDs by item id, row 0 = padding (zeros), from a ``build_sids`` output.

    ``path`` is the output folder or its ``sids.npy``; ``item_ids.npy`` must sit beside it and hold 1..n_items.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    sids_path = path if path.is_file() else directory / SIDS_FILE
    for required in (sids_path, directory / ITEM_IDS_FILE):
        if not required.is_file():
            raise FileNotFoundError(f"load_item_sids: {required} does not exist (run python -m builders.build_sids)")
    return padded_item_table(np.load(directory / ITEM_IDS_FILE), np.load(sids_path))


def beauty_item_sids(data_dir: str | Path = DEFAULT_DATA_DIR, seed: int = 0) -> np.ndarray:
    """``[12102, 4]`` int64 SIDs of Amazon Beauty by item id (row 0 = padding), computed from the data in ~1 min."""
    config = SidBuildConfig(encoder=ContentEncoderConfig.from_name("amazon"), seed=seed)
    result = amazon_semantic_ids(data_dir, config)
    return padded_item_table(result.item_ids, result.sids.codes)


def sid_feature_ids(item_sids: np.ndarray) -> np.ndarray:
    """1-based feature ids of a padded SID table [n + 1, L] for ``ItemTable(item_features=...)``: position l's token
    t becomes ``1 + offset_l + t`` (offsets = cumulative vocab sizes), padding row 0 stays all 0."""
    item_sids = np.asarray(item_sids, dtype=np.int64)
    vocab = item_sids[1:].max(axis=0) + 1
    offsets = np.r_[0, np.cumsum(vocab)[:-1]]
    features = item_sids + offsets[None] + 1
    features[0] = 0
    return features
