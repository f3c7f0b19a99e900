"""What the user told the assistant, kept in the unified profile: rejected items, prices found too high, diets.

Inside a session the dialogue state already acts on «не то», «подешевле», «без сахара»; so that the next session
knows too, the chat engine writes each reaction as an event of its own kind (``events.FEEDBACK_KINDS``) through
``StoreFeedbackSink``, the same validation (``event_schema``) and the same idempotent store write as the profile
service's ingest: an event id derived from the session, the turn, the kind and the item, so a retried turn writes
nothing twice. ``read_user_context`` summarizes the user's feedback events per request into ``FeedbackSignals``,
and the ranking reads them (``recllm.rag.reranker.feedback_adjustment``).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from recllm.catalog.product_catalog import Catalog
from recllm.profile.event_schema import EventValidationConfig, write_validated
from recllm.profile.events import (CHAT_DEVICE, FEEDBACK_CHEAPER, FEEDBACK_DIET_KINDS, FEEDBACK_EXPLAIN,
                                   FEEDBACK_KINDS, FEEDBACK_REJECT, FEEDBACK_STYLE_KINDS, Event)
from recllm.profile.storage import ProfileStorage

DIET_OF_KIND = {kind: tag for tag, kind in FEEDBACK_DIET_KINDS.items()}
STYLE_OF_KIND = {kind: style for style, kind in FEEDBACK_STYLE_KINDS.items()}
FEEDBACK_REGION = "unknown"  # the chat knows no region; the profile keeps coarse regions only anyway


@dataclass
class FeedbackSignals:
    """One user's feedback, as the ranking reads it."""

    rejected: dict[int, int] = field(default_factory=dict)          # item_id -> last time it was rejected
    too_expensive: dict[str, float] = field(default_factory=dict)   # category_id -> lowest price called too high
    diets: Counter = field(default_factory=Counter)                 # diet tag -> times stated
    explain_requests: int = 0                                       # «почему?» about a shown item
    style: str | None = None                                        # the explanation style the user asked for
    style_ts: int = -1                                              # when (the latest request wins)

    @property
    def is_empty(self) -> bool:
        """Nothing that changes a ranking (``explain_requests`` and ``style`` change only the explanations)."""
        return not (self.rejected or self.too_expensive or self.diets)


def feedback_signals(events: Iterable, catalog: Catalog) -> FeedbackSignals:
    """Summarize feedback events (any objects with kind / item_id / timestamp / price); other kinds are skipped."""
    signals = FeedbackSignals()
    for event in events:
        if event.kind == FEEDBACK_REJECT:
            signals.rejected[event.item_id] = max(event.timestamp, signals.rejected.get(event.item_id, 0))
        elif event.kind == FEEDBACK_CHEAPER:
            category = catalog.get(event.item_id).category_id
            signals.too_expensive[category] = min(event.price, signals.too_expensive.get(category, float("inf")))
        elif event.kind in DIET_OF_KIND:
            signals.diets[DIET_OF_KIND[event.kind]] += 1
        elif event.kind == FEEDBACK_EXPLAIN:
            signals.explain_requests += 1
        elif event.kind in STYLE_OF_KIND and event.timestamp >= signals.style_ts:
            signals.style, signals.style_ts = STYLE_OF_KIND[event.kind], int(event.timestamp)
    return signals


def feedback_event_id(session_id: str, turn: int, kind: str, item_id: int) -> str:
    """The same reaction in the same turn of the same session always gets the same id (a retry is a duplicate)."""
    digest = hashlib.sha256(f"{session_id}\x1f{turn}\x1f{kind}\x1f{item_id}".encode("utf-8")).hexdigest()
    return f"chat-feedback-{digest[:32]}"


def feedback_event(catalog: Catalog, user_id: str, session_id: str, turn: int, kind: str, item_id: int,
                   timestamp: int) -> Event:
    """A feedback event about ``item_id``; service and price are the catalog's (the price the user saw)."""
    if kind not in FEEDBACK_KINDS:
        raise ValueError(f"feedback_event: kind must be one of {FEEDBACK_KINDS}, got {kind!r}")
    item = catalog.get(item_id)
    return Event(user_id=user_id, service=item.service, item_id=int(item_id), kind=kind, timestamp=int(timestamp),
                 basket_id=None, price=float(item.price), quantity=1, region=FEEDBACK_REGION, device=CHAT_DEVICE,
                 event_id=feedback_event_id(session_id, turn, kind, item_id))


class FeedbackSink(Protocol):
    catalog: Catalog

    def now(self) -> int:
        """The time to date feedback with."""

    def write(self, events: list[Event]) -> int:
        """Store the events (all or none); returns how many were new (a retried event is skipped)."""


class StoreFeedbackSink:
    """Feedback written to the profile store the way the profile service's ingest writes events: validated as a
    batch against the catalog, then stored at most once per (user, event id)."""

    def __init__(self, store: ProfileStorage, catalog: Catalog, clock: Callable[[], float] = time.time,
                 validation: EventValidationConfig = EventValidationConfig()):
        self.store, self.catalog, self.clock, self.validation = store, catalog, clock, validation

    def now(self) -> int:
        """The profile's clock (its newest event), the clock every recency feature reads: a chat reaction never
        moves it (a build's synthetic history ends in the past; the wall clock is only the empty store's)."""
        return int(self.store.latest_timestamp() or self.clock())

    def write(self, events: list[Event]) -> int:
        if not events:
            return 0
        return write_validated(self.store, events, self.catalog, int(self.clock()), self.validation)
