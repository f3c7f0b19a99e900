"""Event schema: every rejection names its field and value, a bad event anywhere in a batch writes nothing,
arbitrary mutations never escape as another exception, and the time-of-day context field's boundaries."""

from __future__ import annotations

import dataclasses
import math
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.profile.event_schema import (
    COARSE_REGIONS,
    EVENT_FIELDS,
    EventValidationConfig,
    EventValidationError,
    time_of_day,
    validate_batch,
    validate_event,
    write_validated,
)
from recllm.profile.sqlite_store import ProfileStore
from recllm.synthetic.behaviour import REGIONS
from recllm.profile.events import Event

HOUR = 3600
# 2025-10-09 00:00 Moscow time (UTC+3)
MOSCOW_MIDNIGHT = 1_760_000_000 - 1_760_000_000 % 86_400 - 3 * HOUR


@pytest.fixture(scope="module")
def now_ts(ecosystem) -> int:
    return max(event.timestamp for event in ecosystem.events)


@pytest.fixture(scope="module")
def purchase(ecosystem) -> Event:
    return next(event for event in ecosystem.events if event.kind == "purchase")


def foreign_item_id(catalog, service: str) -> int:
    return next(item.item_id for item in catalog.items if item.service != service)


def test_the_synthetic_ecosystem_passes(ecosystem, catalog, now_ts):
    assert {event.kind for event in ecosystem.events} >= {"view", "search", "add_to_cart", "purchase", "rating"}
    assert validate_batch(ecosystem.events, catalog, now_ts) == ecosystem.events


def test_synthetic_regions_are_coarse_regions():
    assert set(REGIONS) <= set(COARSE_REGIONS)


BAD_VALUES = [
    ("service", "ozon"), ("service", None),
    ("kind", "click"), ("kind", ["purchase"]),
    ("item_id", 10**6), ("item_id", -1), ("item_id", "5"), ("item_id", True), ("item_id", 5.0),
    ("timestamp", 946_684_799), ("timestamp", 1.7e9), ("timestamp", None),
    ("price", -1.0), ("price", 0.0), ("price", math.nan), ("price", math.inf), ("price", 1e8), ("price", "100"),
    ("quantity", 0), ("quantity", -3), ("quantity", 10_001), ("quantity", 1.5), ("quantity", False),
    ("user_id", ""), ("user_id", "u" * 65), ("user_id", "u 1"), ("user_id", "юзер"), ("user_id", 123),
    ("basket_id", "b" * 65), ("basket_id", "b/1"), ("basket_id", None), ("basket_id", 7),
    ("region", "Moscow"), ("region", "москва"), ("region", "r" * 33), ("region", "atlantis"), ("region", ""),
    ("device", "fax"), ("device", None),
]


@pytest.mark.parametrize("field, value", BAD_VALUES, ids=[f"{f}={v!r}"[:40] for f, v in BAD_VALUES])
def test_each_rejection_names_its_field_and_value(field, value, purchase, catalog, now_ts):
    bad = dataclasses.replace(purchase, **{field: value})
    with pytest.raises(EventValidationError) as caught:
        validate_event(bad, catalog, now_ts)
    assert caught.value.field == field
    assert caught.value.index is None
    message = str(caught.value)
    assert f"field {field!r}" in message
    assert repr(value)[:30] in message  # oversized values are shown cut, with their length


def test_item_of_another_service_is_rejected(purchase, catalog, now_ts):
    bad = dataclasses.replace(purchase, item_id=foreign_item_id(catalog, purchase.service))
    with pytest.raises(EventValidationError, match="is sold in") as caught:
        validate_event(bad, catalog, now_ts)
    assert caught.value.field == "item_id"
    assert repr(purchase.service) in str(caught.value)


def test_future_timestamps_are_allowed_within_the_skew_only(purchase, catalog, now_ts):
    skew = EventValidationConfig().max_future_skew_s
    validate_event(dataclasses.replace(purchase, timestamp=now_ts + skew), catalog, now_ts)
    with pytest.raises(EventValidationError, match="in the future") as caught:
        validate_event(dataclasses.replace(purchase, timestamp=now_ts + skew + 1), catalog, now_ts)
    assert caught.value.field == "timestamp"


def test_rating_quantity_is_the_star_rating(purchase, catalog, now_ts):
    rating = dataclasses.replace(purchase, kind="rating")
    for stars in (1, 5):
        validate_event(dataclasses.replace(rating, quantity=stars), catalog, now_ts)
    for stars in (0, 6, 10):
        with pytest.raises(EventValidationError, match="star rating") as caught:
            validate_event(dataclasses.replace(rating, quantity=stars), catalog, now_ts)
        assert caught.value.field == "quantity"


def test_views_need_no_basket_and_the_basket_kinds_are_configurable(purchase, catalog, now_ts):
    validate_event(dataclasses.replace(purchase, kind="view", basket_id=None), catalog, now_ts)
    lenient = EventValidationConfig(basket_kinds=frozenset())
    validate_event(dataclasses.replace(purchase, basket_id=None), catalog, now_ts, lenient)


def test_unknown_regions_pass_when_regions_are_open(purchase, catalog, now_ts):
    open_regions = EventValidationConfig(known_regions=None)
    validate_event(dataclasses.replace(purchase, region="sochi"), catalog, now_ts, open_regions)
    with pytest.raises(EventValidationError):
        validate_event(dataclasses.replace(purchase, region="Sochi"), catalog, now_ts, open_regions)


def test_a_missing_attribute_is_named(purchase, catalog, now_ts):
    values = dataclasses.asdict(purchase)
    del values["device"]
    with pytest.raises(EventValidationError, match="'device' is missing") as caught:
        validate_event(types.SimpleNamespace(**values), catalog, now_ts)
    assert caught.value.field == "device"


@pytest.mark.parametrize("overrides, field", [
    ({"max_user_id_chars": 0}, "max_user_id_chars"), ({"max_future_skew_s": -1}, "max_future_skew_s"),
    ({"max_price": math.nan}, "max_price"), ({"max_quantity": 2.5}, "max_quantity"),
    ({"known_regions": frozenset({"Moscow"})}, "known_regions"), ({"known_devices": frozenset()}, "known_devices"),
    ({"basket_kinds": frozenset({"click"})}, "basket_kinds"),
])
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"EventValidationConfig.{field}"):
        EventValidationConfig(**overrides)


def stored_count(store: ProfileStore) -> int:
    return store.connection().execute("SELECT COUNT(*) FROM events").fetchone()[0]


def test_a_batch_with_one_bad_event_writes_nothing(tmp_path, ecosystem, catalog, now_ts):
    store = ProfileStore(tmp_path / "profile.db")
    batch = ecosystem.events[:60]
    bad_batch = [*batch[:30], dataclasses.replace(batch[30], price=-5.0), *batch[31:]]
    with pytest.raises(EventValidationError) as caught:
        write_validated(store, bad_batch, catalog, now_ts)
    assert (caught.value.index, caught.value.field) == (30, "price")
    assert str(caught.value).startswith("event 30: field 'price'")
    assert stored_count(store) == 0

    assert write_validated(store, batch, catalog, now_ts) == len(batch)
    assert stored_count(store) == len(batch)
    user = batch[0].user_id
    assert len(store.events_of(user)) == sum(event.user_id == user for event in batch)


def test_validate_batch_reports_the_first_bad_position(ecosystem, catalog, now_ts):
    batch = list(ecosystem.events[:10])
    batch[7] = dataclasses.replace(batch[7], device="fax")
    batch[3] = dataclasses.replace(batch[3], service="ozon")
    with pytest.raises(EventValidationError) as caught:
        validate_batch(iter(batch), catalog, now_ts)
    assert (caught.value.index, caught.value.field) == (3, "service")


ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=0, max_value=400),
    st.integers(min_value=1_700_000_000, max_value=1_800_000_000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80), st.sampled_from(["samokat", "kuper", "megamarket", "rating", "view", "web", "moscow"]),
    st.binary(max_size=8), st.lists(st.integers(), max_size=3), st.tuples(st.text(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(mutations=st.dictionaries(st.sampled_from(EVENT_FIELDS), ANY_VALUE, min_size=1, max_size=3),
       dropped=st.one_of(st.none(), st.sampled_from(EVENT_FIELDS)))
def test_mutated_events_pass_or_raise_event_validation_error(mutations, dropped, purchase, catalog, now_ts):
    values = {**dataclasses.asdict(purchase), **mutations}
    if dropped is not None:
        del values[dropped]
    try:
        validate_event(types.SimpleNamespace(**values), catalog, now_ts)
    except EventValidationError as error:
        assert error.field in EVENT_FIELDS
        assert f"field {error.field!r}" in str(error)


@pytest.mark.parametrize("local_time, expected", [
    ((0, 0, 0), "night"), ((5, 59, 59), "night"), ((6, 0, 0), "morning"), ((11, 59, 59), "morning"),
    ((12, 0, 0), "day"), ((17, 59, 59), "day"), ((18, 0, 0), "evening"), ((23, 59, 59), "evening"),
])
def test_time_of_day_boundaries_in_moscow_time(local_time, expected):
    hours, minutes, seconds = local_time
    assert time_of_day(MOSCOW_MIDNIGHT + hours * HOUR + minutes * 60 + seconds) == expected


def test_time_of_day_uses_the_offset():
    utc_midnight = MOSCOW_MIDNIGHT + 3 * HOUR
    assert time_of_day(utc_midnight, utc_offset_hours=0) == "night"
    assert time_of_day(utc_midnight) == "night"            # 03:00 in Moscow
    assert time_of_day(utc_midnight + 3 * HOUR) == "morning"
    assert time_of_day(utc_midnight, utc_offset_hours=-6) == "evening"


@pytest.mark.parametrize("ts, offset", [(math.nan, 3), ("noon", 3), (0, 15), (0, True)])
def test_time_of_day_rejects_bad_arguments(ts, offset):
    with pytest.raises(ValueError, match="time_of_day"):
        time_of_day(ts, offset)


@settings(max_examples=200, deadline=None)
@given(ts=st.integers(min_value=0, max_value=4_000_000_000), offset=st.integers(min_value=-12, max_value=14))
def test_time_of_day_is_daily_periodic(ts, offset):
    assert time_of_day(ts, offset) == time_of_day(ts + 86_400, offset)
    assert time_of_day(ts, offset) in {"night", "morning", "day", "evening"}
