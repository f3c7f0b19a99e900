"""Retriever: candidates obey the request's service, stock, budget, tags and exclusions; health privacy; repeats."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recllm.catalog.product_catalog import SERVICES
from recllm.rag.rec_request import RecRequest, parse_request
from recllm.rag.retriever import CHILDREN_CATEGORY_ROOTS, Retriever, RetrieverConfig, name_head
from recllm.profile.user_signals import UserSignals

DIET_TAGS = ("sugar_free", "lactose_free", "vegan")


@pytest.fixture(scope="module")
def retriever(catalog, catalog_index, profile_store, faiss_single_thread) -> Retriever:
    return Retriever(catalog, catalog_index, profile_store, RetrieverConfig())


@pytest.fixture(scope="module")
def query_vectors(ecosystem, trained_encoder) -> np.ndarray:
    """[Q, D] vectors of every synthetic query, in ecosystem.queries order."""
    return trained_encoder.encode([q.text for q in ecosystem.queries])


@pytest.fixture(scope="module")
def health_vector(catalog, item_vectors) -> np.ndarray:
    """A query vector among the health items (the mean of their vectors)."""
    sensitive = [i.item_id for i in catalog.items if catalog.is_sensitive(i)]
    vector = item_vectors[sensitive].mean(axis=0)
    return vector / np.linalg.norm(vector)


def encode(encoder, text: str) -> np.ndarray:
    return encoder.encode([text])[0]


def request(user_id: str, service: str = "", max_price: float | None = None, tags=(), query: str = "q") -> RecRequest:
    return RecRequest(user_id, query, 10, service, "ru", max_price, frozenset(tags))


def users_with_sensitive_fragments(profile_store, ecosystem) -> list[str]:
    return [u.user_id for u in ecosystem.users if any(f.sensitive for f in profile_store.fragments_of(u.user_id))]


# --- config --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("num_candidates", 0, "num_candidates must be > 0"),
    ("health_vote_k", -1, "health_vote_k must be > 0"),
    ("max_repeat_candidates", -1, "max_repeat_candidates must be >= 0"),
    ("num_fragments", -2, "num_fragments must be >= 0"),
    ("context_cache_users", -1, "context_cache_users must be >= 0"),
    ("preference_weight", 1.5, r"preference_weight must be in \[0, 1\]"),
    ("preference_weight", -0.1, r"preference_weight must be in \[0, 1\]"),
    ("health_vote_threshold", 0.0, r"health_vote_threshold must be in \(0, 1\]"),
    ("health_vote_threshold", 1.01, r"health_vote_threshold must be in \(0, 1\]"),
])
def test_config_validation_names_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=rf"RetrieverConfig\.{message}, got {value!r}"):
        RetrieverConfig(**{field: value})


# --- filters -------------------------------------------------------------------------------------------------------

def check_candidates(retrieval, req: RecRequest, exclude: frozenset[int], query_vector, retriever, catalog) -> None:
    ids = retrieval.candidate_ids.tolist()
    assert retrieval.candidate_ids.dtype == np.int64 and retrieval.candidate_scores.dtype == np.float32
    assert len(ids) == len(set(ids)) <= retriever.config.num_candidates
    if req.service:
        assert retrieval.service == req.service
    for item_id in ids:
        item = catalog.get(item_id)
        assert item.service == retrieval.service
        assert item.in_stock
        assert item_id not in exclude
        assert req.max_price is None or item.price <= req.max_price
        assert req.required_tags <= item.tags
        assert retrieval.health_query or not catalog.is_sensitive(item)
    expected_scores = retriever.index.item_vectors[ids] @ query_vector if ids else np.zeros(0)
    np.testing.assert_allclose(retrieval.candidate_scores, expected_scores, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(retrieval.candidate_scores) <= 1e-7)
    assert len(retrieval.fragments) <= retriever.config.num_fragments
    for fragment, _ in retrieval.fragments:
        assert fragment.user_id == req.user_id
        assert retrieval.health_query or not fragment.sensitive


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_candidate_satisfies_the_request(retriever, ecosystem, catalog, query_vectors, data):
    row = data.draw(st.integers(0, len(ecosystem.queries) - 1), label="query")
    user_id = data.draw(st.sampled_from([u.user_id for u in ecosystem.users] + ["u_unknown"]), label="user")
    service = data.draw(st.sampled_from(("",) + SERVICES), label="service")
    max_price = data.draw(st.one_of(st.none(), st.sampled_from([50.0, 150.0, 400.0, 2000.0])), label="max_price")
    tags = data.draw(st.frozensets(st.sampled_from(DIET_TAGS), max_size=2), label="tags")
    exclude = data.draw(st.frozensets(st.integers(0, len(catalog) - 1), max_size=40), label="exclude")
    req = request(user_id, service, max_price, tags)
    retrieval = retriever.retrieve(req, query_vectors[row], exclude)
    check_candidates(retrieval, req, exclude, query_vectors[row], retriever, catalog)


@pytest.mark.parametrize("service", SERVICES)
def test_without_filters_candidates_are_the_best_allowed_items_of_the_service(retriever, catalog, query_vectors,
                                                                             ecosystem, service):
    # 2 × num_candidates covers each tiny service's whole catalog, so the result must be the exact top list.
    query = next(i for i, q in enumerate(ecosystem.queries) if q.intent == "dinner")
    retrieval = retriever.retrieve(request("u000000", service), query_vectors[query])
    assert not retrieval.health_query
    allowed = np.array([i.item_id for i in catalog.in_service(service) if i.in_stock and not catalog.is_sensitive(i)])
    scores = retriever.index.item_vectors[allowed] @ query_vectors[query]
    expected = allowed[np.argsort(-scores, kind="stable")][: retriever.config.num_candidates]
    assert set(retrieval.candidate_ids.tolist()) == set(expected.tolist())


def test_excluding_every_item_gives_an_empty_retrieval(retriever, catalog, query_vectors):
    exclude = frozenset(i.item_id for i in catalog.in_service("samokat"))
    retrieval = retriever.retrieve(request("u000000", "samokat"), query_vectors[0], exclude)
    assert retrieval.candidate_ids.shape == (0,) and retrieval.candidate_scores.shape == (0,)
    assert retrieval.candidate_ids.dtype == np.int64


def test_budget_and_tags_filter_in_the_real_catalog(retriever, catalog, trained_encoder):
    vector = encode(trained_encoder, "повтори мой прошлый заказ, только безлактозное")
    req = request("u000000", "kuper", max_price=300.0, tags={"lactose_free"})
    retrieval = retriever.retrieve(req, vector)
    expected = {i.item_id for i in catalog.in_service("kuper")
                if i.in_stock and i.price <= 300.0 and "lactose_free" in i.tags}
    assert len(expected) >= 2  # and a lactose-free item over the budget exists, so the budget matters
    assert any("lactose_free" in i.tags and i.price > 300.0 for i in catalog.in_service("kuper"))
    # The search pool covers the whole tiny service, so every matching item must be there.
    assert set(retrieval.candidate_ids.tolist()) == expected


def test_a_cheap_request_gets_the_cheaper_half_of_what_it_would_get(retriever, catalog, trained_encoder):
    """Tried as a user: «недорогие наушники» got 9,490-19,690 ₽ headphones beside 2,690 ₽ ones (the word was read by
    nothing). A cheap request without a budget gets, of each kind's candidates of the plain request (the name's head
    noun, ``name_head``), those priced at most the kind's median; a stated budget wins over the word."""
    vector = encode(trained_encoder, "наушники")
    plain = retriever.retrieve(parse_request("u000000", "наушники", 10, "megamarket"), vector)
    cheap = retriever.retrieve(parse_request("u000000", "недорогие наушники", 10, "megamarket"), vector)
    items = [catalog.get(int(i)) for i in plain.candidate_ids]
    prices = {item.item_id: item.price for item in items}
    assert len(prices) >= 4 and len(set(prices.values())) > 1
    kind = {i.item_id: name_head(i.name, retriever.terms.lemmatizer) for i in items}
    medians = {k: float(np.median([i.price for i in items if kind[i.item_id] == k])) for k in set(kind.values())}
    expected = {i.item_id for i in items if i.price <= medians[kind[i.item_id]]}
    assert set(cheap.candidate_ids.tolist()) == expected and len(expected) < len(prices)
    budget = retriever.retrieve(parse_request("u000000", "недорогие наушники до 100000 ₽", 10, "megamarket"), vector)
    assert set(budget.candidate_ids.tolist()) == set(prices)


def test_a_meat_free_request_gets_no_meat_or_fish(retriever, catalog, trained_encoder):
    """«ужин без мяса» came with minced beef: the catalog tags no diet for it, its shelves and dish names say it."""
    from recllm.catalog.diet_marks import has_meat_or_fish

    for text in ("ужин без мяса", "vegetarian dinner"):
        req = parse_request("u000000", text, 10, "samokat")
        assert "vegetarian" in req.required_tags
        kept = retriever.retrieve(req, encode(trained_encoder, text)).candidate_ids.tolist()
        unfiltered = retriever.retrieve(dataclasses.replace(req, required_tags=frozenset()),
                                        encode(trained_encoder, text)).candidate_ids.tolist()
        assert kept and not any(has_meat_or_fish(catalog.get(i), catalog) for i in kept)
        assert any(has_meat_or_fish(catalog.get(i), catalog) for i in unfiltered)  # the mark is what kept it out


# --- health privacy ------------------------------------------------------------------------------------------------

def test_a_health_query_is_recognised_and_surfaces_health_items(retriever, catalog, health_vector):
    assert retriever.is_health_query(health_vector)
    retrieval = retriever.retrieve(request("u000000", "kuper"), health_vector)
    assert retrieval.health_query
    assert any(catalog.is_sensitive(catalog.get(i)) for i in retrieval.candidate_ids.tolist())


def test_a_request_that_names_health_gets_health_items_whatever_its_vector(retriever, catalog, trained_encoder):
    """«что-нибудь от кашля»: the encoder put the query among sweets (live: chocolate for a cough); the words ask
    for the health domain, so the pharmacy shelf it is, and nothing else."""
    text = "что-нибудь от кашля"
    vector = encode(trained_encoder, "хочу сладкого")          # a vector the vote reads as not health
    assert not retriever.is_health_query(vector)
    retrieval = retriever.retrieve(request("u000000", "kuper", query=text), vector)
    ids = retrieval.candidate_ids.tolist()
    assert retrieval.health_query and ids and all(catalog.is_sensitive(catalog.get(i)) for i in ids)
    assert not retriever.retrieve(request("u000000", "kuper", query="таблетки для посудомойки"), vector).health_query


@pytest.mark.parametrize("text", ["хочу полезный ужин", "что взять на завтрак?", "I need cleaning supplies",
                                  "нужны товары для малыша"])
def test_a_non_health_query_never_gets_health_items(retriever, catalog, trained_encoder, text):
    vector = encode(trained_encoder, text)
    assert not retriever.is_health_query(vector)
    for user_id in ("u000000", "u000022"):
        retrieval = retriever.retrieve(request(user_id, "kuper"), vector)
        assert len(retrieval.candidate_ids) > 0
        assert not any(catalog.is_sensitive(catalog.get(i)) for i in retrieval.candidate_ids.tolist())


@pytest.mark.parametrize("text, service, shelf", [("сок с витамином C", "samokat", "grocery/"),
                                                   ("корм для кошек с витаминами", "kuper", "pet/")])
def test_a_supplement_another_product_contains_is_no_health_query(retriever, catalog, trained_encoder, text, service,
                                                                  shelf):
    """«корм для животных с витаминами» got multivitamins: the product named is what it asks for."""
    retrieval = retriever.retrieve(request("u000000", service, query=text), encode(trained_encoder, text))
    ids = retrieval.candidate_ids.tolist()
    assert not retrieval.health_query and ids
    assert not any(catalog.is_sensitive(catalog.get(i)) for i in ids)
    assert catalog.get(ids[0]).category_id.startswith(shelf)
    assert retriever.words_ask_for_health("что-нибудь с витамином D для ребёнка")  # no product: vitamins (review)
    assert not retriever.words_ask_for_health(text)


@pytest.mark.parametrize("text", ["something for my cat", "витамины для кошек", "что-нибудь для собаки"])
def test_a_request_for_an_animal_gets_pet_goods_only(retriever, catalog, trained_encoder, text):
    """"something for my cat" got board games and chocolate; «витамины для кошек» the pharmacy's multivitamins."""
    req = parse_request("u000000", text, 10, "megamarket")
    retrieval = retriever.retrieve(req, encode(trained_encoder, text))
    ids = retrieval.candidate_ids.tolist()
    assert req.for_pet and not retrieval.health_query and ids
    assert all(catalog.get(i).category_id.startswith("pet/") for i in ids)


def test_held_categories_are_where_every_candidate_comes_from(retriever, catalog, trained_encoder):
    """The kinds the dialogue holds a goal to (``RecRequest.categories``): all of their items are candidates, whatever
    the vector is near (the buyer's headphones pulled "a present for mom who likes cooking" away from the kitchen)."""
    from recllm.rag.rec_request import RequestError

    text = "подарок маме, она любит готовить"
    req = dataclasses.replace(parse_request("u000000", text, 10, "megamarket"),
                              categories=frozenset({"home", "books/cookbooks"}))
    ids = retriever.retrieve(req, encode(trained_encoder, text)).candidate_ids.tolist()
    expected = {i.item_id for i in catalog.in_service("megamarket") if i.in_stock
                and (i.category_id.startswith("home/") or i.category_id == "books/cookbooks")}
    assert ids and set(ids) == expected  # the whole subtree, in stock, of the service
    # a kind the message names that this service does not sell leaves the held shelves' items («он любит кофе» for a
    # present on Megamarket: coffee machines, not nothing)
    coffee = dataclasses.replace(parse_request("u000000", "он любит кофе", 10, "megamarket"),
                                 categories=frozenset({"electronics/kitchen_appliances", "grocery/coffee"}))
    held = retriever.retrieve(coffee, encode(trained_encoder, "он любит кофе")).candidate_ids.tolist()
    assert held and all(catalog.get(i).category_id == "electronics/kitchen_appliances" for i in held)
    with pytest.raises(RequestError, match="no category"):
        retriever.retrieve(dataclasses.replace(req, categories=frozenset({"home/nothing"})), encode(trained_encoder, text))


def test_sensitive_fragments_only_for_health_queries(retriever, profile_store, ecosystem, trained_encoder,
                                                     health_vector):
    users = users_with_sensitive_fragments(profile_store, ecosystem)
    assert users
    everyday = encode(trained_encoder, "что приготовить на ужин?")
    cited_in_health = False
    wide = Retriever(retriever.catalog, retriever.index, profile_store,
                     dataclasses.replace(retriever.config, num_fragments=50))
    for user_id in users:
        assert not any(f.sensitive for f, _ in wide.retrieve(request(user_id), everyday).fragments)
        cited_in_health |= any(f.sensitive for f, _ in wide.retrieve(request(user_id), health_vector).fragments)
    assert cited_in_health


def test_fragments_are_the_users_closest_first(retriever, profile_store, trained_encoder):
    vector = encode(trained_encoder, "закончился кофе, что посоветуешь?")
    retrieval = retriever.retrieve(request("u000000", "samokat"), vector)
    own = {f.fragment_key for f in profile_store.fragments_of("u000000") if not f.sensitive}
    assert retrieval.fragments and {f.fragment_key for f, _ in retrieval.fragments} <= own
    scores = [score for _, score in retrieval.fragments]
    assert scores == sorted(scores, reverse=True)
    assert len(retrieval.fragments) == min(retriever.config.num_fragments, len(own))


def test_cold_and_unknown_users_get_candidates_but_no_fragments(retriever, ecosystem, query_vectors):
    cold = next(u.user_id for u in ecosystem.users if not ecosystem.events_of(u.user_id))
    for user_id in (cold, "u_never_seen"):
        retrieval = retriever.retrieve(request(user_id, "kuper"), query_vectors[0])
        assert len(retrieval.candidate_ids) > 0 and retrieval.fragments == []


# --- repeat purchases ----------------------------------------------------------------------------------------------

def cross_service_repeat(ecosystem, catalog):
    """(user, item on samokat) where the user bought the same product family on another service."""
    for event in reversed(ecosystem.events):
        if event.kind != "purchase" or event.service == "samokat":
            continue
        for member in catalog.family_members(catalog.get(event.item_id).family_id):
            if member.service == "samokat" and member.in_stock and not catalog.is_sensitive(member):
                return event.user_id, member
    raise AssertionError("the test ecosystem has no cross-service repeat purchase")


def test_repeat_purchases_reach_the_candidates_even_when_search_misses_them(retriever, ecosystem, catalog,
                                                                            trained_encoder):
    user_id, member = cross_service_repeat(ecosystem, catalog)
    config = RetrieverConfig(num_candidates=8, preference_weight=0.0)
    narrow = Retriever(catalog, retriever.index, retriever.profile, config)
    vector = encode(trained_encoder, "нужно для уборки дома")
    searched = narrow.search_pool("samokat", vector, UserSignals(user_id))
    repeats = narrow.repeat_candidates("samokat", narrow.profile.events_of(user_id))
    assert member.item_id in repeats
    exclude = frozenset(searched)  # everything the search finds is excluded: only repeats can remain
    retrieval = narrow.retrieve(request(user_id, "samokat"), vector, exclude)
    assert len(retrieval.candidate_ids) > 0
    assert set(retrieval.candidate_ids.tolist()) <= repeats - searched
    # The same request from someone without that history gets nothing.
    assert len(narrow.retrieve(request("u_never_seen", "samokat"), vector, exclude).candidate_ids) == 0


def test_repeat_candidates_are_this_services_members_of_purchased_families(retriever, ecosystem, catalog):
    user_id = next(u.user_id for u in ecosystem.users if len(ecosystem.events_of(u.user_id)) > 50)
    events = retriever.profile.events_of(user_id)
    families = {catalog.get(e.item_id).family_id for e in events if e.kind == "purchase"}
    unlimited = Retriever(catalog, retriever.index, retriever.profile, RetrieverConfig(max_repeat_candidates=10_000))
    for service in SERVICES:
        expected = {m.item_id for f in families for m in catalog.family_members(f) if m.service == service}
        assert unlimited.repeat_candidates(service, events) == expected


def test_repeat_candidates_take_the_most_recent_family_first(retriever, ecosystem, catalog):
    user_id, _ = cross_service_repeat(ecosystem, catalog)
    events = retriever.profile.events_of(user_id)
    capped = Retriever(catalog, retriever.index, retriever.profile, RetrieverConfig(max_repeat_candidates=1))
    latest = next(m.item_id for e in reversed(events) if e.kind == "purchase"
                  for m in catalog.family_members(catalog.get(e.item_id).family_id) if m.service == "samokat")
    assert capped.repeat_candidates("samokat", events) == {latest}


def test_zero_max_repeat_candidates_disables_repeats(retriever, ecosystem, catalog):
    user_id = next(u.user_id for u in ecosystem.users if ecosystem.events_of(u.user_id))
    events = retriever.profile.events_of(user_id)
    last_service = next(e.service for e in reversed(events) if e.kind == "purchase")
    disabled = Retriever(catalog, retriever.index, retriever.profile, RetrieverConfig(max_repeat_candidates=0))
    assert disabled.repeat_candidates(last_service, events) == set()


# --- service inference ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["хочу обновить игровой сетап", "нужна экипировка для бега",
                                  "I need gaming accessories"])
def test_an_obviously_megamarket_query_resolves_to_megamarket(retriever, catalog, trained_encoder, text):
    vector = encode(trained_encoder, text)
    assert retriever.infer_service(vector) == "megamarket"
    retrieval = retriever.retrieve(request("u000000"), vector)
    assert retrieval.service == "megamarket"
    assert {catalog.get(i).service for i in retrieval.candidate_ids.tolist()} == {"megamarket"}


def test_an_explicit_service_wins_over_inference(retriever, catalog, trained_encoder):
    vector = encode(trained_encoder, "хочу обновить игровой сетап")
    retrieval = retriever.retrieve(request("u000000", "samokat"), vector)
    assert retrieval.service == "samokat"
    assert {catalog.get(i).service for i in retrieval.candidate_ids.tolist()} == {"samokat"}


# --- requests that arrive together ----------------------------------------------------------------------------------

def test_retrieve_many_equals_each_request_alone(retriever, ecosystem, query_vectors, health_vector):
    users = [u.user_id for u in ecosystem.users[:5]] + ["never-seen-user"]
    services = ["samokat", "", "kuper", "megamarket", "", "samokat"]
    vectors = np.stack([*query_vectors[:5], health_vector])  # [6, D], one of them about health
    requests = [request(u, s, max_price=300.0 if k == 2 else None) for k, (u, s) in enumerate(zip(users, services))]
    excludes = [frozenset(), frozenset({1, 2, 3}), frozenset(), frozenset(), frozenset(), frozenset()]
    together = retriever.retrieve_many(requests, vectors, excludes)
    for req, vector, exclude, got in zip(requests, vectors, excludes, together):
        alone = retriever.retrieve(req, vector, exclude)
        assert got.service == alone.service and got.health_query == alone.health_query
        assert got.candidate_ids.tolist() == alone.candidate_ids.tolist()
        np.testing.assert_allclose(got.candidate_scores, alone.candidate_scores, rtol=1e-6)
        assert [f.fragment_key for f, _ in got.fragments] == [f.fragment_key for f, _ in alone.fragments]


def test_a_request_for_a_grown_up_gets_no_childrens_goods(retriever, catalog, item_vectors):
    """Retrieval pulled toward the toys (the mean of the children's items): with a grown-up recipient none of them is
    a candidate, without one they are."""
    children = retriever.items.for_children
    assert children.any() and catalog.get(int(np.flatnonzero(children)[0])).category_id.startswith(
        tuple(CHILDREN_CATEGORY_ROOTS))
    vector = item_vectors[children].mean(axis=0)
    vector /= np.linalg.norm(vector)
    service = catalog.get(int(np.flatnonzero(children)[0])).service
    for_anyone = retriever.retrieve(parse_request("u_new", "подарок", 5, service), vector)
    for_mom = retriever.retrieve(parse_request("u_new", "подарок маме", 5, service), vector)
    assert children[for_anyone.candidate_ids].any()
    assert len(for_mom.candidate_ids) and not children[for_mom.candidate_ids].any()


def test_a_request_for_a_child_of_a_stated_age_gets_only_toys_of_that_age(retriever, catalog, item_vectors):
    """Retrieval pulled toward all the toys: «сыну 2 года» keeps the toddler toys and drops the others; a request
    without an age keeps toys of every age."""
    ages = retriever.items.toy_ages
    toys = np.flatnonzero(ages[:, 0] >= 0)
    assert len({tuple(a) for a in ages[toys].tolist()}) > 1
    vector = item_vectors[toys].mean(axis=0)
    vector /= np.linalg.norm(vector)
    service = catalog.get(int(toys[0])).service
    any_age = retriever.retrieve(parse_request("u_new", "подарок сыну", 20, service), vector)
    two = retriever.retrieve(parse_request("u_new", "подарок сыну на 2 года", 20, service), vector)
    shown_ages = {tuple(a) for a in ages[any_age.candidate_ids].tolist() if a[0] >= 0}
    assert len(shown_ages) > 1
    assert {tuple(a) for a in ages[two.candidate_ids].tolist() if a[0] >= 0} == {(0, 2)}


# --- a request that names a kind of product ------------------------------------------------------------------------

def kind_ids(retriever, text: str) -> set[int]:
    return set(retriever.terms.named(text).item_ids.tolist())


def test_a_request_naming_a_kind_gets_that_kind_only_whatever_its_vector(retriever, catalog, trained_encoder):
    """«молоко» asked with a vector among the coffee (a weekly coffee buyer's pull): every in-stock milk of the service
    is a candidate and nothing else is; the same vector with a request that names no kind brings other items."""
    vector = encode(trained_encoder, "кофе в зёрнах")
    milk = kind_ids(retriever, "молоко")
    got = retriever.retrieve(parse_request("u000000", "хочу молоко", 10, "samokat"), vector)
    expected = {i for i in milk if catalog.get(i).service == "samokat" and catalog.get(i).in_stock}
    assert expected and set(got.candidate_ids.tolist()) == expected
    unnamed = retriever.retrieve(parse_request("u000000", "что-нибудь к завтраку", 10, "samokat"), vector)
    assert set(unnamed.candidate_ids.tolist()) - milk


def test_a_named_kind_the_constraints_rule_out_leaves_nothing_rather_than_another_kind(retriever, catalog,
                                                                                        trained_encoder):
    coffee = kind_ids(retriever, "кофе")
    cheapest = min(catalog.get(i).price for i in coffee if catalog.get(i).service == "samokat")
    budget = cheapest - 1
    assert any(i.price <= budget for i in catalog.in_service("samokat"))  # other things fit the budget
    got = retriever.retrieve(parse_request("u000000", f"кофе до {budget:.0f} рублей", 10, "samokat"),
                             encode(trained_encoder, "кофе"))
    assert got.candidate_ids.size == 0
    off = dataclasses.replace(retriever.config, named_kinds=False)
    before = Retriever(catalog, retriever.index, retriever.profile, off).retrieve(
        parse_request("u000000", f"кофе до {budget:.0f} рублей", 10, "samokat"), encode(trained_encoder, "кофе"))
    assert before.candidate_ids.size  # the old behaviour: something else within the budget


def test_a_request_with_no_service_goes_to_a_service_that_sells_the_kind(retriever, catalog, trained_encoder):
    """The vector votes for Megamarket (headphones); the words name kefir, which only the grocery services sell."""
    kefir = kind_ids(retriever, "кефир")
    sellers = {catalog.get(i).service for i in kefir if catalog.get(i).in_stock}
    assert "megamarket" not in sellers
    vector = encode(trained_encoder, "беспроводные наушники")
    assert retriever.infer_service(vector) == "megamarket"
    got = retriever.retrieve(parse_request("u000000", "кефир", 10, ""), vector)
    assert got.service in sellers and got.candidate_ids.size and set(got.candidate_ids.tolist()) <= kefir


def test_a_kind_word_outside_the_requests_health_routing_is_not_read_as_a_kind(retriever, catalog, trained_encoder):
    """«средство от кашля»: the catalog's «Средство …» items are cleaning products, which a health request never
    gets; the word is not taken as a kind there, and the request gets health items as before."""
    assert retriever.terms.named("средство от кашля") is not None
    got = retriever.retrieve(parse_request("u000000", "средство от кашля", 10, "kuper"),
                             encode(trained_encoder, "средство от кашля"))
    ids = got.candidate_ids.tolist()
    assert got.health_query and ids and all(catalog.is_sensitive(catalog.get(i)) for i in ids)


def test_a_large_named_kind_keeps_the_users_repeat_purchases_of_it(retriever, catalog, ecosystem, trained_encoder):
    """More items of the kind than candidates: the nearest fill the list, and the user's bought ones stay in it."""
    small = Retriever(catalog, retriever.index, retriever.profile, dataclasses.replace(retriever.config,
                                                                                       num_candidates=2))
    for user in ecosystem.users:
        context = small.read_context(user.user_id)
        for service in SERVICES:
            repeats = small.repeat_candidates(service, context.purchases)
            for kind, items in small.terms.kind_items.items():
                mine = {i for i in items.tolist() if i in repeats and catalog.get(i).in_stock}
                in_service = [i for i in items.tolist() if catalog.get(i).service == service and catalog.get(i).in_stock]
                if len(mine) == 1 and len(in_service) > 3 and not any(catalog.is_sensitive(catalog.get(i))
                                                                      for i in in_service):
                    got = small.retrieve(parse_request(user.user_id, kind, 5, service), encode(trained_encoder, kind))
                    ids = got.candidate_ids.tolist()
                    assert len(ids) == 2 and mine <= set(ids) and set(ids) <= set(in_service)
                    return
    pytest.skip("no user with exactly one repeat purchase of a kind sold more than 3 times in a service")


def test_a_request_for_goods_the_catalog_has_none_of_gets_nothing(retriever, catalog, trained_encoder):
    """«покажи чай» where no item is tea: no candidates (the chat says so), not the user's usual bread."""
    assert not any("чай" in item.name.lower().split() for item in catalog.items)
    vector = encode(trained_encoder, "покажи чай")
    assert retriever.retrieve(parse_request("u000000", "покажи чай", 10, "samokat"), vector).candidate_ids.size == 0
    for other in ("что-нибудь к чаю", "кофе или чай"):  # a purpose, an alternative: no restriction
        assert retriever.retrieve(parse_request("u000000", other, 10, "samokat"), vector).candidate_ids.size


def test_a_request_that_names_a_kind_runs_no_faiss_search(retriever, trained_encoder, monkeypatch):
    """Its candidates are the kind's items: the pool search would be thrown away (a request naming none searches)."""
    searched = []
    search = retriever.index.search
    pool_k = retriever.config.num_candidates * 2  # the pool search's k (the service probe asks fewer)
    monkeypatch.setattr(retriever.index, "search", lambda service, vectors, k: (
        searched.append(len(vectors)) if k == pool_k else None) or search(service, vectors, k))
    named = parse_request("u000000", "хочу молоко", 10, "samokat")
    unnamed = parse_request("u000000", "что-нибудь к завтраку", 10, "samokat")
    vector = encode(trained_encoder, "молоко")
    got = retriever.retrieve_many([named, unnamed], np.stack([vector, vector]))
    assert got[0].candidate_ids.size and got[1].candidate_ids.size
    assert len(searched) == 1 and searched[0] == len(retriever.search_vectors(vector, got[1].context.signals))


def test_profile_facts_are_about_the_candidates_kinds(retriever, profile_store, ecosystem, catalog, trained_encoder):
    """Live: a request for cat food cited "you buy dog food"; a fact is now about a kind among the candidates."""
    from recllm.rag.retriever import about_kinds

    vector = encode(trained_encoder, "хочу молоко")
    users = [u.user_id for u in ecosystem.users if profile_store.fragments_of(u.user_id)][:30]
    anything_cited = False
    for user_id in users:
        retrieval = retriever.retrieve(request(user_id, "samokat", query="хочу молоко"), vector)
        kinds = {catalog.get(int(i)).category_id for i in retrieval.candidate_ids}
        assert all(about_kinds(f.category_id, kinds) for f, _ in retrieval.fragments)
        anything_cited |= bool(retrieval.fragments)
    assert anything_cited
    # off: the facts nearest the query, about anything (a milk request's nearest facts include other kinds)
    anywhere = Retriever(retriever.catalog, retriever.index, profile_store,
                         dataclasses.replace(retriever.config, fact_candidates=0, num_fragments=50))
    assert any(not about_kinds(f.category_id, {"grocery/dairy", "grocery/lactose_free"})
               for u in users for f, _ in anywhere.retrieve(request(u, "samokat", query="хочу молоко"), vector).fragments)


def test_a_fact_is_about_a_kind_when_the_same_leaf_or_a_sibling_under_a_sub_category():
    from recllm.rag.retriever import about_kinds

    assert about_kinds("grocery/dairy", {"grocery/dairy"})
    assert not about_kinds("grocery/grains", {"grocery/vegetables"})         # siblings under a top category only
    assert about_kinds("kids/toys/school", {"kids/toys/toddler"})            # siblings under a sub-category
    assert not about_kinds("pet/dog_food", {"pet/cat_food"})


def test_a_request_for_a_child_s_age_is_no_health_query_unless_it_says_so(retriever, trained_encoder):
    """Live: «нужно что-нибудь ребёнку ему 3 года» lay nearest «Омега-3» by its digit, the nearest-items vote routed
    it to the pharmacy shelf, and Megamarket had nothing for it. Here the vote always says "health"."""

    class VotesHealth(Retriever):
        def is_health_query(self, query_vector, probe=None, row=0):
            return True

    voting = VotesHealth(retriever.catalog, retriever.index, retriever.profile, retriever.config)
    for text in ("нужно что-нибудь ребёнку ему 3 года", "подарок сыну 3 года"):
        req = parse_request("u000000", text, 5, "megamarket")
        assert req.child_age == (3, 3)
        retrieval = voting.retrieve(req, encode(trained_encoder, text))
        assert not retrieval.health_query and len(retrieval.candidate_ids) > 0
    asked = parse_request("u000000", "витамины ребёнку 3 года", 5, "kuper")  # says so in words
    assert voting.retrieve(asked, encode(trained_encoder, asked.query)).health_query
    grown_up = parse_request("u000000", "что-нибудь на ужин", 5, "kuper")      # no child: the vote decides
    assert voting.retrieve(grown_up, encode(trained_encoder, grown_up.query)).health_query
