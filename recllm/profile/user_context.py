"""One request's view of the user: read once from the profile, with one clock, then passed down the pipeline.

The retriever, the reranker and the explanations all need the same things about the user: the purchase log, the
signals derived from it (``user_signals``: counts, recency, the DP-released preference vectors), the profile
fragments and what the user told the assistant in earlier sessions (``feedback``: rejected items, prices found too
high, stated diets). ``read_user_context`` reads them in one place — three profile reads (purchase and feedback
events in one, release, fragments) plus the store's clock — and every later stage takes the ``UserContext`` instead
of going back to the store.

Inside Triton the retriever and the reranker are separate models, so the context travels between them as one
BYTES tensor (``to_bytes`` / ``from_bytes``: JSON, no pickle — the bytes may come from a client). Only what the
stages after the retriever read travels: the purchases as columns, the signals, the feedback; the fragments are the
retriever's alone (it turns them into PROFILE_FACTS) and stay behind. On the default build this is ~25 KB instead
of ~62 KB and a few times faster to write and read, and it is written and read on every request.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from recllm.catalog.product_catalog import Catalog
from recllm.profile.events import EXPLANATION_STYLES, FEEDBACK_KINDS
from recllm.profile.feedback import FeedbackSignals, feedback_signals
from recllm.profile.records import EventRow, ProfileFragment
from recllm.profile.storage import ProfileStorage
from recllm.profile.user_signals import (
    UserSignals, check_preference_source, compute_user_signals, with_released_preferences,
)

CONTEXT_FORMAT_VERSION = 4  # 2: feedback signals; 3: purchases as columns, no fragments; 4: header line + body
MAX_CONTEXT_BYTES = 8 * 1024 * 1024  # a heavy user's context is tens of KB; anything near this is not ours


class UserContextError(ValueError):
    """The serialized context cannot be read (wrong format, version or user)."""


@dataclass
class UserContext:
    user_id: str
    now_ts: int                                   # the profile's clock for every recency feature of this request
    purchases: list[EventRow]                     # time order
    signals: UserSignals
    fragments: list[ProfileFragment] = field(default_factory=list)
    feedback: FeedbackSignals = field(default_factory=FeedbackSignals)

    def to_bytes(self) -> bytes:
        """The context for the stages after the retriever: everything but the fragments (see the module doc), as
        one JSON header line (format version, user, clock) and the JSON body (purchases, signals, feedback). The
        body does not depend on the clock, so a context kept by ``UserContextCache`` encodes it once per version."""
        header = json.dumps({"version": CONTEXT_FORMAT_VERSION, "user_id": self.user_id, "now_ts": self.now_ts},
                            ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return header + b"\n" + self.body_bytes()

    def body_bytes(self) -> bytes:
        body = self.__dict__.get("_body")
        if body is None:
            body = json.dumps({
                "purchases": _purchases_to_json(self.purchases),
                "signals": _signals_to_json(self.signals),
                "feedback": _feedback_to_json(self.feedback),
            }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self.__dict__["_body"] = body
        return body

    @classmethod
    def from_bytes(cls, data: bytes, expected_user_id: str, bodies: "DecodedBodies | None" = None) -> "UserContext":
        """The context serialized by ``to_bytes`` (``fragments`` empty: they do not travel); refuses another user's
        context or a malformed one. ``bodies``: bodies decoded before, reused when the same bytes come again."""
        if len(data) > MAX_CONTEXT_BYTES:
            raise UserContextError(f"user context is oversized: {len(data)} bytes > {MAX_CONTEXT_BYTES}")
        try:
            head, newline, body = data.partition(b"\n")
            header = json.loads(head.decode("utf-8"))
            if not isinstance(header, dict) or header.get("version") != CONTEXT_FORMAT_VERSION:
                version = header.get("version") if isinstance(header, dict) else None
                raise UserContextError(f"user context version {version!r} is not {CONTEXT_FORMAT_VERSION}")
            if not newline:
                raise ValueError("no body after the header line")
            user_id, now_ts = str(header["user_id"]), int(header["now_ts"])
            purchases, signals, feedback = bodies.decode(body) if bodies is not None else _decode_body(body)
        except UserContextError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UserContextError(f"user context is malformed: {type(exc).__name__}: {exc}") from exc
        if user_id != expected_user_id or signals.user_id != expected_user_id:
            raise UserContextError("user context belongs to another user than the request's user_id")
        return cls(user_id=user_id, now_ts=now_ts, purchases=purchases, signals=signals, feedback=feedback)


def _decode_body(body: bytes) -> tuple[list[EventRow], UserSignals, FeedbackSignals]:
    raw = json.loads(body.decode("utf-8"))
    return (_purchases_from_json(raw["purchases"]), _signals_from_json(raw["signals"]),
            _feedback_from_json(raw["feedback"]))


class DecodedBodies:
    """The last context bodies a stage decoded, by a digest of their bytes: the same user at the same profile version
    sends the same body on every request, and decoding it (~1 ms for a typical user) is then done once. What comes
    back is shared between requests and must not be changed (no stage changes a context). The caller checks the user
    of every request against the decoded signals (``from_bytes``), so a body cannot serve another user; the bytes
    reach here only after the stage seal was verified.

    Bounded by count (``max_bodies``) and by the bodies' encoded bytes (``max_bytes``; decoded they take ~3x as
    much): a body grows with the user's history up to ``MAX_CONTEXT_EVENTS`` events, and a count bound alone let
    every reply stub grow ~15 MB a minute in the soak as the kept bodies grew (512 x ~300 KB decoded). The newest
    body is always kept."""

    def __init__(self, max_bodies: int = 512, max_bytes: int = 16 << 20):
        for name, value in (("max_bodies", max_bodies), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DecodedBodies {name} must be an int >= 1, got {value!r}")
        self.max_bodies, self.max_bytes = max_bodies, max_bytes
        self._decoded: OrderedDict[bytes, tuple[tuple, int]] = OrderedDict()  # digest -> (decoded, body bytes)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.kept_bytes = 0

    def decode(self, body: bytes) -> tuple[list[EventRow], UserSignals, FeedbackSignals]:
        key = hashlib.blake2b(body, digest_size=16).digest()
        with self._lock:
            kept = self._decoded.get(key)
            if kept is not None:
                self._decoded.move_to_end(key)
                self.hits += 1
                return kept[0]
            self.misses += 1
        decoded = _decode_body(body)
        with self._lock:
            if key not in self._decoded:
                self._decoded[key] = (decoded, len(body))
                self.kept_bytes += len(body)
            while len(self._decoded) > 1 and (len(self._decoded) > self.max_bodies
                                              or self.kept_bytes > self.max_bytes):
                self.kept_bytes -= self._decoded.popitem(last=False)[1][1]
        return decoded

    def __len__(self) -> int:
        return len(self._decoded)


# A request reads at most this many of the user's newest purchase and feedback events: the per-request cost stays
# bounded however long the history grows (the 10-minute soak grew users by ~4,000 events each and the rank p50 with
# them, 343 -> 1,178 ms). The whole history still shapes the profile through the refresh: the DP-released preference
# vectors, fragments and temporal histograms are derived from all of it.
MAX_CONTEXT_EVENTS = 1000


def read_user_context(profile: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray, user_id: str,
                      preference_source: str = "released", max_events: int = MAX_CONTEXT_EVENTS) -> UserContext:
    """Read the user's newest ``max_events`` purchases and feedback events, DP release and fragments once; derive
    the signals with the store's clock."""
    check_preference_source("read_user_context preference_source", preference_source)
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events <= 0:
        raise ValueError(f"read_user_context max_events must be a positive int, got {max_events!r}")
    events = profile.events_of(user_id, kind=("purchase", *FEEDBACK_KINDS), limit=max_events)
    purchases = [e for e in events if e.kind == "purchase"]
    now_ts = profile.latest_timestamp() or 0
    released = preference_source == "released"
    signals = compute_user_signals(user_id, purchases, catalog, item_vectors, now_ts, preferences=not released)
    if released:
        signals = with_released_preferences(signals, profile.released_preferences_of(user_id))
    return UserContext(user_id, now_ts, purchases, signals, profile.fragments_of(user_id),
                       feedback_signals((e for e in events if e.kind != "purchase"), catalog))


class UserContextCache:
    """``read_user_context`` with the last reads of up to ``max_users`` users kept, each tagged with the user's
    profile version (``ProfileStorage.user_version``), which every write to what the context holds changes.

    A read asks the store for the user's version first, then returns the kept context when it was read at that
    version, with the store's clock read now (the context's one time-dependent part); otherwise it reads the context
    and keeps it. Asking first makes a race harmless: a write landing between the two reads makes the kept copy newer
    than its tag, and the next request re-reads. No version (a store or file without them, a forgotten user): read
    every time, keep nothing. ``max_users`` 0 turns the cache off. ``max_kept_events`` bounds the purchases the kept
    contexts hold together (a context grows with the user's history up to ``max_events``; the newest is always kept).
    Safe to share between threads."""

    def __init__(self, profile: ProfileStorage, catalog: Catalog, item_vectors: np.ndarray,
                 preference_source: str = "released", max_users: int = 1024,
                 max_events: int = MAX_CONTEXT_EVENTS, max_kept_events: int = 200_000):
        check_preference_source("UserContextCache preference_source", preference_source)
        if isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 0:
            raise ValueError(f"UserContextCache max_users must be an int >= 0, got {max_users!r}")
        if isinstance(max_kept_events, bool) or not isinstance(max_kept_events, int) or max_kept_events < 1:
            raise ValueError(f"UserContextCache max_kept_events must be an int >= 1, got {max_kept_events!r}")
        self.profile, self.catalog, self.item_vectors = profile, catalog, item_vectors
        self.preference_source, self.max_users, self.max_events = preference_source, max_users, max_events
        self.max_kept_events = max_kept_events
        self._kept: OrderedDict[str, tuple[int, UserContext]] = OrderedDict()
        self.kept_events = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def read(self, user_id: str) -> UserContext:
        version = self.profile.user_version(user_id) if self.max_users else None
        with self._lock:
            kept = self._kept.get(user_id)
            if kept is not None and version is not None and kept[0] == version:
                self._kept.move_to_end(user_id)
                self.hits += 1
                fresh = dataclasses.replace(kept[1], now_ts=self.profile.latest_timestamp() or 0)
                fresh.__dict__["_body"] = kept[1].__dict__.get("_body")  # the encoded body, when a stage sent it
                return fresh
            self.misses += 1
            if version is None:
                self._drop(user_id)
        context = read_user_context(self.profile, self.catalog, self.item_vectors, user_id, self.preference_source,
                                    self.max_events)
        if version is not None:
            with self._lock:
                self._drop(user_id)
                self._kept[user_id] = (version, context)
                self.kept_events += len(context.purchases)
                while len(self._kept) > 1 and (len(self._kept) > self.max_users
                                               or self.kept_events > self.max_kept_events):
                    self.kept_events -= len(self._kept.popitem(last=False)[1][1].purchases)
        return context

    def _drop(self, user_id: str) -> None:
        kept = self._kept.pop(user_id, None)
        if kept is not None:
            self.kept_events -= len(kept[1].purchases)

    def __len__(self) -> int:
        return len(self._kept)


def _vector_to_json(vector: np.ndarray | None) -> str | None:
    if vector is None:
        return None
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def _vector_from_json(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=np.float32).copy()


# EventRow fields that repeat a few values over a user's purchases (one user, a few services, regions, devices,
# baskets): sent once each, with a small integer per purchase.
_REPEATED_FIELDS = ("user_id", "service", "kind", "basket_id", "region", "device")
# Numeric fields as little-endian arrays in base64: exact, and no number printed or parsed one by one.
_NUMERIC_FIELDS = {"item_id": "<i8", "timestamp": "<i8", "price": "<f8", "quantity": "<i8"}


def _array_to_json(values, dtype: str) -> str:
    return base64.b64encode(np.array(values, dtype=dtype).tobytes()).decode("ascii")


def _array_from_json(text: str, dtype: str) -> list:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype).tolist()


def _purchases_to_json(purchases: list[EventRow]) -> dict:
    """The purchases as one list per EventRow field; a repeated field as its distinct values and an index each."""
    columns = dict(zip(EventRow._fields, zip(*purchases))) if purchases else {f: () for f in EventRow._fields}
    out = {}
    for name, column in columns.items():
        if name in _REPEATED_FIELDS:
            values = {value: k for k, value in enumerate(dict.fromkeys(column))}
            out[name] = {"values": list(values), "index": _array_to_json([values[value] for value in column], "<u4")}
        else:
            out[name] = _array_to_json(column, _NUMERIC_FIELDS[name])
    return out


def _purchases_from_json(raw: dict) -> list[EventRow]:
    columns = []
    for name in EventRow._fields:
        column = raw[name]
        if name in _REPEATED_FIELDS:
            values = column["values"]
            column = list(map(values.__getitem__, _array_from_json(column["index"], "<u4")))
        else:
            column = _array_from_json(column, _NUMERIC_FIELDS[name])
        columns.append(column)
    if len({len(column) for column in columns}) != 1:
        raise UserContextError("user context purchases have columns of different lengths")
    return list(map(_event_row, zip(*columns)))


_event_row = functools.partial(tuple.__new__, EventRow)  # what EventRow._make does, without a Python frame per row


def _counter_to_json(counter: Counter) -> list:
    return [[list(key) if isinstance(key, tuple) else key, count] for key, count in counter.items()]


def _counter_from_json(rows: list) -> Counter:
    return Counter({(tuple(key) if isinstance(key, list) else key): int(count) for key, count in rows})


_COUNTERS = ("category_counts", "service_category_counts", "parent_category_counts", "family_counts", "tag_counts",
             "brand_counts")


def _signals_to_json(signals: UserSignals) -> dict:
    return {
        "user_id": signals.user_id, "num_purchases": signals.num_purchases,
        "pref_long": _vector_to_json(signals.pref_long), "pref_short": _vector_to_json(signals.pref_short),
        **{name: _counter_to_json(getattr(signals, name)) for name in _COUNTERS},
        "family_last_ts": [[key, ts] for key, ts in signals.family_last_ts.items()],
        "median_price": signals.median_price, "last_ts": signals.last_ts,
    }


def _signals_from_json(raw: dict) -> UserSignals:
    return UserSignals(
        user_id=str(raw["user_id"]), num_purchases=int(raw["num_purchases"]),
        pref_long=_vector_from_json(raw["pref_long"]), pref_short=_vector_from_json(raw["pref_short"]),
        **{name: _counter_from_json(raw[name]) for name in _COUNTERS},
        family_last_ts={key: int(ts) for key, ts in raw["family_last_ts"]},
        median_price=None if raw["median_price"] is None else float(raw["median_price"]),
        last_ts=None if raw["last_ts"] is None else int(raw["last_ts"]),
    )


def _feedback_to_json(feedback: FeedbackSignals) -> dict:
    return {"rejected": [[item, ts] for item, ts in feedback.rejected.items()],
            "too_expensive": [[category, price] for category, price in feedback.too_expensive.items()],
            "diets": [[tag, count] for tag, count in feedback.diets.items()],
            "explain_requests": feedback.explain_requests, "style": feedback.style, "style_ts": feedback.style_ts}


def _feedback_from_json(raw: dict) -> FeedbackSignals:
    return FeedbackSignals(rejected={int(item): int(ts) for item, ts in raw["rejected"]},
                           too_expensive={str(category): float(price) for category, price in raw["too_expensive"]},
                           diets=Counter({str(tag): int(count) for tag, count in raw["diets"]}),
                           explain_requests=int(raw["explain_requests"]),
                           style=_style_from_json(raw["style"]), style_ts=int(raw["style_ts"]))


def _style_from_json(style) -> str | None:
    if style is not None and style not in EXPLANATION_STYLES:
        raise ValueError(f"feedback style must be one of {EXPLANATION_STYLES} or null, got {style!r}")
    return style
