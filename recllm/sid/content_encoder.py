"""Item content encoder: brand, category path and text of every item → one unit vector per item, for Semantic IDs.

The vectors only have to place similar products near each other so that residual k-means (``residual_quantization``)
gives similar items shared SID prefixes; they are not trained. Each item becomes a sparse TF-IDF row over four
blocks, each block L2-normalised and weighted:

* ``brand``     — one token for the whole brand ("b:opi"), so one brand is one direction;
* ``category``  — every prefix of the category path ("c:makeup", "c:makeup>nails", …): deeper prefixes are
                  rarer, so TF-IDF weighs them more;
* ``words``     — the words of the item text (title / textual id / Russian product name) and of the brand;
* ``chars``     — hashed character n-grams of those words (typos, inflections, brand spellings);

plus, where ``navec_weight > 0``, the mean navec vector of the item's Russian words (the offline word vectors shipped
in the ``natasha`` wheel and used by ``recllm.rag.query_encoder``). A seeded randomized SVD (LSA) reduces the columns to
``dim`` and rows are L2-normalised. No downloads, no training; the same inputs and seed give the same vectors.

Two sources: ``amazon_item_contents`` (the S3-Rec / P5 format of ``../shared/data/amazon_beauty``) and
``catalog_family_contents`` (the synthetic three-service catalog, one content per product family: a product sold in
two services is one item there).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from recllm.catalog.product_catalog import Catalog
from recllm.rag.query_encoder import NAVEC_DIM, load_navec, stable_bucket, tokenize

logger = logging.getLogger(__name__)

AMAZON_UNKNOWN_BRAND = "Unknown"  # the S3-Rec attribute standing for a missing brand


@dataclass(frozen=True)
class ItemContent:
    """What the encoder knows of one item; ``key`` is the caller's id (Amazon item id, catalog family id)."""

    key: int
    brand: str                      # "" when unknown
    categories: tuple[str, ...]     # category path, root first; may be empty
    text: str                       # free text: title, textual id, product name; may be empty


@dataclass
class ContentEncoderConfig:
    """Block weights, n-gram settings and the output size of the LSA projection."""

    dim: int = 64
    brand_weight: float = 1.0
    category_weight: float = 1.0
    words_weight: float = 0.8
    chars_weight: float = 0.5
    navec_weight: float = 0.0       # > 0 for Russian text (the synthetic catalog)
    char_ngram: int = 3
    char_buckets: int = 1 << 14
    svd_oversample: int = 16
    svd_power_iterations: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "char_ngram", "char_buckets", "svd_oversample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ContentEncoderConfig.{name} must be a positive int, got {value!r}")
        if isinstance(self.svd_power_iterations, bool) or not isinstance(self.svd_power_iterations, int) \
                or self.svd_power_iterations < 0:
            raise ValueError("ContentEncoderConfig.svd_power_iterations must be an int >= 0, "
                             f"got {self.svd_power_iterations!r}")
        for name in ("brand_weight", "category_weight", "words_weight", "chars_weight", "navec_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ContentEncoderConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.brand_weight + self.category_weight + self.words_weight + self.chars_weight + self.navec_weight == 0:
            raise ValueError("ContentEncoderConfig: all block weights are 0; at least one must be > 0")

    @classmethod
    def from_name(cls, name: str, **overrides) -> "ContentEncoderConfig":
        """"amazon": English attributes and textual ids; "synthetic": Russian names, navec on."""
        presets = {"amazon": {}, "synthetic": {"navec_weight": 1.0}}
        if name not in presets:
            raise ValueError(f"unknown ContentEncoderConfig preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


@dataclass
class _SparseRows:
    """COO triplets of one block, built row by row; columns are block-local."""

    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add_row(self, row: int, weights: dict[int, float], block_weight: float) -> None:
        norm = math.sqrt(sum(value * value for value in weights.values()))
        if norm == 0 or block_weight == 0:
            return
        for col, value in sorted(weights.items()):
            self.rows.append(row)
            self.cols.append(col)
            self.values.append(block_weight * value / norm)


def _brand_tokens(content: ItemContent) -> list[str]:
    brand = " ".join(tokenize(content.brand))
    return [f"b:{brand}"] if brand else []


def _category_tokens(content: ItemContent) -> list[str]:
    path = [" ".join(tokenize(name)) for name in content.categories]
    path = [name for name in path if name]
    return ["c:" + ">".join(path[: depth + 1]) for depth in range(len(path))]


def _words(content: ItemContent) -> list[str]:
    return tokenize(f"{content.text} {content.brand}")


def _word_tokens(content: ItemContent) -> list[str]:
    return [f"w:{word}" for word in _words(content)]


def _tfidf_block(token_lists: list[list[str]], block_weight: float) -> tuple[_SparseRows, int]:
    """Vocabulary in sorted order (deterministic), smoothed idf, sublinear tf."""
    document_frequency = Counter(token for tokens in token_lists for token in set(tokens))
    vocabulary = {token: col for col, token in enumerate(sorted(document_frequency))}
    n_docs = len(token_lists)
    idf = {token: math.log((1 + n_docs) / (1 + df)) + 1.0 for token, df in document_frequency.items()}
    block = _SparseRows()
    for row, tokens in enumerate(token_lists):
        weights = {vocabulary[token]: (1.0 + math.log(count)) * idf[token] for token, count in Counter(tokens).items()}
        block.add_row(row, weights, block_weight)
    return block, len(vocabulary)


def _char_block(contents: Sequence[ItemContent], config: ContentEncoderConfig) -> _SparseRows:
    n, block = config.char_ngram, _SparseRows()
    for row, content in enumerate(contents):
        counts: Counter[int] = Counter()
        for word in _words(content):
            padded = f"<{word}>"
            counts.update(stable_bucket("c:" + padded[i:i + n], config.char_buckets)
                          for i in range(max(1, len(padded) - n + 1)))
        block.add_row(row, {col: 1.0 + math.log(count) for col, count in counts.items()}, config.chars_weight)
    return block


def _navec_block(contents: Sequence[ItemContent], weight: float) -> np.ndarray:
    """[N, 300] unit mean navec vectors of each item's words and categories (zero rows when none is known)."""
    navec = load_navec()
    out = np.zeros((len(contents), NAVEC_DIM), dtype=np.float32)
    for row, content in enumerate(contents):
        words = [w for w in tokenize(f"{content.text} {' '.join(content.categories)}") if w in navec]
        if words:
            mean = np.mean([navec[w] for w in words], axis=0)
            out[row] = weight * mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def content_matrix(contents: Sequence[ItemContent], config: ContentEncoderConfig) -> torch.Tensor:
    """Sparse COO [N, columns] of the weighted blocks (navec columns last when enabled)."""
    blocks: list[tuple[_SparseRows, int]] = [
        _tfidf_block([_brand_tokens(c) for c in contents], config.brand_weight),
        _tfidf_block([_category_tokens(c) for c in contents], config.category_weight),
        _tfidf_block([_word_tokens(c) for c in contents], config.words_weight),
        (_char_block(contents, config), config.char_buckets),
    ]
    rows, cols, values, offset = [], [], [], 0
    for block, width in blocks:
        rows.extend(block.rows)
        cols.extend(col + offset for col in block.cols)
        values.extend(block.values)
        offset += width
    if config.navec_weight > 0:
        dense = _navec_block(contents, config.navec_weight)
        nz_rows, nz_cols = np.nonzero(dense)
        rows.extend(nz_rows.tolist())
        cols.extend((nz_cols + offset).tolist())
        values.extend(dense[nz_rows, nz_cols].tolist())
        offset += NAVEC_DIM
    indices = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    return torch.sparse_coo_tensor(indices, torch.tensor(values, dtype=torch.float64),
                                   (len(contents), offset), check_invariants=True).coalesce()


def randomized_svd_projection(matrix: torch.Tensor, rank: int, oversample: int, power_iterations: int,
                              seed: int) -> np.ndarray:
    """Rows of ``matrix`` [N, C] (sparse), centred, projected on their top-``rank`` principal axes: ``U_r * S_r``.

    PCA without densifying: ``A - 1 mu^T`` is applied implicitly. Halko et al.'s range finder with a seeded Gaussian
    test matrix and QR-orthonormalised power iterations, in float64; the sign of every component is fixed (its
    largest-magnitude loading positive) so the output is unique for a seed.
    """
    n_rows, n_cols = matrix.shape
    rank = min(rank, n_rows, n_cols)
    width = min(rank + oversample, n_rows, n_cols)
    transposed = matrix.t().coalesce()
    mean = torch.sparse.sum(matrix, dim=0).to_dense()[None] / n_rows                    # [1, C]

    def times(block: torch.Tensor) -> torch.Tensor:                                      # (A - 1 mu^T) @ block
        return torch.sparse.mm(matrix, block) - mean @ block

    def transposed_times(block: torch.Tensor) -> torch.Tensor:                           # (A - 1 mu^T)^T @ block
        return torch.sparse.mm(transposed, block) - mean.T @ block.sum(dim=0, keepdim=True)

    generator = torch.Generator().manual_seed(seed)
    test = torch.randn(n_cols, width, generator=generator, dtype=torch.float64)         # [C, w]
    basis, _ = torch.linalg.qr(times(test))                                              # [N, w]
    for _ in range(power_iterations):
        basis, _ = torch.linalg.qr(transposed_times(basis))                              # [C, w]
        basis, _ = torch.linalg.qr(times(basis))                                         # [N, w]
    small = transposed_times(basis).t()                                                  # [w, C] = Q^T (A - 1 mu^T)
    left, singular, _ = torch.linalg.svd(small, full_matrices=False)                    # [w, w], [w]
    projected = (basis @ left[:, :rank]) * singular[:rank]                               # [N, r]
    signs = torch.sign(projected.gather(0, projected.abs().argmax(dim=0, keepdim=True)))
    signs[signs == 0] = 1.0
    return (projected * signs).numpy()


def encode_contents(contents: Sequence[ItemContent], config: ContentEncoderConfig) -> np.ndarray:
    """[N, min(dim, …)] float32 unit vectors, row i for ``contents[i]``; items with no content at all raise."""
    if not contents:
        raise ValueError("encode_contents: no items given")
    empty = next((c for c in contents if not (c.brand.strip() or c.text.strip() or c.categories)), None)
    if empty is not None:
        raise ValueError(f"encode_contents: item {empty.key} has no brand, categories or text")
    matrix = content_matrix(contents, config)
    vectors = randomized_svd_projection(matrix, config.dim, config.svd_oversample, config.svd_power_iterations,
                                        config.seed)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    logger.info("encoded %d items from %d content columns into %d dims", len(contents), matrix.shape[1],
                vectors.shape[1])
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _amazon_category_names(attribute_lists: list[list[str]]) -> set[str]:
    """Names seen after the first position somewhere: category levels, never brands."""
    return {name for attributes in attribute_lists for name in attributes[1:]}


def amazon_item_contents(data_dir: str | Path) -> list[ItemContent]:
    """One content per item of an Amazon-format folder, in item-id order.

    With ``items.jsonl`` (``item_id``, ``attributes`` = brand first when present then the category path,
    ``idgenrec_text_id``, else ``title``): brand, categories and text. Otherwise ``<Name>_item2attributes.json``
    (``{item_id: [attribute id, …]}``): the attribute ids as a flat category list, no brand, no text.
    A first attribute that is "Unknown" or appears as a category elsewhere is not taken as a brand.
    """
    data_dir = Path(data_dir)
    items_path = data_dir / "items.jsonl"
    if items_path.is_file():
        with open(items_path, encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()]
        category_names = _amazon_category_names([list(r["attributes"]) for r in records])
        contents = [_amazon_record_content(record, category_names) for record in records]
    else:
        attribute_files = sorted(data_dir.glob("*_item2attributes.json"))
        if not attribute_files:
            raise FileNotFoundError(f"{data_dir}: neither items.jsonl nor <Name>_item2attributes.json exists")
        mapping = json.loads(attribute_files[0].read_text(encoding="utf-8"))
        contents = [ItemContent(int(key), "", tuple(f"attribute {a}" for a in attributes), "")
                    for key, attributes in mapping.items()]
    return sorted(contents, key=lambda content: content.key)


def _amazon_record_content(record: dict, category_names: set[str]) -> ItemContent:
    try:
        key, attributes = int(record["item_id"]), [str(a) for a in record["attributes"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"items.jsonl: record {record!r} needs an integer 'item_id' and an 'attributes' list") \
            from error
    brand = ""
    if attributes and (attributes[0] == AMAZON_UNKNOWN_BRAND or attributes[0] not in category_names):
        brand, attributes = attributes[0], attributes[1:]
    brand = "" if brand == AMAZON_UNKNOWN_BRAND else brand
    return ItemContent(key, brand, tuple(attributes), str(record.get("idgenrec_text_id") or record.get("title") or ""))


def catalog_family_contents(catalog: Catalog) -> list[ItemContent]:
    """One content per product family (``key`` = family id), families in order of first appearance.

    A family is one product sold in one or more services under the same name, brand and leaf category; its
    categories are the path's Russian and English names, its text the Russian product name plus its tags.
    """
    contents: dict[int, ItemContent] = {}
    for item in catalog.items:
        if item.family_id in contents:
            continue
        path = catalog.category_path(item.category_id)
        categories = tuple(f"{c.name_ru} {c.name_en}" for c in path)
        tags = " ".join(sorted(tag.replace("_", " ") for tag in item.tags))
        contents[item.family_id] = ItemContent(item.family_id, item.brand, categories, f"{item.name} {tags}".strip())
    return list(contents.values())
