"""The dialogue state of one session and the act it decides: what the next turn does.

The state is the goal and its constraints (from ``understand``: domain, services, budget, diet, recipient, age
band), the items shown for that goal and how the user reacted («не то», «подешевле»), and a short summary of the
turns the prompt no longer carries. It is persisted as JSON by ``SessionStore.save_state`` so a server restart
loses nothing. ``decide_act`` reads the state and the new message's understanding, never a word list:

* ``decline``    — moderation refused the message (the engine decides this before understanding);
* ``explain``    — «почему это?» about a shown item: that item's explanation;
* ``clarify``    — a vague wish and no goal yet: a question, no items;
* ``recommend``  — a new goal: a first request, or a message in another domain than the goal's even when its
  intent reads as a follow-up (``is_new_request``); a vague one in a new domain is asked about (``clarify``);
* ``refine``     — a follow-up of the current goal: constraints kept, shown items excluded;
* ``nothing_left`` is decided after retrieval, when the constraints leave no unseen candidate; it offers a
  relaxation, and ``relax`` is the next turn taking it («да», «давай в Купере»): a refine under the relaxed goal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from recllm.dialogue.gift_interests import PRESENT_RECIPIENTS
from recllm.dialogue.request_understanding import (DIET_PATTERNS, SERVICE_PATTERNS, WITHOUT_PATTERNS,
                                                   RequestUnderstanding, follow_up_content, mentioned_services)
from recllm.rag.rec_request import BUDGET_PATTERNS, MAX_QUERY_CHARS, parse_budget as text_budget
from recllm.rag.rec_request import (AGE_MONTHS, AGE_NUMBER, AGE_PHRASE, AGE_WORD, RECIPIENT_REGEXES,
                                    REQUIRED_TAG_PATTERNS, parse_child_age, recipient_hits)
from recllm.safety.output_guard import clean_all

ACTS = ("recommend", "refine", "clarify", "nothing_left", "decline", "explain", "compare", "acknowledge",
        "service_info")
MAX_SHOWN_KEPT = 500        # shown ids remembered per goal (a 50-turn session shows at most 50 × top_k)
MAX_REFINEMENTS_KEPT = 3    # follow-up phrases kept verbatim in the effective query; older ones only in the summary
MAX_SUMMARY_CHARS = 300
CHEAPER_FACTOR = 0.8
FOLLOW_UP_INTENTS = frozenset({"refine", "feedback", "compare"})
# A follow-up-looking message in another domain is a new goal only when the domain head is this sure of it.
NEW_GOAL_MIN_DOMAIN_CONFIDENCE = 0.5
_ACCEPT = re.compile(r"^\W*(?:да|давай\w*|ок|окей|хорошо|можно|покажи|yes|ok|okay|sure|please|go\s+ahead)\b",
                     re.IGNORECASE)
# the words of a yes, removed before asking whether the message says anything else
_ACCEPT_WORDS = re.compile(r"\b(?:да|давай\w*|ок|окей|хорошо|ладно|конечно|можно|покажи(?:те)?|посмотри(?:м)?|там|"
                           r"тогда|их|на|в|во|yes|ok|okay|sure|please|go|ahead|let'?s|show|me|them|there|then|in|on|"
                           r"at)\b", re.IGNORECASE)
# «давай без ограничения», «убери ограничение по цене», "no budget limit": while a budget holds, the user drops it
# (the moderation rules read «сними ограничения» alone as a jailbreak attempt, and out of a session it may be one)
_LIMIT = r"(?:ограничени[а-яё]{0,3}|лимит[а-яё]{0,3}|бюджет[а-яё]{0,3})"
_ON_PRICE = r"(?:\s+(?:по\s+)?(?:цен[а-яё]{0,3}|бюджет[а-яё]{0,3}|стоимост[а-яё]{0,3}|деньг[а-яё]{0,3}))?"
_DROP_BUDGET = re.compile(
    r"^\W*(?:(?:да|давай|давайте|ну|тогда|можно|ок|хорошо|ладно|yes|ok|okay)\W+)*(?:"
    r"(?:(?:сними|снимите|убери|уберите|отмени|отмените)\s+)?(?:ценов[а-яё]{0,3}\s+|бюджетн[а-яё]{0,3}\s+)?" + _LIMIT
    + _ON_PRICE + r"|без\s+(?:ценов[а-яё]{0,3}\s+|бюджетн[а-яё]{0,3}\s+)?" + _LIMIT + _ON_PRICE
    + r"|(?:любой|неважно\s+какой|не\s+важен)\s+бюджет|бюджет\s+(?:не\s+важен|неважен|любой)"
    r"|(?:no\s+|remove\s+(?:the\s+)?|drop\s+(?:the\s+)?|without\s+(?:a\s+|the\s+)?)(?:budget|price)(?:\s+(?:limit|cap))?"
    r"|(?:any|whatever)\s+(?:budget|price)|(?:budget|price)\s+(?:doesn'?t|does\s+not)\s+matter"
    r")(?:\W+(?:пожалуйста|please))?\W*$", re.IGNORECASE)
_EXPLAIN = re.compile(r"почему|зачем\s+(?:это|эт)|why|explain|объясни", re.IGNORECASE)
# «объясняй подробнее» / «покороче»: the explanation style the user asks for (written to the profile). A bare
# «короче» is a filler word in Russian, so it counts only as the whole message or next to an explanation word.
_EXPLANATION_WORD = r"(?:объясн\w*|поясн\w*|explain\w*|explanations?)\s+(?:\w+\s+)?"
_PLEASE = r"(?:\W+(?:пожалуйста|плиз|please))?\W*$"
STYLE_REQUESTS = {
    "detailed": re.compile(_EXPLANATION_WORD + r"(?:подробн|детальн|поподробн|in\s+(?:more\s+)?detail|more\b)|"
                           r"^\W*(?:поподробнее|подробнее|more\s+details?|in\s+(?:more\s+)?detail)" + _PLEASE,
                           re.IGNORECASE),
    "short": re.compile(_EXPLANATION_WORD + r"(?:покороче|короче|кратк|коротк|brief|short|less\b)|"
                        r"^\W*(?:покороче|кратко|короче|shorter|briefly|be\s+brief)" + _PLEASE, re.IGNORECASE),
}
# Diet phrases that keep a constraint readable in the effective query (the retriever reads tags from the text).
DIET_PHRASES = {"ru": {"lactose_free": "без лактозы", "sugar_free": "без сахара", "vegan": "веган",
                       "vegetarian": "без мяса"},
                "en": {"lactose_free": "lactose-free", "sugar_free": "sugar-free", "vegan": "vegan",
                       "vegetarian": "meat-free"}}
DIET_ALIASES = {"without_lactose": "lactose_free", "without_sugar": "sugar_free", "without_gluten": "gluten_free",
                "without_meat": "vegetarian"}
# Diets the catalog has no mark for: no list can be held to them, and the reply says so (``unmarked_diets``) instead
# of showing onions and lavash for «без глютена» as if it had been (nuts: an allergy wants the label, not a name).
UNMARKED_DIET_PHRASES = {"ru": {"gluten_free": "без глютена", "without_nuts": "без орехов"},
                         "en": {"gluten_free": "gluten-free", "without_nuts": "nut-free"}}


@dataclass
class DialogueState:
    goal: str = ""                                 # the message that set the current goal
    domain: str = ""
    services: tuple[str, ...] = ()
    service: str = ""                              # the service the goal's items came from
    budget: float | None = None
    diet: tuple[str, ...] = ()                     # catalog tags every shown item must carry
    recipient: str | None = None
    age_band: str | None = None
    refinements: tuple[str, ...] = ()              # the latest follow-up phrases of this goal
    shown: tuple[int, ...] = ()                    # items shown for this goal (never shown again)
    shown_in: tuple[str, ...] = ()                 # the services that showed items for this goal
    rejected: tuple[int, ...] = ()                 # lists the user answered «не то» / «подешевле» to
    last_items: tuple[int, ...] = ()
    last_names: tuple[str, ...] = ()
    last_explanations: tuple[str, ...] = ()           # in the list's language
    last_explanations_ru: tuple[str, ...] = ()        # ... and in each reply language (older sessions: empty)
    last_explanations_en: tuple[str, ...] = ()
    last_prices: tuple[float, ...] = ()
    last_order: tuple[int, ...] = ()                  # indices of last_items as the reply named them (reply_order)
    last_act: str = ""
    understanding: dict | None = None              # the last ok turn's RequestUnderstanding (context for the next)
    offer: dict | None = None                      # the relaxation a nothing-left turn offered: kind, service, query
    offered: tuple[str, ...] = ()                  # "kind service" of every offer since the last list (a run of them)
    kinds: tuple[str, ...] = ()                    # category ids the goal is held to after taking an offer (none: any)
    described: tuple[str, ...] = ()                # name stems the goal's items must carry («влажн»: «а влажный?»)
    summary: str = ""                              # older turns, compressed
    turns: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | None) -> "DialogueState":
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def context(self) -> RequestUnderstanding | None:
        if not self.understanding:
            return None
        data = dict(self.understanding)
        for key in ("target_services", "diet", "refinement"):
            data[key] = tuple(data.get(key) or ())
        return RequestUnderstanding(**data)


def explanations_in(state: DialogueState, language: str) -> tuple[tuple[str, ...], str]:
    """(the shown list's explanations, their language): the ranker's copy in ``language``, else (a session saved
    before the copies were kept) the list's own, in the list's language."""
    translated = getattr(state, f"last_explanations_{language}", ())
    if translated and len(translated) == len(state.last_explanations):
        return translated, language
    return state.last_explanations, (state.understanding or {}).get("language") or language


def requested_style(message: str) -> str | None:
    """The explanation style the message asks for, if any («объясняй подробнее» → ``detailed``)."""
    return next((style for style, pattern in STYLE_REQUESTS.items() if pattern.search(message.strip())), None)


def catalog_diet(diet: tuple[str, ...]) -> tuple[str, ...]:
    """Understanding's diet slots that are catalog tags the retriever can filter on."""
    tags = {DIET_ALIASES.get(d, d) for d in diet}
    return tuple(sorted(t for t in tags if t in REQUIRED_TAG_PATTERNS))


def unmarked_diets(message: str) -> tuple[str, ...]:
    """The diets the message itself asks for («без глютена», "nut-free") that the catalog has no mark for (not the
    ones an understanding inherits from the turn before: "cheaper" after «без глютена» says nothing of gluten)."""
    said = {tag for tag, pattern in (*DIET_PATTERNS.items(), *WITHOUT_PATTERNS.items()) if pattern.search(message)}
    tags = {DIET_ALIASES.get(d, d) for d in said}
    return tuple(t for t in UNMARKED_DIET_PHRASES["en"] if t in tags)


def decide_act(state: DialogueState, understanding: RequestUnderstanding, message: str,
               names_another_kind: bool = False) -> str:
    """The act for an ok message (moderation already passed); ``names_another_kind``: the message names a kind of
    product none of the shown list is (``ChatEngine.names_another_kind``), so it starts a new goal."""
    if (understanding.intent == "explain" or _EXPLAIN.search(message)) and state.last_items \
            and not names_another_kind:
        return "explain"                             # (not "why is my cat sneezing?" after a list of rice)
    if compares_the_list(state, understanding, message) and not names_another_kind:
        return "compare"                             # «какой из них лучше?»: the best of the list, and why
    if understanding.intent == "clarify_needed" and (not state.goal or state.last_act == "clarify"
                                                     or not understanding.refinement and _NEW_WISH.match(message)) \
            or greets_only(message) or not state.goal and states_only_a_budget(message) \
            or state.last_act != "clarify" and not state.last_items and names_only_a_recipient(message):
        return "clarify"                             # a vague wish, only «привет» / "hello", only «до 3000», only
        #                                              «для мамы»: ask what they need (the rest is kept for the answer)
    if takes_offer(state, message):
        return "relax"                               # «да», «давай в Купере»: take the offered relaxation
    if state.goal and not names_another_kind and acknowledges(state, understanding, message):
        return "acknowledge"                         # «спасибо!», «отлично, беру»: nothing more asked
    if not state.goal or state.last_act == "clarify":  # a first request, or the answer to our question
        return "recommend"
    if states_only_a_budget(message) or states_only_an_age(message):
        return "refine"                              # «до 3000» after a gift list: that list, within the budget;
        #                                              «ему 3 года» after a child's breakfast: that breakfast, for 3
    if state.last_items and names_only_a_recipient(message, present=True):
        return "refine"                              # «коллеге» after a gift list: that present, for a colleague
    if names_another_kind or is_new_request(state, understanding):
        # «есть что-то от давления?» after office snacks: a new goal with fresh constraints, never a refinement
        return "clarify" if understanding.intent == "clarify_needed" else "recommend"
    if understanding.intent in FOLLOW_UP_INTENTS or understanding.intent == "clarify_needed":
        return "refine"
    return "recommend"


# A message that only greets (the understanding read a brand-new user's "hello" as a home-goods request)
# (and a newcomer's word about themselves: "hi, I'm new here" got sports gels)
_GREETING_ONLY = re.compile(r"^\W*(?:hello|hi|hey(?:\s+there)?|good\s+(?:morning|afternoon|evening)|привет\w*|"
                            r"здравствуй\w*|добр\w+\s+(?:день|утро|вечер)|доброе\s+утро)"
                            r"(?:\W+(?:i'?m|i\s+am|я)\s+(?:new|a\s+new\s+(?:user|customer)|здесь\s+впервые|тут\s+впервые|"
                            r"впервые|нов(?:енький|енькая|ый|ая)(?:\s+(?:пользователь|клиент))?)(?:\s+(?:here|здесь|тут))?)?"
                            r"\W*$", re.IGNORECASE)
# what is left of «для моей мамы» once the recipient is cut out, when nothing else is said
_RECIPIENT_FILLER = re.compile(r"\b(?:для|моей|моего|моему|моим|моя|мой|нашей|нашего|to|for|my|our|a|the)\b",
                               re.IGNORECASE)



def names_only_a_recipient(message: str, present: bool = False) -> bool:
    """«для мамы», "for my mom", «на компанию»: whom it is for and nothing else (no kind, no wish): what they would
    like is the question («для кошки» is not: every pet good is for a pet). ``present``: only whom a present is for
    (not «себе», «на компанию»)."""
    hits = recipient_hits(message)
    allowed = PRESENT_RECIPIENTS if present else PRESENT_RECIPIENTS | {"self", "company", "family"}
    if not hits or any(name not in allowed for _, name in hits):
        return False
    rest = message
    for _, regex in RECIPIENT_REGEXES:
        rest = regex.sub(" ", rest)
    return not follow_up_content(_RECIPIENT_FILLER.sub(" ", rest))


# A vague wish said as a wish of its own («а теперь хочу что-нибудь вкусное» in the middle of a lactose-free goal
# refined that goal): it is asked about like a first one
_NEW_WISH = re.compile(r"^\W*(?:а\s+|и\s+)?(?:теперь\s+|ещё\s+|еще\s+)?(?:хочу|хочется|хотелось\s+бы)\b|"
                       r"^\W*(?:and\s+)?(?:now\s+)?(?:i\s+want|i'?d\s+like|i\s+would\s+like)\b", re.IGNORECASE)


def greets_only(message: str) -> bool:
    """Only «привет» / "hello": no wish to keep (the next message is the first request)."""
    return bool(_GREETING_ONLY.match(message))


# Thanks and goodbyes: with nothing asked beside them, the turn closes the exchange (no new list)
_CLOSING = re.compile(r"(?:(?:нет|неа|no|nope)\W+)?(?:спасибо|благодарю|thanks|thank\s+you)|благодарствую|thx|\bty\b|"
                      r"that(?:'?s|\s+is)\s+all|это\s+вс[её]|"
                      r"больше\s+ничего(?:\s+не\s+(?:надо|нужно))?|ничего\s+не\s+(?:надо|нужно)|nothing\s+else|"
                      r"(?:i\s+)?don'?t\s+need\s+anything(?:\s+else)?|пока\b|до\s+свидания|bye|goodbye",
                      re.IGNORECASE)


# words that say what the comparison is for («какие лучше для бега?»; not "for me"): then it refines the list
_COMPARE_PURPOSE = re.compile(r"\b(?:для|под|чтобы|for)\s+(?!(?:me|us|myself|меня|нас|себя|мне)\b)\w", re.IGNORECASE)
# a comparison that points at the list on screen (not «а кефир или ряженка?», not «а есть что-то лучше?»)
_LIST_COMPARISON = re.compile(r"\bиз\s+(?:них|этих|списка)|\b(?:как(?:ой|ая|ое|ие)|что)\s+(?:из\s+\w+\s+)?лучше|"
                              r"\bлучш(?:ий|ая|ее|ие)\s+из|\bof\s+(?:them|these|those)\b|\bwhich\s+(?:one|is|would)\b|"
                              r"\bwhich\b.*\bbetter\b|\bwhat'?s\s+better\b", re.IGNORECASE)


# what a comparison of the list on screen can be by (besides "best for me"): price, size, price per unit
# (comparative forms only: «какой из них тебе больше нравится?», «больше всего белка», "less expensive", «дорожная»
# are not comparisons by size or price)
COMPARED_BY = (
    ("cheapest", re.compile(r"дешевл|деш[её]в|cheap|\b(?:less|least)\s+expensive|\binexpensive", re.IGNORECASE)),
    ("priciest", re.compile(r"\bдороже\b|подороже|сам(?:ый|ая|ое|ые)\s+дорог|\b(?:more|most)\s+expensive|pricie",
                            re.IGNORECASE)),
    ("value", re.compile(r"выгодн|\b(?:best|better|good)\s+value|\bper\s+(?:kg|kilo|litre|liter)", re.IGNORECASE)),
    ("biggest", re.compile(r"\b(?:по)?(?:больше|крупнее)\b(?!\s+(?:всего|нрав|подо|ничего|не\b|всех\s+нрав))|"
                           r"сам(?:ый|ая|ое|ые)\s+(?:больш|крупн)|\b(?:bigger|biggest|largest|larger)\b",
                           re.IGNORECASE)),
)


def compared_by(message: str) -> str | None:
    """The attribute a list comparison asks about («какой из них дешевле?» → "cheapest"), None for "best"."""
    return next((name for name, pattern in COMPARED_BY if pattern.search(message)), None)


def compares_the_list(state: DialogueState, understanding: RequestUnderstanding, message: str) -> bool:
    """«какой из них лучше?», "which one is better?": a comparison pointing at the list on screen, with nothing it
    is for (a purpose refines the list instead). One by price or size ("which one is cheaper?", read as «подешевле»
    by the understanding) is about the list too, whatever the intent read."""
    if not points_at_the_list(state, message):
        return False
    return understanding.intent == "compare" and not understanding.refinement or compared_by(message) is not None


# «какой дешевле?»: one of something, asked by price or size (not «какие есть подешевле?», which asks for more)
_WHICH_ONE = re.compile(r"\bкак(?:ой|ая|ое)\b(?!-)", re.IGNORECASE)


def points_at_the_list(state: DialogueState, message: str) -> bool:
    """The message compares within the list on screen («какой из них …?», "which one …?", "… of them?", «какой
    выгоднее?» — that one was refused as small talk) for no purpose of its own."""
    pointing = _LIST_COMPARISON.search(message) or _WHICH_ONE.search(message) and compared_by(message)
    return bool(state.last_items) and bool(pointing) and not _COMPARE_PURPOSE.search(message)


_DISLIKE = re.compile(r"\b(?:не|нет|неа|слишком|чересчур|фу|мимо|хуже|плох\w*|дорог\w*|not|no|nope|too|don'?t|"
                      r"meh|worse|bad|expensive|pricey)\b", re.IGNORECASE)


# praise that goes on to ask for more: no acknowledgement
_ASKS_MORE = re.compile(r"\?|\b(?:ещё|еще|другие|другое|похож\w*|покажи|anything|more|similar|other|else|show)\b",
                        re.IGNORECASE)


def acknowledges(state: DialogueState, understanding: RequestUnderstanding, message: str) -> bool:
    """The message only thanks or says goodbye («спасибо, больше ничего не надо», "thank you, that's all": whether or
    not a list is on screen) or reacts well to the list on screen («отлично, беру», "love it"): it asks for nothing
    more, so the turn answers it instead of showing another list. A reaction with a refinement («не то», «слишком
    дорого») or any other content is no acknowledgement."""
    if understanding.refinement or understanding.intent == "explain":
        return False
    if _CLOSING.search(message) and not follow_up_content(_CLOSING.sub(" ", message)):
        return True                   # thanks or goodbye and nothing else («спасибо, больше ничего не надо»)
    if not state.last_items or _DISLIKE.search(message):  # «слишком сладкое», "too pricey": wants something else
        return False
    return understanding.intent == "feedback" and not _ASKS_MORE.search(message)  # "love it, anything similar?"


def takes_offer(state: DialogueState, message: str) -> bool:
    """After a nothing-left offer: «да», «давай», "ok, show me", «давай в Купере» (the offered service named) take
    it; a message that asks for something of its own ("I need coffee beans", «покажи чай») is a new request, not a
    yes, even when it opens with «давай» or the offered service would sell it."""
    if not (state.last_act == "nothing_left" and state.offer):
        return False
    named = mentioned_services(message)
    if any(service != state.offer.get("service") for service in named):  # «да, но в Самокате»: not this offer
        return False
    return bool(_ACCEPT.search(message) or named) and says_nothing_else(message, SERVICE_PATTERNS.values())


def offers_made(state: DialogueState) -> frozenset[tuple[str, str]]:
    """(kind, service) of each relaxation offered in the run of nothing-left turns the previous turn ended (none
    when it was no nothing-left turn)."""
    if state.last_act != "nothing_left":
        return frozenset()
    made = {tuple(o.split(" ", 1)) for o in state.offered if " " in o}
    if state.offer:
        made.add((state.offer.get("kind", ""), state.offer.get("service", "")))
    return frozenset(made)


def with_offer(state: DialogueState, before: DialogueState, offer: dict | None) -> DialogueState:
    """``state`` after a nothing-left turn that offered ``offer`` (None: nothing), following ``before``: the offers of
    this run of nothing-left turns kept, so a third «ещё» does not get the first offer back as new."""
    run = before.offered if before.last_act == "nothing_left" else ()
    made = run + ((f"{offer['kind']} {offer['service']}",) if offer else ())
    return replace(state, offer=offer, offered=tuple(dict.fromkeys(made)))


def says_yes_to_nothing(state: DialogueState, message: str) -> bool:
    """«да», "ok" after a nothing-left reply that offered nothing (no service or budget had anything to show): there
    is no offer to take, and a refinement of the goal showed whatever was nearest (food containers and hair balm
    after «капли для глаз», which no service sells)."""
    return state.last_act == "nothing_left" and not state.offer and bool(_ACCEPT.search(message)) \
        and says_nothing_else(message)


def says_nothing_else(message: str, also=()) -> bool:
    """Besides its words of assent («да», «давай», "ok, show me") and what ``also`` matches (the offered service's
    name), the message asks for nothing."""
    rest = _ACCEPT_WORDS.sub(" ", message)
    for pattern in also:
        rest = pattern.sub(" ", rest)
    return not follow_up_content(rest)


def states_only_a_budget(message: str) -> bool:
    """The message says a budget and nothing else («до 3000», "under 500 please", «а бюджет 1500?»): the
    understanding read it as a request of its own, which started a new goal of "до 3000" (baby food after a gift
    list)."""
    if text_budget(message) is None:
        return False
    rest = message
    for pattern in BUDGET_PATTERNS:
        rest = pattern.sub(" ", rest)
    return not follow_up_content(rest)


# what is left of «ему 3 года», "she is 5 years old" once the age is cut out, when nothing else is said
_AGE_FILLER = re.compile(r"\b(?:ему|ей|им|он[ао]?|она|они|уже|только|исполнилось|исполняется|будет|скоро|всего|"
                         r"нам|нашему|нашей|моему|моей|he|she|they|is|are|turned|turns|will|be|just|only|old|"
                         r"now|my|our|son|daughter|kid|child|s)\b", re.IGNORECASE)


def states_only_an_age(message: str) -> bool:
    """The message says a child's age and nothing else («ему 3 года», "she's 5"): the understanding read it as a
    request of its own, which started a new goal of "ему 3 года" (construction sets on Megamarket after a child's
    breakfast); it tells whom the goal is for."""
    if parse_child_age(message, None) is None:
        return False
    rest = message
    for pattern in (AGE_NUMBER, AGE_PHRASE, AGE_WORD, AGE_MONTHS):
        rest = pattern.sub(" ", rest)
    for _, regex in RECIPIENT_REGEXES:
        rest = regex.sub(" ", rest)
    return not follow_up_content(_RECIPIENT_FILLER.sub(" ", _AGE_FILLER.sub(" ", rest)))


def age_phrase(message: str, language: str) -> str:
    """The child's age the message says, as the query reads it best: «ребёнку 3 года», "for a 7 year old"
    (months: «ребёнку 10 месяцев», "for a 10 month old"). Only for a message ``states_only_an_age`` holds for."""
    lowered = message.lower()
    if not AGE_NUMBER.search(lowered) and not AGE_WORD.search(lowered) and (months := AGE_MONTHS.search(lowered)):
        count, unit = int(months.group(1)), ("месяц", "месяца", "месяцев")
    else:
        count, unit = parse_child_age(message, None)[0], ("год", "года", "лет")
    if language != "ru":
        article = "an" if str(count).startswith("8") or count in (11, 18) else "a"
        return f"for {article} {count} {'month' if unit[0] == 'месяц' else 'year'} old"
    form = 2 if 11 <= count % 100 <= 14 else 0 if count % 10 == 1 else 1 if 2 <= count % 10 <= 4 else 2
    return f"ребёнку {count} {unit[form]}"


def is_new_request(state: DialogueState, understanding: RequestUnderstanding) -> bool:
    """The message starts a new goal although its intent reads as a follow-up: it names a domain of its own,
    confidently, other than the goal's, and carries no refinement of the shown list («подешевле», «не то»)."""
    if understanding.intent not in FOLLOW_UP_INTENTS | {"clarify_needed"} or understanding.refinement:
        return False
    if understanding.intent == "compare" and state.last_items:  # «какие лучше для бега?» is about the list shown
        return False
    return (understanding.domain not in ("other", state.domain) and bool(state.domain)
            and understanding.domain_confidence >= NEW_GOAL_MIN_DOMAIN_CONFIDENCE)


def start_goal(state: DialogueState, understanding: RequestUnderstanding, message: str) -> DialogueState:
    """A new goal: constraints from the message (an answer to a clarifying question joins the vague wish, and the
    service the wish was asked in, unless the answer names another or reads as something that service does not
    sell: «наушники» asked from Kuper go to Megamarket)."""
    answers = state.last_act == "clarify"
    goal = f"{state.goal} {message}".strip() if answers else message
    services = tuple(understanding.target_services)
    keeps = answers and not mentioned_services(message) and (not services or state.service in services)
    return replace(
        state, goal=goal, domain=understanding.domain, services=services,
        service=state.service if keeps else "", budget=text_budget(message) or (state.budget if answers else None),
        diet=catalog_diet(understanding.diet), recipient=understanding.recipient, age_band=understanding.age_band,
        refinements=(), shown=(), shown_in=(), rejected=(), kinds=(), described=(),
        summary=_summary(state),
        # nothing has been said about the new goal yet: no «still nothing» from the last one, no offer of its
        last_act="", offer=None, offered=(),
    )


def refine_goal(state: DialogueState, understanding: RequestUnderstanding, message: str) -> DialogueState:
    """A follow-up: diets accumulate, a budget stated in this message replaces the old one, «подешевле» lowers it
    below what was shown, «не то»/«подешевле» mark the last list as rejected; the message joins the query only when
    it says more than that (``follow_up_content``: «ещё» alone keeps the goal's query as it was). (The understanding
    of a follow-up inherits the goal's budget, so only the message itself says whether a budget was stated now.)"""
    stated = text_budget(message)  # the stages read the same parser: MAX_PRICE and the text never disagree
    budget = stated if stated else state.budget
    if "cheaper" in understanding.refinement and state.last_prices and not stated:
        median = sorted(state.last_prices)[len(state.last_prices) // 2]
        budget = min(budget or float("inf"), median * CHEAPER_FACTOR)
    rejected = state.rejected
    if {"cheaper", "other"} & set(understanding.refinement):
        rejected = (rejected + state.last_items)[-MAX_SHOWN_KEPT:]
    # an age alone joins as whom it is for («ребёнку 3 года»): "she is 7 years old" as said pulled the English
    # breakfast list to party drinks, alcohol-free beer among them
    said = age_phrase(message, understanding.language) if states_only_an_age(message) else message
    return replace(
        state, budget=budget, diet=tuple(sorted(set(state.diet) | set(catalog_diet(understanding.diet)))),
        refinements=(state.refinements + ((said,) if follow_up_content(said) else ()))[-MAX_REFINEMENTS_KEPT:],
        recipient=understanding.recipient or state.recipient, age_band=understanding.age_band or state.age_band,
        rejected=rejected,
    )


def drops_budget(state: DialogueState, message: str) -> bool:
    """«давай без ограничения», «убери ограничение по цене», "no budget limit" while the goal has a budget: the whole
    message asks to drop it (a longer message, or one without a budget in force, goes through moderation as usual)."""
    return state.budget is not None and bool(_DROP_BUDGET.search(message))


def without_budget(state: DialogueState) -> DialogueState:
    """The goal with its budget dropped and any pending offer taken care of; the kinds of items shown are kept."""
    return replace(state, budget=None, offer=None)


def accept_offer(state: DialogueState) -> DialogueState:
    """The goal under the relaxation the last nothing-left turn offered (the diet is never relaxed); another service
    or no budget keeps the kinds of items the offer counted (``kinds``), so the list is what was offered."""
    offer = state.offer or {}
    kinds = tuple(offer.get("categories") or ()) or state.kinds
    if offer.get("kind") == "service":
        return replace(state, service=offer["service"], offer=None, kinds=kinds)
    if offer.get("kind") == "budget":
        return replace(state, budget=None, offer=None, kinds=kinds)
    if offer.get("kind") == "category":
        return replace(state, goal=offer["query"], refinements=(), offer=None)
    return replace(state, offer=None)


def effective_query(state: DialogueState, language: str) -> str:
    """The text retrieval runs: the goal, the newest follow-ups, and every diet constraint spelled out (so a
    constraint set twenty turns ago still filters, over BLS too, where the retriever reads tags from the text).
    Earlier turns pass ``clean_untrusted``: an instruction hidden in them never reaches retrieval or the prompt."""
    query = " ".join(clean_all((state.goal, *state.refinements)))  # earlier turns are untrusted text too
    phrases = DIET_PHRASES.get(language, DIET_PHRASES["ru"])
    missing = [phrases[t] for t in state.diet if t in phrases and t not in _tags_in(query)]
    query = " ".join([query, *missing]).strip()
    # bounded like a request (a 2,000-character goal and its follow-up failed the next turn: "query is too long");
    # the diets spelled out at the end are cut last
    tail = " ".join(missing)
    return query if len(query) <= MAX_QUERY_CHARS else \
        f"{query[:MAX_QUERY_CHARS - len(tail) - 1].rsplit(' ', 1)[0]} {tail}".strip()


def _tags_in(text: str) -> set[str]:
    return {tag for tag, pattern in REQUIRED_TAG_PATTERNS.items() if pattern.search(text)}


def _summary(state: DialogueState) -> str:
    """One line per finished goal, newest last, bounded."""
    if not state.goal:
        return state.summary
    line = f"{state.goal} → показано {len(state.shown)}, отклонено {len(state.rejected)}"
    return f"{state.summary}; {line}".strip("; ")[-MAX_SUMMARY_CHARS:]


def _plain(understanding: RequestUnderstanding) -> dict:
    """The understanding as its JSON round trip (tuples as lists), so a saved and a reloaded state compare equal."""
    return json.loads(json.dumps(understanding.to_dict()))


def reply_order(names: Sequence[str], reply: str) -> list[int]:
    """Indices of ``names``: the ones the reply names first, in the order it names them, then the rest as they
    were (the cards come in rank order, and a reply may name three of five in another: «а третий?» means the
    reply's third). Longer names are found first and their text blanked, so «Молоко» is not found inside «Молоко
    3,2%»; case is ignored."""
    text, at = reply.lower(), {}
    for i in sorted(range(len(names)), key=lambda i: -len(names[i])):
        name = names[i].lower()
        position = text.find(name) if name else -1
        if position >= 0:
            at[i] = position
            text = text[:position] + " " * len(name) + text[position + len(name):]
    named = sorted(at, key=lambda i: at[i])
    return named + [i for i in range(len(names)) if i not in at]


def record_shown(state: DialogueState, act: str, service: str, item_ids: list[int], names: list[str],
                 explanations: list[str], prices: list[float], understanding: RequestUnderstanding | None,
                 explanations_in: dict[str, list[str]] | None = None, reply: str = "") -> DialogueState:
    """The state after a turn that showed ``item_ids`` (possibly none); ``explanations_in``: the same explanations
    in each reply language (``last_explanations_<language>``); ``reply``: the text that named them, whose order the
    places in the list («а третий?») follow (``last_order``; the items themselves stay in the cards' order)."""
    shown = state.shown + tuple(i for i in item_ids if i not in state.shown)
    keep = bool(item_ids)
    explanations_in = explanations_in or {}
    order = tuple(reply_order(names, reply)) if reply and len(names) == len(item_ids) else ()
    return replace(
        state, service=service or state.service, shown=shown[-MAX_SHOWN_KEPT:],
        shown_in=tuple(dict.fromkeys(state.shown_in + ((service,) if item_ids and service else ()))),
        last_items=tuple(item_ids) if keep else state.last_items,
        last_names=tuple(names) if keep else state.last_names,
        last_explanations=tuple(explanations) if keep else state.last_explanations,
        last_explanations_ru=tuple(explanations_in.get("ru", ())) if keep else state.last_explanations_ru,
        last_explanations_en=tuple(explanations_in.get("en", ())) if keep else state.last_explanations_en,
        last_prices=tuple(prices) if keep else state.last_prices,
        last_order=order if keep else state.last_order,
        last_act=act, understanding=_plain(understanding) if understanding else state.understanding,
        turns=state.turns + 1,
    )
