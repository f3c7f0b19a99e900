"""The behaviour event: one user's action on one item in one service, the unit the unified profile is built from.

Every source of events — the services' real-time stream (``profile_service``), the chat's feedback
(``recllm.dialogue.chat_engine`` through ``recllm.profile.feedback``), the real-data loaders (``recllm.datasets``) and
the synthetic generators (``recllm.synthetic``) — produces these records;
``event_schema`` validates them before they enter the store.
"""

from __future__ import annotations

from dataclasses import dataclass

BEHAVIOUR_KINDS: tuple[str, ...] = ("view", "search", "add_to_cart", "purchase", "rating", "return")
# What the user told the assistant about a shown item (``recllm.profile.feedback``): «не то» / "something else"
# rejects it, «подешевле» finds it too expensive, a stated diet («без сахара») is kept per catalog diet tag, «почему?»
# asks why it was shown (a user who asks often gets detailed explanations), «объясняй подробнее» / «покороче» sets
# the explanations' style outright (the latest such event wins).
DIET_TAGS: tuple[str, ...] = ("sugar_free", "lactose_free", "vegan", "vegetarian")  # (vegetarian: a derived mark)
FEEDBACK_REJECT = "feedback_reject"
FEEDBACK_CHEAPER = "feedback_cheaper"
FEEDBACK_EXPLAIN = "feedback_explain"
FEEDBACK_DIET_KINDS: dict[str, str] = {tag: f"feedback_diet_{tag}" for tag in DIET_TAGS}
EXPLANATION_STYLES: tuple[str, ...] = ("short", "detailed")
FEEDBACK_STYLE_KINDS: dict[str, str] = {style: f"feedback_style_{style}" for style in EXPLANATION_STYLES}
FEEDBACK_KINDS: tuple[str, ...] = (FEEDBACK_REJECT, FEEDBACK_CHEAPER, FEEDBACK_EXPLAIN, *FEEDBACK_DIET_KINDS.values(),
                                   *FEEDBACK_STYLE_KINDS.values())
EVENT_KINDS: tuple[str, ...] = BEHAVIOUR_KINDS + FEEDBACK_KINDS
DEVICES: tuple[str, ...] = ("ios", "android", "web")  # the services' apps (the synthetic users' devices)
CHAT_DEVICE = "chat"  # feedback given in the conversational assistant
EVENT_DEVICES: tuple[str, ...] = DEVICES + (CHAT_DEVICE,)


@dataclass(frozen=True)
class Event:
    """One behaviour event. For ``kind == "rating"`` the ``quantity`` field holds the star rating 1..5."""

    user_id: str          # "u000123"
    service: str
    item_id: int
    kind: str             # one of EVENT_KINDS (behaviour or feedback)
    timestamp: int        # unix seconds
    basket_id: str | None # set for add_to_cart / purchase / rating / return
    price: float
    quantity: int
    region: str           # coarse region: "moscow", "spb", ...
    device: str           # one of EVENT_DEVICES
    event_id: str | None = None  # the client's id: a retried event with a stored (user_id, event_id) is skipped
