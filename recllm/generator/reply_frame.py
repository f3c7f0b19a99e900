"""The frame of a reply: what the opening of a recommend / refine reply is about, read from the request's text.

The prompt carries it as a control field (``build_prompt(..., frame=...)``), so the opening the model writes follows
the request instead of being guessed from the query's wording: «есть что-то от давления?» is ``health`` (a medicine
cabinet opening), never a gift one; «подарок маме … cheaper please» refined is ``cheaper``. Training
(``builders.generator_corpus``) and serving call this one function on the same text, so what the model learned is
what it is given. A request no frame fits gets ``""``: the generic opening («Вот что я подобрал»).

* ``recommend``: the first of ``RECOMMEND_FRAMES`` whose pattern matches (most specific first: a gift for a child
  before a gift, a healthy dinner before a dinner);
* ``refine``: the refinement said last in the (goal + follow-ups) text: «… без сахара … подешевле» is ``cheaper``;
* other acts have no frame.
"""

from __future__ import annotations

import re

from recllm.safety.health_rule import HEALTH_REQUEST

_GIFT = r"подар|\bgift|\bpresent\b|\bgive\b"
_CHILD = r"ребён|ребен|\bсын|\bдоч|внук|внучк|племянн|\bkid|child|\bson\b|daughter|year-old"
# (frame, pattern): every pattern is searched in the lower-cased text; the first frame that matches wins.
RECOMMEND_FRAMES: tuple[tuple[str, str], ...] = (
    ("reorder_lactose_free", r"(?:прошл\w+\s+(?:раз|заказ)|last\s+(?:time|basket)|\breorder)"
                             r"(?=.*(?:лактоз|lactose))"),
    ("kid_gift", rf"(?:{_GIFT}).*(?:{_CHILD})|(?:{_CHILD}).*(?:{_GIFT})"),
    ("baby_care", r"малыш|подгузник|детское\s+питание|до\s+года|\bbaby|diaper|newborn|младен"),
    ("pet_food", r"корм|питом|любимц|\bpet\b|кошк|собак|\bcat\b|\bdog\b"),
    ("health", HEALTH_REQUEST.pattern + r"|простыл|\bcold\b|caught\s+a\s+cold"),
    ("running_gear", r"\bбег|пробеж|марафон|\brunning|\brun\b|jogging"),
    ("gaming", r"\bигр(?!уш)|геймпад|гарнитур|приставк|gaming|\bgamer|gamepad|console"),
    ("gift", _GIFT),
    ("household", r"бытов|уборк|хозтовар|моющ|стирк|cleaning|household|detergent"),
    ("party", r"друз|вечеринк|гост|угощен|\bparty|guests|friends"),
    ("sugar_free", r"без\s+сахара|sugar[- ]?free|without\s+sugar|no\s+sugar"),
    ("healthy_dinner", r"(?:ужин|dinner).*(?:полезн|здоров|лёгк|легк|healthy|light)|"
                       r"(?:полезн|здоров|лёгк|легк|healthy|light).*(?:ужин|dinner)"),
    ("dinner", r"ужин|dinner"),
    ("snack_office", r"офис|на\s+работ|office|at\s+work"),
    ("breakfast", r"завтрак|breakfast"),
    ("coffee", r"кофе|coffee"),
    ("sweet", r"сладк|сладост|к\s+чаю|\bsweet|for\s+tea"),
)
# (frame, pattern) of follow-ups; the one said last decides.
REFINE_FRAMES: tuple[tuple[str, str], ...] = (
    ("cheaper", r"подешевл|дешевле|cheaper|less\s+expensive|too\s+expensive|дорого"),
    ("other", r"не\s+то\b|друго[ей]|други[ех]|ещ[её]|something\s+else|not\s+that|\bother\b|\bmore\b|\belse\b"),
    ("sugar_free", r"без\s+(?:сахара|sugar)|sugar[- ]?free|(?:without|no)\s+(?:sugar|сахара)"),
    ("lactose_free", r"без\s+(?:лактоз|lactose)|безлактозн|lactose[- ]?free|(?:without|no)\s+(?:lactose|лактоз)"),
)
DIET_FRAMES = ("sugar_free", "lactose_free")  # a constraint a reply may say only when the request does
FRAMES = tuple(name for name, _ in RECOMMEND_FRAMES) + tuple(name for name, _ in REFINE_FRAMES
                                                             if name not in dict(RECOMMEND_FRAMES))
_RECOMMEND = tuple((name, re.compile(pattern)) for name, pattern in RECOMMEND_FRAMES)
_REFINE = tuple((name, re.compile(pattern)) for name, pattern in REFINE_FRAMES)


def unasked_diets(reply: str, query: str) -> list[str]:
    """The diets (``DIET_FRAMES``) the reply's text says and the request does not («…, но без лактозы: …» for
    buckwheat)."""
    reply, query = " ".join(reply.lower().split()), " ".join(query.lower().split())
    patterns = dict(_REFINE)
    return [name for name in DIET_FRAMES if patterns[name].search(reply) and not patterns[name].search(query)]


def frames_in(query: str) -> frozenset[str]:
    """Every recommend frame whose pattern the text matches (a child's present is also a present, a healthy
    dinner also a dinner): the openings a reply to it may use."""
    text = " ".join(query.lower().split())
    return frozenset(name for name, pattern in _RECOMMEND if pattern.search(text))


def reply_frame(query: str, act: str) -> str:
    """The frame of a ``recommend`` / ``refine`` reply to ``query`` (``""`` when none fits or for other acts)."""
    text = " ".join(query.lower().split())
    if act == "recommend":
        return next((name for name, pattern in _RECOMMEND if pattern.search(text)), "")
    if act == "refine":
        said = [(match.end(), name) for name, pattern in _REFINE for match in pattern.finditer(text)]
        return max(said)[1] if said else ""
    return ""
