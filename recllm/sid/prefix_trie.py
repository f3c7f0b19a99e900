"""Prefix trie over Semantic IDs and constrained decoding: any model's SID-token logits → only existing items.

``SidTrie`` holds the SIDs of the items a request may return (one service's assortment of the unified catalog, or
all items of an Amazon data set) as one boolean mask per depth: row = a prefix that exists, column = a token that
may follow it. Decoding masks every other token to -inf before the softmax, so beam search and sampling (with any
temperature / top-k / top-p) can only ever reach complete SIDs of items in the trie — the invalid rate is 0 by
construction, and the tests check it on random tries and random logits.

The model side is one callable, ``StepLogits(rows, prefixes) -> logits``: for M partial SIDs (``prefixes`` [M, d],
``rows`` [M] = which request each belongs to) it returns the next-token logits [M, V_d]. An autoregressive model
(``generative_retrieval``) conditions on the prefix; ``level_logits_model`` wraps per-level logits that do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from recllm.catalog.product_catalog import Catalog, validate_service

StepLogits = Callable[[np.ndarray, np.ndarray], np.ndarray]


class SidTrie:
    """The SIDs ``sids`` [N, L] of items ``item_ids`` [N]; ``vocab_sizes[d]`` = tokens possible at depth d."""

    def __init__(self, sids: np.ndarray, item_ids: Sequence[int], vocab_sizes: Sequence[int] | None = None):
        sids = np.asarray(sids)
        item_ids = np.asarray(item_ids, dtype=np.int64)
        _validate_sids(sids, item_ids)
        self.sids = sids.astype(np.int64)
        self.item_ids = item_ids
        self.depth = sids.shape[1]
        self.vocab_sizes = _vocab_sizes(self.sids, vocab_sizes)
        self._prefix_rows: list[dict[tuple[int, ...], int]] = []
        self._masks: list[np.ndarray] = []
        for depth in range(self.depth):
            prefixes = [tuple(row) for row in self.sids[:, :depth].tolist()]
            rows = {prefix: index for index, prefix in enumerate(dict.fromkeys(prefixes))}
            mask = np.zeros((len(rows), self.vocab_sizes[depth]), dtype=bool)               # [P_d, V_d]
            mask[[rows[p] for p in prefixes], self.sids[:, depth]] = True
            self._prefix_rows.append(rows)
            self._masks.append(mask)
        self._item_by_sid = {tuple(sid): int(item) for sid, item in zip(self.sids.tolist(), item_ids.tolist())}

    def __len__(self) -> int:
        return len(self.item_ids)

    def allowed_next(self, prefix: Sequence[int]) -> np.ndarray:
        """Sorted tokens that extend ``prefix`` towards some item; ValueError if no item starts with ``prefix``."""
        prefix = tuple(int(token) for token in prefix)
        if len(prefix) >= self.depth:
            raise ValueError(f"SidTrie.allowed_next: prefix {prefix} has {len(prefix)} tokens; SIDs have {self.depth}")
        row = self._prefix_rows[len(prefix)].get(prefix)
        if row is None:
            raise ValueError(f"SidTrie.allowed_next: no item's SID starts with {prefix}")
        return np.flatnonzero(self._masks[len(prefix)][row])

    def masks_for(self, prefixes: np.ndarray) -> np.ndarray:
        """[M, V_d] allowed-next masks of ``prefixes`` [M, d] (all of the same depth d, each present in the trie)."""
        prefixes = np.asarray(prefixes, dtype=np.int64).reshape(len(prefixes), -1)
        depth = prefixes.shape[1]
        rows = self._prefix_rows[depth]
        try:
            index = [rows[tuple(prefix)] for prefix in prefixes.tolist()]
        except KeyError as error:
            raise ValueError(f"SidTrie.masks_for: prefix {error.args[0]} is not in the trie") from None
        return self._masks[depth][index]

    def item_of(self, sid: Sequence[int]) -> int | None:
        """The item whose SID is ``sid``, or None."""
        return self._item_by_sid.get(tuple(int(token) for token in sid))

    def restricted_to(self, item_ids: Sequence[int]) -> SidTrie:
        """A trie over the given subset of this trie's items (same vocabulary sizes); unknown ids raise."""
        position = {int(item): index for index, item in enumerate(self.item_ids.tolist())}
        missing = [int(item) for item in item_ids if int(item) not in position]
        if missing:
            raise ValueError(f"SidTrie.restricted_to: item ids {missing[:5]} are not in the trie")
        rows = [position[int(item)] for item in item_ids]
        return SidTrie(self.sids[rows], self.item_ids[rows], self.vocab_sizes)


def _validate_sids(sids: np.ndarray, item_ids: np.ndarray) -> None:
    if sids.ndim != 2 or sids.shape[0] == 0 or sids.shape[1] == 0 or not np.issubdtype(sids.dtype, np.integer):
        raise ValueError(f"SidTrie: sids must be a non-empty integer [N, L] array, got {sids.dtype} {sids.shape}")
    if (sids < 0).any():
        raise ValueError(f"SidTrie: sids must be >= 0, found {int(sids.min())}")
    if item_ids.shape != (sids.shape[0],):
        raise ValueError(f"SidTrie: item_ids shape {item_ids.shape} does not match {sids.shape[0]} SIDs")
    if len(np.unique(item_ids)) != len(item_ids):
        raise ValueError("SidTrie: item_ids must be unique")
    unique, counts = np.unique(sids, axis=0, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"SidTrie: SID {unique[counts > 1][0].tolist()} belongs to {counts.max()} items; "
                         "SIDs must be unique (add the collision level)")


def _vocab_sizes(sids: np.ndarray, vocab_sizes: Sequence[int] | None) -> list[int]:
    needed = (sids.max(axis=0) + 1).tolist()
    if vocab_sizes is None:
        return [int(v) for v in needed]
    if len(vocab_sizes) != sids.shape[1] or any(int(v) < n for v, n in zip(vocab_sizes, needed)):
        raise ValueError(f"SidTrie: vocab_sizes {list(vocab_sizes)} must give >= {needed} for each of the "
                         f"{sids.shape[1]} positions")
    return [int(v) for v in vocab_sizes]


def service_trie(catalog: Catalog, item_sids: np.ndarray, service: str, in_stock_only: bool = True,
                 vocab_sizes: Sequence[int] | None = None) -> SidTrie:
    """The trie of one service's items of the unified ``catalog``; ``item_sids`` [len(catalog), L] by item id.

    Copies of one product in two services share a SID; inside one service each product appears once, so a SID still
    names exactly one item id of that service.
    """
    validate_service(service)
    item_sids = np.asarray(item_sids)
    if item_sids.shape[0] != len(catalog):
        raise ValueError(f"service_trie: item_sids has {item_sids.shape[0]} rows for {len(catalog)} catalog items")
    items = [item.item_id for item in catalog.in_service(service) if item.in_stock or not in_stock_only]
    if not items:
        raise ValueError(f"service_trie: service {service!r} has no {'in-stock ' if in_stock_only else ''}items")
    return SidTrie(item_sids[items], items, vocab_sizes)


@dataclass
class DecodedItems:
    """Per request row, up to K decoded items best first; padding where fewer exist: item -1, sid -1, log_prob -inf."""

    item_ids: np.ndarray    # [R, K] int64
    sids: np.ndarray        # [R, K, L] int64
    log_probs: np.ndarray   # [R, K] float32: log-prob of the SID under the trie-constrained model

    def valid(self) -> np.ndarray:
        return self.item_ids >= 0


@dataclass
class SamplingConfig:
    """Sampling knobs applied among the tokens the trie allows (``top_k=0`` and ``top_p=1`` switch them off)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not 0 < self.temperature < float("inf"):
            raise ValueError(f"SamplingConfig.temperature must be a finite number > 0, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p!r}")


def constrained_log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[M, V] log-probabilities renormalised over the allowed tokens; disallowed tokens get -inf."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape != mask.shape:
        raise ValueError(f"step logits have shape {logits.shape}; the trie expects {mask.shape}")
    masked = np.where(mask, logits, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    shifted = masked - top
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def level_logits_model(per_level: Sequence[np.ndarray]) -> StepLogits:
    """A ``StepLogits`` for models giving one logit vector per level and request, independent of the prefix:
    ``per_level[d]`` [R, V_d]."""
    tables = [np.asarray(table, dtype=np.float64) for table in per_level]

    def step(rows: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        return tables[prefixes.shape[1]][rows]

    return step


def _step(trie: SidTrie, step_logits: StepLogits, rows: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
    mask = trie.masks_for(prefixes)
    return constrained_log_softmax(np.asarray(step_logits(rows, prefixes)), mask)


def beam_search(trie: SidTrie, step_logits: StepLogits, n_rows: int, beam_size: int,
                row_chunk: int = 512) -> DecodedItems:
    """The ``beam_size`` most probable items per request row under trie-constrained decoding.

    Depth by depth, every live beam is extended by its allowed tokens and the best ``beam_size`` (by summed
    log-prob) are kept; a beam only exists if the trie has its prefix, so finished beams are items.
    """
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
    parts = [_beam_chunk(trie, step_logits, np.arange(start, min(start + row_chunk, n_rows)), beam_size)
             for start in range(0, n_rows, row_chunk)]
    return _concat(parts, beam_size, trie.depth)


def _beam_chunk(trie: SidTrie, step_logits: StepLogits, rows: np.ndarray, beam_size: int) -> DecodedItems:
    n = len(rows)
    prefixes = np.zeros((n, 1, 0), dtype=np.int64)                                           # [R, B, d]
    scores = np.zeros((n, 1))                                                                 # [R, B]
    for depth in range(trie.depth):
        live = np.isfinite(scores)                                                            # [R, B]
        vocab = trie.vocab_sizes[depth]
        candidate = np.full((n, scores.shape[1], vocab), -np.inf)                             # [R, B, V]
        row_index, beam_index = np.nonzero(live)
        candidate[row_index, beam_index] = scores[live][:, None] + _step(
            trie, step_logits, rows[row_index], prefixes[row_index, beam_index])
        flat = candidate.reshape(n, -1)                                                       # [R, B*V]
        keep = min(beam_size, flat.shape[1])
        best = np.argsort(-flat, axis=1, kind="stable")[:, :keep]                             # [R, keep]
        scores = np.take_along_axis(flat, best, axis=1)
        parent, token = best // vocab, best % vocab
        prefixes = np.concatenate([np.take_along_axis(prefixes, parent[:, :, None], axis=1),
                                   token[:, :, None]], axis=2)
    return _finish(trie, prefixes, scores)


def _finish(trie: SidTrie, sids: np.ndarray, scores: np.ndarray) -> DecodedItems:
    live = np.isfinite(scores)
    items = np.full(scores.shape, -1, dtype=np.int64)
    items[live] = [trie.item_of(sid) for sid in sids[live].tolist()]
    sids = np.where(live[:, :, None], sids, -1)
    return DecodedItems(items, sids, np.where(live, scores, -np.inf).astype(np.float32))


def _concat(parts: list[DecodedItems], width: int, depth: int) -> DecodedItems:
    def pad(array: np.ndarray, fill) -> np.ndarray:
        shape = (array.shape[0], width) + array.shape[2:]
        out = np.full(shape, fill, dtype=array.dtype)
        out[:, :array.shape[1]] = array
        return out

    if not parts:
        return DecodedItems(np.zeros((0, width), np.int64), np.zeros((0, width, depth), np.int64),
                            np.zeros((0, width), np.float32))
    return DecodedItems(np.concatenate([pad(p.item_ids, -1) for p in parts]),
                        np.concatenate([pad(p.sids, -1) for p in parts]),
                        np.concatenate([pad(p.log_probs, -np.inf) for p in parts]))


def _filtered_sampling_logits(log_probs: np.ndarray, config: SamplingConfig) -> np.ndarray:
    """Temperature, then top-k and top-p among the allowed (finite) tokens; the best allowed token always stays."""
    scaled = log_probs / config.temperature                                                   # [M, V]
    order = np.argsort(-scaled, axis=1, kind="stable")
    ranked = np.take_along_axis(scaled, order, axis=1)
    keep = np.isfinite(ranked)
    if config.top_k:
        keep[:, config.top_k:] = False
    if config.top_p < 1:
        probabilities = np.exp(ranked - ranked[:, :1])
        probabilities = np.where(keep, probabilities, 0.0)
        cumulative = np.cumsum(probabilities, axis=1) / probabilities.sum(axis=1, keepdims=True)
        keep &= (cumulative - probabilities / probabilities.sum(axis=1, keepdims=True)) < config.top_p
    keep[:, 0] = True
    out = np.full_like(scaled, -np.inf)
    np.put_along_axis(out, order, np.where(keep, ranked, -np.inf), axis=1)
    return out


def sample(trie: SidTrie, step_logits: StepLogits, n_rows: int, n_samples: int,
           config: SamplingConfig | None = None) -> DecodedItems:
    """``n_samples`` independent draws per request row (repeats possible), each a complete SID of a trie item.

    Every token is drawn from the trie-masked distribution after temperature / top-k / top-p; ``log_probs`` are the
    model's constrained log-probs (temperature 1), not the sampling distribution's.
    """
    config = config or SamplingConfig()
    if n_samples < 1:
        raise ValueError(f"sample: n_samples must be >= 1, got {n_samples}")
    rng = np.random.default_rng(config.seed)
    rows = np.repeat(np.arange(n_rows), n_samples)                                            # [R*S]
    prefixes = np.zeros((len(rows), 0), dtype=np.int64)
    scores = np.zeros(len(rows))
    for _ in range(trie.depth):
        log_probs = _step(trie, step_logits, rows, prefixes) if len(rows) else np.zeros((0, 1))
        filtered = _filtered_sampling_logits(log_probs, config)
        probabilities = np.exp(filtered - filtered.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        cumulative = np.cumsum(probabilities, axis=1)
        draws = rng.random(len(rows))[:, None]
        token = np.minimum((cumulative < draws * cumulative[:, -1:]).sum(axis=1), probabilities.shape[1] - 1)
        token = _nearest_allowed(token, probabilities)
        scores += log_probs[np.arange(len(rows)), token]
        prefixes = np.concatenate([prefixes, token[:, None]], axis=1)
    shape = (n_rows, n_samples)
    return _finish(trie, prefixes.reshape(shape + (trie.depth,)), scores.reshape(shape))


def _nearest_allowed(token: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Guard against float round-off landing the inverse-CDF draw on a zero-probability token: take the last
    positive-probability token at or before it (the first one if none precedes)."""
    bad = probabilities[np.arange(len(token)), token] <= 0
    for index in np.flatnonzero(bad):
        allowed = np.flatnonzero(probabilities[index] > 0)
        before = allowed[allowed <= token[index]]
        token[index] = before[-1] if len(before) else allowed[0]
    return token
