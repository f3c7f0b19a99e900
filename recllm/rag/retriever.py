"""Retriever: candidate items from the requested service plus the user's relevant profile fragments.

Candidates come from three sources, so both the query and the person shape the list:
1. FAISS search with the query vector over the service's catalog;
2. the same search with the query blended with the user's long-term preference vector (cross-service: what the
   user buys anywhere pulls similar items of this service up) — the differentially private release of it
   (``profile.differential_privacy``), read from the profile store;
3. the user's earlier purchases that are sold in this service (repeat purchases, "как в прошлый раз");
except when the request names a kind of product («молоко», «корм для кошек», "coffee";
``catalog.product_terms``): then the candidates are the items of that kind in the service (the nearest to the query
up to ``num_candidates``, the user's repeat purchases of the kind always among them), so the user's history orders
them but never adds another kind, and a kind the constraints rule out leaves nothing (the
dialogue manager then offers the nearest relaxation) instead of something else. A request with no service goes to a
service that sells the kind.
Then the privacy/availability filter: only in-stock items of the service, within the stated budget, with the
stated dietary tags ("без лактозы" → lactose_free), no children's goods for a request that names only grown-up
recipients («подарок маме»), toys only of the age of the child a request names («сыну 2 года»); health/medicine
items only for a query about that domain and only there (the same rule applies to fragments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recllm.catalog.diet_marks import derived_tag_masks
from recllm.catalog.product_catalog import SERVICES, TOY_AGE_BANDS, Catalog
from recllm.catalog.product_terms import Lemmatizer, ProductTerms, kind_word
from recllm.rag.catalog_index import CatalogIndex
from recllm.profile.records import ProfileFragment
from recllm.profile.storage import ProfileStorage
from recllm.rag.fragment_index import UserFragmentIndex
from recllm.rag.rec_request import ANIMALS, RecRequest, RequestError
from recllm.safety.health_rule import (is_health_query, item_allowed, names_health_goods_only, retrievable_fragments,
                                       sensitive_item_mask, words_ask_for_health)
from recllm.profile.user_context import UserContext, UserContextCache
from recllm.profile.user_signals import UserSignals, check_preference_source
from recllm.config.field_checks import require_in_interval


@dataclass
class RetrieverConfig:
    num_candidates: int = 64
    preference_weight: float = 0.35  # weight of the long-term preference vector in the blended search vector
    max_repeat_candidates: int = 24
    num_fragments: int = 4
    # The profile facts are about the kinds of the best this-many candidates (their leaf categories, or a sibling
    # under the same sub-category; the ranker reorders all candidates, so by default all of them): a request for
    # cat food cites no dog-food habit; 0: the facts nearest the query, whatever they are about.
    fact_candidates: int = 64
    # The query is "about health" when its nearest item, or this share of its nearest health_vote_k, is a health item.
    health_vote_k: int = 5
    health_vote_threshold: float = 0.4
    # "released": the user's differentially private preference release from the profile store (no release: the
    # vector parts are cold); "raw": the exact decayed sums (tests and analysis only — never serve it).
    preference_source: str = "released"
    # Users whose last profile read is kept for the next request while their profile version stands
    # (``UserContextCache``; ~0.2 MB per user of the default build, at most ~0.7 MB at MAX_CONTEXT_EVENTS); 0: off.
    context_cache_users: int = 512
    # A request that names a kind of product gets only items of that kind (``ProductTerms``); False: off
    named_kinds: bool = True

    def __post_init__(self) -> None:
        for name in ("num_candidates", "health_vote_k"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RetrieverConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_repeat_candidates", "num_fragments", "context_cache_users", "fact_candidates"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetrieverConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        require_in_interval(self, "preference_weight", "[0, 1]")
        require_in_interval(self, "health_vote_threshold", "(0, 1]")
        check_preference_source("RetrieverConfig.preference_source", self.preference_source)


# Subtrees of the category tree that hold children's goods (toys, diapers, kids' books, baby food): never offered to a
# request for a grown-up (``RecRequest.for_adult``).
CHILDREN_CATEGORY_ROOTS = frozenset({"kids", "grocery/baby_food"})
# Pet goods: everything a request for an animal may get (``RecRequest.for_pet``: "something for my cat" got board
# games and chocolate, «витамины для кошек» the pharmacy's multivitamins).
PET_CATEGORY_ROOTS = frozenset({"pet"})


def in_subtrees(catalog: Catalog, roots: frozenset[str]) -> np.ndarray:
    """[N] bool by item id: the item's category is one of ``roots`` or under one."""
    mask = np.zeros(len(catalog.items), dtype=bool)
    under = catalog.item_ids_under()
    for root in roots:
        mask[under.get(root, [])] = True
    return mask


def name_head(name: str, lemmatizer: Lemmatizer) -> str:
    """An item's kind as its name says it: the lemma of the name's head noun (``product_terms.kind_word``:
    «Смартфон Samsung …» → «смартфон», «Чехол для смартфона …» → «чехол», «Беспроводные наушники …» → «наушник»),
    or, for a name that opens otherwise, its first word, lower-case."""
    kind = kind_word(name, lemmatizer)
    if kind is not None:
        return kind
    words = re.findall(r"[^\W\d_]+", name.lower().replace("ё", "е"))
    return words[0] if words else ""


@dataclass(frozen=True)
class ItemArrays:
    """The catalog's per-item fields the filter reads, as arrays by item id (the catalog is immutable), so a
    request's candidates are filtered in a few vector operations instead of one Python call per item."""
    service: np.ndarray                    # [N] int8, index into SERVICES
    in_stock: np.ndarray                   # [N] bool
    price: np.ndarray                      # [N] float64
    kind: np.ndarray                       # [N] int64: the item's kind (``name_head``: «смартфон», «чехол»), indexed
    family: np.ndarray                     # [N] int64
    sensitive: np.ndarray                  # [N] bool: a health / pharmacy item
    for_children: np.ndarray               # [N] bool: in a ``CHILDREN_CATEGORY_ROOTS`` subtree
    for_pets: np.ndarray                   # [N] bool: in a ``PET_CATEGORY_ROOTS`` subtree
    for_animal: dict[str, np.ndarray]      # animal (``ANIMALS``) -> [N] bool: a pet good whose name names no other
    toy_ages: np.ndarray                   # [N, 2] int: (youngest, oldest) years of a toy's leaf; (-1, -1): no toy
    tagged: dict[str, np.ndarray]          # tag (and derived mark: ``derived_tag_masks``) -> [N] bool
    category_members: dict[str, np.ndarray]  # category id (every level) -> its subtree's item ids, sorted
    family_member: dict[str, dict[int, int]]  # service -> family id -> the family's item in that service

    @classmethod
    def of(cls, catalog: Catalog, lemmatizer: Lemmatizer | None = None) -> "ItemArrays":
        items = catalog.items
        tags = sorted({tag for item in items for tag in item.tags})
        members: dict[str, dict[int, int]] = {service: {} for service in SERVICES}
        for item in items:
            members[item.service][item.family_id] = item.item_id
        return cls(
            service=np.array([SERVICES.index(item.service) for item in items], dtype=np.int8),
            in_stock=np.array([item.in_stock for item in items], dtype=bool),
            price=np.array([item.price for item in items], dtype=np.float64),
            kind=np.unique([name_head(item.name, lemmatizer or Lemmatizer()) for item in items],
                           return_inverse=True)[1].astype(np.int64),
            family=np.array([item.family_id for item in items], dtype=np.int64),
            sensitive=sensitive_item_mask(catalog),
            for_children=in_subtrees(catalog, CHILDREN_CATEGORY_ROOTS),
            for_pets=(pets := in_subtrees(catalog, PET_CATEGORY_ROOTS)),
            for_animal={animal: pets & ~np.array([any(other.search(item.name) for name, other in ANIMALS.items()
                                                      if name != animal) for item in items], dtype=bool)
                        for animal in ANIMALS},
            toy_ages=np.array([TOY_AGE_BANDS.get(item.category_id, (-1, -1)) for item in items], dtype=np.int64),
            tagged={**{tag: np.array([tag in item.tags for item in items], dtype=bool) for tag in tags},
                    **derived_tag_masks(catalog)},
            family_member=members,
            category_members={c: np.array(sorted(ids), dtype=np.int64) for c, ids in catalog.item_ids_under().items()},
        )

    def in_categories(self, categories: frozenset[str]) -> np.ndarray:
        """The item ids [M] under any of ``categories``; a category the catalog lacks is the request's error."""
        unknown = sorted(categories - set(self.category_members))
        if unknown:
            raise RequestError(f"CATEGORY_IDS {unknown[0]!r} is no category of this catalog")
        return np.unique(np.concatenate([self.category_members[c] for c in sorted(categories)]))


@dataclass
class Retrieval:
    service: str
    candidate_ids: np.ndarray  # [C] int64, best first
    candidate_scores: np.ndarray  # [C] float32, query·item
    fragments: list[tuple[ProfileFragment, float]] = field(default_factory=list)
    health_query: bool = False
    context: UserContext | None = None  # the user's profile as read for this request, for the next stages


class Retriever:
    def __init__(self, catalog: Catalog, catalog_index: CatalogIndex, profile: ProfileStorage, config: RetrieverConfig):
        self.catalog = catalog
        self.index = catalog_index
        self.profile = profile
        self.config = config
        self.terms = ProductTerms.of(catalog)
        self.items = ItemArrays.of(catalog, self.terms.lemmatizer)  # (its parses of the names are cached there)
        self.sensitive_items = self.items.sensitive
        # per health routing, which items it may get (the ``allowed`` rule, for the named kinds)
        self.routing_allows = {health: self.items.sensitive == item_allowed(True, health) for health in (False, True)}
        self.contexts = UserContextCache(profile, catalog, catalog_index.item_vectors, config.preference_source,
                                         config.context_cache_users)

    def probe(self, query_vectors: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per service, the nearest items of every query in one search: (scores [B, k], ids [B, k]); k covers
        both the service vote (top 5) and the health vote (top ``health_vote_k``)."""
        k = max(5, self.config.health_vote_k)
        return {service: self.index.search(service, query_vectors, k) for service in SERVICES}

    def infer_service(self, query_vector: np.ndarray, probe: dict | None = None, row: int = 0,
                      among: Sequence[str] = ()) -> str:
        """The service whose best 5 items match the query best (of ``among`` when given)."""
        probe = probe if probe is not None else self.probe(query_vector[None, :])
        means = {}
        for service in among or SERVICES:
            scores = probe[service][0][row, :5]
            means[service] = float(scores.mean()) if scores.size else -1.0
        return max(means, key=means.get)

    def is_health_query(self, query_vector: np.ndarray, probe: dict | None = None, row: int = 0) -> bool:
        probe = probe if probe is not None else self.probe(query_vector[None, :])
        k = self.config.health_vote_k
        hits = []
        for service in SERVICES:
            scores, ids = probe[service]
            hits.extend(zip(scores[row, :k].tolist(), ids[row, :k].tolist()))
        nearest = [item_id for _, item_id in sorted(hits, reverse=True)[:k]]
        return is_health_query(nearest, self.sensitive_items, self.config.health_vote_threshold)

    def read_context(self, user_id: str) -> UserContext:
        """The user's profile for one request, read once (the reranker and explanations reuse it); kept for the
        user's next request while nothing of it changes in the store (``UserContextCache``)."""
        return self.contexts.read(user_id)

    def retrieve(
        self, request: RecRequest, query_vector: np.ndarray, exclude_item_ids: frozenset[int] = frozenset(),
        context: UserContext | None = None,
    ) -> Retrieval:
        return self.retrieve_many([request], query_vector[None, :], [exclude_item_ids],
                                  None if context is None else [context])[0]

    def retrieve_many(
        self, requests: Sequence[RecRequest], query_vectors: np.ndarray,
        exclude_item_ids: Sequence[frozenset[int]] | None = None, contexts: Sequence[UserContext] | None = None,
    ) -> list[Retrieval]:
        """``retrieve`` for requests that arrived together: the FAISS searches of all of them run as one search
        per service (probe) and one per requested service (pools); everything else stays per request, so each
        result equals ``retrieve`` of that request alone. ``query_vectors`` is [B, D]."""
        query_vectors = np.ascontiguousarray(query_vectors, dtype=np.float32)  # [B, D]
        exclude_item_ids = exclude_item_ids or [frozenset()] * len(requests)
        contexts = contexts or [self.read_context(r.user_id) for r in requests]
        probe = self.probe(query_vectors)
        # a request for a child's age is no health query unless it says so in words: «ребёнку 3 года» lies
        # nearest «Омега-3» by its digit, and the pharmacy routing then left Megamarket with nothing; a request for
        # an animal never is (the pharmacy is for people: «витамины для кошек» got multivitamins); one held to
        # categories is one when they are health shelves; one that names a kind of product is one by its words and
        # that kind («купи гречку в пределах 700р» lay nearest a nasal spray, and the vote routed it to the pharmacy,
        # where no buckwheat was left to say it is not sold)
        health = [self.held_to_health(r) if r.categories else
                  not r.for_pet and (self.words_ask_for_health(r.query)
                                     or r.child_age is None and self.terms.named(r.query) is None
                                     and self.is_health_query(query_vectors[b], probe, b))
                  for b, r in enumerate(requests)]
        named = [self.named_items(r, health[b]) for b, r in enumerate(requests)]
        services = [r.service or self.infer_service(query_vectors[b], probe, b, self.selling(named[b]))
                    for b, r in enumerate(requests)]
        # a request that names a kind takes its candidates from the kind: no FAISS search for it
        pools = self.search_pools(services, query_vectors, [c.signals for c in contexts],
                                  [n is None for n in named])
        return [self.finish(r, query_vectors[b], services[b], health[b], pools[b], exclude_item_ids[b], contexts[b],
                            named[b])
                for b, r in enumerate(requests)]

    def check_categories(self, request: RecRequest) -> RecRequest:
        """``request`` when every category it is held to is this catalog's (else the request's error, raised before
        it joins a batch)."""
        if request.categories:
            self.items.in_categories(request.categories)
        return request

    def held_to_health(self, request: RecRequest) -> bool:
        """A request held to categories is a health query when they are health shelves (a need's pharmacy shelf),
        whatever its vector is near ("a gift for my mom she likes cooking" lay nearest the pharmacy)."""
        return bool(self.items.sensitive[self.items.in_categories(request.categories)].any())

    def words_ask_for_health(self, query: str) -> bool:
        """``health_rule.words_ask_for_health`` with the kinds the query names in this catalog, or a query naming only
        health goods (``names_health_goods_only``)."""
        def named_ids(text: str) -> np.ndarray | None:
            found = self.terms.named(text)
            return None if found is None else found.item_ids
        return words_ask_for_health(query, named_ids, self.sensitive_items) \
            or names_health_goods_only(query, named_ids, self.sensitive_items)

    def named_items(self, request: RecRequest, health: bool) -> np.ndarray | None:
        """The items of the kinds the request names that its health routing allows, or None when it names none
        (or only kinds of the other routing: «средство от кашля» names the cleaning products called «Средство …»,
        which a health request never gets, so the word is not read as a kind there). A request for an animal takes
        the pet goods among them, or every pet good when it names no kind; a request held to categories
        (``RecRequest.categories``) the items of those among them, or every item of those."""
        found = self.terms.named(request.query, self.routing_allows[health]) if self.config.named_kinds else None
        named = None if found is None else found.item_ids
        if request.for_pet:  # the pet goods of the kinds it names («игрушку собаке»), or all of them (none named)
            pets = np.flatnonzero(self.items.for_animal[request.animal] if request.animal else self.items.for_pets)
            named = pets if named is None else np.intersect1d(named, pets)
        if request.categories:  # the shelves the dialogue holds the goal to, of the kinds it names or all of them
            held = self.items.in_categories(request.categories)
            named = held if named is None else np.intersect1d(named, held)
        return named

    def selling(self, named: np.ndarray | None) -> tuple[str, ...]:
        """The services with an item of ``named`` in stock (empty: no constraint)."""
        if named is None:
            return ()
        stocked = named[self.items.in_stock[named]]
        return tuple(SERVICES[s] for s in np.unique(self.items.service[stocked]).tolist())

    def finish(self, request: RecRequest, query_vector: np.ndarray, service: str, health: bool, pool: set[int],
               exclude_item_ids: frozenset[int], context: UserContext, named: np.ndarray | None = None
               ) -> Retrieval:
        if named is not None:  # the named kinds' items of this service, every one of them, and nothing else
            ids = named[self.items.service[named] == SERVICES.index(service)]
            if not len(ids) and request.categories:  # none of them here: the held shelves' items of this service
                # («он любит кофе» for a present on Megamarket: the coffee machines, not «nothing here»)
                held = self.items.in_categories(request.categories)
                ids = held[self.items.service[held] == SERVICES.index(service)]
        else:
            pool = pool | self.repeat_candidates(service, context.purchases)
            ids = np.fromiter(pool, dtype=np.int64, count=len(pool))
        ids = ids[self.allowed(ids, service, request, health, exclude_item_ids)]
        ids = self.cheaper_half(ids, request)
        scores = self.index.item_vectors[ids] @ query_vector if len(ids) else np.zeros(0, np.float32)  # [C]
        order = np.argsort(-scores, kind="stable")
        if named is not None and len(order) > self.config.num_candidates:  # the user's repeats of the kind stay
            repeats = np.isin(ids[order], list(self.repeat_candidates(service, context.purchases)))
            room = max(0, self.config.num_candidates - int(repeats.sum()))
            order = order[repeats | (np.cumsum(~repeats) <= room) & ~repeats]
        order = order[: self.config.num_candidates]
        return Retrieval(
            service=service,
            candidate_ids=ids[order],
            candidate_scores=scores[order].astype(np.float32),
            fragments=self.relevant_fragments(context.fragments, query_vector, health, ids[order]),
            health_query=health,
            context=context,
        )

    def search_vectors(self, query_vector: np.ndarray, signals: UserSignals) -> list[np.ndarray]:
        """The query, and the query blended with the user's long-term preference when there is one."""
        vectors = [query_vector]
        if signals.pref_long is not None and self.config.preference_weight > 0:
            blended = (1 - self.config.preference_weight) * query_vector + self.config.preference_weight * signals.pref_long
            vectors.append(blended / max(float(np.linalg.norm(blended)), 1e-8))
        return vectors

    def search_pool(self, service: str, query_vector: np.ndarray, signals: UserSignals) -> set[int]:
        return self.search_pools([service], query_vector[None, :], [signals])[0]

    def search_pools(self, services: Sequence[str], query_vectors: np.ndarray, signals: Sequence[UserSignals],
                     needed: Sequence[bool] | None = None) -> list[set[int]]:
        """Each request's candidate pool (empty where not ``needed``); one FAISS search per service for all requests
        asking it."""
        needed = needed if needed is not None else [True] * len(services)
        rows = [self.search_vectors(query_vectors[b], s) if needed[b] else [] for b, s in enumerate(signals)]
        pools: list[set[int]] = [set() for _ in services]
        for service in dict.fromkeys(s for b, s in enumerate(services) if needed[b]):
            members = [b for b, s in enumerate(services) if s == service and needed[b]]
            stacked = np.stack([v for b in members for v in rows[b]])  # [sum of rows, D]
            # Over-fetch: filters below drop out-of-stock, over-budget and sensitive items.
            _, ids = self.index.search(service, stacked, self.config.num_candidates * 2)
            start = 0
            for b in members:
                found = ids[start:start + len(rows[b])]
                pools[b] = {int(i) for i in found.ravel() if i >= 0}
                start += len(rows[b])
        return pools

    def cheaper_half(self, ids: np.ndarray, request: RecRequest) -> np.ndarray:
        """Of each kind's candidates (``ItemArrays.kind``), those priced at most the kind's median, when the request
        asks for cheap goods and states no budget («недорогие наушники» got 9,490-19,690 ₽ headphones beside 2,690 ₽
        ones; a stated budget says more). Per kind, not per shelf: the smartphones' shelf holds cases and chargers
        too, and «бюджетный смартфон» must keep the cheaper phones, not only what is cheaper than every phone."""
        if not request.cheap or request.max_price is not None or len(ids) < 2:
            return ids
        prices, kinds = self.items.price[ids], self.items.kind[ids]
        keep = np.zeros(len(ids), dtype=bool)
        for kind in np.unique(kinds):
            of_kind = kinds == kind
            keep |= of_kind & (prices <= np.median(prices[of_kind]))
        return ids[keep]

    def repeat_candidates(self, service: str, events: list) -> set[int]:
        """This service's items of the user's purchased families, the most recently bought family first (one item
        per family and service), at most ``max_repeat_candidates``."""
        limit = self.config.max_repeat_candidates
        bought = np.fromiter((e.item_id for e in events if e.kind == "purchase"), dtype=np.int64)[::-1]  # newest first
        if limit == 0 or bought.size == 0:
            return set()
        families = self.items.family[bought]
        _, first_seen = np.unique(families, return_index=True)
        members = self.items.family_member[service]
        found = [members[f] for f in families[np.sort(first_seen)].tolist() if f in members]
        return set(found[:limit])

    def allowed(self, item_ids: np.ndarray, service: str, request: RecRequest, health: bool,
                exclude: frozenset[int]) -> np.ndarray:
        """[C] bool per candidate id: in stock in this service, not excluded, within the budget, with every required
        tag, not a children's item when the request is for a grown-up, pet goods only for an animal, a toy only of
        the stated child's age, and health items for health queries only and only them (``item_allowed``). (Held
        categories choose the candidates before this: ``named_items``.)"""
        items = self.items
        keep = (items.service[item_ids] == SERVICES.index(service)) & items.in_stock[item_ids]
        keep &= self.routing_allows[health][item_ids]
        if exclude:
            keep &= ~np.isin(item_ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        if request.max_price is not None:
            keep &= items.price[item_ids] <= request.max_price
        if request.for_adult:
            keep &= ~items.for_children[item_ids]
        if request.for_pet:  # (the cat's goods for a cat: «кошка не ест сухой корм» got dog food)
            keep &= (items.for_animal[request.animal] if request.animal else items.for_pets)[item_ids]
        if request.child_age is not None:  # toys only of the child's age; everything else as it is
            low, high = request.child_age
            ages = items.toy_ages[item_ids]  # [C, 2]
            keep &= (ages[:, 0] < 0) | ((ages[:, 0] <= high) & (ages[:, 1] >= low))
        for tag in request.required_tags:
            keep &= items.tagged[tag][item_ids] if tag in items.tagged else False
        return keep

    def relevant_fragments(self, fragments: list[ProfileFragment], query_vector: np.ndarray, health: bool,
                           candidate_ids: np.ndarray | None = None) -> list[tuple[ProfileFragment, float]]:
        """The user's facts nearest the query, of those about the best candidates' kinds (``fact_candidates``;
        none when no fact is about them, so a reply cites nothing rather than an unrelated habit)."""
        fragments = retrievable_fragments(fragments, health)
        if candidate_ids is not None and len(candidate_ids) and self.config.fact_candidates:
            kinds = {self.catalog.get(int(i)).category_id for i in candidate_ids[:self.config.fact_candidates]}
            fragments = [f for f in fragments if about_kinds(f.category_id, kinds)]
        return UserFragmentIndex(fragments).search(query_vector, self.config.num_fragments)


def about_kinds(category_id: str, kinds: set[str]) -> bool:
    """Whether a fact about ``category_id`` is about one of the leaf categories ``kinds``: the same one, or a sibling
    under a sub-category (``kids/toys/toddler`` and ``kids/toys/school``; not every ``grocery/…`` leaf)."""
    parent = category_id.rpartition("/")[0]
    return category_id in kinds or ("/" in parent and any(k.rpartition("/")[0] == parent for k in kinds))
