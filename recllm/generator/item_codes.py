"""The generator's view of the catalog: every item's Semantic ID (its span of code tokens) and the codebooks.

Built from the unified catalog with ``recllm.sid`` (content vectors → RQ-KMeans, one SID per product family, copies
of a product in two services share it) and saved next to the generator weights as ``item_codes.npz``, so serving
maps ranked item ids to code spans and back without the SID builder. ``codebooks`` seed the code tokens'
embeddings (``model.init_sid_embeddings``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recllm.catalog.product_catalog import Catalog
from recllm.sid.content_encoder import ContentEncoderConfig
from recllm.sid.item_sids import SidBuildConfig, catalog_item_sids, catalog_semantic_ids
from recllm.sid.residual_quantization import RQKMeansConfig

logger = logging.getLogger(__name__)

ITEM_CODES_FILE = "item_codes.npz"


@dataclass
class ItemCodes:
    """``sids`` [N, L + 1] int64: row = catalog item id (0..N-1); ``codebooks[l]`` [K, D] float32 centroids."""

    sids: np.ndarray
    codebooks: list[np.ndarray]

    def __post_init__(self) -> None:
        self.sids = np.asarray(self.sids, dtype=np.int64)
        if self.sids.ndim != 2 or self.sids.shape[1] != len(self.codebooks) + 1:
            raise ValueError(f"ItemCodes.sids must be [N, levels + 1] with levels={len(self.codebooks)}, "
                             f"got shape {self.sids.shape}")
        if (self.sids < 0).any():
            raise ValueError("ItemCodes.sids must be >= 0")

    @property
    def vocab_sizes(self) -> list[int]:
        """Code tokens per span position: codebook size per level, largest collision code + 1 for the last."""
        return [len(book) for book in self.codebooks] + [int(self.sids[:, -1].max()) + 1]

    def __len__(self) -> int:
        return len(self.sids)

    def has(self, item_id: int) -> bool:
        return 0 <= int(item_id) < len(self.sids)

    def sid_of(self, item_id: int) -> tuple[int, ...]:
        if not self.has(item_id):
            raise ValueError(f"item id {item_id} has no Semantic ID (known ids are 0..{len(self.sids) - 1})")
        return tuple(int(code) for code in self.sids[int(item_id)])

    def save(self, directory: Path) -> Path:
        path = Path(directory) / ITEM_CODES_FILE
        np.savez(path, sids=self.sids, **{f"codebook_{i}": book for i, book in enumerate(self.codebooks)})
        return path

    @classmethod
    def load(cls, directory: Path) -> "ItemCodes":
        path = Path(directory) / ITEM_CODES_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {ITEM_CODES_FILE} in {directory}")
        with np.load(path) as data:
            books = sorted((k for k in data.files if k.startswith("codebook_")), key=lambda k: int(k.split("_")[1]))
            return cls(data["sids"], [data[k].astype(np.float32) for k in books])


def catalog_item_codes(catalog: Catalog, codebook_size: int = 256, levels: int = 3, seed: int = 0) -> ItemCodes:
    """Semantic IDs of every catalog item (``levels`` × ``codebook_size`` + collision level)."""
    config = SidBuildConfig(encoder=ContentEncoderConfig.from_name("synthetic"),
                            rq=RQKMeansConfig(levels=levels, codebook_size=codebook_size), seed=seed)
    families = catalog_semantic_ids(catalog, config)
    codes = ItemCodes(catalog_item_sids(catalog, families), [np.asarray(b, np.float32) for b in families.sids.codebooks])
    logger.info("item codes: %d items, vocab sizes %s, collision rate %s", len(codes), codes.vocab_sizes,
                families.stats.get("collision_rate"))
    return codes
