"""Post-generation consistency check of a reply, and its counters.

A reply passes when every item it names is in the ranked list (and named once), every profile fact it cites
(quoted «…» or "…") is one of the prompt's facts, the text is not garbled (broken UTF-8, a letter run such as
"nnnn", a stray quote mark, a double space: a list left mid-way, «… и  макароны …»), no word run repeats ("и и",
"молоко, молоко, молоко"), no conjunction dangles at the end of a sentence or the reply ("…, и." / "… and"), a
list's «и» / "and" and its comma are followed by an item ("X, Y and For your.", «X, Ничего подходящего …»; an
explanation's «X, потому что …» aside), a label's colon by its first item when its sentence names one («Вот что я
подобрал: Как в прошлый раз, X») and a reply gives one list («… Y. Based on your history: Z.» is broken). ``GenerationStage`` regenerates a
failing sampled reply with greedy decoding; ``ReplyCheckCounters`` counts checks and failures by reason, for the
Triton adapter to export as Prometheus metrics (the counting lives here, the metric objects in the adapter).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from recllm.generator.reply_frame import frames_in, reply_frame, unasked_diets

CITATION_RE = re.compile(r"«([^«»]+)»|\"([^\"]+)\"")
WORD_RE = re.compile(r"[\w-]+", re.UNICODE)
CONJUNCTIONS = ("и", "или", "а", "но", "and", "or", "but", "with", "с")
DANGLING_RE = re.compile(r"(?:^|[\s,])(" + "|".join(CONJUNCTIONS) + r")\s*(?:[.!?]|$)", re.IGNORECASE)
REASONS = ("unknown_item", "duplicate_item", "uncited_fact", "repeated_words", "dangling_conjunction", "garbled",
           "empty", "empty_list", "wrong_language", "no_item", "unknown_word", "broken_list", "wrong_opening",
           "unasked_diet", "wrong_offer", "unknown_word_pair")
REPLY_WORDS_FILE = "reply_words.json"  # beside a trained generator: the words its training replies use
# beside a trained generator: the pairs of adjacent words its training replies write (``own_word_pairs``)
REPLY_WORD_PAIRS_FILE = "reply_word_pairs.json"
GARBLED_RE = re.compile(r"\ufffd|([^\W\d])\1{3,}|[«»\"]|  ", re.UNICODE)
LIST_ACTS = frozenset({"recommend", "refine"})  # acts whose reply names items
# What a nothing-left reply offers, by the relaxation its prompt names: the words that say it (Russian and English).
OFFER_CUES = {"budget": re.compile(r"бюджет|дороже|budget", re.IGNORECASE),
              "diet": re.compile(r"ограничени|состав|restriction|diet", re.IGNORECASE),
              "seen": re.compile(r"видели|просмотренн|\bseen\b", re.IGNORECASE),
              "service": re.compile(r"сервис|service", re.IGNORECASE),
              "query": re.compile(r"иначе|differently", re.IGNORECASE)}
EMPTY_LIST_RE = re.compile(r":\s*(?:[.!?;,]|$)")  # a label with nothing after it: «Без лактозы: .»
# a list whose last item is not one: "For your medicine cabinet: X, Y and For your." (items are placeholders here)
BROKEN_LIST_RE = re.compile(r"item\d+x\s*,?\s+(?:and|or|и|или)\s+(?!(?:[^\W\d]+\s+)?item\d+x)", re.IGNORECASE)
# a list label whose first element is not an item: «Вот что я подобрал: Как в прошлый раз, Смартфон …» (live, «хочу
# телефон»): after a colon, a sentence that goes on to name an item names it first
LABEL_GAP_RE = re.compile(r":\s*(?!\s|item\d+x)[^.!?:]*?item\d+x")
# a list's comma followed by words, not its next item: «Посмотрите Смартфон Xiaomi, Ничего подходящего не раскрываю.»
# (live, «хочу телефон»); an explanation's «X и Y, потому что …» / "X, since …" is the one comma that may
LIST_COMMA_GAP_RE = re.compile(r"item\d+x\s*,\s*(?!item\d+x|потому\b|since\b)\S", re.IGNORECASE)
# a second list after a sentence that named items: «… и Картофель. Based on your history: Брокколи.» (live, a new
# user: a citation's label with an item where the quote goes)
LIST_AGAIN_RE = re.compile(r"item\d+x[^.!?]*[.!?][^.!?:]*:\s*item\d+x")
# Outside item names and citations, a reply's words are in its language: no Cyrillic word in English, no Latin word
# in Russian («Take a look at ere я подберу точнее», «Sugar-free: … Вот»).
FOREIGN_WORD_RE = {"en": re.compile(r"[А-Яа-яЁё]"), "ru": re.compile(r"\b[A-Za-z]{2,}\b")}


@dataclass(frozen=True)
class ReplyCheck:
    problems: tuple[str, ...]  # reasons from REASONS, each at most once

    @property
    def ok(self) -> bool:
        return not self.problems


def reply_words(text: str) -> list[str]:
    """The letter-only words of ``text``, lower-case («Молоко-2,5%» → «молоко»)."""
    return re.findall(r"[^\W\d_]+", text.lower())


def own_words(reply: str) -> set[str]:
    """The words a training reply writes itself: without its item tokens (``<item_N>``) and quoted facts."""
    return set(reply_words(CITATION_RE.sub(" ", re.sub(r"<item_\d+>", " ", reply))))


def word_pairs(plain: str) -> set[str]:
    """The adjacent word pairs ("a b") of a reply's own text, ``plain`` with its items as ``item<k>x`` and its
    citations as ``cite0x``: an item or a citation ends a run of words, punctuation does not («вы любите, и»)."""
    pairs = set()
    for run in re.split(r"item\d+x|cite0x", plain):
        words = reply_words(run)
        pairs.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return pairs


def own_word_pairs(reply: str) -> set[str]:
    """``word_pairs`` of a training reply (items as ``<item_N>``, citations quoted)."""
    return word_pairs(CITATION_RE.sub("cite0x", re.sub(r"<item_\d+>", "item0x", reply)))


def cited_facts(text: str) -> list[str]:
    return [(a or b).strip() for a, b in CITATION_RE.findall(text)]


def has_repeated_run(words: Sequence[str], max_span: int = 3) -> bool:
    """A run of 1..max_span words immediately repeated ("и и", "на ужин на ужин")."""
    for span in range(1, max_span + 1):
        for start in range(len(words) - 2 * span + 1):
            if words[start:start + span] == words[start + span:start + 2 * span]:
                return True
    return False


def check_reply(text: str, item_ids: Sequence[int], ranked_item_ids: Sequence[int],
                prompt_facts: Sequence[str], item_names: Sequence[str] = (), language: str = "",
                must_name_items: bool = False, known_words: frozenset[str] | None = None,
                query: str | None = None, offer: str = "", known_pairs: frozenset[str] | None = None
                ) -> ReplyCheck:
    """``item_ids``: the items the reply names (in order); ``item_names``: their rendered names, removed before
    the word checks (a product name may repeat a word legitimately); ``language`` ("ru" / "en"; empty: not
    checked): the reply's words outside names and citations are in it; ``must_name_items``: the act gives a list
    (recommend, refine), so a reply naming none of the ranked items fails; ``known_words`` (the generator's
    training replies' words, ``reply_words``): a word outside names and citations that is none of them is a broken
    one («подобуйд», «Take a look at ere»); ``query`` (the request's text): an opening before the first item that
    speaks of another request than this one fails («Для бега пригодятся …» cough lozenges: ``opens_off_frame``), and
    so does a diet the reply's own words say and the request does not («…, но без лактозы: …» for buckwheat);
    ``offer`` (a nothing-left reply's relaxation, ``OFFER_CUES``): the reply offers that one and no other ("tea" with
    nothing found was offered "a little above your budget", no budget said); ``known_pairs`` (the training replies'
    adjacent word pairs, ``own_word_pairs``): known words in an order no training reply writes are a word salad
    («For your me what I found:», «потому что вы любите, и популярны у покупателей»)."""
    problems = []
    ranked = set(int(i) for i in ranked_item_ids)
    if any(int(i) not in ranked for i in item_ids):
        problems.append("unknown_item")
    if len(set(item_ids)) != len(item_ids):
        problems.append("duplicate_item")
    facts = [f.strip().lower() for f in prompt_facts]
    if any(not any(c.lower() == f or c.lower() in f for f in facts) for c in cited_facts(text)):
        problems.append("uncited_fact")
    plain = text
    # a distinct placeholder word each ("X и Y." stays a sentence), longest names first (a name may begin another)
    for k, name in sorted(enumerate(item_names), key=lambda pair: -len(pair[1])):
        plain = plain.replace(name, f"item{k}x")
    plain = CITATION_RE.sub("cite0x", plain)  # a citation counts as one word (not the reply's own "in fact")
    sentences = re.split(r"[.!?;:—]", plain)  # "…не могу. Могу…" is two sentences, not a repeat
    segments = [" ".join(WORD_RE.findall(s.lower())) for s in sentences]
    if (any(has_repeated_run(segment.split()) for segment in segments)
            or any(a and a == b for a, b in zip(segments, segments[1:]))  # «Другие варианты: Другие варианты:»
            or any(b and a.split()[-len(b.split()):] == b.split()  # "Based on your history: history: …"
                   for a, b in zip(segments, segments[1:]))):
        problems.append("repeated_words")
    if must_name_items and ranked and not item_ids:  # a list to give, nothing named: «Other options: s.»
        problems.append("no_item")
    if any(pattern.search(plain) for pattern in (BROKEN_LIST_RE, LABEL_GAP_RE, LIST_COMMA_GAP_RE, LIST_AGAIN_RE)):
        problems.append("broken_list")
    if DANGLING_RE.search(plain.strip()):
        problems.append("dangling_conjunction")
    if GARBLED_RE.search(plain):  # broken UTF-8, "nnnn", a stray quote outside a whole citation, "  "
        problems.append("garbled")
    if not text.strip():
        problems.append("empty")
    if EMPTY_LIST_RE.search(plain):
        problems.append("empty_list")
    own = re.sub(r"item\d+x|cite0x", " ", plain)  # the reply's own words: no item name, no citation
    if language in FOREIGN_WORD_RE and FOREIGN_WORD_RE[language].search(own):
        problems.append("wrong_language")
    if known_words is not None and any(w not in known_words for w in reply_words(own)):
        problems.append("unknown_word")
    if known_pairs is not None and not word_pairs(plain) <= known_pairs:
        problems.append("unknown_word_pair")
    if query is not None and opens_off_frame(plain, query):
        problems.append("wrong_opening")
    if query is not None and unasked_diets(re.sub(r"item\d+x|cite0x", " ", plain), query):
        problems.append("unasked_diet")  # «Гречка …, но без лактозы: …» for buckwheat within 700 ₽
    if offer and offers_otherwise(own, offer):  # the reply's own words: a quoted fact may say «бюджет»
        problems.append("wrong_offer")
    return ReplyCheck(tuple(problems))


def offers_otherwise(text: str, offer: str) -> bool:
    """The reply does not say the ``offer`` it was asked to make, or says another one too."""
    if offer not in OFFER_CUES:
        raise ValueError(f"offer must be one of {sorted(OFFER_CUES)}, got {offer!r}")
    return not OFFER_CUES[offer].search(text) or any(cue.search(text) for other, cue in OFFER_CUES.items()
                                                     if other != offer)


def opens_off_frame(plain: str, query: str) -> bool:
    """The words before the first item (``plain``: items already ``item<k>x``) open a reply to another kind of
    request than ``query``: their frame (``reply_frame``) is none of those the query's text matches. A generic
    opening («Вот что я подобрал») fits every request."""
    first = re.search(r"item\d+x", plain)
    if first is None:
        return False
    said = reply_frame(plain[:first.start()], "recommend")
    return bool(said) and said not in frames_in(query)


class ReplyCheckCounters:
    """Thread-safe totals: replies checked, failed (by reason), regenerated, and still failing after the retry."""

    def __init__(self):
        self._lock = threading.Lock()
        self.checked = 0
        self.failed = 0
        self.regenerated = 0
        self.failed_after_retry = 0
        self.withheld = 0
        self.reasons: Counter[str] = Counter()
        self._listeners = []

    def add_listener(self, listener) -> None:
        """``listener(event, reason)`` with event in ("checked", "failed", "regenerated", "failed_after_retry",
        "withheld")."""
        self._listeners = [*self._listeners, listener]  # replaced, never changed in place: _emit may be iterating

    def remove_listener(self, listener) -> None:
        self._listeners = [known for known in self._listeners if known != listener]

    def _emit(self, event: str, reason: str = "") -> None:
        for listener in self._listeners:
            listener(event, reason)

    def record(self, check: ReplyCheck, retry: bool = False) -> None:
        with self._lock:
            self.checked += 1
            if check.ok:
                pass
            elif retry:
                self.failed_after_retry += 1
            else:
                self.failed += 1
                self.reasons.update(check.problems)
        self._emit("checked")
        if not check.ok:
            if retry:
                self._emit("failed_after_retry")
            else:
                for reason in check.problems:
                    self._emit("failed", reason)

    def record_withheld(self) -> None:
        """A streamed reply whose failing rest was not sent (``GuardedReply``)."""
        with self._lock:
            self.withheld += 1
        self._emit("withheld")

    def record_regeneration(self) -> None:
        with self._lock:
            self.regenerated += 1
        self._emit("regenerated")

    def snapshot(self) -> dict:
        with self._lock:
            return {"checked": self.checked, "failed": self.failed, "regenerated": self.regenerated,
                    "failed_after_retry": self.failed_after_retry, "withheld": self.withheld,
                    "reasons": dict(self.reasons)}


# A sentence ends at [.!?] before whitespace or the text's end, never at a decimal point («до 1» then «.5»).
SENTENCE_END_RE = re.compile(r"(?<!\d)[.!?](?=\s|$)")


class GuardedReply:
    """A streamed reply released piece by piece, each piece only when the text so far passes ``check``.

    ``feed`` takes the renderer's deltas (an item's name arrives whole, with its id). Once the first item has come,
    text is released at release points: the end of an item's name, where the text so far must pass as if its
    sentence ended there (``check`` of the text + "."), and the end of a sentence outside a name (never a decimal
    point), where it must pass as it is. ``check(text, item_ids, final)`` is asked with ``final`` False at those
    points and True for the whole reply at the end. Once a point fails nothing more is released. ``finish`` sends
    the held rest when the whole reply passes and ends a sentence; a reply cut mid-sentence (its token budget) ends
    at what was released, a sentence left open after an item closed with "." (checked so at release); when nothing
    was released it sends the whole reply if it passes, else ``fallback()`` (a plain reply built from the items).
    So a client never sees a broken or unfinished sentence, and a list still streams item by item.
    """

    def __init__(self, check, fallback):
        self.check = check          # (text, item_ids, final) -> bool
        self.fallback = fallback    # () -> str
        self.text = ""
        self.item_ids: list[int] = []
        self.items_at: list[int] = []  # where each item's name ends in ``text``
        self.released = 0
        self.open_sentence = False  # the released text ends after an item, mid-sentence
        self.stopped = False
        self.fell_back = False

    def feed(self, delta: str, item: int | None) -> str:
        """Take a delta (the whole reply is kept, for the counters' check); return what may be sent now."""
        start = len(self.text)
        self.text += delta
        if item is not None:
            self.item_ids.append(int(item))
            self.items_at.append(len(self.text))
        if self.stopped or not delta and item is None:
            return ""
        if item is not None:
            return self._release(len(self.text), closing=".")
        if not self.item_ids:  # an opening sentence waits for the first item (a list reply must name one)
            return ""
        ends = [m.end() for m in SENTENCE_END_RE.finditer(self.text, start)]
        return self._release(ends[-1]) if ends else ""

    def _release(self, upto: int, closing: str = "", final: bool = False) -> str:
        """Release the text up to ``upto`` when it (+ ``closing``) passes."""
        if upto <= self.released:
            return ""
        items = [i for i, at in zip(self.item_ids, self.items_at) if at <= upto]
        if not self.check(self.text[:upto] + closing, items, final):
            self.stopped = True
            return ""
        out, self.released, self.open_sentence = self.text[self.released:upto], upto, bool(closing)
        return out

    def finish(self) -> str:
        """What is left to send: the held rest, "." closing a sentence left open after an item, the whole reply,
        the fallback, or ""."""
        ends_sentence = self.text.rstrip()[-1:] in (".", "!", "?")  # nothing follows: a final «250.» ends it too
        if not self.stopped and self.released < len(self.text) and ends_sentence:
            rest = self._release(len(self.text), final=True)
            if rest:
                return rest
        if self.released == 0:
            self.fell_back = True
            return self.fallback()
        return "." if self.open_sentence else ""

    @property
    def withheld(self) -> bool:
        """Some of the generated text was not sent (or an empty reply was replaced)."""
        return self.released < len(self.text) or self.fell_back
