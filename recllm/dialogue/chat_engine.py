"""One streamed chat turn: moderation → dialogue state → act → encode → retrieve → rank → stream the reply.

The stages are passed in as ``ChatStages`` so the same turn logic runs inside Triton (``recllm_chat`` calls the
other models through BLS) and in-process (tests, benchmarks). Every turn is moderated first: a refused message gets
moderation's short safe reply and nothing else runs. An ok message is understood (``understand``) in the context of
the session's ``DialogueState``, which decides the act (``dialogue_state.decide_act``): ``clarify`` and ``explain``
answer from the state without retrieval; ``recommend`` / ``refine`` retrieve under the goal's constraints, yield the
ranked items first, then the reply's text deltas; when the constraints leave no unseen candidate the act becomes
``nothing_left``: the reply says so and offers the nearest relaxation that the retriever can actually fill.
Untrusted text (profile facts) is cleaned before the prompt, and everything leaving the server is redacted
(``recllm.safety.output_guard``). The turn and the state are recorded only after the turn finished; the user's
reactions in it («не то», «подешевле», a stated diet) are written to their profile then (``turn_feedback`` through a
``recllm.profile.feedback.FeedbackSink``), so the next session ranks with them.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
from recllm_proto import tensors
from recllm_proto.text_arrays import decode_utf8_array

from recllm.artifacts import ArtifactLayout, ArtifactsNotBuiltError
from recllm.catalog.asking_words import ASKING_WORDS
from recllm.catalog.product_catalog import Catalog
from recllm.catalog.product_terms import NamedKinds, ProductTerms
from recllm.catalog.spelling import SpellingCorrector
from recllm.dialogue.dialogue_state import (FOLLOW_UP_INTENTS, DialogueState, accept_offer, catalog_diet,
                                            decide_act, drops_budget, effective_query, greets_only,
                                            names_only_a_recipient, points_at_the_list, record_shown, refine_goal,
                                            requested_style, says_yes_to_nothing, start_goal, states_only_a_budget,
                                            states_only_an_age, unmarked_diets, with_offer, without_budget)
from recllm.dialogue.gift_interests import (PRESENT_WORD, asks_for_a_present_only, asks_something_else, interest_shelves,
                                            interests_named, is_a_present, tells_what_they_like)
from recllm.dialogue.dialogue_replies import (acknowledge_reply, clarify_reply, clarify_topic, explain_reply,
                                             explained_indices, missing_brand_note, no_remedy_reply,
                                             nothing_left_reply, nothing_to_take_reply, place_asked_about,
                                             places_named, unmarked_diet_note)
from recllm.dialogue.relaxation import nearest_relaxation
from recllm.dialogue.request_understanding import (KEYWORD_DOMAIN_SERVICES, VAGUE_WORDS, RequestUnderstander,
                                                   RequestUnderstanding, follow_up_content, mentioned_services,
                                                   normalize, parse_budget, parse_refinement, refers_to_the_list,
                                                   tokenize, understand)
from recllm.dialogue.household_chores import chore_name_stems, chore_shelves
from recllm.dialogue.service_questions import service_reply, service_topic
from recllm.dialogue.taste_shelves import taste_shelves
from recllm.dialogue.session_store import SessionStore, TurnContext
from recllm.profile.events import (FEEDBACK_CHEAPER, FEEDBACK_DIET_KINDS, FEEDBACK_EXPLAIN, FEEDBACK_REJECT,
                                   FEEDBACK_STYLE_KINDS, Event)
from recllm.profile.feedback import FeedbackSink, StoreFeedbackSink, feedback_event
from recllm.profile.storage import open_profile_storage, profile_location
from recllm.rag.rec_request import (MAX_QUERY_CHARS, RecRequest, is_for_pets, parse_child_age, parse_request,
                                    recipient_hits, validate_query, validate_session_id)
from recllm.safety.health_rule import (HEALTH_NEEDS, HealthNeed, health_need, names_health_goods_only,
                                       sensitive_item_mask, words_ask_for_health)
from recllm.safety.moderation import (NO_SHOPPING_VOCABULARY, SAFE_REPLIES, LinearModerationModel, ModerationVerdict,
                                      asks_in_shopping_form, install_model, uses_shopping_words)
from recllm.safety.output_guard import (allowed_items, clean_all, guard_items, redact_stream, screen_message,
                                       without_user_ids)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CandidateSet:
    candidate_ids: np.ndarray  # [C] int64
    candidate_scores: np.ndarray  # [C] float32
    service: str
    profile_facts: list[str]
    # The user's profile as the retriever read it, handed to ``rank`` and ``stream_reply`` (in-process a
    # ``UserContext``, over BLS the sealed USER_CONTEXT tensor): one profile read per turn.
    user_context: object = None


class ChatStages(Protocol):
    def encode(self, query: str) -> np.ndarray: ...

    def retrieve(self, request: RecRequest, query_vector: np.ndarray,
                 exclude_item_ids: frozenset[int]) -> CandidateSet: ...

    def rank(self, request: RecRequest, candidates: CandidateSet) -> dict[str, np.ndarray]: ...

    def stream_reply(self, request: RecRequest, service: str, item_ids: list[int], facts: list[str],
                     act: str, user_context: object = None) -> Iterator[str]: ...


@dataclass(frozen=True)
class ItemsChunk:
    """The ranked items (lower_snake arrays: item_ids, item_scores, item_names, ...) and the resolved service."""

    arrays: dict[str, np.ndarray]
    service: str


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class TurnPlan:
    """What ``turn`` decided before anything is yielded."""

    session_id: str
    base: RecRequest                      # the message as the user sent it
    state: DialogueState                  # the state this turn starts from (already updated by the act)
    act: str
    understanding: RequestUnderstanding | None
    request: RecRequest | None = None     # what retrieval runs (recommend / refine)
    exclude: frozenset[int] = frozenset()


class ChatEngine:
    def __init__(self, sessions: SessionStore, stages: ChatStages,
                 understander: Callable[[str, RequestUnderstanding | None], RequestUnderstanding] = understand,
                 feedback: FeedbackSink | None = None, catalog: Catalog | None = None):
        """``feedback`` None: reactions change only this session (nothing is written to the profile);
        ``catalog`` None: «подешевле» is not held to the kinds of items on screen."""
        self.sessions = sessions
        self.stages = stages
        self.understand = understander
        self.feedback = feedback
        self.catalog = catalog
        # the kinds of product a message names (built here, so a Triton model builds it in initialize)
        self.product_terms = None if catalog is None else ProductTerms.of(catalog)
        # typos corrected to the catalog's words before any rule reads the message («йогрут», "cold mediicine")
        self.spelling = None if catalog is None else SpellingCorrector.of(catalog,
                                                                          self.product_terms.lemmatizer.is_known)
        # category → its subtree's item ids, walked once here (a chore's sellers read it per turn)
        self.items_under: dict[str, list[int]] = {} if catalog is None else catalog.item_ids_under()
        self._shelf_goods: dict[tuple, tuple[int, ...]] = {}  # (shelves, name stems) -> items (shelf_goods)
        # per category, the first letters of every word its items' names use (what a description can hold a list of
        # that kind to)
        self.name_stems: dict[str, frozenset[str]] = {
            category: frozenset(w[:_DESCRIPTION_STEM] for i in ids for w in re.findall(
                r"[^\W\d_]{%d,}" % _DESCRIPTION_STEM, catalog.get(i).name.lower().replace("ё", "е")))
            for category, ids in self.items_under.items()}
        self._named_kinds = None if catalog is None else functools.lru_cache(maxsize=256)(self.product_terms.named)
        self._description = functools.lru_cache(maxsize=256)(self._describe)
        # the services with health items (the pharmacy shelf), where a request that asks about health goes
        self.sensitive_items = np.zeros(0, dtype=bool) if catalog is None else sensitive_item_mask(catalog)  # [N]
        self.health_services: tuple[str, ...] = () if catalog is None else tuple(sorted(
            {item.service for item, health in zip(catalog.items, self.sensitive_items) if health}))
        # the catalog's categories some health need is answered by (none: a pharmacy the need map does not know, and
        # needs are not checked)
        self.health_shelf_ids: tuple[str, ...] = () if catalog is None else tuple(dict.fromkeys(
            c for _, need in HEALTH_NEEDS for c in need.category_ids if c in catalog.categories))

    def turn(self, session_id, user_id, message, top_k, service="") -> Iterator[ItemsChunk | TextChunk]:
        """Validate and decide everything before yielding, so a bad request fails before any chunk is sent."""
        return self._run(self.plan(session_id, user_id, message, top_k, service))

    def plan(self, session_id, user_id, message, top_k, service="") -> TurnPlan:
        session_id = validate_session_id(session_id)
        as_written = validate_query(message)
        parsed = parse_request(user_id, self.spelled(as_written), top_k, service)
        state = DialogueState.from_json(self.sessions.load_state(session_id, parsed.user_id))
        base = in_session_language(parsed, state)
        if requested_style(base.query) and state.last_items:
            # «объясняй подробнее» about the list on screen: an explain turn; the style goes to the profile
            asked = RequestUnderstanding(base.language, state.domain or "other", "explain")
            return TurnPlan(session_id, base, state, "explain", asked)
        if drops_budget(state, base.query):
            # «давай без ограничения» after «ничего до 200 ₽»: the budget goes, the goal stays (read before moderation,
            # which takes «без ограничений» for a jailbreak; here it can only lift the budget)
            dropped = RequestUnderstanding(base.language, state.domain or "other", "refine")
            return self._request_plan(session_id, base, without_budget(state), "refine", dropped)
        verdict = screen_message(base.query, base.language)  # (an identifier in it is personal data: not kept)
        if verdict.label in ("ok", "off_topic") and as_written != parsed.query:
            # a word the typo correction changed must not hide what the words as written ask for
            written_verdict = screen_message(as_written, base.language)
            if written_verdict.label in ("unsafe", "prompt_injection", "personal_data"):
                verdict = written_verdict
        # (read once a turn; a user id cut below changes nothing in it; an animal's needs are no pharmacy's; «сок с
        # витамином C» is juice)
        if verdict.label in ("ok", "off_topic") and service_topic(base.query) \
                and self.named_kinds(base.query) is None:
            # «а сколько стоит доставка?» got a bread list: where the answer is, and the goal stays as it was
            return TurnPlan(session_id, base, state, "service_info", None)
        health = not parsed.for_pet and self.words_ask_for_health(base.query, state)
        answers = self.answers_the_question(state, base.query)  # (read once a turn, as ``health``)
        if verdict.label == "off_topic" and not verdict.reason.startswith("rule:") \
                and (says_what_it_needs(state, base.query, health, answers)
                     or names_only_a_recipient(base.query, present=True)
                     or verdict.reason.startswith(NO_SHOPPING_VOCABULARY) and only_a_vague_wish(base.query)):
            # «до 3000» (after a list, or before anything), «у ребёнка температура, что дать?», «подруге», "she is 7
            # years old" after a child's breakfast, «а сироп есть?» after cough lozenges, "how do I get rid of
            # limescale?" (a chore: cleaning supplies), «он любит футбол» after «Что
            # любит этот человек?»: a budget, a health need, whom it is for, the child's age, whether a thing is sold
            # or the answer to our
            # question, or a vague wish the classifier was unsure of ("something tasty", "something nice for
            # tonight": nothing but wanting words) is the assistant's business (the classifier, finding no shopping word, refused them as off-topic); what
            # moderation's rules refuse (code, jokes, politics: «напиши код до 100 строк») stays refused, and so
            # does every harmful label
            verdict = ModerationVerdict("ok", "a budget, a health need, a recipient or an answer to our question", "")
        understanding = None
        if verdict.label in ("ok", "off_topic") and place_asked_about(state, base.query) is not None:
            # «а второй?», "what about the second one?" after a list: about that item (a new list came, or the
            # off-topic reply); «а пятый?» about three items: there is none (``explain_reply`` says so)
            understanding = RequestUnderstanding(base.language, state.domain or "other", "explain")
        elif verdict.label == "off_topic" and state.last_items:
            # «почему это?» alone read as small talk; after a shown list it is about it, and so is a
            # question comparing within it ("what's the biggest of them?", «какой из них тебе больше нравится?»)
            understanding = self.understand(base.query, state.context())
            if understanding.intent not in FOLLOW_UP_INTENTS | {"explain"} and points_at_the_list(state, base.query):
                understanding = replace(understanding, intent="compare", refinement=())
            elif self.describes_the_kind(state, base.query):
                understanding = replace(understanding, intent="refine")  # «а большое?»: what the kind should be like
            elif understanding.intent in ("refine", "feedback") and not understanding.refinement \
                    and not refers_to_the_list(base.query):
                # "asdfghjkl" after a list was read as a refinement and got one more item: a follow-up the
                # classifier refused says what it changes («подешевле») or what it points at («а второй?»)
                understanding = None
        if verdict.label != "ok" and not (understanding and understanding.intent in FOLLOW_UP_INTENTS | {"explain"}):
            return TurnPlan(session_id, replace(base, query=verdict.safe_reply), state, "decline", None)
        base = replace(base, query=without_user_ids(base.query) or base.query)
        understanding = understanding or self.understand(base.query, state.context())
        if understanding.intent not in FOLLOW_UP_INTENTS and self.describes_the_kind(state, base.query):
            understanding = replace(understanding, intent="refine")  # «а влажный?» after cat food read as small talk
        named = self.named_kinds(base.query)
        sellers = self.services_selling(named) or (self.health_services if health else ())
        if sellers and not mentioned_services(base.query) and not set(understanding.target_services) & set(sellers):
            # "any crisps?" read as a home-goods request (Megamarket): the services that sell what it names; «у
            # ребёнка температура» read as a kids' request: the services with a pharmacy shelf (a service the user
            # named stays theirs)
            understanding = replace(understanding, target_services=sellers)
        if base.language != parsed.language:  # the session's language, kept by the state for the next turn too
            understanding = replace(understanding, language=base.language)
        need = self.health_need_of(base.query, named) if health else None
        shelf = self.shelf_for(need) if need is not None else ()
        # a kind none of the list is, or a health need another shelf answers than the goal's and the list's
        # ("plasters please" after fever remedies was read as a refinement of them; «почему витамины?» about a list
        # with vitamins is still about the list)
        # «он любит кофе» after gift ideas tells what the person likes: the present goes on (coffee is no new goal)
        likes = bool(state.last_items) and tells_what_they_like(base.query, state.goal)  # (before acknowledge:
        #                                                  "he loves coffee" is no "I love it")
        another_kind = not likes and (self.names_another_kind(state, named) or bool(shelf)
                                      and set(shelf) != set(state.kinds)
                                      and not set(shelf) & set(self.categories_of(state.last_items))
                                      # «а что-нибудь для кота?» after sports nutrition: a pet's goal of its own
                                      or bool(state.goal) and parsed.for_pet and not is_for_pets(state.goal))
        if state.last_act == "clarify" and named is None and state.domain not in ("", "other", "goods") \
                and understanding.domain != state.domain and not mentioned_services(base.query):
            # «солёное, на компанию» answering «сладкое или солёное?» about something tasty was read as electronics
            # on Megamarket (headphones): an answer that names no kind stays in the domain of the wish it answers
            understanding = replace(understanding, domain=state.domain,
                                    target_services=state.services or KEYWORD_DOMAIN_SERVICES.get(state.domain, ()))
        if named is None and (not state.goal or state.last_act != "clarify") and asks_for_a_present_only(base.query):
            # «что-нибудь на подарок»: for whom, and what they like, is the first question (it got headphones)
            understanding = replace(understanding, intent="clarify_needed")
        elif named is None and not state.goal and only_a_vague_wish(base.query):
            # "something nice for tonight" as a first wish got running shoes and headphones: what it should be is
            # the first question (a vague wish within a goal goes on with the goal)
            understanding = replace(understanding, intent="clarify_needed")
        tastes = self.taste_shelves(base.query, named)  # (read once a turn, as ``health``)
        if understanding.intent == "clarify_needed" \
                and (named is not None or tastes and not is_a_present(state.goal)) \
                and (not state.goal or state.last_act == "clarify" or another_kind):
            # «хочу что-нибудь: сыры» says what it wants (where a question would be asked; within a goal a vague
            # follow-up that names the goal's kind, «а что-нибудь ещё из сыров?», stays a refinement); so does a
            # taste («хочу что-нибудь сладкое» was asked «сладкое или солёное?»)
            understanding = replace(understanding, intent="recommend")
        elif understanding.intent == "clarify_needed" and state.last_act == "clarify" and is_a_present(state.goal) \
                and (interests_named(base.query) or parse_child_age(base.query, "child") is not None):
            # "she loves reading", «ему 5 лет» answering what the person likes or how old the child is: the present
            # is said enough (the understanding read "she loves reading" as vague and the question came again)
            understanding = replace(understanding, intent="recommend")
        if reads_as_small_talk(state, understanding, named, base.query, health, answers):
            return TurnPlan(session_id, replace(base, query=safe_reply("off_topic", base.language)), state, "decline",
                            None)
        if says_yes_to_nothing(state, base.query):
            return TurnPlan(session_id, replace(base, query=nothing_to_take_reply(base.language)), state, "decline",
                            None)
        act = decide_act(state, understanding, base.query, another_kind)
        if act == "recommend" and self.describes_the_kind(state, base.query):
            act = "refine"  # «а влажный какой взять?» after cat food: wet cat food (it got fruit as a goal of its own)
        if likes and act in ("recommend", "acknowledge"):
            act = "refine"
        if act in ("explain", "compare", "acknowledge"):
            return TurnPlan(session_id, base, state, act, understanding)
        if act == "clarify" and greets_only(base.query):
            # «привет»: asked what they need, and nothing kept of it (it joined the next message's goal, whose
            # understanding then read the vague «хочу что-нибудь вкусное» as an answer instead of asking again)
            return TurnPlan(session_id, base, state, act, None)
        if act == "clarify":
            # the service the question was asked in (the app's) is where the answer's list comes from
            asked = start_goal(state, understanding, base.query)
            if clarify_topic(understanding, base.query) == "gift for":  # «для мамы» is asked about as a present:
                #                                                           its goal says so
                asked = replace(asked, goal=f"{PRESENT_WORD[base.language]} {asked.goal}")
            return TurnPlan(session_id, base, replace(asked, service=base.service or asked.service), act,
                            understanding)
        if act in ("recommend", "refine") and need is not None and not shelf:
            # «что-нибудь от изжоги» got cold powders, «и ещё от головной боли» after fever remedies refined them:
            # nothing here treats it, say so (the goal before it stays)
            reply = no_remedy_reply(base.language, need, self.health_shelves(base.language))
            return TurnPlan(session_id, replace(base, query=reply), state, "decline", None)
        if act == "refine" and not understanding.refinement:
            # «а подешевле?» read as a vague wish within the goal is still «подешевле»: the refinement words it says
            # (the understanding keeps them only when it reads a refinement) lower the budget, exclude what was shown
            understanding = replace(understanding, refinement=parse_refinement(base.query, parse_budget(base.query)))
        if act == "relax":
            state, act = accept_offer(state), "refine"
        else:
            state = (start_goal if act == "recommend" else refine_goal)(state, understanding, base.query)
        if act == "refine" and (described := self.described_stems(base.query, state)):
            state = replace(state, described=tuple(dict.fromkeys(state.described + described)))
        if shelf and act == "recommend":
            state = replace(state, kinds=shelf)  # the goal is held to the shelf that answers the need
        elif liked := self.liked_shelves(base.query, state.goal, None if likes else named):
            state = replace(state, kinds=liked)  # a present held to the shelves the person's interest points at
        elif act in ("recommend", "refine") and tastes:
            # «сладкое» answering what a tasty wish should be got salty croutons and chips (the buyer's history):
            # a food wish held to the shelves of the taste it says, in the services that sell them
            state = replace(state, kinds=tastes)
            sellers = self.services_selling_shelves(tastes)
            if sellers and not mentioned_services(base.query) and not set(state.services) & set(sellers):
                state = replace(state, services=sellers)
        elif act == "recommend" and (chores := self.catalog_chore_shelves(base.query, named)):
            # «чем отмыть жир на плите?» got flatbread: the goal is held to the shelves that do the chore, in the
            # services that sell them (a service the user named stays theirs)
            state = replace(state, kinds=chores)
            if stems := self.chore_stems(base.query, chores):  # «чем помыть полы»: the floor cleaners of the shelf
                state = replace(state, described=stems)
            sellers = self.services_selling_shelves(chores, state.described)
            if sellers and not mentioned_services(base.query) and not set(state.services) & set(sellers):
                state = replace(state, services=sellers)
        return self._request_plan(session_id, base, state, act, understanding)

    def spelled(self, text: str) -> str:
        """The (validated) message with its typos corrected (``recllm.catalog.spelling``); as written without a
        catalog."""
        return text if self.spelling is None else self.spelling.correct(text, MAX_QUERY_CHARS)

    def answers_the_question(self, state: DialogueState, message: str) -> bool:
        """The message says what the last turn's question asked (whom it is for, a budget, a kind, what the person
        likes: «она любит готовить», «он любит футбол»), or what the person a present is for likes: never off-topic
        or small talk, however the classifier reads it (a greeting's question has no goal: «как дела?» after
        «привет» is still small talk)."""
        if asks_something_else(message):  # «кто лучший футболист мира?», «расскажи про маму Пушкина»: no answer
            return False
        if state.last_act == "clarify" and state.goal and (
                recipient_hits(message) or parse_budget(message) is not None or interests_named(message)
                or self.named_kinds(message) is not None or taste_shelves(message)):
            return True
        return tells_what_they_like(message, state.goal)

    def held_kinds(self, state: DialogueState, message: str) -> frozenset[str]:
        """The categories this turn is held to: the goal's kinds this catalog has (a session saved before a catalog
        change may hold a shelf no longer there), none when the message names a kind none of them has («а ещё она
        любит наушники» after kitchenware; a need's pharmacy shelf holds whatever the message names: «с витамином C
        при простуде» is for a cold)."""
        kinds = frozenset(k for k in state.kinds if self.catalog is None or k in self.catalog.categories)
        if kinds and not kinds & set(self.health_shelf_ids) and self.names_outside(message, kinds) \
                and not self.names_health_goods(self.named_kinds(message)):
            return frozenset()  # (a named kind of health goods only is none for a shelf outside the pharmacy)
        return kinds

    def names_health_goods(self, named: NamedKinds | None) -> bool:
        """The kinds named are this catalog's health goods and nothing else («порошок»: cold powders only here)."""
        return named is not None and bool(named.item_ids.size) and bool(self.sensitive_items[named.item_ids].all())

    def words_ask_for_health(self, message: str, state: DialogueState | None = None) -> bool:
        """``health_rule.words_ask_for_health`` with the kinds the message names, or, naming none, the list on screen
        («а с витамином C?» after juice asks about juice); without a catalog: its words alone; or a message naming
        only health goods («а пастилки есть?»: ``names_health_goods_only``, the retriever's reading too)."""
        def named_ids(text: str) -> np.ndarray | None:
            named = self.named_kinds(text)
            if named is not None:
                return named.item_ids
            return np.asarray(state.last_items, dtype=np.int64) if state is not None and state.last_items else None
        def own_ids(text: str) -> np.ndarray | None:
            named = self.named_kinds(text)
            return None if named is None else named.item_ids
        return words_ask_for_health(message, named_ids, self.sensitive_items) \
            or names_health_goods_only(message, own_ids, self.sensitive_items)

    def health_need_of(self, message: str, named: NamedKinds | None) -> HealthNeed | None:
        """The health need a health request (``asks_about_health``) names (``health_need``); None when it names
        none, when the catalog's pharmacy is not one the need map knows, or when the message names a kind of product
        that is no health item («корм для животных с витаминами» is pet food, not a vitamin)."""
        if not self.health_shelf_ids:
            return None
        if named is not None and named.item_ids.size and not self.sensitive_items[named.item_ids].any():
            return None
        return health_need(message)

    def liked_shelves(self, message: str, goal: str, named: NamedKinds | None) -> tuple[str, ...]:
        """The catalog's shelves the interests a message names point at, when the goal is a present and the message
        names no kind of product (``interest_shelves``: "she likes cooking" → kitchenware, appliances, cookbooks)."""
        if named is not None or self.catalog is None:
            return ()
        return tuple(c for c in interest_shelves(message, goal) if c in self.catalog.categories)

    def taste_shelves(self, message: str, named: NamedKinds | None) -> tuple[str, ...]:
        """The catalog's shelves of the tastes a message says («сладкое» → sweets), when it names no kind of product
        off them (``taste_shelves``: «сладкий перец» is the pepper's; "sweet" naming the sweets shelf is the taste's)."""
        if self.catalog is None:
            return ()
        shelves = tuple(c for c in taste_shelves(message) if c in self.catalog.categories)
        if named is not None and not set(self.categories_of(named.item_ids)) <= set(shelves):
            return ()
        return shelves

    def catalog_chore_shelves(self, message: str, named: NamedKinds | None) -> tuple[str, ...]:
        """The catalog's shelves the household chores a message names point at (``household_chores``), when it
        names no kind of product («средство для мытья посуды» is its own kind; «стиральный порошок» names this
        catalog's cold powders, no kind for a chore)."""
        if self.catalog is None or named is not None and not self.names_health_goods(named):
            return ()
        return tuple(c for c in chore_shelves(message) if c in self.catalog.categories)

    def chore_stems(self, message: str, shelves: tuple[str, ...]) -> tuple[str, ...]:
        """The name stems of the goods that do the message's chore (``household_chores.chore_name_stems``), when an
        item on ``shelves`` carries them; () otherwise (the whole shelf does it)."""
        stems = chore_name_stems(message)
        return stems if stems and self.shelf_goods(shelves, stems) else ()

    def services_selling_shelves(self, shelves: tuple[str, ...], described: Sequence[str] = ()) -> tuple[str, ...]:
        """The services with an item on ``shelves`` (whose name carries every ``described`` stem), those with more of
        them first."""
        return self.services_by_count(self.shelf_goods(shelves, tuple(described)))

    def shelf_goods(self, shelves: tuple[str, ...], stems: tuple[str, ...] = ()) -> tuple[int, ...]:
        """The items on ``shelves`` whose names carry every stem; read from the catalog once per (shelves, stems):
        the chore table is fixed, so a chore turn asks the same few questions again and again."""
        key = (shelves, stems)
        if key not in self._shelf_goods:
            ids = [i for c in shelves for i in self.items_under.get(c, ())]
            if stems and ids:
                ids = [i for i, keep in zip(ids, self.described_mask(stems, ids)) if keep]
            self._shelf_goods[key] = tuple(ids)
        return self._shelf_goods[key]

    def services_by_count(self, item_ids) -> tuple[str, ...]:
        """The services of ``item_ids``, those with more of them first."""
        counts = Counter(self.catalog.get(int(i)).service for i in item_ids)
        return tuple(service for service, _ in counts.most_common())

    def health_shelves(self, language: str) -> list[str]:
        """The names of the catalog's health shelves («средства от простуды», …), as a referral offers them."""
        return [getattr(self.catalog.categories[c], "name_en" if language == "en" else "name_ru")
                for c in self.health_shelf_ids]

    def shelf_for(self, need: HealthNeed) -> tuple[str, ...]:
        """The catalog's categories that answer ``need`` (a catalog without them has nothing for it)."""
        return tuple(c for c in need.category_ids if c in self.catalog.categories)

    def _request_plan(self, session_id: str, base: RecRequest, state: DialogueState, act: str,
                      understanding: RequestUnderstanding) -> TurnPlan:
        """The retrieval request of a recommend or refine turn under ``state``."""
        query = effective_query(state, base.language)
        # a new goal's service is "" unless it answers a question asked in a service (``start_goal``)
        resolved = base.service or state.service or goal_service(state)
        request = parse_request(base.user_id, query, base.top_k, resolved)
        request = replace(request, max_price=state.budget, language=base.language,
                          required_tags=request.required_tags | frozenset(state.diet),
                          categories=self.held_kinds(state, base.query))  # the retriever takes their items
        exclude = frozenset(state.shown) if act == "refine" else frozenset()
        return TurnPlan(session_id, base, state, act, understanding, request, exclude)

    def _run(self, plan: TurnPlan) -> Iterator[ItemsChunk | TextChunk]:
        if plan.act == "decline":
            yield TextChunk(plan.base.query)  # the safe reply; the message itself is not kept anywhere
            self._record(plan, replace(plan.state, turns=plan.state.turns + 1), "[declined]", "", [])
            return
        if plan.act == "clarify":
            yield TextChunk(clarify_reply(plan.base.language, plan.understanding, plan.base.query))
            state = record_shown(plan.state, "clarify", "", [], [], [], [], plan.understanding)
            self._record(plan, state, plan.base.query, "", [])
            return
        if plan.act in ("explain", "compare"):
            reply = explain_reply(plan.state, plan.base.query, plan.base.language, compare=plan.act == "compare")
            yield from (TextChunk(t) for t in redact_stream([reply]))
            self._record(plan, replace(plan.state, last_act=plan.act, turns=plan.state.turns + 1), plan.base.query,
                         plan.state.service, [])
            return
        if plan.act == "service_info":
            yield TextChunk(service_reply(service_topic(plan.base.query), plan.base.language, bool(plan.state.goal)))
            self._record(plan, replace(plan.state, last_act="service_info", turns=plan.state.turns + 1),
                         plan.base.query, plan.state.service, [])
            return
        if plan.act == "acknowledge":
            yield TextChunk(acknowledge_reply(plan.base.language))
            self._record(plan, replace(plan.state, last_act="acknowledge", turns=plan.state.turns + 1),
                         plan.base.query, plan.state.service, [])
            return
        yield from self._recommend(plan)

    def _recommend(self, plan: TurnPlan) -> Iterator[ItemsChunk | TextChunk]:
        request = plan.request
        query_vector = self.stages.encode(request.query)
        candidates = self.held_to_kinds(plan, self.stages.retrieve(request, query_vector, plan.exclude))
        candidates = self.held_to_description(plan, candidates)
        arrays = {}
        if len(candidates.candidate_ids):
            # (the goal's words with this turn's: «подешевле» after cough lozenges is still about them)
            arrays = guard_items(self.stages.rank(request, candidates), request.query,
                                 self.sensitive_items if self.catalog is not None else None)
        item_ids = [int(i) for i in arrays.get(tensors.ITEM_IDS.client_name, [])]
        if not item_ids:
            relaxation = nearest_relaxation(
                self.stages, request, plan.state, plan.exclude, candidates.service,
                self.categories_of if self.catalog is not None else None,
                (lambda ids: self.described_mask(plan.state.described, ids)) if plan.state.described else None,
                self.guard_allows if self.catalog is not None else None)
            yield TextChunk(nothing_left_reply(plan.base.language, plan.state, candidates.service, relaxation))
            state = record_shown(plan.state, "nothing_left", candidates.service, [], [], [], [], plan.understanding)
            state = with_offer(state, plan.state, asdict(relaxation) if relaxation else None)
            self._record(plan, state, request.query, candidates.service, [])
            return
        yield ItemsChunk({spec.client_name: arrays[spec.client_name] for spec in tensors.ITEM_OUTPUTS},
                         candidates.service)
        facts = clean_all(candidates.profile_facts)
        deltas = self.stages.stream_reply(request, candidates.service, item_ids, facts, plan.act,
                                          candidates.user_context)
        names = decode_utf8_array(arrays[tensors.ITEM_NAMES.client_name])
        reply = []
        for delta in redact_stream(deltas, protected=names):
            reply.append(delta)
            yield TextChunk(delta)
        if note := unmarked_diet_note(plan.base.language, unmarked_diets(plan.base.query)):
            yield TextChunk(note)  # «без глютена»: the catalog has no such mark, the list could not be held to it
        if note := missing_brand_note(plan.base.language, plan.base.query, names):
            yield TextChunk(note)  # «хочу айфон»: the list is other brands' phones
        explanations = decode_utf8_array(arrays[tensors.ITEM_EXPLANATIONS.client_name])
        explanations_in = {language: decode_utf8_array(arrays.get(spec.client_name))
                           for language, spec in tensors.ITEM_EXPLANATIONS_IN.items()}
        prices = [float(p) for p in arrays[tensors.ITEM_PRICES.client_name]]
        state = record_shown(plan.state, plan.act, candidates.service, item_ids, names, explanations, prices,
                             plan.understanding, explanations_in, reply="".join(reply))
        self._record(plan, state, request.query, candidates.service, item_ids, prices)

    def categories_of(self, item_ids) -> list[str]:
        return [self.catalog.get(int(i)).category_id for i in item_ids]

    def describes_the_kind(self, state: DialogueState, message: str) -> bool:
        """With a list on screen, the message says only what the kind should be like («а влажный какой взять?»,
        «а сухой?», «а большой есть?»: adjectives beside asking words) and names no kind: it narrows the goal."""
        return bool(state.last_items) and bool(self.description(message))

    def description(self, message: str) -> tuple[str, ...]:
        """The lemmas of the message's words when they are all adjectives beside asking words and it names no kind
        («а влажный какой взять?» → («влажный»,)); () otherwise. Read once per text: a turn asks it of the same
        message from several decisions."""
        return self._description(message)

    def _describe(self, message: str) -> tuple[str, ...]:
        if self.product_terms is None or self.named_kinds(message) is not None or places_named(message):
            return ()  # («а второй?» is a place in the list, not what the kind should be like)
        # every word but the asking ones, short ones too («а не сухой?» is no description)
        words = [w for w in follow_up_content(message).split() if w.replace("ё", "е") not in ASKING_WORDS]
        parsed = [self.product_terms.lemmatizer.parse(w) for w in words]
        return tuple(lemma for lemma, _ in parsed) if parsed and all(pos in ("ADJF", "ADJS") for _, pos in parsed) \
            else ()

    def held_to_description(self, plan: TurnPlan, candidates: CandidateSet) -> CandidateSet:
        """A refinement that describes the kind («а влажный какой взять?» after cat food) keeps the candidates whose
        names say it («Корм влажный для кошек …»: the encoder read «влажный» as treats), when item names of this
        catalog use the word at all."""
        if not plan.state.described or not len(candidates.candidate_ids):
            return candidates
        keep = self.described_mask(plan.state.described, candidates.candidate_ids)
        # none left that is: nothing left here (the offer looks in another service: Kuper has wet cat food)
        return replace(candidates, candidate_ids=np.asarray(candidates.candidate_ids)[keep],
                       candidate_scores=np.asarray(candidates.candidate_scores)[keep])

    def described_stems(self, message: str, state: DialogueState) -> tuple[str, ...]:
        """The stems of the message's description that the names of the kinds on screen use («а влажный какой
        взять?» after cat food → («влажн»,); «а вкусный?», «а твёрдый?» after cheese → (): no cheese name says it)."""
        if not state.last_items or self.catalog is None:
            return ()
        said = set().union(*(self.name_stems.get(c, frozenset()) for c in self.categories_of(state.last_items)))
        return tuple(stem for stem in (lemma[:_DESCRIPTION_STEM] for lemma in self.description(message))
                     if stem in said)

    def guard_allows(self, item_ids: Sequence[int], query: str) -> np.ndarray:
        """[len(item_ids)] bool: the items the output guard lets through for ``query`` (``allowed_items``)."""
        names = [self.catalog.get(int(i)).name for i in item_ids]
        return allowed_items(names, query, np.asarray(item_ids, dtype=np.int64), self.sensitive_items)

    def described_mask(self, stems: Sequence[str], item_ids) -> np.ndarray:
        """[len(item_ids)] bool: the item's name carries every stem."""
        names = [self.catalog.get(int(i)).name.lower().replace("ё", "е") for i in item_ids]
        return np.array([all(stem in name for stem in stems) for name in names], dtype=bool)

    def named_kinds(self, message: str) -> NamedKinds | None:
        """What the message names (``ProductTerms.named``); None without a catalog. Read once per text: a turn asks
        it of the same message from several decisions (health words, an answer, held kinds)."""
        return self._named_kinds(message) if self._named_kinds is not None else None

    def services_selling(self, named: NamedKinds | None) -> tuple[str, ...]:
        """The services selling the kinds of product a message names, those with more of them first; () when it
        names none."""
        if named is None or not named.item_ids.size:
            return ()
        return self.services_by_count(named.item_ids)

    def names_another_kind(self, state: DialogueState, named: NamedKinds | None) -> bool:
        """The message names a kind of product (``ProductTerms``) that none of the list on screen belongs to, not
        even by its top category ("any crisps?" after running shoes), or a good the catalog does not sell: a new
        goal, whatever its intent reads as. A kind under the same top category («а кефир?» after milk) stays a
        refinement, which keeps the goal's diet and budget."""
        if named is None or not state.last_items:
            return False
        if not named.item_ids.size:
            return True
        return not {c.split("/")[0] for c in self.categories_of(named.item_ids)} & \
            {c.split("/")[0] for c in self.categories_of(state.last_items)}

    def held_to_kinds(self, plan: TurnPlan, candidates: CandidateSet) -> CandidateSet:
        """Candidates of the kinds this turn is held to, when it is: «подешевле» asks for cheaper items of the kinds
        on screen (live, cheaper headphones came back as energy gel and sunscreen); a goal that took another service
        or a higher budget keeps the kinds the offer counted (``DialogueState.kinds``). None left is a nothing-left
        turn."""
        if self.catalog is None or plan.act != "refine" and not plan.state.kinds:
            return candidates
        kinds = set(self.held_kinds(plan.state, plan.base.query))  # («а ещё она любит наушники»: the headphones)
        if (plan.understanding is not None and "cheaper" in plan.understanding.refinement
                and plan.state.last_items):
            kinds = set(self.categories_of(plan.state.last_items))
        if not kinds:
            return candidates
        keep = np.array([c in kinds for c in self.categories_of(candidates.candidate_ids)], dtype=bool)
        return replace(candidates, candidate_ids=np.asarray(candidates.candidate_ids)[keep],
                       candidate_scores=np.asarray(candidates.candidate_scores)[keep])

    def names_outside(self, message: str, kinds: set[str]) -> bool:
        """The message names a kind of product none of ``kinds`` (categories) has."""
        named = self.named_kinds(message)
        return named is not None and named.item_ids.size > 0 and not set(self.categories_of(named.item_ids)) & kinds

    def _record(self, plan: TurnPlan, state: DialogueState, effective: str, service: str, item_ids: list[int],
                prices: list[float] = ()) -> None:
        message = plan.base.query if plan.act != "decline" else "[declined]"
        context = TurnContext(effective, service, plan.exclude, state.budget, state.turns)
        self._write_feedback(plan, item_ids)  # before the state: a turn retried after a failure here writes again
        self.sessions.record_turn(plan.session_id, plan.base.user_id, message, context, service, item_ids,
                                  list(prices), state.to_json())

    def _write_feedback(self, plan: TurnPlan, item_ids: list[int]) -> None:
        if self.feedback is None or plan.understanding is None:
            return
        try:
            events = turn_feedback(self.feedback, plan, item_ids)
            stored = self.feedback.write(events)
        except Exception:  # noqa: BLE001 - the turn was answered; a profile write failing must not break the chat
            log.exception("could not write the feedback of a turn to the profile")
            return
        log.debug("turn %d of a session: %d feedback events, %d new", plan.state.turns, len(events), stored)


_DESCRIPTION_STEM = 5  # letters of a describing word's lemma an item name must contain («влажн»)


def safe_reply(label: str, language: str) -> str:
    """Moderation's short reply for ``label`` in ``language`` (English for a language it has none in)."""
    return SAFE_REPLIES.get(language, SAFE_REPLIES["en"])[label]


def reads_as_small_talk(state: DialogueState, understanding: RequestUnderstanding, named: NamedKinds | None,
                        message: str, health: bool, answers: bool = False) -> bool:
    """Moderation let the message through, but the understanding reads small talk ("do you like music?") or a
    question with nothing on screen to explain («почему кошки мурлыкают?»), and the message names nothing sold here:
    it gets the off-topic reply (live, such questions got a shopping list). A message that names a kind, uses
    shopping words («скидки», «доставка», «на диете», "on sale"), states a budget («до 3000») or a health need, or
    answers the question the last turn asked (``answers``: ``ChatEngine.answers_the_question``), is never small talk,
    whatever the understanding read. ``health``: ``ChatEngine.words_ask_for_health(message)``."""
    if named is not None or uses_shopping_words(message) or says_what_it_needs(state, message, health, answers):
        return False  # ("do you have it in red?" with a list on screen is about it; «она любит готовить» answers)
    return understanding.intent == "off_topic" or understanding.intent == "explain" and not state.last_items


# Besides the understanding's vague words, when a vague wish is for and what joins it to it («на вечер», "for
# tonight")
WISH_TIME_WORDS = frozenset(normalize("""
    вечер вечером вечерок ночь ночью выходные выходных завтра утро утром на в к
    tonight evening night weekend tomorrow morning
""").split())

# vague words that want nothing on their own: "I'm bored" is small talk (the chat asked it which shelf it wanted)
WISHES_NOTHING = frozenset(normalize("""
    i m im me my you your we so hey hi hmm ok well a an the to for is it bored
    а ну и или но же ли слушай привет эм хм так там тут мне меня я ты вы у вас
""").split())


def only_a_vague_wish(message: str) -> bool:
    """Nothing but wanting words («хочу что-нибудь приятное на вечер», "something nice for tonight"): a wish the
    dialogue asks about, whatever moderation's classifier made of it (it refused the English ones, unsure of "ok"
    with no shopping word in them)."""
    words = tokenize(message)
    return bool(words) and all(w in VAGUE_WORDS or w in WISH_TIME_WORDS for w in words) \
        and any(w not in WISH_TIME_WORDS and w not in WISHES_NOTHING for w in words) and not greets_only(message)


def says_what_it_needs(state: DialogueState, message: str, health: bool, answers: bool) -> bool:
    """The message states a budget alone («до 3000»), a health need (``health``), the answer to the last turn's
    question (``answers``), the age of the goal's child, whether the list's kind comes in another form (with a list
    on screen: "do you have it in red?") or a household chore: the assistant's business, whether moderation's
    classifier or the understanding read it as small talk."""
    return bool(states_only_a_budget(message) or health or answers
                or state.goal and states_only_an_age(message)
                or state.last_items and asks_in_shopping_form(message)
                or chore_shelves(message))


def goal_service(state: DialogueState) -> str:
    """The one service the goal's request names or its domain implies («что-нибудь от кашля» → Kuper, the only
    service with a pharmacy shelf); several or none: the retriever picks by the query (``infer_service``)."""
    return state.services[0] if len(state.services) == 1 else ""


def turn_feedback(sink: FeedbackSink, plan: TurnPlan, item_ids: list[int]) -> list[Event]:
    """The profile events of a finished turn: «почему?» about a shown item asks why; in a recommend/refine turn
    «не то» / "something else" rejects every item of the list it answered, «подешевле» marks them too expensive, a
    diet stated in the message (with the request or as a refinement) is kept, tied to the first item it was said
    about (the answered list's, else this turn's). Each event's id is derived from (session, turn number, kind,
    item): a retried turn writes nothing twice. «объясняй подробнее» / «покороче» sets the explanations' style
    (tied to the first item on screen), in any act."""
    reactions: list[tuple[str, int]] = []
    style, on_screen = requested_style(plan.base.query), list(plan.state.last_items) or item_ids
    if style and on_screen:
        reactions.append((FEEDBACK_STYLE_KINDS[style], on_screen[0]))
    if plan.act == "explain" and plan.state.last_items:
        reactions += [(FEEDBACK_EXPLAIN, plan.state.last_items[i])
                      for i in explained_indices(plan.state, plan.base.query) if i < len(plan.state.last_items)]
    if plan.act not in ("recommend", "refine") or plan.understanding is None:
        return _events(sink, plan, reactions)
    understanding, answered = plan.understanding, list(plan.state.last_items) if plan.act == "refine" else []
    if "other" in understanding.refinement:
        reactions += [(FEEDBACK_REJECT, i) for i in answered]
    if "cheaper" in understanding.refinement:
        reactions += [(FEEDBACK_CHEAPER, i) for i in answered]
    anchor = (answered or item_ids)[:1]
    reactions += [(FEEDBACK_DIET_KINDS[tag], anchor[0]) for tag in catalog_diet(understanding.diet)
                  if anchor and tag in FEEDBACK_DIET_KINDS]
    return _events(sink, plan, reactions)


def _events(sink: FeedbackSink, plan: TurnPlan, reactions: list[tuple[str, int]]) -> list[Event]:
    if not reactions:
        return []
    now = sink.now()  # the profile's clock: read only when there is something to write
    return [feedback_event(sink.catalog, plan.base.user_id, plan.session_id, plan.state.turns, kind, item, now)
            for kind, item in reactions]


def load_chat_engine(layout: ArtifactLayout, stages: ChatStages) -> ChatEngine:
    """The chat engine of a build: moderation and request understanding as the build trained and saved them (never
    trained here), sessions in the build's session store, feedback written to the build's profile store (or the
    ``$RECLLM_PROFILE_URL`` one)."""
    missing = [str(p) for p in (layout.moderation_dir, layout.request_understanding_dir) if not p.is_dir()]
    if missing:
        raise ArtifactsNotBuiltError(f"the chat needs the dialogue models the build trains; missing "
                                     f"{', '.join(missing)} in {layout.root}: run `recllm build --force`")
    install_model(LinearModerationModel.load(layout.moderation_dir))
    understander = RequestUnderstander.load(layout.request_understanding_dir)
    catalog = Catalog.load_jsonl(layout.catalog)
    sink = StoreFeedbackSink(open_profile_storage(profile_location(layout.profile_db)), catalog)
    engine = ChatEngine(SessionStore(layout.sessions_db), stages, understander.understand, feedback=sink,
                        catalog=catalog)
    # Moderation's first message loads the word vectors (~0.35 s): here, not in a user's turn (each chat instance
    # served its first non-list turn ~0.4 s late)
    screen_message("молоко", "ru")
    return engine


# Words a bare follow-up may have and still say nothing about the language it wants («ещё», "cheaper please")
BARE_FOLLOW_UP_WORDS = 2


def in_session_language(request: RecRequest, state: DialogueState) -> RecRequest:
    """A bare follow-up of a word or two («ещё», "more", «другое») says nothing about language: it continues in the
    session's (an English session's «ещё» got a Russian list, and «why the first one?» then a Russian explanation).
    A longer one is a sentence in its own language ("which one is cheaper?" about a Russian list got Russian)."""
    language = (state.understanding or {}).get("language")
    if not language or language == request.language or follow_up_content(request.query) or not state.last_items \
            or len(tokenize(request.query)) > BARE_FOLLOW_UP_WORDS:
        return request
    return replace(request, language=language)


class InProcessChatStages:
    """ChatStages over an in-process ``RecPipeline``."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def encode(self, query: str) -> np.ndarray:
        return self.pipeline.encoder.encode([query])[0]

    def retrieve(self, request, query_vector, exclude_item_ids) -> CandidateSet:
        retrieval = self.pipeline.retriever.retrieve(request, query_vector, exclude_item_ids)
        facts = [f.text(request.language) for f, _ in retrieval.fragments]
        return CandidateSet(retrieval.candidate_ids, retrieval.candidate_scores, retrieval.service, facts,
                            retrieval.context)

    def rank(self, request, candidates: CandidateSet) -> dict[str, np.ndarray]:
        ranking = self.pipeline.ranking.rank(request, candidates.service, candidates.candidate_ids,
                                             candidates.candidate_scores, candidates.user_context)
        return tensors.client_arrays(self.pipeline.ranking.item_arrays(ranking))

    def stream_reply(self, request, service, item_ids, facts, act="recommend", user_context=None) -> Iterator[str]:
        return self.pipeline.generation.stream(service, request.language, request.query, item_ids, facts, act=act,
                                               user_id=request.user_id, user_context=user_context)
