"""The nearest relaxation of a goal whose constraints leave no unseen candidate (the ``nothing_left`` act).

Tried in order, each with a real retrieval under the relaxed constraint, so the offer is one the next turn can
keep: the same request and diet in another service; the diet alone in the same service (a neighbouring category);
the request without its budget. The first that the retriever can fill is offered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recllm.dialogue.dialogue_state import DIET_PHRASES, DialogueState
from recllm.rag.rec_request import RecRequest, parse_request

SERVICES = ("samokat", "megamarket", "kuper")


@dataclass(frozen=True)
class Relaxation:
    kind: str              # "service" | "category" | "budget"
    service: str           # where the relaxed request finds items
    count: int             # unseen candidates it finds
    query: str


def relaxed_requests(request: RecRequest, state: DialogueState, exclude: frozenset[int], service: str
                     ) -> list[tuple[str, RecRequest, frozenset[int]]]:
    tries = [("service", replace(request, service=other), exclude) for other in SERVICES if other != service]
    if state.diet:
        phrases = DIET_PHRASES.get(request.language, DIET_PHRASES["ru"])
        diet_only = " ".join(phrases[t] for t in state.diet if t in phrases)
        if diet_only and diet_only != request.query:
            category = parse_request(request.user_id, diet_only, request.top_k, service)
            tries.append(("category", replace(category, max_price=request.max_price, language=request.language,
                                              required_tags=category.required_tags | request.required_tags), exclude))
    if request.max_price is not None:
        tries.append(("budget", replace(request, max_price=None), exclude))
    return tries


def nearest_relaxation(stages, request: RecRequest, state: DialogueState, exclude: frozenset[int], service: str
                       ) -> Relaxation | None:
    """The first relaxation under which ``stages.retrieve`` finds unseen candidates; None when none does."""
    for kind, relaxed, excluded in relaxed_requests(request, state, exclude, service):
        candidates = stages.retrieve(relaxed, stages.encode(relaxed.query), excluded)
        if len(candidates.candidate_ids):
            return Relaxation(kind, candidates.service, len(candidates.candidate_ids), relaxed.query)
    return None
