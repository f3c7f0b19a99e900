"""Hierarchical interaction history (session → day → long term) and temporal features, from the event log.

The profile keeps the raw event log (``profile.records.EventRow``); this module condenses one user's log into three
levels so the rest of the system can ask "what did this user do in that visit / on that day / overall" without
replaying events:

* a **session** is a run of the user's events (any service) whose consecutive gaps are below
  ``HistoryConfig.session_gap_minutes`` (30 min by default);
* a **day** is a local calendar day and holds the sessions that *started* on it (a session crossing midnight
  belongs to the day it began, so every session has exactly one day);
* the **long-term** summary covers the whole log.

Every level carries the same ``HistorySummary``: time span, events per service and per kind, purchases per
category (top ``top_categories``), distinct items, purchased quantity, distinct baskets and spend.

Temporal features are per-service histograms of the user's events over the 24 hours of the day and the 7 weekdays
(Monday = 0). Timestamps are unix seconds; local time is **Moscow, UTC+3, no daylight saving** (Russia abolished
DST in 2014, and all three services are Moscow-centred), so local time is ``ts + 3 h`` everywhere — a fixed offset
keeps bucketing deterministic and independent of the machine's timezone database. ``HistoryConfig.utc_offset_hours``
changes it for deployments elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recllm.catalog.product_catalog import SERVICES, Catalog
from recllm.profile.user_signals import DAY_S, PURCHASE_KINDS
from recllm.config.field_checks import require_above, require_in_interval

HOUR_S = 3_600
MOSCOW_UTC_OFFSET_HOURS = 3.0
LEVELS = ("session", "day", "long_term")
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass
class HistoryConfig:
    """How events are grouped into sessions and days."""

    session_gap_minutes: float = 30.0
    utc_offset_hours: float = MOSCOW_UTC_OFFSET_HOURS
    top_categories: int = 5

    def __post_init__(self) -> None:
        require_above(self, "session_gap_minutes", 0)
        require_in_interval(self, "utc_offset_hours", "[-12, 14]")
        require_above(self, "top_categories", 0)

    @property
    def offset_s(self) -> int:
        return int(round(self.utc_offset_hours * HOUR_S))

    @property
    def session_gap_s(self) -> float:
        return self.session_gap_minutes * 60.0


def local_day_start(ts: int, config: HistoryConfig) -> int:
    """Unix time of the local midnight that starts the day containing ``ts``."""
    return (ts + config.offset_s) // DAY_S * DAY_S - config.offset_s


def local_hour(ts: int, config: HistoryConfig) -> int:
    return (ts + config.offset_s) % DAY_S // HOUR_S


def local_weekday(ts: int, config: HistoryConfig) -> int:
    """Monday = 0 … Sunday = 6, in local time."""
    return ((ts + config.offset_s) // DAY_S + EPOCH_WEEKDAY) % 7


@dataclass(frozen=True)
class HistorySummary:
    """What happened in one span of a user's history (a session, a day or the whole log)."""

    level: str  # one of LEVELS
    start_ts: int  # first event (for a day: its local midnight)
    end_ts: int  # last event
    num_events: int
    events_by_service: dict[str, int]
    events_by_kind: dict[str, int]
    top_categories: list[tuple[str, int]]  # (category_id, purchases), most purchased first
    distinct_items: int
    purchases: int
    purchased_quantity: int
    baskets: int  # distinct basket ids among purchases
    spend: float  # sum of price × quantity over purchases

    def to_json(self) -> str:
        # vars(), not dataclasses.asdict: asdict deep-copies every field and was half of a refresh's time.
        return json.dumps(vars(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HistorySummary":
        data = json.loads(text)
        data["top_categories"] = [tuple(pair) for pair in data["top_categories"]]
        return cls(**data)


@dataclass
class DayHistory:
    summary: HistorySummary
    sessions: list[HistorySummary] = field(default_factory=list)


@dataclass
class UserHistory:
    user_id: str
    long_term: HistorySummary | None  # None for a user without events
    days: list[DayHistory] = field(default_factory=list)

    def summaries(self) -> list[HistorySummary]:
        """Every level's summaries, flat: sessions, then days, then the long-term one."""
        flat = [s for day in self.days for s in day.sessions] + [day.summary for day in self.days]
        return flat + ([self.long_term] if self.long_term else [])


def summarize(level: str, events: Sequence, catalog: Catalog, config: HistoryConfig,
              start_ts: int | None = None) -> HistorySummary:
    """One summary over ``events`` (time-ordered, non-empty)."""
    if level not in LEVELS:
        raise ValueError(f"summary level must be one of {LEVELS}, got {level!r}")
    if not events:
        raise ValueError("summarize needs at least one event")
    purchases = [e for e in events if e.kind in PURCHASE_KINDS]
    categories = Counter(catalog.get(e.item_id).category_id for e in purchases)
    return HistorySummary(
        level=level,
        start_ts=int(events[0].timestamp if start_ts is None else start_ts),
        end_ts=int(events[-1].timestamp),
        num_events=len(events),
        events_by_service=dict(sorted(Counter(e.service for e in events).items())),
        events_by_kind=dict(sorted(Counter(e.kind for e in events).items())),
        top_categories=sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[: config.top_categories],
        distinct_items=len({e.item_id for e in events}),
        purchases=len(purchases),
        purchased_quantity=int(sum(e.quantity for e in purchases)),
        baskets=len({e.basket_id for e in purchases if e.basket_id}),
        spend=round(float(sum(e.price * e.quantity for e in purchases)), 2),
    )


def split_sessions(events: Sequence, config: HistoryConfig) -> list[list]:
    """Runs of time-ordered events whose consecutive gaps are < the session gap."""
    sessions: list[list] = []
    for event in events:
        if sessions and event.timestamp - sessions[-1][-1].timestamp < config.session_gap_s:
            sessions[-1].append(event)
        else:
            sessions.append([event])
    return sessions


def build_history(user_id: str, events: Sequence, catalog: Catalog, config: HistoryConfig | None = None
                  ) -> UserHistory:
    """The user's session → day → long-term history (events in any order; they are sorted by time)."""
    config = config or HistoryConfig()
    events = sorted(events, key=lambda e: e.timestamp)
    if not events:
        return UserHistory(user_id, None)
    days: list[DayHistory] = []
    day_events: list = []
    day_sessions: list[list] = []
    for session in split_sessions(events, config):
        day = local_day_start(session[0].timestamp, config)
        if day_sessions and local_day_start(day_sessions[-1][0].timestamp, config) != day:
            days.append(day_history(day_sessions, day_events, catalog, config))
            day_events, day_sessions = [], []
        day_sessions.append(session)
        day_events.extend(session)
    days.append(day_history(day_sessions, day_events, catalog, config))
    return UserHistory(user_id, summarize("long_term", events, catalog, config), days)


def day_history(sessions: list[list], events: list, catalog: Catalog, config: HistoryConfig) -> DayHistory:
    start = local_day_start(sessions[0][0].timestamp, config)
    return DayHistory(summarize("day", events, catalog, config, start_ts=start),
                      [summarize("session", s, catalog, config) for s in sessions])


@dataclass
class TemporalHistograms:
    """Per-service event counts by local hour of day ([24]) and weekday ([7], Monday = 0)."""

    hours: dict[str, np.ndarray] = field(default_factory=dict)  # service -> [24] int64
    weekdays: dict[str, np.ndarray] = field(default_factory=dict)  # service -> [7] int64

    def hour_share(self, service: str) -> np.ndarray:
        """[24] fraction of the service's events per hour (zeros when the user never used the service)."""
        counts = self.hours.get(service, np.zeros(24, np.int64))
        return counts / max(int(counts.sum()), 1)

    def weekday_share(self, service: str) -> np.ndarray:
        counts = self.weekdays.get(service, np.zeros(7, np.int64))
        return counts / max(int(counts.sum()), 1)


def temporal_histograms(events: Sequence, config: HistoryConfig | None = None) -> TemporalHistograms:
    config = config or HistoryConfig()
    unknown = sorted({e.service for e in events} - set(SERVICES))
    if unknown:
        raise ValueError(f"event.service must be one of {SERVICES}, got {unknown[0]!r}")
    histograms = TemporalHistograms()
    services = np.array([e.service for e in events])
    local = np.array([e.timestamp for e in events], dtype=np.int64) + config.offset_s  # [E] local seconds
    hours = local % DAY_S // HOUR_S
    weekdays = (local // DAY_S + EPOCH_WEEKDAY) % 7
    for service in SERVICES:
        mask = services == service
        if mask.any():
            histograms.hours[service] = np.bincount(hours[mask], minlength=24).astype(np.int64)
            histograms.weekdays[service] = np.bincount(weekdays[mask], minlength=7).astype(np.int64)
    return histograms


def history_rows(history: UserHistory) -> list[tuple[str, int, int, str]]:
    """(level, start_ts, end_ts, summary JSON) rows for ``ProfileStore.replace_history``."""
    return [(s.level, s.start_ts, s.end_ts, s.to_json()) for s in history.summaries()]


def histogram_rows(histograms: TemporalHistograms) -> list[tuple[str, list[int], list[int]]]:
    """(service, hour counts, weekday counts) rows for ``ProfileStore.replace_temporal_histograms``."""
    return [(service, histograms.hours[service].tolist(), histograms.weekdays[service].tolist())
            for service in sorted(histograms.hours)]


def histograms_from_rows(rows: Sequence[tuple[str, list[int], list[int]]]) -> TemporalHistograms:
    return TemporalHistograms(
        hours={service: np.asarray(hours, dtype=np.int64) for service, hours, _ in rows},
        weekdays={service: np.asarray(days, dtype=np.int64) for service, _, days in rows},
    )
