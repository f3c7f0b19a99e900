"""Record types of the synthetic ecosystem: behaviour events, anonymized user seeds, conversational queries.

Kept apart from ``synthetic_ecosystem`` so the generators (``synthetic_behaviour``, ``synthetic_queries``) can
build them without importing the orchestrator; import them from ``recllm.synthetic_ecosystem``.
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


@dataclass(frozen=True)
class UserProfileSeed:
    """Anonymized demographics known to the services plus latent traits (evaluation only). No names or contacts."""

    user_id: str
    age_band: str
    region: str
    traits: frozenset[str]
    kid_age: int | None   # for parents


@dataclass(frozen=True)
class QueryExample:
    """A conversational request with its ground truth."""

    user_id: str
    service: str
    text: str
    language: str                        # "ru" | "en"
    intent: str                          # a key of INTENTS
    relevant_item_ids: tuple[int, ...]   # all in-stock items of `service` satisfying the request, sorted
    target_item_id: int                  # the one the user picks; depends on traits and history
    timestamp: int                       # after all of this user's history events
    max_price: float | None              # budget stated in the text
