"""The nearest relaxation of a goal whose constraints leave no unseen candidate (the ``nothing_left`` act).

Tried in order, each with a real retrieval under the relaxed constraint, so the offer is one the next turn can
keep: the same request and diet in another service; the diet alone in the same service (a neighbouring category);
the request without its budget. The first that the retriever can fill is offered. Another service and a higher
budget count only candidates of the kinds (catalog categories) the goal has shown: the retriever always returns
its nearest items, and «64 more options» of groceries is no answer to a gift that ran out on Megamarket. The offer
carries those categories, and the turn that takes it is held to them (``DialogueState.kinds``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from recllm.dialogue.dialogue_state import DIET_PHRASES, DialogueState, offers_made
from recllm.rag.rec_request import RecRequest, parse_request

SERVICES = ("samokat", "megamarket", "kuper")


@dataclass(frozen=True)
class Relaxation:
    kind: str              # "service" | "category" | "budget"
    service: str           # where the relaxed request finds items
    count: int             # unseen candidates it finds (of ``categories`` when set)
    query: str
    categories: tuple[str, ...] = ()  # the kinds the count is held to (the goal's); empty: any


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


CategoryOf = Callable[[Sequence[int]], list[str]]  # item ids -> their catalog category ids

HELD_TO_KINDS = ("service", "budget")  # the relaxations that keep the goal's kinds ("category" changes them)


def goal_kinds(state: DialogueState, category_of: CategoryOf | None) -> tuple[str, ...]:
    """The categories the goal's items so far belong to (held kinds first); empty when unknown."""
    if state.kinds:
        return state.kinds
    if category_of is None or not state.shown:
        return ()
    return tuple(sorted(set(category_of(list(state.shown)))))


def nearest_relaxation(stages, request: RecRequest, state: DialogueState, exclude: frozenset[int], service: str,
                       category_of: CategoryOf | None = None,
                       described: Callable[[Sequence[int]], np.ndarray] | None = None,
                       allowed: Callable[[Sequence[int], str], np.ndarray] | None = None) -> Relaxation | None:
    """The first relaxation under which ``stages.retrieve`` finds unseen candidates (of the goal's kinds, for another
    service or budget, when ``category_of`` tells them; those the goal's description holds, [M] bool by
    ``described``, when it has one: «а влажный?» counts wet cat food; those the output guard lets through for the
    relaxed query, [M] bool by ``allowed(ids, query)``: «капли для глаз» was offered «24 варианта» in Kuper that were
    all cold remedies the guard then held back); None when none does. When the previous turns already offered some
    and the user asked again («ещё», «что-нибудь другое») instead of taking one, those not offered yet are tried
    first: an offer made before only when no other can be filled."""
    kinds = goal_kinds(state, category_of)
    tries = relaxed_requests(request, state, exclude, service)
    made = offers_made(state)
    if made:  # (a stable sort: the order of the rest stays)
        tries.sort(key=lambda t: (t[0], t[1].service if t[0] == "service" else service) in made)
    for kind, relaxed, excluded in tries:
        candidates = stages.retrieve(relaxed, stages.encode(relaxed.query), excluded)
        ids = np.asarray(candidates.candidate_ids)
        held = kinds if kind in HELD_TO_KINDS else ()
        if held and len(ids):
            ids = ids[np.isin(np.array(category_of(ids.tolist()), dtype=object), list(held))]
        if described is not None and len(ids):
            ids = ids[described(ids.tolist())]
        if allowed is not None and len(ids):
            ids = ids[allowed(ids.tolist(), relaxed.query)]
        if len(ids):
            return Relaxation(kind, candidates.service, len(ids), relaxed.query, held)
    return None
