"""Deterministic synthetic ecosystem: three service catalogs, users shared across them, their histories and queries.

This is the data every other component is built and evaluated on (``builders`` trains the encoder, reranker and
generator on it; tests and the demo replay its journeys). ``generate_ecosystem(SyntheticConfig.from_name("test"))``
is the tiny version for unit tests. The pieces live in role-named modules:

- ``vocabulary`` / ``assortment`` — category tree, product names, the three catalogs;
- ``behaviour`` — users and their cross-service histories (``recllm.profile.events.Event`` records);
- ``intents`` — what users ask for and which items satisfy it (``INTENTS``, ``relevant_items``);
- ``queries`` — queries with personalized targets;
- ``records`` — the ``UserProfileSeed`` / ``QueryExample`` records.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, fields, replace

from recllm.catalog.product_catalog import Catalog
from recllm.synthetic.assortment import build_synthetic_catalog
from recllm.profile.events import FEEDBACK_STYLE_KINDS
from recllm.synthetic.behaviour import DAY, ShelfIndex, make_user, simulate_history, style_reaction
from recllm.synthetic.queries import HistorySummary, QueryWriter
from recllm.profile.events import Event
from recllm.synthetic.records import QueryExample, UserProfileSeed

logger = logging.getLogger(__name__)

__all__ = ["SyntheticConfig", "Ecosystem", "generate_ecosystem"]

_EVENT_KIND_ORDER = {"search": 0, "view": 1, "add_to_cart": 2, "purchase": 3, "rating": 4, "return": 5,
                     **{kind: 6 for kind in FEEDBACK_STYLE_KINDS.values()}}


@dataclass
class SyntheticConfig:
    seed: int = 7
    n_users: int = 300
    samokat_items: int = 300
    megamarket_items: int = 400
    kuper_items: int = 400
    history_days: int = 120
    cold_start_fraction: float = 0.05    # users with no events at all
    queries_per_user: int = 6
    start_timestamp: int = 1_760_000_000  # fixed epoch seconds so output is deterministic

    def __post_init__(self) -> None:
        self._check_int("n_users", minimum=1)
        for name in ("samokat_items", "megamarket_items", "kuper_items"):
            self._check_int(name, minimum=30)   # enough for at least one item per leaf category
        self._check_int("history_days", minimum=14)
        self._check_int("queries_per_user", minimum=0)
        self._check_int("start_timestamp", minimum=0)
        self._check_int("seed", minimum=None)
        fraction = self.cold_start_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"SyntheticConfig.cold_start_fraction must be a number in [0, 1], got {fraction!r}")

    def _check_int(self, name: str, minimum: int | None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"SyntheticConfig.{name} must be an int, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"SyntheticConfig.{name} must be >= {minimum}, got {value!r}")

    @property
    def items_per_service(self) -> dict[str, int]:
        return {"samokat": self.samokat_items, "megamarket": self.megamarket_items, "kuper": self.kuper_items}

    @property
    def history_end(self) -> int:
        """First second after the history; every query is later than this."""
        return self.start_timestamp + self.history_days * DAY

    @classmethod
    def from_name(cls, name: str, **overrides) -> SyntheticConfig:
        """Named preset ("test": tiny, < 1 s; "default": the full data set, < 15 s), optionally with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown SyntheticConfig preset {name!r}; expected one of {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown SyntheticConfig field(s) {unknown} in overrides")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, SyntheticConfig] = {
    "test": SyntheticConfig(n_users=40, samokat_items=60, megamarket_items=80, kuper_items=80, history_days=45,
                            cold_start_fraction=0.1, queries_per_user=4),
    "default": SyntheticConfig(),
}


@dataclass
class Ecosystem:
    config: SyntheticConfig
    catalog: Catalog
    users: list[UserProfileSeed]
    events: list[Event]              # sorted by timestamp; history only (before the queries)
    queries: list[QueryExample]      # sorted by (user_id, timestamp)
    _events_by_user: dict[str, list[Event]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._events_by_user = {user.user_id: [] for user in self.users}
        for event in self.events:
            self._events_by_user.setdefault(event.user_id, []).append(event)

    def events_of(self, user_id: str) -> list[Event]:
        """This user's events in time order; empty for cold-start users, KeyError for unknown users."""
        if user_id not in self._events_by_user:
            raise KeyError(f"unknown user_id {user_id!r}")
        return list(self._events_by_user[user_id])

    def user(self, user_id: str) -> UserProfileSeed:
        for user in self.users:
            if user.user_id == user_id:
                return user
        raise KeyError(f"unknown user_id {user_id!r}")


def _event_sort_key(event: Event) -> tuple:
    return (event.timestamp, event.user_id, event.service, _EVENT_KIND_ORDER[event.kind], event.item_id)


def generate_ecosystem(config: SyntheticConfig) -> Ecosystem:
    """Build catalogs, users, histories and queries; the same config always gives the same ecosystem."""
    started = time.perf_counter()
    catalog = build_synthetic_catalog(config.seed, config.samokat_items, config.megamarket_items, config.kuper_items)
    users = [make_user(index, config.seed) for index in range(config.n_users)]
    cold_count = round(config.n_users * config.cold_start_fraction)
    cold_ids = {user.user_id for user in random.Random(f"{config.seed}:cold").sample(users, cold_count)}
    shelves = ShelfIndex(catalog)
    writer = QueryWriter(catalog, config.seed)
    events: list[Event] = []
    queries: list[QueryExample] = []
    for user in users:
        history = [] if user.user_id in cold_ids else simulate_history(
            user, shelves, config.seed, config.start_timestamp, config.history_days)
        history += style_reaction(user, [e for e in history if e.kind == "purchase"], config.seed,
                                  config.history_end)
        history.sort(key=_event_sort_key)
        events.extend(history)
        summary = HistorySummary.from_events(history, catalog)
        queries.extend(writer.user_queries(user, summary, config.queries_per_user, config.history_end))
    events.sort(key=_event_sort_key)
    queries.sort(key=lambda query: (query.user_id, query.timestamp))
    logger.info("generated ecosystem: %d users (%d cold), %d items, %d events, %d queries in %.2f s",
                len(users), cold_count, len(catalog), len(events), len(queries), time.perf_counter() - started)
    return Ecosystem(config, catalog, users, events, queries)
