"""Synthetic population at scale: up to millions of users over the ~100K-item expanded catalog, streamed to disk.

``synthetic.ecosystem`` builds the small "test"/"default" worlds in memory; this module produces the same kind of
users and histories (``synthetic.behaviour``: latent traits acting across services, brand loyalty, repeat cycles,
weekday and time-of-day patterns, cold-start users) for 100K–1M users in bounded memory:

- every user is a pure function of (seed, user index): profile, store, activity window and history come from
  per-user seeded random streams, so ``iter_population`` yields identical users whatever the chunk size;
- users are produced chunk by chunk and each chunk is written (``write_population``: the profile SQLite through
  ``ProfileStore.add_users/add_events``, one transaction each) and dropped before the next one is made; only
  per-item counters (bounded by the catalog) live across chunks;
- each user shops in one "store" of their region (a dark store / delivery zone) carrying a seeded
  ``store_assortment_fraction`` of the catalog — realistic for quick commerce, and it keeps the per-pick shelf
  scans of ``synthetic.behaviour`` short on a 100K-item catalog;
- activity is heavy-tailed: a user's active window is log-normal in days (median ``median_active_days``) and ends
  a few days before the end of the history, so most users have tens of events and a few have hundreds;
- each user's latest interactions — the last order's session (events from ``holdout_lookback_s`` before the last
  purchase on) and everything after it — are held out for evaluation (``held_out.jsonl``), never stored in the
  profile. Users with a single order keep it (there is nothing earlier to learn from).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from recllm.catalog.product_catalog import Catalog, Item
from recllm.profile.sqlite_store import SCHEMA, ProfileStore
from recllm.synthetic.behaviour import DAY, REGIONS, ShelfIndex, make_user, simulate_history
from recllm.synthetic.catalog_scale import ScaleCatalogConfig, build_scale_catalog
from recllm.profile.events import BEHAVIOUR_KINDS, Event
from recllm.synthetic.records import UserProfileSeed

logger = logging.getLogger(__name__)

# Same-second events of one order sort in funnel order (as in ``synthetic.ecosystem``).
_KIND_ORDER = {kind: order for order, kind in enumerate(("search", "view", "add_to_cart", "purchase", "rating",
                                                          "return"))}
if set(_KIND_ORDER) != set(BEHAVIOUR_KINDS):
    raise ImportError(f"synthetic_scale: kind order {sorted(_KIND_ORDER)} misses {BEHAVIOUR_KINDS}")

PROFILE_DB = "profile.sqlite"
CATALOG_FILE = "catalog.jsonl"
HELD_OUT_FILE = "held_out.jsonl"
MANIFEST_FILE = "manifest.json"
BULK_CACHE_KIB = 64 * 1024   # SQLite page cache while loading: index inserts stay in memory, a fixed cost
# Built once after the load: events arrive user by user, so inserting into a by-time index would touch random pages.
DEFERRED_INDEXES = ("events_by_time",)


@dataclass(frozen=True)
class PopulationConfig:
    """One synthetic population: catalog size, users, activity, stores and the hold-out rule."""

    seed: int = 7
    n_users: int = 100_000
    n_items: int = 100_000
    chunk_users: int = 2_000
    cold_start_fraction: float = 0.05        # users with no events at all
    median_active_days: float = 3.5          # log-normal active window: ~30 events for the median user
    active_days_sigma: float = 0.8
    max_active_days: int = 60
    mean_last_seen_lag_days: float = 5.0     # the window ends this long (exponential) before the history's end
    max_last_seen_lag_days: int = 30
    history_days: int = 120
    start_timestamp: int = 1_760_000_000     # fixed epoch seconds so output is deterministic
    stores_per_region: int = 8
    store_assortment_fraction: float = 0.05  # share of the catalog one store carries (~5K SKUs of 100K)
    min_store_shelf: int = 6                 # items per (service, category) a store carries at least
    holdout_lookback_s: int = 1800           # the last order's session starts this long before its purchase

    def __post_init__(self) -> None:
        for name, minimum in (("seed", None), ("n_users", 1), ("n_items", 300), ("chunk_users", 1),
                              ("max_active_days", 2), ("max_last_seen_lag_days", 0), ("history_days", 3),
                              ("start_timestamp", 0), ("stores_per_region", 1), ("min_store_shelf", 1),
                              ("holdout_lookback_s", 0)):
            _check_int(name, getattr(self, name), minimum)
        for name, low, high in (("cold_start_fraction", 0.0, 1.0), ("store_assortment_fraction", 0.0, 1.0),
                                ("median_active_days", 1.0, None), ("active_days_sigma", 0.0, None),
                                ("mean_last_seen_lag_days", 0.0, None)):
            _check_number(name, getattr(self, name), low, high)
        needed = self.max_active_days + self.max_last_seen_lag_days
        if self.history_days < needed:
            raise ValueError(f"PopulationConfig.history_days must be >= max_active_days + max_last_seen_lag_days "
                             f"= {needed}, got {self.history_days!r}")

    @property
    def catalog_config(self) -> ScaleCatalogConfig:
        return ScaleCatalogConfig(seed=self.seed, n_items=self.n_items)

    @property
    def history_end(self) -> int:
        return self.start_timestamp + self.history_days * DAY


def _check_int(name: str, value: object, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"PopulationConfig.{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"PopulationConfig.{name} must be >= {minimum}, got {value!r}")


def _check_number(name: str, value: object, low: float, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"PopulationConfig.{name} must be a number {bounds}, got {value!r}")


@dataclass(frozen=True)
class _StoreItems:
    """The part of the catalog one store carries; ``ShelfIndex`` only reads ``items``."""

    items: list[Item]


class StoreAssortments:
    """``stores_per_region`` stores per region, each a seeded subset of the catalog with a ``ShelfIndex``.

    Every (service, category) shelf of a store holds at least ``min_store_shelf`` items (or the whole shelf when
    the catalog has fewer), so every category a user shops for exists in their store.
    """

    def __init__(self, catalog: Catalog, config: PopulationConfig):
        self.config = config
        full_shelves: dict[tuple[str, str], list[Item]] = {}
        for item in catalog.items:
            full_shelves.setdefault((item.service, item.category_id), []).append(item)
        self.shelves: dict[str, ShelfIndex] = {}
        for region_number, region in enumerate(sorted(REGIONS)):
            for store_number in range(config.stores_per_region):
                store_id = f"{region}-{store_number}"
                rng = np.random.default_rng([config.seed, region_number, store_number])
                carried = rng.random(len(catalog.items)) < config.store_assortment_fraction   # [N] bool
                items = self._store_items(catalog, carried, full_shelves, store_number)
                self.shelves[store_id] = ShelfIndex(_StoreItems(items))  # type: ignore[arg-type]

    def _store_items(self, catalog: Catalog, carried: np.ndarray, full_shelves: dict[tuple[str, str], list[Item]],
                     store_number: int) -> list[Item]:
        chosen = set(np.flatnonzero(carried).tolist())
        for shelf in full_shelves.values():
            minimum = min(self.config.min_store_shelf, len(shelf))
            present = sum(1 for item in shelf if item.item_id in chosen)
            offset = (store_number * 7) % len(shelf)
            for item in (shelf[offset:] + shelf[:offset]):
                if present >= minimum:
                    break
                if item.item_id not in chosen:
                    chosen.add(item.item_id)
                    present += 1
        return [catalog.items[item_id] for item_id in sorted(chosen)]

    def store_of(self, index: int, region: str) -> str:
        number = random.Random(f"{self.config.seed}:store:{index}").randrange(self.config.stores_per_region)
        return f"{region}-{number}"


@dataclass(frozen=True)
class SyntheticUser:
    """One user: demographics + latent traits, their store, the stored history and the held-out latest events."""

    profile: UserProfileSeed
    store_id: str
    cold: bool
    history: list[Event]     # time-sorted; what goes into the profile store
    held_out: list[Event]    # time-sorted; every one is later than every history event

    @property
    def cutoff_ts(self) -> int | None:
        return self.held_out[0].timestamp if self.held_out else None


@dataclass
class PopulationChunk:
    """Consecutive users ``first_index .. first_index + len(users) - 1``."""

    first_index: int
    users: list[SyntheticUser] = field(default_factory=list)

    @property
    def profiles(self) -> list[UserProfileSeed]:
        return [user.profile for user in self.users]

    @property
    def history(self) -> list[Event]:
        return [event for user in self.users for event in user.history]


def event_sort_key(event: Event) -> tuple:
    return (event.timestamp, event.service, _KIND_ORDER[event.kind], event.item_id)


def split_latest(events: list[Event], lookback_s: int) -> tuple[list[Event], list[Event]]:
    """(history, held_out) of one user's time-sorted events: the last order's session and everything after it.

    The session starts ``lookback_s`` before the last purchase (its searches and views come before it). Nothing is
    held out when no purchase would remain in the history.
    """
    purchases = [event for event in events if event.kind == "purchase"]
    if not purchases:
        return events, []
    cutoff = purchases[-1].timestamp - lookback_s
    history = [event for event in events if event.timestamp < cutoff]
    if not any(event.kind == "purchase" for event in history):
        return events, []
    return history, events[len(history):]


def _active_window(index: int, config: PopulationConfig) -> tuple[int, int]:
    """(first second, days) of a user's activity: log-normal length, ending a little before the history's end."""
    rng = random.Random(f"{config.seed}:activity:{index}")
    lag = min(config.max_last_seen_lag_days, int(rng.expovariate(1.0 / config.mean_last_seen_lag_days))
              if config.mean_last_seen_lag_days > 0 else 0)
    length = rng.lognormvariate(math.log(config.median_active_days), config.active_days_sigma)
    days = max(2, min(config.max_active_days, int(round(length))))
    end_day = config.history_days - lag
    return config.start_timestamp + (end_day - days) * DAY, days


def is_cold(index: int, config: PopulationConfig) -> bool:
    return random.Random(f"{config.seed}:cold:{index}").random() < config.cold_start_fraction


def generate_user(index: int, config: PopulationConfig, stores: StoreAssortments) -> SyntheticUser:
    """User ``index``: a pure function of (config, index), independent of every other user."""
    profile = make_user(index, config.seed)
    store_id = stores.store_of(index, profile.region)
    if is_cold(index, config):
        return SyntheticUser(profile, store_id, True, [], [])
    start, days = _active_window(index, config)
    events = simulate_history(profile, stores.shelves[store_id], config.seed, start, days)
    events.sort(key=event_sort_key)
    history, held_out = split_latest(events, config.holdout_lookback_s)
    return SyntheticUser(profile, store_id, False, history, held_out)


def iter_population(config: PopulationConfig, catalog: Catalog | None = None, stores: StoreAssortments | None = None,
                    first: int = 0, stop: int | None = None) -> Iterator[PopulationChunk]:
    """Users ``first .. stop - 1`` (default: all) in chunks of ``config.chunk_users``; lazily, one chunk at a time."""
    stop = config.n_users if stop is None else min(stop, config.n_users)
    if stores is None:
        stores = StoreAssortments(catalog if catalog is not None else build_scale_catalog(config.catalog_config),
                                  config)
    for chunk_start in range(first, stop, config.chunk_users):
        chunk_stop = min(stop, chunk_start + config.chunk_users)
        yield PopulationChunk(chunk_start, [generate_user(index, config, stores)
                                            for index in range(chunk_start, chunk_stop)])


def event_record(event: Event) -> dict:
    return {"service": event.service, "item_id": event.item_id, "kind": event.kind, "timestamp": event.timestamp,
            "basket_id": event.basket_id, "price": event.price, "quantity": event.quantity, "region": event.region,
            "device": event.device}


def held_out_record(user: SyntheticUser) -> dict:
    """One line of ``held_out.jsonl``: the user's latest interactions and the items they bought then."""
    purchased = sorted({event.item_id for event in user.held_out if event.kind == "purchase"})
    return {"user_id": user.profile.user_id, "cutoff_ts": user.cutoff_ts, "purchased_item_ids": purchased,
            "events": [event_record(event) for event in user.held_out]}


@dataclass
class PopulationSummary:
    users: int = 0
    cold_users: int = 0
    history_events: int = 0
    held_out_users: int = 0
    held_out_events: int = 0
    catalog_items: int = 0
    catalog_seconds: float = 0.0
    generate_seconds: float = 0.0   # users generated and written, all chunks
    write_seconds: float = 0.0      # of which: SQLite inserts and the held-out file

    def add(self, chunk: PopulationChunk) -> None:
        for user in chunk.users:
            self.users += 1
            self.cold_users += user.cold
            self.history_events += len(user.history)
            self.held_out_users += bool(user.held_out)
            self.held_out_events += len(user.held_out)


def write_population(config: PopulationConfig, output_dir: Path,
                     on_chunk: Callable[[PopulationChunk], None] | None = None) -> PopulationSummary:
    """Write catalog, profile database, held-out interactions and a manifest into ``output_dir`` (must be new/empty).

    Memory stays bounded by the catalog and one chunk: each chunk is written in its own transactions and dropped.
    ``on_chunk`` (e.g. a progress bar) is called after each chunk is stored.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"output directory {output_dir} is not empty; choose a new one")
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = PopulationSummary()
    started = time.perf_counter()
    catalog = build_scale_catalog(config.catalog_config)
    catalog.save_jsonl(output_dir / CATALOG_FILE)
    stores = StoreAssortments(catalog, config)
    summary.catalog_items, summary.catalog_seconds = len(catalog), time.perf_counter() - started
    store = ProfileStore(output_dir / PROFILE_DB)
    connection = store.connection()
    connection.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    for index_name in DEFERRED_INDEXES:
        connection.execute(f"DROP INDEX IF EXISTS {index_name}")
    popularity: Counter[int] = Counter()
    started = time.perf_counter()
    with open(output_dir / HELD_OUT_FILE, "w", encoding="utf-8") as held_out_file:
        for chunk in iter_population(config, stores=stores):
            writing = time.perf_counter()
            store.add_users(chunk.profiles)
            history = chunk.history
            store.add_events(history)
            held_out_file.writelines(json.dumps(held_out_record(user), ensure_ascii=False) + "\n"
                                     for user in chunk.users if user.held_out)
            summary.write_seconds += time.perf_counter() - writing
            popularity.update(event.item_id for event in history if event.kind == "purchase")
            summary.add(chunk)
            if on_chunk is not None:
                on_chunk(chunk)
    store.set_item_popularity(dict(popularity))
    connection.executescript(SCHEMA)   # recreates the deferred indexes (one sort each), so the schema is complete
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    summary.generate_seconds = time.perf_counter() - started
    manifest = {"config": asdict(config), "summary": asdict(summary),
                "files": {"profile": PROFILE_DB, "catalog": CATALOG_FILE, "held_out": HELD_OUT_FILE}}
    (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %d users (%d cold), %d history events, %d held-out events to %s in %.1f s",
                summary.users, summary.cold_users, summary.history_events, summary.held_out_events, output_dir,
                summary.generate_seconds)
    return summary
