"""Query encoder: Russian/English text → a unit vector in the catalog's item space.

Two feature sources, both offline:
* navec word vectors (250K Russian words, 300-d, shipped inside the ``natasha`` wheel), mean-pooled;
* hashed word and character n-gram buckets, which carry English words, brands, typos and numbers that navec
  does not know.
A trained projection maps both into one ``dim``-d space. The same encoder embeds item texts (name, brand,
category names in both languages, tags), so queries and items meet in one space (a shared-weight two-tower
trained with in-batch softmax on synthetic (query, relevant item) pairs by ``builders``).
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from recllm.config.field_checks import require_above, require_in_interval, require_positive_ints

log = logging.getLogger(__name__)

WORD_PATTERN = re.compile(r"[0-9a-zа-яё]+")
NAVEC_DIM = 300


@dataclass
class QueryEncoderConfig:
    dim: int = 128
    hash_buckets: int = 1 << 14
    char_ngram: int = 3
    max_words: int = 64
    train_epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 3e-3
    temperature: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive_ints(self, ("dim", "hash_buckets", "char_ngram", "max_words", "train_epochs", "batch_size"))
        require_in_interval(self, "temperature", "(0, 1]")
        require_above(self, "learning_rate", 0)

    @classmethod
    def from_name(cls, name: str) -> "QueryEncoderConfig":
        presets = {"default": cls(), "test": cls(dim=32, hash_buckets=1 << 12, train_epochs=4)}
        if name not in presets:
            raise ValueError(f"unknown QueryEncoderConfig preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]


def navec_path() -> Path:
    import natasha  # noqa: PLC0415 - heavy import, only where needed

    path = Path(natasha.__file__).parent / "data" / "emb" / "navec_news_v1_1B_250K_300d_100q.tar"
    if not path.exists():
        raise FileNotFoundError(f"navec embeddings not found at {path}: is natasha==1.6.0 installed?")
    return path


@lru_cache(maxsize=1)
def load_navec():
    from navec import Navec  # noqa: PLC0415

    return Navec.load(str(navec_path()))


def tokenize(text: str) -> list[str]:
    return WORD_PATTERN.findall(text.lower().replace("ё", "е"))


def stable_bucket(token: str, buckets: int) -> int:
    # crc32 is stable across processes (Python's hash() is salted), so the server and the builder agree.
    return zlib.crc32(token.encode("utf-8")) % buckets


class TextFeaturizer:
    """Text → (navec mean vector [300], hashed n-gram bucket ids)."""

    def __init__(self, config: QueryEncoderConfig):
        self.config = config
        self.navec = load_navec()

    def bucket_ids(self, words: list[str]) -> list[int]:
        n, buckets = self.config.char_ngram, self.config.hash_buckets
        ids = [stable_bucket("w:" + w, buckets) for w in words]
        for w in words:
            padded = f"<{w}>"
            ids.extend(stable_bucket("c:" + padded[i : i + n], buckets) for i in range(len(padded) - n + 1))
        return ids or [0]

    def navec_mean(self, words: list[str]) -> np.ndarray:
        vectors = [self.navec[w] for w in words if w in self.navec]
        if not vectors:
            return np.zeros(NAVEC_DIM, dtype=np.float32)
        return np.mean(vectors, axis=0).astype(np.float32)

    def featurize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(navec [B, 300], flat bucket ids [N], offsets [B]) for an EmbeddingBag."""
        dense, flat, offsets = [], [], []
        for text in texts:
            words = tokenize(text)[: self.config.max_words]
            dense.append(self.navec_mean(words))
            offsets.append(len(flat))
            flat.extend(self.bucket_ids(words))
        return (
            torch.from_numpy(np.stack(dense)),  # [B, 300]
            torch.tensor(flat, dtype=torch.long),  # [N]
            torch.tensor(offsets, dtype=torch.long),  # [B]
        )


class TextTower(nn.Module):
    """Projection of navec + hashed n-gram features into the shared item space."""

    def __init__(self, config: QueryEncoderConfig):
        super().__init__()
        self.dense = nn.Linear(NAVEC_DIM, config.dim)
        self.hashed = nn.EmbeddingBag(config.hash_buckets, config.dim, mode="mean")
        nn.init.normal_(self.hashed.weight, std=0.02)

    def forward(self, navec: torch.Tensor, bucket_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = self.dense(navec) + self.hashed(bucket_ids, offsets)  # [B, D]
        return nn.functional.normalize(hidden, dim=-1)


class QueryEncoder:
    """Encodes texts to unit vectors; ``encode`` is what the ``rag.query_encoder`` Triton model calls."""

    def __init__(self, config: QueryEncoderConfig, tower: TextTower | None = None):
        self.config = config
        self.featurizer = TextFeaturizer(config)
        self.tower = tower or TextTower(config)
        self.tower.eval()

    @property
    def dim(self) -> int:
        return self.config.dim

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[B, dim] float32, rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.tower(*self.featurizer.featurize(texts)).numpy().astype(np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "query_encoder_config.json").write_text(json.dumps(asdict(self.config), indent=2))
        torch.save(self.tower.state_dict(), directory / "text_tower.pt")

    @classmethod
    def load(cls, directory: Path) -> "QueryEncoder":
        directory = Path(directory)
        config = QueryEncoderConfig(**json.loads((directory / "query_encoder_config.json").read_text()))
        tower = TextTower(config)
        tower.load_state_dict(torch.load(directory / "text_tower.pt", weights_only=True))
        return cls(config, tower)


def train_query_encoder(
    pairs: Sequence[tuple[str, str]],
    config: QueryEncoderConfig,
    progress: bool = True,
) -> QueryEncoder:
    """Train on (query text, relevant item text) pairs with in-batch softmax (both directions)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    if len(pairs) < 2:
        raise ValueError(f"train_query_encoder needs at least 2 pairs, got {len(pairs)}")
    torch.manual_seed(config.seed)
    encoder = QueryEncoder(config)
    featurizer, tower = encoder.featurizer, encoder.tower
    queries = featurizer.featurize([q for q, _ in pairs])
    items = featurizer.featurize([i for _, i in pairs])
    item_keys = torch.tensor([zlib.crc32(i.encode("utf-8")) for _, i in pairs])
    optimizer = torch.optim.Adam(tower.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    tower.train()
    steps = config.train_epochs * max(1, len(pairs) // config.batch_size)
    bar = tqdm(range(steps), desc="query encoder", disable=not progress, leave=False)
    for _ in bar:
        batch = torch.randperm(len(pairs), generator=generator)[: config.batch_size]
        q = tower(*select_rows(queries, batch))  # [B, D]
        i = tower(*select_rows(items, batch))  # [B, D]
        logits = q @ i.T / config.temperature  # [B, B]
        # Pairs sharing an item text are not negatives of each other: mask those off-diagonal logits.
        same_item = item_keys[batch][:, None] == item_keys[batch][None, :]  # [B, B]
        logits = logits.masked_fill(same_item & ~torch.eye(len(batch), dtype=torch.bool), -1e4)
        labels = torch.arange(len(batch))
        loss = (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    tower.eval()
    log.info("query encoder trained: %d steps, final loss %.3f", steps, loss.item())
    return encoder


def select_rows(features: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rows: torch.Tensor):
    """Rows of a featurized batch (navec, flat bucket ids, offsets)."""
    navec, flat, offsets = features
    ends = torch.cat([offsets[1:], torch.tensor([len(flat)])])
    pieces = [flat[offsets[r] : ends[r]] for r in rows.tolist()]
    new_offsets = torch.tensor([0] + [len(p) for p in pieces[:-1]]).cumsum(0)
    return navec[rows], torch.cat(pieces), new_offsets
