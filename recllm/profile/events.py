"""The behaviour event: one user's action on one item in one service, the unit the unified profile is built from.

Every source of events — the services' real-time stream (``profile_service``), the real-data loaders
(``recllm.datasets``) and the synthetic generators (``recllm.synthetic``) — produces these records;
``event_schema`` validates them before they enter the store.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_KINDS: tuple[str, ...] = ("view", "search", "add_to_cart", "purchase", "rating", "return")
DEVICES: tuple[str, ...] = ("ios", "android", "web")


@dataclass(frozen=True)
class Event:
    """One behaviour event. For ``kind == "rating"`` the ``quantity`` field holds the star rating 1..5."""

    user_id: str          # "u000123"
    service: str
    item_id: int
    kind: str             # one of EVENT_KINDS
    timestamp: int        # unix seconds
    basket_id: str | None # set for add_to_cart / purchase / rating / return
    price: float
    quantity: int
    region: str           # coarse region: "moscow", "spb", ...
    device: str           # one of DEVICES
    event_id: str | None = None  # the client's id: a retried event with a stored (user_id, event_id) is skipped
