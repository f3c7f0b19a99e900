"""Adapters on disk in PEFT's format, and the two-tier LRU that puts them into the model's slots.

On disk, one folder per adapter, as ``peft.PeftModel.save_pretrained`` writes it (so ``PeftModel.from_pretrained``
loads ours and we load theirs): ``adapter_model.safetensors`` with tensors named
``base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`` (``mlp.{gate,up,down}_proj`` in
the MLP; A [r, d_in], B [d_out, r]) and ``adapter_config.json`` (``peft_type`` LORA, ``r``, ``lora_alpha``,
``target_modules``, ...). Our bookkeeping
(``trained_at``, ``num_events``, ``kind``) rides in the safetensors header metadata, which PEFT ignores.

``AdapterStore`` is the two tiers:

* host: every registered adapter is known by name with its metadata; up to ``max_host`` are kept loaded in host
  memory (LRU), the rest are read from disk on demand (load time recorded);
* device: the model's ``AdapterSlots`` hold up to ``num_slots`` active adapters (LRU); ``activate`` pins the
  adapters of one batch so none of them is evicted by another of the same batch.

``resolve`` is the fallback policy per request: the user's adapter if it is fresh (trained within ``ttl_s`` on at
least ``min_events`` events), else the user's segment adapter, else none (-1: the base model). The policy itself is
:func:`fallback_chain`, a plain function over "what is registered", so the GPU generator
(``model_repository_gpu/generator_trtllm``), whose adapters live in the TensorRT-LLM backend's cache, walks the
same chain when an adapter cannot be served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from recllm.user_layers.lora_adapter import LoRAAdapter, module_block
from recllm.user_layers.multi_lora import AdapterSlots

log = logging.getLogger(__name__)

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
_PREFIX = "base_model.model.model.layers"
_NAME = re.compile(
    r"base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight")


def peft_tensor_name(layer: int, module: str, which: str) -> str:
    return f"{_PREFIX}.{layer}.{module_block(module)}.{module}.lora_{which}.weight"


def peft_adapter_config(adapter: LoRAAdapter, base_model: str = "") -> dict:
    """``adapter_config.json`` with the fields PEFT's ``LoraConfig`` writes (inference mode, no dropout)."""
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model or None,
        "r": adapter.rank, "lora_alpha": adapter.alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": list(adapter.modules), "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "modules_to_save": None,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
        "revision": None,
    }


META_PREFIX = "recllm_meta_"  # an adapter's own metadata (e.g. last_event_ts) in the safetensors header


def save_adapter(adapter: LoRAAdapter, folder: Path | str, base_model: str = "") -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for (layer, module), a in adapter.a.items():
        tensors[peft_tensor_name(layer, module, "A")] = a.detach().contiguous().cpu()
        tensors[peft_tensor_name(layer, module, "B")] = adapter.b[(layer, module)].detach().contiguous().cpu()
    metadata = {"format": "pt", "recllm_name": adapter.name, "recllm_kind": adapter.kind,
                "recllm_trained_at": str(adapter.trained_at), "recllm_num_events": str(adapter.num_events),
                **{META_PREFIX + key: str(value) for key, value in adapter.metadata.items() if key != "folder"}}
    # each file written beside and renamed into place, the config first: a server re-reading the folder
    # (``AdapterStore.sync_folder``, which goes by the weights file) never sees half a file or new weights without
    # their config
    config = peft_adapter_config(adapter, base_model)
    partial = folder / (CONFIG_FILE + ".partial")
    partial.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, folder / CONFIG_FILE)
    partial = folder / (WEIGHTS_FILE + ".partial")
    save_file(tensors, partial, metadata=metadata)
    os.replace(partial, folder / WEIGHTS_FILE)
    return folder


def file_version(path: Path) -> tuple[int, int]:
    """(mtime, inode): a weights file renamed into place is a new inode, even within the clock's resolution."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_ino


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    folder: Path | None
    kind: str
    trained_at: int
    num_events: int


def read_adapter_info(folder: Path | str, name: str | None = None) -> AdapterInfo:
    """The bookkeeping of a saved adapter without reading its tensors (header only)."""
    folder = Path(folder)
    with safe_open(folder / WEIGHTS_FILE, framework="pt") as f:
        meta = f.metadata() or {}
    return AdapterInfo(name or meta.get("recllm_name", folder.name), folder, meta.get("recllm_kind", "user"),
                       int(meta.get("recllm_trained_at", 0)), int(meta.get("recllm_num_events", 0)))


def load_adapter(folder: Path | str, name: str | None = None, dtype: torch.dtype | None = None) -> LoRAAdapter:
    """An adapter folder written by ``save_adapter`` or by PEFT's ``save_pretrained``."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"adapter folder {str(folder)!r} has no {CONFIG_FILE}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_path}: peft_type must be 'LORA', got {config.get('peft_type')!r}")
    if config.get("use_dora") or config.get("use_rslora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{config_path}: DoRA, rsLoRA and per-module rank/alpha patterns are not supported")
    with safe_open(folder / WEIGHTS_FILE, framework="pt") as f:
        tensors = {key: f.get_tensor(key) if dtype is None else f.get_tensor(key).to(dtype) for key in f.keys()}
        saved = {key[len(META_PREFIX):]: value for key, value in (f.metadata() or {}).items()
                 if key.startswith(META_PREFIX)}
    info = read_adapter_info(folder, name)
    return adapter_from_peft_state(tensors, info.name, int(config["r"]), float(config["lora_alpha"]),
                                   trained_at=info.trained_at, num_events=info.num_events, kind=info.kind,
                                   metadata={**saved, "folder": str(folder)})


def adapter_from_peft_state(tensors: dict[str, torch.Tensor], name: str, rank: int, alpha: float,
                            **kwargs) -> LoRAAdapter:
    """Our adapter from PEFT tensor names (``get_peft_model_state_dict`` or a saved file; ``.default`` allowed)."""
    a, b = {}, {}
    for key, tensor in tensors.items():
        match = _NAME.fullmatch(key)
        if match is None:
            raise ValueError(f"adapter {name!r}: unexpected PEFT tensor {key!r}")
        layer, module, which = int(match.group(1)), match.group(2), match.group(3)
        (a if which == "A" else b)[(layer, module)] = tensor.detach().clone()
    return LoRAAdapter(name, rank, alpha, a, b, **kwargs)


@dataclass
class AdapterStoreConfig:
    max_host: int = 64  # adapters kept loaded in host memory
    ttl_s: int = 30 * 86_400  # a user adapter older than this falls back to the segment adapter
    min_events: int = 20  # ... and so does one trained on fewer events

    def __post_init__(self):
        for name in ("max_host", "ttl_s", "min_events"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AdapterStoreConfig.{name} must be a non-negative int, got {value!r}")
        if self.max_host == 0:
            raise ValueError("AdapterStoreConfig.max_host must be > 0, got 0")


def user_adapter_name(user_id: str) -> str:
    return f"user/{user_id}"


def segment_adapter_name(segment: int) -> str:
    return f"segment/{segment}"


def is_fresh(info: AdapterInfo | None, now_ts: int, config: AdapterStoreConfig) -> bool:
    """A registered adapter trained within ``ttl_s`` of ``now_ts`` on at least ``min_events`` events."""
    return info is not None and now_ts - info.trained_at <= config.ttl_s and info.num_events >= config.min_events


def fallback_chain(user_id: str | None, segment: int | None, now_ts: int,
                   info_of: Callable[[str], AdapterInfo | None], config: AdapterStoreConfig) -> list[str | None]:
    """Adapters to try for one request, best first, ending with None (the base model): the user's adapter if
    fresh, then the segment's adapter if registered. ``info_of(name)`` is None for an unregistered name."""
    chain: list[str | None] = []
    if user_id is not None and is_fresh(info_of(user_adapter_name(user_id)), now_ts, config):
        chain.append(user_adapter_name(user_id))
    if segment is not None and info_of(segment_adapter_name(segment)) is not None:
        chain.append(segment_adapter_name(segment))
    return chain + [None]


@dataclass
class StoreStats:
    host_hits: int = 0
    host_misses: int = 0
    slot_hits: int = 0
    slot_misses: int = 0
    disk_load_s: list[float] = field(default_factory=list)  # one per adapter read from disk
    slot_write_s: list[float] = field(default_factory=list)  # one per adapter copied into a slot

    @property
    def slot_hit_rate(self) -> float:
        total = self.slot_hits + self.slot_misses
        return self.slot_hits / total if total else 0.0


class AdapterStore:
    def __init__(self, slots: AdapterSlots, config: AdapterStoreConfig | None = None):
        self.slots, self.config = slots, config or AdapterStoreConfig()
        self.registered: dict[str, AdapterInfo] = {}
        self._host: OrderedDict[str, LoRAAdapter] = OrderedDict()
        self._active: OrderedDict[str, int] = OrderedDict()  # name -> slot, least recently used first
        self._free = list(range(slots.num_slots))[::-1]
        self.stats = StoreStats()
        self._versions: dict[Path, tuple[int, int]] = {}  # folder -> its weights file's version when registered

    # host tier
    def register_folder(self, folder: Path | str, name: str | None = None) -> AdapterInfo:
        folder = Path(folder)
        version = file_version(folder / WEIGHTS_FILE)
        info = read_adapter_info(folder, name)
        self._replace(info)
        self._versions[folder] = version
        return info

    def unregister(self, name: str) -> None:
        """Stop serving ``name``: gone from the registry, host memory and its slot."""
        info = self.registered.pop(name, None)
        self._evict(name)
        if info is not None and info.folder is not None:
            self._versions.pop(info.folder, None)

    def sync_folder(self, root: Path | str) -> tuple[list[str], list[str]]:
        """Bring the registry in line with the adapter folders under ``root`` (a periodic job rewrote some): a
        folder that is new or whose weights changed since it was registered is registered again (its old version
        leaves host memory and its slot), an adapter whose folder under ``root`` is gone is unregistered. A folder
        still being written is left for the next sync. Returns (registered, unregistered) adapter names."""
        root = Path(root)
        present: dict[Path, tuple[int, int]] = {}
        for folder in (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []):
            with contextlib.suppress(FileNotFoundError):
                present[folder] = file_version(folder / WEIGHTS_FILE)
        registered = []
        for folder, version in present.items():
            if self._versions.get(folder) != version:
                try:
                    registered.append(self.register_folder(folder).name)
                except (OSError, SafetensorError) as exc:  # mid-write: the next sync reads it
                    log.warning("adapter folder %s not readable now (%s); tried again at the next sync", folder, exc)
                    continue
        gone = [name for name, info in self.registered.items()
                if info.folder is not None and info.folder.parent == root and info.folder not in present]
        for name in gone:
            self.unregister(name)
        return registered, gone

    def register(self, adapter: LoRAAdapter) -> AdapterInfo:
        """An in-memory adapter (just trained): registered and kept in the host tier."""
        info = AdapterInfo(adapter.name, None, adapter.kind, adapter.trained_at, adapter.num_events)
        self._replace(info)
        self._host[adapter.name] = adapter
        self._trim_host()
        return info

    def _replace(self, info: AdapterInfo) -> None:
        self._evict(info.name)  # a newer version: the host's and the slot's copies are stale
        self.registered[info.name] = info

    def _evict(self, name: str) -> None:
        """``name`` leaves host memory and its slot (the registry keeps it)."""
        self._host.pop(name, None)
        if name in self._active:
            self._free.append(self._active.pop(name))

    def host_get(self, name: str) -> LoRAAdapter:
        if name in self._host:
            self.stats.host_hits += 1
            self._host.move_to_end(name)
            return self._host[name]
        info = self.registered.get(name)
        if info is None:
            raise KeyError(f"adapter {name!r} is not registered")
        if info.folder is None:
            raise KeyError(f"adapter {name!r} was evicted from host memory and has no folder to reload from")
        self.stats.host_misses += 1
        started = time.perf_counter()
        adapter = load_adapter(info.folder, name, dtype=self.slots_dtype)
        self.stats.disk_load_s.append(time.perf_counter() - started)
        self._host[name] = adapter
        self._trim_host()
        return adapter

    def _trim_host(self) -> None:
        # only adapters that can be reloaded from disk are evicted; in-memory-only ones stay until saved
        reloadable = [n for n in self._host if self.registered[n].folder is not None]
        for name in reloadable[:max(0, len(self._host) - self.config.max_host)]:
            del self._host[name]

    @property
    def slots_dtype(self) -> torch.dtype:
        return next(iter(self.slots.wrappers.values())).lora_a.dtype

    # device tier
    def activate(self, names: Sequence[str]) -> list[int]:
        """Slot of each name, writing missing adapters into free or least-recently-used slots (not ones this
        call needs)."""
        wanted = list(dict.fromkeys(names))
        if len(wanted) > self.slots.num_slots:
            raise ValueError(f"a batch needs {len(wanted)} distinct adapters but there are {self.slots.num_slots} "
                             "slots")
        for name in wanted:
            if name in self._active:
                self.stats.slot_hits += 1
                self._active.move_to_end(name)
        for name in wanted:
            if name in self._active:
                continue
            self.stats.slot_misses += 1
            adapter = self.host_get(name)
            slot = self._take_slot(pinned=set(wanted))
            started = time.perf_counter()
            self.slots.write(slot, adapter)
            self.stats.slot_write_s.append(time.perf_counter() - started)
            self._active[name] = slot
        return [self._active[name] for name in names]

    def _take_slot(self, pinned: set[str]) -> int:
        if self._free:
            return self._free.pop()
        for name in self._active:  # least recently used first
            if name not in pinned:
                return self._active.pop(name)
        raise RuntimeError("no slot can be evicted")  # unreachable: len(pinned) <= num_slots

    def active(self) -> dict[str, int]:
        return dict(self._active)

    # policy
    def is_fresh(self, name: str, now_ts: int) -> bool:
        return is_fresh(self.registered.get(name), now_ts, self.config)

    def resolve(self, user_id: str | None, segment: int | None, now_ts: int) -> str | None:
        """User adapter if fresh, else the segment's adapter, else None (base model)."""
        return fallback_chain(user_id, segment, now_ts, self.registered.get, self.config)[0]

    def batch_indices(self, user_ids: Sequence[str | None], segments: Sequence[int | None],
                      now_ts: int) -> torch.Tensor:
        """``lora_indices`` [B, 1] for a batch (-1 where the policy says base model)."""
        names = [self.resolve(u, s, now_ts) for u, s in zip(user_ids, segments)]
        present = [n for n in names if n is not None]
        slots = dict(zip(present, self.activate(present))) if present else {}
        return torch.tensor([[slots[n] if n is not None else -1] for n in names], dtype=torch.int32)


__all__ = ["AdapterInfo", "AdapterStore", "AdapterStoreConfig", "CONFIG_FILE", "StoreStats", "WEIGHTS_FILE",
           "adapter_from_peft_state", "fallback_chain", "is_fresh", "load_adapter", "peft_adapter_config", "peft_tensor_name", "read_adapter_info",
           "save_adapter", "segment_adapter_name", "user_adapter_name"]
