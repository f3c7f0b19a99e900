"""Conversions between the profile service's protobuf messages and the library's records.

An incoming ``Event`` message becomes a ``recllm.synthetic.records.Event`` (the record ``profile.event_schema`` validates
and ``ProfileStorage.ingest_events`` stores); a field the schema needs but the message does not carry is reported by name instead
of being read as protobuf's zero default (item 0 is a real item; price 0 would be reported as "not > 0").
"""

from __future__ import annotations

from recllm.profile.event_schema import ID_PATTERN, EventValidationConfig, EventValidationError
from recllm_proto import profile_pb2 as pb
from recllm.profile_service.profile_view import ActivitySummary, UserProfileView
from recllm.profile.events import Event

PRESENCE_FIELDS: tuple[str, ...] = ("item_id", "timestamp", "price", "quantity")  # required, proto3 ``optional``
MAX_SHOWN_ID_CHARS = 40
MAX_EVENT_ID_CHARS = 128  # a UUID is 36; the id is stored with the event and indexed


def event_from_message(message: pb.Event) -> Event:
    """The event record carried by ``message``; raises EventValidationError naming a missing required field."""
    for name in PRESENCE_FIELDS:
        if not message.HasField(name):
            raise EventValidationError(name, "is missing from the message")
    if len(message.event_id) > MAX_EVENT_ID_CHARS:
        raise EventValidationError("event_id", f"is oversized: {len(message.event_id)} characters > "
                                               f"{MAX_EVENT_ID_CHARS}")
    return Event(
        user_id=message.user_id,
        service=message.service,
        item_id=message.item_id,
        kind=message.kind,
        timestamp=message.timestamp,
        basket_id=message.basket_id if message.HasField("basket_id") else None,
        price=message.price,
        quantity=message.quantity,
        region=message.region,
        device=message.device,
        event_id=message.event_id or None,
    )


def accepted_ack(message: pb.Event, duplicate: bool = False) -> pb.EventAck:
    """Accepted: the event is durably stored — now, or by an earlier delivery when ``duplicate``."""
    return pb.EventAck(sequence=message.sequence, event_id=message.event_id, accepted=True, duplicate=duplicate)


def rejected_ack(message: pb.Event, error: str, field: str = "") -> pb.EventAck:
    return pb.EventAck(sequence=message.sequence, event_id=message.event_id, accepted=False, error=error, field=field)


def user_id_problem(user_id: str, config: EventValidationConfig = EventValidationConfig()) -> str | None:
    """Why ``user_id`` cannot name a user (None when it can); the same rule the event schema applies."""
    if len(user_id) > config.max_user_id_chars:
        return f"user_id is oversized: {len(user_id)} characters > {config.max_user_id_chars}"
    if not ID_PATTERN.fullmatch(user_id):
        shown = user_id if len(user_id) <= MAX_SHOWN_ID_CHARS else user_id[:MAX_SHOWN_ID_CHARS] + "…"
        return (f"user_id is malformed: {shown!r}; expected letters, digits, '_', '.', ':', '-' starting with a "
                "letter or digit")
    return None


def _kind_counts(kinds: dict[str, int]) -> list[pb.KindCount]:
    return [pb.KindCount(kind=kind, events=count) for kind, count in sorted(kinds.items())]


def _service_summary(service: str, summary: ActivitySummary) -> pb.ServiceSummary:
    return pb.ServiceSummary(service=service, events=summary.events, purchases=summary.purchases,
                             purchase_spend=summary.purchase_spend, first_ts=summary.first_ts,
                             last_ts=summary.last_ts, kinds=_kind_counts(summary.kinds))


def profile_message(view: UserProfileView) -> pb.Profile:
    overall = view.overall
    message = pb.Profile(
        user_id=view.user_id,
        found=view.found,
        events=pb.EventsSummary(total=overall.events, first_ts=overall.first_ts, last_ts=overall.last_ts,
                                kinds=_kind_counts(overall.kinds)),
        services=[_service_summary(service, summary) for service, summary in sorted(view.services.items())],
        fragments=[pb.Fragment(fragment_key=f.fragment_key, service=f.service, category_id=f.category_id,
                               text_ru=f.text_ru, text_en=f.text_en, sensitive=f.sensitive, weight=f.weight)
                   for f in view.fragments],
        recent_events=[pb.StoredEvent(service=e.service, item_id=e.item_id, kind=e.kind, timestamp=e.timestamp,
                                      basket_id=e.basket_id or "", price=e.price, quantity=e.quantity,
                                      region=e.region, device=e.device)
                       for e in view.recent_events],
    )
    if view.demographics is not None:
        age_band, region = view.demographics
        message.demographics.CopyFrom(pb.Demographics(age_band=age_band, region=region))
    _add_derived(message, view)
    return message


def _add_derived(message: pb.Profile, view: UserProfileView) -> None:
    """What the profile refresh derived: temporal histograms, history levels, privacy ledger, latest release."""
    message.temporal.extend(pb.TemporalHistogram(service=service, hours=hours, weekdays=weekdays)
                            for service, hours, weekdays in view.temporal)
    message.history.extend(pb.HistoryLevel(level=level, periods=periods, first_ts=first, last_ts=last)
                           for level, (periods, first, last) in view.history_levels.items())
    message.privacy_ledger.extend(
        pb.PrivacyWindow(window_start=e.window_start, window_end=e.window_end, epsilon_spent=e.epsilon_spent,
                         delta_spent=e.delta_spent, releases=e.releases) for e in view.privacy_ledger)
    release = view.preference_release
    if release is not None:
        message.preference_release.CopyFrom(pb.PreferenceRelease(
            released_ts=release.released_ts, window_start=release.window_start,
            release_index=release.release_index, epsilon=release.epsilon, delta=release.delta, sigma=release.sigma,
            clip_norm=release.clip_norm))


def forget_message(user_id: str, removed: dict[str, int]) -> pb.ForgetResponse:
    return pb.ForgetResponse(user_id=user_id,
                             removed=[pb.TableRows(table=table, rows=rows) for table, rows in sorted(removed.items())])
