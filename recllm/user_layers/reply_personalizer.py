"""The served generator's user layers: per request, the user's ``u``, segment and adapters as one layer context.

A build's ``generator/user_layers/`` folder (``builders/train_reply_layers.py``) holds the reply generator's trained
conditional norms, prefix encoder and MoE gate (``user_layers.safetensors``), the segment model over ``u``
(``segments.json``), the layout of ``u`` and of the layers (``layers_config.json``), and the adapters in PEFT's
format (``adapters/<segment-N | user-ID>/``). ``ReplyPersonalizer.load`` plugs them into the generator's Qwen2 in
place (the base weights are shared, not copied) and, for each batch of replies, turns the requests' user ids into
one ``UserLayerContext``:

* ``u`` per user from the profile (``UserVectorBuilder``: DP-released preferences, demographics, temporal pattern,
  service shares; cold users get their segment's vector), cached per user for ``vector_ttl_s``; a request that
  carries the profile the retriever already read for it (``ReplyRequest.user_context``; over Triton the sealed
  USER_CONTEXT tensor) has its ``u`` derived from that (~1 ms) instead of a second profile read (~9 ms on the default
  build: the events and signals behind it);
* adapters per row by the store's policy: the user's own adapter when fresh (weight 1), else the MoE gate's top-k
  mixture of the segment adapters, all rows of the batch in one multi-LoRA call;
* rows without a user (no verified token) run the base model: no norm modulation, prefix masked out, no adapter.

The adapters folder is re-read every ``PersonalizerConfig.adapter_rescan_s`` (``AdapterStore.sync_folder``): what a
periodic refresh (``recllm refresh-adapters``) rewrote or removed is served from the next batch after that, without
a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError

from recllm.generator.qwen2 import Qwen2
from recllm.user_layers.adapter_store import AdapterStore, AdapterStoreConfig, segment_adapter_name
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.layer_context import UserLayerContext
from recllm.user_layers.multi_lora import LORA_PATHS
from recllm.user_layers.user_vector import SegmentModel, UserVectorBuilder, UserVectorConfig

log = logging.getLogger(__name__)

USER_LAYERS_DIR = "user_layers"
LAYERS_FILE = "user_layers.safetensors"
LAYERS_CONFIG_FILE = "layers_config.json"
SEGMENTS_FILE = "segments.json"
ADAPTERS_DIR = "adapters"


@dataclass
class PersonalizerConfig:
    """What the served generator applies; each switch off gives the base model for that layer."""

    use_norm: bool = True
    use_prefix: bool = True
    use_lora: bool = True
    vector_ttl_s: float = 60.0  # a user's u is re-read from the profile at most this often
    max_cached_users: int = 50_000
    lora_path: str = "auto"  # how the served LoRA runs (multi_lora.LORA_PATHS); replaces the build's training choice
    # the adapters folder is re-read at most this often (0: only at load): what `recllm refresh-adapters` rewrote is
    # served without a restart
    adapter_rescan_s: float = 30.0

    def __post_init__(self):
        if self.lora_path not in LORA_PATHS:
            raise ValueError(f"PersonalizerConfig.lora_path must be one of {LORA_PATHS}, got {self.lora_path!r}")
        if not self.adapter_rescan_s >= 0:
            raise ValueError(f"PersonalizerConfig.adapter_rescan_s must be >= 0, got {self.adapter_rescan_s!r}")
        if not self.vector_ttl_s >= 0:
            raise ValueError(f"PersonalizerConfig.vector_ttl_s must be >= 0, got {self.vector_ttl_s!r}")
        if isinstance(self.max_cached_users, bool) or not isinstance(self.max_cached_users, int) \
                or self.max_cached_users <= 0:
            raise ValueError(f"PersonalizerConfig.max_cached_users must be a positive int, got "
                             f"{self.max_cached_users!r}")


def save_layers_config(folder: Path, layers: UserLayersConfig, vectors: UserVectorConfig) -> None:
    data = {"user_layers": asdict(layers), "user_vector": asdict(vectors)}
    (Path(folder) / LAYERS_CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_layers_config(folder: Path) -> tuple[UserLayersConfig, UserVectorConfig]:
    path = Path(folder) / LAYERS_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {LAYERS_CONFIG_FILE}: not a user-layers folder")
    data = json.loads(path.read_text(encoding="utf-8"))
    return UserLayersConfig(**data["user_layers"]), UserVectorConfig(**data["user_vector"])


def load_layers(folder: Path, base: Qwen2, profile, catalog, item_vectors: np.ndarray, lora_path: str | None = None,
                demographics_per_user: bool = False) -> tuple[AdaptiveQwen2, UserVectorBuilder]:
    """The folder's trained layers plugged into ``base`` (in place; eval mode) and the ``u`` builder with the
    folder's segments; ``lora_path`` None: the one the build saved."""
    layers_config, vector_config = load_layers_config(Path(folder))
    if lora_path is not None:
        layers_config.lora_path = lora_path
    adaptive = AdaptiveQwen2(base, layers_config)
    adaptive.load_user_layers(Path(folder) / LAYERS_FILE)
    vectors = UserVectorBuilder(vector_config, profile, catalog, item_vectors,
                                segments=SegmentModel.load(Path(folder) / SEGMENTS_FILE),
                                demographics_per_user=demographics_per_user)
    return adaptive.eval(), vectors


class UserVectorCache:
    """(u, segment) per user id, re-read from the profile when older than ``ttl_s``; LRU-bounded."""

    def __init__(self, vectors: UserVectorBuilder, ttl_s: float, max_users: int):
        self.vectors, self.ttl_s, self.max_users = vectors, ttl_s, max_users
        self._entries: OrderedDict[str, tuple[float, np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, user_id: str, context=None) -> tuple[np.ndarray, int]:
        """The user's (u, segment). With ``context`` (the profile the retriever read for this request) always from
        it — no profile read, and never older than what this turn's list was ranked on (a feedback written a turn
        ago shows at once) — and kept for requests that bring none; without one, the kept (u, segment) while
        younger than ``ttl_s``, else read from the profile (``reads`` counts those)."""
        now = time.monotonic()
        if context is None:
            with self._lock:
                entry = self._entries.get(user_id)
                if entry is not None and now - entry[0] <= self.ttl_s:
                    self._entries.move_to_end(user_id)
                    return entry[1], entry[2]
        u, segment = self.vectors.vector(user_id, context)
        with self._lock:
            self.reads += context is None
            self._entries[user_id] = (now, u, segment)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)
        return u, segment

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._entries.pop(user_id, None)


class ReplyPersonalizer:
    def __init__(self, adaptive: AdaptiveQwen2, vectors: UserVectorBuilder, store: AdapterStore,
                 config: PersonalizerConfig | None = None, adapters_dir: Path | None = None):
        """``adapters_dir``: the folder the store's adapters were registered from, re-read every
        ``config.adapter_rescan_s`` (None: the registry stays as given)."""
        if vectors.segments is None:
            raise ValueError("ReplyPersonalizer needs a UserVectorBuilder with its SegmentModel")
        self.adaptive, self.store = adaptive, store
        self.config = config or PersonalizerConfig()
        self.cache = UserVectorCache(vectors, self.config.vector_ttl_s, self.config.max_cached_users)
        self.profile = vectors.profile
        self.num_segments = len(vectors.segments.centroids)
        self.segment_names = self._segment_names()
        self.adapters_dir = adapters_dir
        self._next_rescan = time.monotonic() + self.config.adapter_rescan_s
        self._lock = threading.Lock()  # slot writes and the gate run one batch at a time

    def _segment_names(self) -> list[str]:
        return [segment_adapter_name(s) for s in range(self.num_segments)
                if segment_adapter_name(s) in self.store.registered]

    def rescan_adapters(self) -> tuple[list[str], list[str]]:
        """Re-read the adapters folder now (``AdapterStore.sync_folder``); returns (registered, unregistered)."""
        with self._lock:
            self._next_rescan = time.monotonic() + self.config.adapter_rescan_s
            if self.adapters_dir is None:
                return [], []
            changed = self.store.sync_folder(self.adapters_dir)
            self.segment_names = self._segment_names()
        if any(changed):
            log.info("reply adapters re-read: %d registered, %d unregistered", len(changed[0]), len(changed[1]))
        return changed

    @classmethod
    def load(cls, folder: Path, base: Qwen2, profile, catalog, item_vectors: np.ndarray,
             config: PersonalizerConfig | None = None) -> "ReplyPersonalizer":
        """Plug the folder's layers into ``base`` (in place) and register its adapters (read lazily)."""
        folder = Path(folder)
        config = config or PersonalizerConfig()
        adaptive, vectors = load_layers(folder, base, profile, catalog, item_vectors, config.lora_path,
                                        demographics_per_user=True)
        store = AdapterStore(adaptive.slots, AdapterStoreConfig())
        adapters = folder / ADAPTERS_DIR
        store.sync_folder(adapters)
        return cls(adaptive, vectors, store, config, adapters)

    def user_batch(self, user_ids: Sequence[str | None], user_contexts: Sequence | None = None) -> UserBatch | None:
        """The ``UserBatch`` of one decode batch (rows in request order); None when no row has a user.
        ``user_contexts`` (per row, or None): the profile the retriever read for that request, so ``u`` is derived
        from it instead of a second profile read."""
        if not any(user_ids):
            return None
        contexts = user_contexts or [None] * len(user_ids)
        rows = [self.cache.get(u, c) if u else None for u, c in zip(user_ids, contexts)]
        dim = self.cache.vectors.config.dim
        u = torch.from_numpy(np.stack([r[0] if r is not None else np.zeros(dim, np.float32) for r in rows]))
        has_user = torch.tensor([r is not None for r in rows])
        indices = weights = None
        if self.config.use_lora:
            indices, weights = self._adapters(user_ids, [r[1] if r is not None else None for r in rows], u, has_user)
        return UserBatch(u, has_user, indices, weights, use_norm=self.config.use_norm,
                         use_prefix=self.config.use_prefix)

    def _adapters(self, user_ids, segments, u: torch.Tensor, has_user: torch.Tensor
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(lora_indices [B, K], mix_weights [B, K]): a fresh user adapter alone, else the gate's segment mixture."""
        if self.config.adapter_rescan_s and time.monotonic() >= self._next_rescan:
            self.rescan_adapters()
        now_ts = int(self.profile.latest_timestamp() or 0)
        with self._lock:  # a rescan changes the registry: resolve and activate under one lock
            names = [self.store.resolve(uid, seg, now_ts) if uid else None for uid, seg in zip(user_ids, segments)]
            own = [n if n is not None and not n.startswith("segment/") else None for n in names]
            try:
                return self._rows(user_ids, own, u)
            except (OSError, SafetensorError) as exc:
                # a user adapter a refresh removed (or is rewriting) since the last rescan: its rows get the segment
                # mixture in this batch, and the folder is re-read now (a removed one is no longer served)
                log.warning("a user adapter could not be loaded (%s): its rows get the segment mixture", exc)
                if self.adapters_dir is not None:
                    self.store.sync_folder(self.adapters_dir)
                    self.segment_names = self._segment_names()
                return self._rows(user_ids, [None] * len(own), u)

    def _rows(self, user_ids, own: list[str | None], u: torch.Tensor
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gated = [uid is not None and o is None and bool(self.segment_names) for uid, o in zip(user_ids, own)]
        if not any(own) and not any(gated):
            return None, None
        k = self.adaptive.config.gate_top_k
        user_names = list(dict.fromkeys(n for n in own if n is not None))
        wanted = (self.segment_names if any(gated) else []) + user_names
        slots = dict(zip(wanted, self.store.activate(wanted)))
        indices = torch.full((len(own), k), -1, dtype=torch.long)
        weights = torch.zeros(len(own), k)
        if any(gated):
            expert_slots = torch.tensor([slots[n] for n in self.segment_names])
            gate_indices, gate_weights = self.adaptive.gate(u, expert_slots)  # [B, k]
            rows = torch.tensor(gated)
            indices[rows] = gate_indices[rows].long()
            weights[rows] = gate_weights[rows].detach()
        for row, name in enumerate(own):
            if name is not None:
                indices[row, 0], weights[row, 0] = slots[name], 1.0
        return indices, weights

    def layer_context(self, user_ids: Sequence[str | None], user_contexts: Sequence | None = None
                      ) -> UserLayerContext | None:
        """What the decode loop passes to every layer for this batch (None: the base model)."""
        batch = self.user_batch(user_ids, user_contexts)
        if batch is None:
            return None
        with torch.inference_mode():
            return self.adaptive.context(batch)


__all__ = ["ADAPTERS_DIR", "LAYERS_CONFIG_FILE", "LAYERS_FILE", "PersonalizerConfig", "ReplyPersonalizer",
           "SEGMENTS_FILE", "USER_LAYERS_DIR", "UserVectorCache", "load_layers_config", "save_layers_config"]
