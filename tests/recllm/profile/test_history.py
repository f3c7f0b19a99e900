"""Hierarchical history (session → day → long term) and hour/weekday histograms, in Moscow time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recllm.profile.history import (
    HistoryConfig,
    HistorySummary,
    build_history,
    histogram_rows,
    histograms_from_rows,
    history_rows,
    local_day_start,
    local_hour,
    local_weekday,
    split_sessions,
    temporal_histograms,
)
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import EventRow

MSK = timezone(timedelta(hours=3))


def msk(year, month, day, hour, minute=0, second=0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=MSK).timestamp())


def event(ts: int, item_id: int = 0, service: str = "samokat", kind: str = "purchase", basket: str | None = "b1",
          price: float = 100.0, quantity: int = 1) -> EventRow:
    return EventRow("u1", service, item_id, kind, ts, basket, price, quantity, "moscow", "ios")


@pytest.fixture(scope="module")
def items(catalog) -> dict[str, int]:
    """One item id per service."""
    return {service: next(i.item_id for i in catalog.items if i.service == service)
            for service in ("samokat", "kuper", "megamarket")}


# --- config and local time -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("session_gap_minutes", 0, "session_gap_minutes must be > 0"),
    ("utc_offset_hours", 15, r"utc_offset_hours must be in \[-12, 14\]"),
    ("top_categories", 0, "top_categories must be > 0"),
])
def test_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        HistoryConfig(**{field: value})


@given(st.integers(min_value=0, max_value=4_000_000_000))
def test_local_time_is_moscow_utc_plus_3(ts):
    local = datetime.fromtimestamp(ts, MSK)
    config = HistoryConfig()
    assert local_hour(ts, config) == local.hour
    assert local_weekday(ts, config) == local.weekday()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    assert local_day_start(ts, config) == int(midnight.timestamp())


def test_utc_midnight_is_3_am_in_moscow():
    ts = int(datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc).timestamp())  # a Monday
    assert local_hour(ts, HistoryConfig()) == 3
    assert local_hour(ts, HistoryConfig(utc_offset_hours=0)) == 0
    assert local_weekday(ts - 1, HistoryConfig()) == 0  # 23:59:59 UTC Sunday is already Monday in Moscow
    assert local_weekday(ts - 1, HistoryConfig(utc_offset_hours=0)) == 6


# --- sessions, days, long term ---------------------------------------------------------------------------------

def test_a_gap_of_exactly_the_threshold_starts_a_new_session():
    start = msk(2026, 11, 2, 10)
    events = [event(start), event(start + 29 * 60 + 59), event(start + 29 * 60 + 59 + 30 * 60)]
    assert [len(s) for s in split_sessions(events, HistoryConfig())] == [2, 1]
    assert [len(s) for s in split_sessions(events, HistoryConfig(session_gap_minutes=31))] == [3]


def test_a_session_crossing_midnight_belongs_to_the_day_it_started(catalog, items):
    late = msk(2026, 11, 2, 23, 50)
    events = [event(late, items["samokat"]), event(late + 20 * 60, items["samokat"]),  # 00:10 next day, same session
              event(msk(2026, 11, 3, 9), items["kuper"], service="kuper")]
    history = build_history("u1", events, catalog)
    assert [d.summary.start_ts for d in history.days] == [msk(2026, 11, 2, 0), msk(2026, 11, 3, 0)]
    assert [len(d.sessions) for d in history.days] == [1, 1]
    assert history.days[0].summary.num_events == 2
    assert history.days[0].sessions[0].end_ts == late + 20 * 60


def test_levels_add_up_and_summaries_count_what_happened(catalog, items):
    day = msk(2026, 11, 4, 8)
    events = [
        event(day, items["samokat"], basket="a", price=50.0, quantity=2),
        event(day + 60, items["samokat"], kind="view", basket=None),
        event(day + 120, items["kuper"], service="kuper", basket="b", price=10.0),
        event(day + 3 * 3600, items["megamarket"], service="megamarket", basket="c", price=1000.0),  # new session
        event(day + 86_400, items["samokat"], basket="d"),  # next day
    ]
    history = build_history("u1", list(reversed(events)), catalog)  # any order in, time order out
    long_term = history.long_term
    assert long_term.num_events == 5 and long_term.purchases == 4 and long_term.baskets == 4
    assert long_term.events_by_service == {"kuper": 1, "megamarket": 1, "samokat": 3}
    assert long_term.events_by_kind == {"purchase": 4, "view": 1}
    assert long_term.spend == pytest.approx(50 * 2 + 10 + 1000 + 100)
    assert long_term.purchased_quantity == 5
    assert long_term.distinct_items == 3
    assert sum(c for _, c in long_term.top_categories) == 4
    assert sum(d.summary.num_events for d in history.days) == long_term.num_events
    for day_history in history.days:
        assert sum(s.num_events for s in day_history.sessions) == day_history.summary.num_events
    first_day = history.days[0]
    assert [s.num_events for s in first_day.sessions] == [3, 1]
    assert first_day.sessions[0].events_by_service == {"kuper": 1, "samokat": 2}
    assert first_day.summary.baskets == 3


def test_top_categories_are_capped_and_ordered(catalog):
    by_category = {}
    for item in catalog.items:
        by_category.setdefault(item.category_id, item.item_id)
    ids = list(by_category.values())[:4]
    start = msk(2026, 11, 5, 12)
    events = [event(start + k, item_id) for k, item_id in enumerate([ids[0]] * 3 + [ids[1]] * 2 + ids[2:4])]
    summary = build_history("u1", events, catalog, HistoryConfig(top_categories=2)).long_term
    assert summary.top_categories == [(catalog.get(ids[0]).category_id, 3), (catalog.get(ids[1]).category_id, 2)]


def test_no_events_no_history(catalog):
    history = build_history("u1", [], catalog)
    assert history.long_term is None and history.days == [] and history.summaries() == []


def test_history_of_a_synthetic_user_round_trips_through_the_store(tmp_path, ecosystem, catalog):
    user = ecosystem.users[0].user_id
    events = [e for e in ecosystem.events if e.user_id == user]
    history = build_history(user, events, catalog)
    assert history.long_term.num_events == len(events)
    store = ProfileStore(tmp_path / "profile.db")
    store.replace_history(user, history_rows(history))
    stored = [HistorySummary.from_json(text) for _, _, _, text in store.history_of(user)]
    assert sorted(stored, key=lambda s: (s.level, s.start_ts)) == sorted(history.summaries(),
                                                                         key=lambda s: (s.level, s.start_ts))
    assert len(store.history_of(user, "day")) == len(history.days)
    store.replace_history(user, [])
    assert store.history_of(user) == []


# --- temporal histograms ---------------------------------------------------------------------------------------

def test_histograms_bucket_by_moscow_hour_and_weekday():
    events = [event(msk(2026, 11, 23, 9, 15)),  # Monday 09:15
              event(msk(2026, 11, 29, 23, 59), service="kuper"),  # Sunday 23:59
              event(msk(2026, 11, 30, 9, 0))]  # Monday 09:00
    histograms = temporal_histograms(events)
    assert histograms.hours["samokat"][9] == 2 and histograms.hours["samokat"].sum() == 2
    assert histograms.weekdays["samokat"].tolist() == [2, 0, 0, 0, 0, 0, 0]
    assert histograms.hours["kuper"][23] == 1 and histograms.weekdays["kuper"][6] == 1
    assert "megamarket" not in histograms.hours
    np.testing.assert_allclose(histograms.hour_share("megamarket"), np.zeros(24))
    assert histograms.hour_share("samokat")[9] == 1.0


def test_histograms_total_every_event_per_service_and_round_trip(tmp_path, ecosystem):
    user = ecosystem.users[1].user_id
    events = [e for e in ecosystem.events if e.user_id == user]
    histograms = temporal_histograms(events)
    for service in histograms.hours:
        count = sum(e.service == service for e in events)
        assert histograms.hours[service].sum() == count == histograms.weekdays[service].sum()
    store = ProfileStore(tmp_path / "profile.db")
    store.replace_temporal_histograms(user, histogram_rows(histograms))
    loaded = histograms_from_rows(store.temporal_histograms_of(user))
    assert loaded.hours.keys() == histograms.hours.keys()
    for service in histograms.hours:
        np.testing.assert_array_equal(loaded.hours[service], histograms.hours[service])
        np.testing.assert_array_equal(loaded.weekdays[service], histograms.weekdays[service])


def test_unknown_service_is_named():
    with pytest.raises(ValueError, match="ozon"):
        temporal_histograms([event(0, service="ozon")])
