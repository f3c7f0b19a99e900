"""Record types of the synthetic ecosystem: anonymized user seeds and conversational queries (events: ``recllm.profile.events``).

Kept apart from ``synthetic.ecosystem`` so the generators (``synthetic.behaviour``, ``synthetic.queries``) can
build them without importing the orchestrator; import them from ``recllm.synthetic.ecosystem``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
