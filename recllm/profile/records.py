"""The records the profile storage returns, shared by every backend and by the code that reads the profile.

Kept apart from the backends so retrieval, ranking and explanations type against ``profile.storage.ProfileStorage``
and these records, never against the SQLite or PostgreSQL class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class EventRow(NamedTuple):
    """One stored event (a NamedTuple: profiles are read per request and tuples build fastest)."""

    user_id: str
    service: str
    item_id: int
    kind: str
    timestamp: int
    basket_id: str | None
    price: float
    quantity: int
    region: str
    device: str


def event_row(event) -> tuple:
    """The stored columns of an event record, ``EventRow``'s fields then the client's ``event_id`` (None when the
    event has none: build-time and imported events; an empty id from a protobuf message counts as none)."""
    return (event.user_id, event.service, event.item_id, event.kind, event.timestamp, event.basket_id, event.price,
            event.quantity, event.region, event.device, getattr(event, "event_id", None) or None)


class LedgerEntry(NamedTuple):
    """Privacy budget one user spent in one window: the window's mechanisms (``MechanismRun``) composed by the
    accountant of ``profile.differential_privacy``, stated as ε at the window's δ."""

    user_id: str
    window_start: int
    window_end: int
    epsilon_spent: float  # composed ε of every mechanism charged to the window, at delta_spent
    delta_spent: float  # the window's δ
    releases: int  # preference releases in the window (the next release's index)


PREFERENCE_RELEASE = "preference_release"
ADAPTER_UPDATE = "adapter_update"
MECHANISM_KINDS = (PREFERENCE_RELEASE, ADAPTER_UPDATE)


class MechanismRun(NamedTuple):
    """One differentially private mechanism run on a user's data, as a (subsampled) Gaussian accountant sees it."""

    user_id: str
    window_start: int
    kind: str  # one of MECHANISM_KINDS
    noise_multiplier: float  # σ / Δ, Δ the L2 sensitivity to one purchase event
    sample_rate: float  # Poisson sampling rate of each step (1.0: no subsampling)
    steps: int
    ts: int  # when it ran


class PreferenceRelease(NamedTuple):
    """The differentially private preference vectors last released for a user (what the model may read)."""

    user_id: str
    window_start: int
    release_index: int  # 0-based index of this release within its window
    released_ts: int
    epsilon: float  # cost of this release
    delta: float
    sigma: float  # Gaussian noise std per coordinate
    clip_norm: float  # per-event L2 clip C of each vector's contribution
    history_digest: str  # digest of the purchases the release was computed from
    pref_long: np.ndarray  # [D] unit
    pref_short: np.ndarray  # [D] unit


@dataclass(frozen=True)
class ProfileFragment:
    """One fact about a user, in both languages, with a unit vector in item space."""

    user_id: str
    fragment_key: str
    service: str
    category_id: str
    text_ru: str
    text_en: str
    sensitive: bool
    weight: float
    vector: np.ndarray  # [D]

    def text(self, language: str) -> str:
        return self.text_en if language == "en" else self.text_ru
