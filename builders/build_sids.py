"""Build Semantic IDs for a data set: content vectors → RQ-KMeans (levels × codebook_size + collision level).

    python -m builders.build_sids --dataset beauty|synthetic [--data-dir DIR] [--output DIR] [--seed N]

``beauty``: any Amazon-format folder (default ``../shared/data/amazon_beauty``); rows are item ids 1..N.
``synthetic``: the unified three-service catalog — ``--data-dir`` may be an artifact folder holding
``catalog.jsonl``, otherwise the catalog of the ``--synthetic-preset`` ecosystem is generated; one SID per product
family, one codebook across samokat, megamarket and kuper; rows of ``sids.npy`` are catalog item ids (copies of a
product in two services share their family's SID; ``family_ids.npy`` says which family each row is).

Writes ``sids.npy`` (int64 [N, levels + 1]), ``item_ids.npy``, ``codebooks.npz`` and ``sid_stats.json`` (collision
rate, maximum collision depth, per-level codebook usage and normalised entropy) and prints the stats.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from recllm.catalog.product_catalog import Catalog
from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR
from recllm.sid.content_encoder import ContentEncoderConfig
from recllm.sid.item_sids import (ItemSemanticIds, SidBuildConfig, amazon_semantic_ids, catalog_item_sids,
                                  catalog_semantic_ids, save_item_sids, service_sid_counts)
from recllm.sid.residual_quantization import RQKMeansConfig
from recllm.synthetic.assortment import build_synthetic_catalog
from recllm.synthetic.ecosystem import PRESETS as SYNTHETIC_PRESETS
from recllm.synthetic.ecosystem import SyntheticConfig

logger = logging.getLogger(__name__)

DATASETS = ("beauty", "synthetic")
DEFAULT_OUTPUT_ROOT = Path("artifacts") / "sids"
CATALOG_FILE = "catalog.jsonl"


@dataclass
class BuildSidsConfig:
    """One SID build; ``output`` defaults to ``artifacts/sids/<dataset>``."""

    dataset: str = "beauty"
    data_dir: Path | None = None
    output: Path | None = None
    seed: int = 0
    levels: int = 3
    codebook_size: int = 256
    dim: int = 64
    synthetic_preset: str = "default"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"BuildSidsConfig.dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.synthetic_preset not in SYNTHETIC_PRESETS:
            raise ValueError(f"BuildSidsConfig.synthetic_preset must be one of {sorted(SYNTHETIC_PRESETS)}, "
                             f"got {self.synthetic_preset!r}")
        self.data_dir = None if self.data_dir is None else Path(self.data_dir)
        self.output = DEFAULT_OUTPUT_ROOT / self.dataset if self.output is None else Path(self.output)
        # RQKMeansConfig / ContentEncoderConfig validate levels, codebook_size, dim and seed.
        self.sid_config()

    def sid_config(self) -> SidBuildConfig:
        preset = "amazon" if self.dataset == "beauty" else "synthetic"
        return SidBuildConfig(encoder=ContentEncoderConfig.from_name(preset, dim=self.dim),
                              rq=RQKMeansConfig(levels=self.levels, codebook_size=self.codebook_size), seed=self.seed)


def synthetic_catalog(config: BuildSidsConfig) -> Catalog:
    """The artifact catalog when ``data_dir`` holds ``catalog.jsonl``, else the preset ecosystem's catalog."""
    if config.data_dir is not None:
        path = config.data_dir / CATALOG_FILE if config.data_dir.is_dir() else config.data_dir
        if not path.is_file():
            raise FileNotFoundError(f"--data-dir {config.data_dir}: no {CATALOG_FILE} there")
        return Catalog.load_jsonl(path)
    synthetic = SyntheticConfig.from_name(config.synthetic_preset)
    return build_synthetic_catalog(synthetic.seed, synthetic.samokat_items, synthetic.megamarket_items,
                                   synthetic.kuper_items)


def build_sids(config: BuildSidsConfig) -> dict:
    """Runs the build, writes the files into ``config.output`` and returns the stats."""
    bar = tqdm(total=2 + config.levels, desc=f"SIDs ({config.dataset})", disable=not config.progress)
    advance = lambda _level=None: bar.update(1)  # noqa: E731 - tiny progress hook
    if config.dataset == "beauty":
        advance()
        result = amazon_semantic_ids(config.data_dir or DEFAULT_DATA_DIR, config.sid_config(), on_level=advance)
        family_ids = None
    else:
        catalog = synthetic_catalog(config)
        advance()
        families = catalog_semantic_ids(catalog, config.sid_config(), on_level=advance)
        item_sids = catalog_item_sids(catalog, families)
        families.stats["services"] = service_sid_counts(catalog, item_sids)
        result = ItemSemanticIds(np.arange(len(catalog)), replace(families.sids, codes=item_sids), families.stats)
        family_ids = np.array([item.family_id for item in catalog.items], dtype=np.int64)
    result.stats["seed"] = config.seed
    save_item_sids(config.output, result)
    if family_ids is not None:
        np.save(config.output / "family_ids.npy", family_ids)
    advance()
    bar.close()
    return result.stats


def main(argv: list[str] | None = None) -> None:
    defaults = BuildSidsConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default=defaults.dataset)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Amazon-format folder (beauty) or folder with catalog.jsonl (synthetic)")
    parser.add_argument("--output", type=Path, default=None, help="default: artifacts/sids/<dataset>")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--levels", type=int, default=defaults.levels)
    parser.add_argument("--codebook-size", type=int, default=defaults.codebook_size)
    parser.add_argument("--dim", type=int, default=defaults.dim, help="content vector size")
    parser.add_argument("--synthetic-preset", choices=sorted(SYNTHETIC_PRESETS), default=defaults.synthetic_preset)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = BuildSidsConfig(args.dataset, args.data_dir, args.output, args.seed, args.levels, args.codebook_size,
                             args.dim, args.synthetic_preset)
    stats = build_sids(config)
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    print(f"wrote {config.output}")


if __name__ == "__main__":
    main()
