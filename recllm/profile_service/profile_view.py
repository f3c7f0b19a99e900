"""What the profile store holds about one user, read for ``GetProfile``: a summary, never another user's rows.

Events (summarised per service and kind, plus the newest few), demographics, profile fragments, the temporal
histograms and history levels ``profile.refresh`` derives, and the user's privacy ledger and latest release metadata.

Every read is a ``ProfileStorage`` method keyed by ``user_id`` (the ``events_by_user`` index), so a profile read
costs the user's own rows only, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recllm.profile.storage import ProfileStorage
from recllm.profile.records import EventRow, LedgerEntry, PreferenceRelease, ProfileFragment

MAX_RECENT_EVENTS = 1000  # a GetProfile answer stays small; the full log is the store's business


@dataclass(frozen=True)
class ActivitySummary:
    """Event counts over one slice of the user's log (all services, or one)."""

    events: int
    first_ts: int
    last_ts: int
    kinds: dict[str, int]          # kind -> events
    purchases: int = 0
    purchase_spend: float = 0.0    # sum of price * quantity over purchases, rubles


@dataclass(frozen=True)
class UserProfileView:
    user_id: str
    demographics: tuple[str, str] | None              # (age_band, region)
    overall: ActivitySummary
    services: dict[str, ActivitySummary] = field(default_factory=dict)
    fragments: list[ProfileFragment] = field(default_factory=list)
    recent_events: list[EventRow] = field(default_factory=list)  # newest first
    temporal: list[tuple[str, list[int], list[int]]] = field(default_factory=list)  # (service, hours, weekdays)
    history_levels: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # level -> (periods, first, last)
    privacy_ledger: list[LedgerEntry] = field(default_factory=list)
    preference_release: PreferenceRelease | None = None

    @property
    def found(self) -> bool:
        return (self.demographics is not None or self.overall.events > 0 or bool(self.fragments)
                or bool(self.privacy_ledger) or bool(self.history_levels))


def _service_summaries(store: ProfileStorage, user_id: str) -> dict[str, ActivitySummary]:
    grouped: dict[str, list[tuple]] = {}
    for service, *counts in store.activity_of(user_id):
        grouped.setdefault(service, []).append(tuple(counts))
    summaries = {}
    for service, kinds in grouped.items():
        purchase = next((k for k in kinds if k[0] == "purchase"), None)
        summaries[service] = ActivitySummary(
            events=sum(k[1] for k in kinds),
            first_ts=min(k[2] for k in kinds),
            last_ts=max(k[3] for k in kinds),
            kinds={k[0]: k[1] for k in kinds},
            purchases=purchase[1] if purchase else 0,
            purchase_spend=float(purchase[4]) if purchase else 0.0,
        )
    return summaries


def _overall(services: dict[str, ActivitySummary]) -> ActivitySummary:
    if not services:
        return ActivitySummary(events=0, first_ts=0, last_ts=0, kinds={})
    kinds: dict[str, int] = {}
    for summary in services.values():
        for kind, count in summary.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    return ActivitySummary(
        events=sum(s.events for s in services.values()),
        first_ts=min(s.first_ts for s in services.values()),
        last_ts=max(s.last_ts for s in services.values()),
        kinds=dict(sorted(kinds.items())),
        purchases=sum(s.purchases for s in services.values()),
        purchase_spend=sum(s.purchase_spend for s in services.values()),
    )


def _recent_events(store: ProfileStorage, user_id: str, limit: int) -> list[EventRow]:
    return store.recent_events(user_id, min(limit, MAX_RECENT_EVENTS)) if limit > 0 else []


def _history_levels(store: ProfileStorage, user_id: str) -> dict[str, tuple[int, int, int]]:
    levels: dict[str, tuple[int, int, int]] = {}
    for level, start_ts, end_ts, _summary in store.history_of(user_id):
        periods, first, last = levels.get(level, (0, start_ts, end_ts))
        levels[level] = (periods + 1, min(first, start_ts), max(last, end_ts))
    return levels


def read_user_profile(store: ProfileStorage, user_id: str, recent_events: int = 0) -> UserProfileView:
    """The user's demographics, activity per service, profile fragments and newest ``recent_events`` events.

    All reads run in one read transaction, so the summary, fragments and events come from the same commit even
    while the service's writer keeps committing.
    """
    with store.read_snapshot():
        demographics = store.demographics_of(user_id)
        services = _service_summaries(store, user_id)
        fragments = store.fragments_of(user_id)
        recent = _recent_events(store, user_id, recent_events)
        derived = dict(temporal=store.temporal_histograms_of(user_id), history_levels=_history_levels(store, user_id),
                       privacy_ledger=store.privacy_ledger_of(user_id),
                       preference_release=store.released_preferences_of(user_id))
    return UserProfileView(
        user_id=user_id,
        demographics=demographics,
        overall=_overall(services),
        services=services,
        fragments=fragments,
        recent_events=recent,
        **derived,
    )
