"""The privacy filter and moderation applied around one chat turn: what goes in, what goes out.

The chat engine calls these at the turn's edges (product.md, "What must never happen"):
* ``screen_message`` — the user's message, first: anything but ``ok`` is answered with moderation's short safe reply
  and nothing else happens (no retrieval, no items);
* ``clean_untrusted`` — text the prompt reads but the user did not type now (profile facts, earlier turns, item
  names): sentences carrying injected instructions are dropped, personal data is redacted;
* ``guard_items`` — the ranked items leaving the server: names and explanations redacted, health/medicine items
  dropped unless the request is in that domain (a backstop behind the retriever's health rule);
* ``StreamRedactor`` — the generated reply, redacted as it streams with a short hold-back, so a phone number split
  across two deltas is still caught.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

import numpy as np
from recllm_proto import tensors
from recllm_proto.text_arrays import decode_utf8_array, utf8_array

from recllm.catalog.asking_words import words_beside_asking
from recllm.safety.health_rule import asks_about_health
from recllm.safety.moderation import SAFE_REPLIES, ModerationVerdict, moderate, scan_untrusted
from recllm.safety.privacy_filter import (PiiSpan, PrivacyFilterConfig, find_pii, mentions_sensitive_domain, redact,
                                         redact_spans, text_language)

# A user id named in a message («как у u000123», "for user u_42"): another user's id must change nothing, so it is
# cut from the text before understanding and retrieval (the profile read is always the caller's own).
_USER_ID_MENTION = re.compile(
    r"(?i)(?:\b(?:как\s+у|для|у|like|for)\s+)?(?:\b(?:пользовател\w*|клиент\w*|покупател\w*|user|customer)\s+)?"
    r"\bu_?\d{3,}\b")
# Output arrays (lower_snake, as ChatEngine yields them) that carry text shown to the user.
TEXT_ARRAYS = ("item_names", "item_explanations", *(spec.client_name for spec in tensors.ITEM_EXPLANATIONS_IN.values()))
# Characters of a streamed reply held back: longer than a phone, card, e-mail or a street address with flat.
HOLD_CHARS = 40


# the identifiers a chat message may not carry (names and addresses are shopping: a gift for Masha, a street)
IDENTIFIERS = PrivacyFilterConfig(kinds=("email", "card", "snils", "phone", "passport", "inn"), use_ner=False)
EVERYTHING = PrivacyFilterConfig()  # every kind of personal data, names by NER too: what leaves the server


def screen_message(message: str, language: str | None = None) -> ModerationVerdict:
    """Moderation of the user's own message; ``label == "ok"`` means the turn goes on. A message carrying an
    identifier (e-mail, phone, card, document number) is personal data whatever else it says ("my email is …,
    remember it" after a list read as feedback and was thanked); names and addresses are not refused («подарок для
    Маши», «доставка на улицу Ленина» are shopping; they are redacted wherever text leaves)."""
    verdict = moderate(message, language)  # (checks the message and the language)
    if find_pii(message, IDENTIFIERS):
        return ModerationVerdict("personal_data", "rule:identifier",
                                 SAFE_REPLIES[language or text_language(message)]["personal_data"])
    return verdict


def without_user_ids(message: str) -> str:
    """``message`` with every user-id mention (and its «как у»/«пользователя» lead-in) removed."""
    return re.sub(r"\s{2,}", " ", _USER_ID_MENTION.sub(" ", message)).strip()


def clean_untrusted(text: str) -> str:
    """``text`` without injected instructions and with personal data redacted ("" when nothing usable is left)."""
    scan = scan_untrusted(text)
    kept = scan.neutralised if scan.injected else text
    return redact(kept).text.strip() if kept.strip() else ""


def clean_all(texts: Iterable[str]) -> list[str]:
    """``clean_untrusted`` of each text, the emptied ones dropped."""
    return [cleaned for text in texts if (cleaned := clean_untrusted(text))]


def sensitive_query(query: str) -> bool:
    """The query names a sensitive domain (``mentions_sensitive_domain``) or asks about health in the words the
    retriever routes to the pharmacy shelf (``asks_about_health``: «у ребёнка температура» — its health items were
    retrieved and then all dropped here, and the chat said nothing was found)."""
    return bool(mentions_sensitive_domain(query)) or asks_about_health(query)


_KIND_STEM = 6  # letters of a word compared («пастилки» / «пастилка»: one kind)
_GENERIC_KINDS = frozenset({"набор", "наборы", "комплект", "средство", "средства"})  # (no kind of their own)


def asks_for_the_kind(query: str, item_name: str) -> bool:
    """The query asks for the kind the item's name starts with («а пастилки есть?»: «Пастилки для горла …»), by that
    word alone (its first letters compared) beside asking words, so a sensitive item asked for by name is not
    dropped as unasked."""
    kind = re.findall(r"[^\W\d_]+", item_name.lower().replace("ё", "е"))[:1]
    if not kind or len(kind[0]) < 4 or kind[0] in _GENERIC_KINDS:
        return False
    said = words_beside_asking(query)  # the kind and nothing more («закончился стиральный порошок» is no ask for
    #                                    «Порошок от простуды», whatever the retriever's vote read)
    return len(said) == 1 and said[0][:_KIND_STEM] == kind[0][:_KIND_STEM]


def allowed_items(names: Sequence[str], query: str, item_ids: np.ndarray | None = None,
                  sensitive_items: np.ndarray | None = None) -> np.ndarray:
    """[len(names)] bool: the items ``guard_items`` lets through for ``query`` (names in the same order as
    ``item_ids``): all of them for a query that asks about health; else those neither named in a sensitive domain
    nor flagged by the catalog (``sensitive_items`` by item id), unless the query asks for that kind by name."""
    keep = np.ones(len(names), dtype=bool)
    if sensitive_query(query):
        return keep
    flagged = [mentions_sensitive_domain(name) for name in names]
    if sensitive_items is not None and len(sensitive_items) and item_ids is not None:
        ids = np.asarray(item_ids, dtype=np.int64)  # the catalog's own flag: «Спрей назальный …» names no health word
        known = (ids >= 0) & (ids < len(sensitive_items))
        flagged = [f or bool(k and sensitive_items[i]) for f, k, i in zip(flagged, known, ids)]
    return np.array([not f or asks_for_the_kind(query, name) for f, name in zip(flagged, names)], dtype=bool)


def guard_items(arrays: dict[str, np.ndarray], query: str,
                sensitive_items: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The items that may leave the server, their text redacted (item names of identifiers only).

    Drops an item whose name names a sensitive (health/medicine) domain, or that ``sensitive_items`` (the catalog's
    health flags by item id, when given) flags, when the query does not, unless the query
    asks for that kind of item by name («а пастилки есть?» and «Пастилки для горла …»: ``asks_for_the_kind``); every
    array keeps the same row order, so ids, names, prices and explanations stay aligned.
    """
    names = decode_utf8_array(arrays["item_names"]) if "item_names" in arrays else []
    ids = np.asarray(arrays["item_ids"], dtype=np.int64) if "item_ids" in arrays else None
    keep = allowed_items(names, query, ids, sensitive_items)
    out, redacted = {}, {}  # (the list's explanations come in its language and in each reply language: one pass each)
    for key, values in arrays.items():
        values = np.asarray(values)
        if values.ndim and len(values) == len(keep):
            values = values[keep]
        if key in TEXT_ARRAYS:
            # an item name is catalog text: only identifiers are cut from it («Роман Азбука» is a novel, not a
            # person — it was shown as «[имя] в твёрдой обложке», in the list and in the reply naming it)
            config = IDENTIFIERS if key == "item_names" else EVERYTHING
            texts = decode_utf8_array(values)
            for text in texts:
                if (config.kinds, text) not in redacted:
                    redacted[config.kinds, text] = redact(text, config).text
            values = utf8_array([redacted[config.kinds, text] for text in texts])
        out[key] = values
    return out


class StreamRedactor:
    """Redacts a streamed reply: ``feed`` returns what can be released now, ``flush`` the rest.

    The last ``hold_chars`` characters are held back (and a span of personal data found across the cut moves the
    cut before it), so personal data up to that length is caught even when it arrives split over several deltas;
    text is released at whitespace, so the client still sees the reply grow word by word. Spans are found in the
    last ``hold_chars`` released characters plus everything pending, so a word is judged with the words around it
    exactly as in the whole reply («Альпина» alone reads as a first name; «Альпина Паблишер» is a publisher).
    ``protected``: text the reply may quote as it is — the names of the items on screen (a name span inside
    «Кофемашина капсульная Philips Pro» after «Вот что я подобрал:» is the product, not a person).
    """

    def __init__(self, hold_chars: int = HOLD_CHARS, protected: Sequence[str] = ()) -> None:
        self.pending = ""
        self.released_tail = ""      # context for the finder, already sent
        self.hold_chars = hold_chars
        self.protected = tuple(p for p in protected if p)

    def _pending_spans(self) -> list[PiiSpan]:
        """Spans of the pending text (offsets into it), found with the released tail as left context; none inside
        a protected text."""
        offset = len(self.released_tail)
        text = self.released_tail + self.pending
        shields = [(m.start(), m.end()) for p in self.protected for m in re.finditer(re.escape(p), text)]
        spans = [s for s in find_pii(text) if not any(a <= s.start and s.end <= b for a, b in shields)]
        return [PiiSpan(s.kind, max(s.start - offset, 0), s.end - offset) for s in spans if s.end > offset]

    def _release(self, cut: int, spans: list[PiiSpan]) -> str:
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        self.released_tail = (self.released_tail + ready)[-self.hold_chars:]
        return redact_spans(ready, [s for s in spans if s.end <= cut]).text

    def feed(self, delta: str) -> str:
        self.pending += delta
        cut = self.pending.rfind(" ", 0, max(len(self.pending) - self.hold_chars, 0) + 1)
        spans = self._pending_spans()
        for span in spans:
            if span.start < cut < span.end:
                cut = self.pending.rfind(" ", 0, span.start + 1)
        if cut <= 0:
            return ""
        return self._release(cut, spans)

    def flush(self) -> str:
        return self._release(len(self.pending), self._pending_spans()) if self.pending else ""


def redact_stream(deltas: Iterable[str], protected: Sequence[str] = ()) -> Iterator[str]:
    """The reply's deltas, regrouped at whitespace behind a short hold-back, and redacted (never inside
    ``protected``: the names of the items on screen)."""
    redactor = StreamRedactor(protected=protected)
    for delta in deltas:
        released = redactor.feed(delta)
        if released:
            yield released
    tail = redactor.flush()
    if tail:
        yield tail
