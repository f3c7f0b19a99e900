"""The behaviour-event schema and its validation: what may enter the profile store.

An event is any object with the attributes of ``recllm.synthetic.records.Event`` (``user_id, service, item_id, kind,
timestamp, basket_id, price, quantity, region, device``); the synthetic generator, the real-data loaders
(``recllm.datasets``) and, later, real-time ingest all produce them. ``validate_batch`` checks a whole batch before
anything is written, so ``write_validated`` either stores every event of a batch or none of them. The time of day
is not stored: it is derived from the timestamp by ``time_of_day``.

Every rejection is an ``EventValidationError`` naming the batch position, the field and the bad value, e.g.
``event 17: field 'price' must be a finite number > 0, got -3.0``.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Iterable

from recllm.catalog.product_catalog import SERVICES, Catalog
from recllm.profile.events import EVENT_DEVICES, EVENT_KINDS

logger = logging.getLogger(__name__)

EVENT_FIELDS: tuple[str, ...] = ("user_id", "service", "item_id", "kind", "timestamp", "basket_id", "price",
                                 "quantity", "region", "device")
# Coarse regions only (city level): finer location is personal data the profile must not hold.
COARSE_REGIONS: tuple[str, ...] = ("moscow", "spb", "kazan", "ekaterinburg", "novosibirsk", "nizhny_novgorod",
                                   "krasnodar", "samara", "unknown")
REGION_PATTERN = re.compile(r"[a-z_]{1,32}")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
RATING_KIND = "rating"
Y2K_TIMESTAMP = 946_684_800  # 2000-01-01T00:00:00Z: older timestamps are unit or parsing errors
TIMES_OF_DAY: tuple[tuple[int, str], ...] = ((6, "night"), (12, "morning"), (18, "day"), (24, "evening"))
MAX_SHOWN_CHARS = 40


@dataclass(frozen=True)
class EventValidationConfig:
    """Limits an event must respect. ``known_regions=None`` accepts any coarse region token."""

    max_user_id_chars: int = 64
    max_basket_id_chars: int = 64
    max_future_skew_s: int = 300            # clocks of phones and services disagree by a few minutes
    min_timestamp: int = Y2K_TIMESTAMP
    max_price: float = 10_000_000.0          # rubles
    max_quantity: int = 10_000
    max_rating: int = 5                     # rating events carry 1..max_rating stars in ``quantity``
    known_regions: frozenset[str] | None = frozenset(COARSE_REGIONS)
    known_devices: frozenset[str] = frozenset(EVENT_DEVICES)
    basket_kinds: frozenset[str] = frozenset({"add_to_cart", "purchase", "rating", "return"})  # need a basket_id

    def __post_init__(self) -> None:
        for name in ("max_user_id_chars", "max_basket_id_chars", "max_quantity", "max_rating"):
            _check_config_int(name, getattr(self, name), minimum=1)
        for name in ("max_future_skew_s", "min_timestamp"):
            _check_config_int(name, getattr(self, name), minimum=0)
        price = self.max_price
        if not _is_finite_number(price) or price <= 0:
            raise ValueError(f"EventValidationConfig.max_price must be a finite number > 0, got {price!r}")
        if self.known_regions is not None:
            _check_config_tokens("known_regions", self.known_regions, REGION_PATTERN)
        _check_config_tokens("known_devices", self.known_devices, REGION_PATTERN)
        unknown_kinds = sorted(set(self.basket_kinds) - set(EVENT_KINDS))
        if unknown_kinds:
            raise ValueError(f"EventValidationConfig.basket_kinds has unknown kinds {unknown_kinds}; "
                             f"expected a subset of {', '.join(EVENT_KINDS)}")


def _check_config_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"EventValidationConfig.{name} must be an int >= {minimum}, got {value!r}")


def _check_config_tokens(name: str, values: Any, pattern: re.Pattern) -> None:
    if not isinstance(values, (set, frozenset)) or not values:
        raise ValueError(f"EventValidationConfig.{name} must be a non-empty set of strings, got {values!r}")
    bad = sorted(repr(value) for value in values if not isinstance(value, str) or not pattern.fullmatch(value))
    if bad:
        raise ValueError(f"EventValidationConfig.{name} has malformed entries {bad}; expected {pattern.pattern}")


class EventValidationError(ValueError):
    """One bad event: ``field`` is the offending attribute, ``index`` its position in the batch (None if single)."""

    def __init__(self, field: str, problem: str, index: int | None = None):
        self.field = field
        self.problem = problem
        self.index = index
        where = "event" if index is None else f"event {index}"
        super().__init__(f"{where}: field {field!r} {problem}")

    def at(self, index: int) -> EventValidationError:
        """The same error, located at batch position ``index``."""
        return EventValidationError(self.field, self.problem, index)


def _shown(value: Any) -> str:
    """repr of a bad value, cut so an oversized field does not flood the log."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + f"… ({len(text)} chars)"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    """A real number that is not NaN/inf; bools are not numbers here, huge ints are finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(value, numbers.Integral):
        return True
    try:
        return math.isfinite(value)
    except (OverflowError, ValueError, TypeError):
        return False


def _read_fields(event: Any) -> dict[str, Any]:
    values = {}
    for name in EVENT_FIELDS:
        try:
            values[name] = getattr(event, name)
        except AttributeError:
            raise EventValidationError(name, f"is missing on {type(event).__name__}") from None
    return values


def _check_identifier(name: str, value: Any, max_chars: int) -> None:
    if not isinstance(value, str):
        raise EventValidationError(name, f"must be a string, got {_shown(value)}")
    if len(value) > max_chars:
        raise EventValidationError(name, f"is oversized: {len(value)} characters > {max_chars} ({_shown(value)})")
    if not ID_PATTERN.fullmatch(value):
        raise EventValidationError(
            name, f"is malformed: {_shown(value)}; expected letters, digits, '_', '.', ':', '-' starting with a letter "
                  "or digit")


def _check_service_and_kind(values: dict[str, Any]) -> None:
    service, kind = values["service"], values["kind"]
    if not isinstance(service, str) or service not in SERVICES:
        raise EventValidationError("service", f"is unknown: {_shown(service)}; expected one of {', '.join(SERVICES)}")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        raise EventValidationError("kind", f"is unknown: {_shown(kind)}; expected one of {', '.join(EVENT_KINDS)}")


def _check_item(values: dict[str, Any], catalog: Catalog) -> None:
    item_id = values["item_id"]
    if not _is_int(item_id):
        raise EventValidationError("item_id", f"must be an int, got {_shown(item_id)}")
    try:
        item = catalog.get(item_id)
    except KeyError:
        raise EventValidationError(
            "item_id", f"is not in the catalog: {item_id!r}; valid ids are 0..{len(catalog) - 1}") from None
    if item.service != values["service"]:
        raise EventValidationError(
            "item_id", f"{item_id!r} is sold in {item.service!r}, not in the event's service {values['service']!r}")


def _check_timestamp(timestamp: Any, now_ts: int, config: EventValidationConfig) -> None:
    if not _is_int(timestamp):
        raise EventValidationError("timestamp", f"must be an int (unix seconds), got {_shown(timestamp)}")
    if timestamp > now_ts + config.max_future_skew_s:
        raise EventValidationError(
            "timestamp", f"is in the future: {timestamp} > now {now_ts} + {config.max_future_skew_s} s")
    if timestamp < config.min_timestamp:
        raise EventValidationError("timestamp", f"is too old: {timestamp} < {config.min_timestamp} (2000-01-01)")


def _check_price(price: Any, config: EventValidationConfig) -> None:
    if not _is_finite_number(price) or price <= 0:
        raise EventValidationError("price", f"must be a finite number > 0, got {_shown(price)}")
    if price > config.max_price:
        raise EventValidationError("price", f"is oversized: {price!r} > {config.max_price}")


def _check_quantity(quantity: Any, kind: str, config: EventValidationConfig) -> None:
    if not _is_int(quantity):
        raise EventValidationError("quantity", f"must be an int, got {_shown(quantity)}")
    if kind == RATING_KIND:
        if not 1 <= quantity <= config.max_rating:
            raise EventValidationError(
                "quantity", f"of a rating event is the star rating 1..{config.max_rating}, got {quantity!r}")
    elif not 1 <= quantity <= config.max_quantity:
        raise EventValidationError("quantity", f"must be in 1..{config.max_quantity}, got {quantity!r}")


def _check_basket(basket_id: Any, kind: str, config: EventValidationConfig) -> None:
    if basket_id is None:
        if kind in config.basket_kinds:
            raise EventValidationError("basket_id", f"is required for {kind!r} events, got None")
        return
    _check_identifier("basket_id", basket_id, config.max_basket_id_chars)


def _check_context(values: dict[str, Any], config: EventValidationConfig) -> None:
    region, device = values["region"], values["device"]
    if not isinstance(region, str) or not REGION_PATTERN.fullmatch(region):
        raise EventValidationError("region", f"is not a coarse region token ([a-z_]{{1,32}}): {_shown(region)}")
    if config.known_regions is not None and region not in config.known_regions:
        raise EventValidationError(
            "region", f"is unknown: {region!r}; expected one of {', '.join(sorted(config.known_regions))}")
    if not isinstance(device, str) or device not in config.known_devices:
        raise EventValidationError(
            "device", f"is unknown: {_shown(device)}; expected one of {', '.join(sorted(config.known_devices))}")


def validate_event(event: Any, catalog: Catalog, now_ts: int,
                   config: EventValidationConfig = EventValidationConfig()) -> None:
    """Return None for a valid event; raise EventValidationError (``index`` None) naming the first bad field."""
    values = _read_fields(event)
    _check_identifier("user_id", values["user_id"], config.max_user_id_chars)
    _check_service_and_kind(values)
    _check_item(values, catalog)
    _check_timestamp(values["timestamp"], now_ts, config)
    _check_basket(values["basket_id"], values["kind"], config)
    _check_price(values["price"], config)
    _check_quantity(values["quantity"], values["kind"], config)
    _check_context(values, config)


def validate_batch(events: Iterable, catalog: Catalog, now_ts: int,
                   config: EventValidationConfig = EventValidationConfig()) -> list:
    """Validate every event before returning them as a list; the first bad one raises with its batch ``index``.

    Callers write the returned list only after this returns, so a batch with any bad event writes nothing.
    """
    batch = list(events)
    for index, event in enumerate(batch):
        try:
            validate_event(event, catalog, now_ts, config)
        except EventValidationError as error:
            located = error.at(index)
            logger.warning("rejected a batch of %d events: %s", len(batch), located)
            raise located from None
    return batch


def write_validated(store: Any, events: Iterable, catalog: Catalog, now_ts: int,
                    config: EventValidationConfig = EventValidationConfig()) -> int:
    """Validate the whole batch, then ``store.add_events`` it (one transaction); returns the number written.

    A rejected batch raises EventValidationError before the store is touched, so it writes nothing.
    """
    batch = validate_batch(events, catalog, now_ts, config)
    return store.add_events(batch)


def time_of_day(ts: int, utc_offset_hours: float = 3) -> str:
    """Local part of the day of unix time ``ts``: "night" 00-06, "morning" 06-12, "day" 12-18, "evening" 18-24.

    The default offset is Moscow time (UTC+3), the clock the synthetic histories use for every region.
    """
    if not _is_finite_number(ts):
        raise ValueError(f"time_of_day: ts must be a finite number of unix seconds, got {ts!r}")
    if not _is_finite_number(utc_offset_hours) or not -12 <= utc_offset_hours <= 14:
        raise ValueError(f"time_of_day: utc_offset_hours must be in -12..14, got {utc_offset_hours!r}")
    local_hour = int(((ts + round(utc_offset_hours * 3600)) % 86_400) // 3600)
    for end_hour, name in TIMES_OF_DAY:
        if local_hour < end_hour:
            return name
    raise AssertionError(f"hour {local_hour} outside 0..23")  # unreachable: % 86400 bounds it


__all__ = ["EVENT_FIELDS", "COARSE_REGIONS", "EventValidationConfig", "EventValidationError", "validate_event",
           "validate_batch", "write_validated", "time_of_day"]
