"""Post-generation consistency check of a reply, and its counters.

A reply passes when every item it names is in the ranked list (and named once), every profile fact it cites
(quoted «…» or "…") is one of the prompt's facts, the text is not garbled (broken UTF-8, a letter run such as
"nnnn", a stray quote mark, a double space: a list left mid-way, «… и  макароны …»), no word run repeats ("и и",
"молоко, молоко, молоко"), and no conjunction dangles at the end of a sentence or the reply ("…, и." / "… and"). ``GenerationStage`` regenerates a
failing sampled reply with greedy decoding; ``ReplyCheckCounters`` counts checks and failures by reason, for the
Triton adapter to export as Prometheus metrics (the counting lives here, the metric objects in the adapter).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

CITATION_RE = re.compile(r"«([^«»]+)»|\"([^\"]+)\"")
WORD_RE = re.compile(r"[\w-]+", re.UNICODE)
CONJUNCTIONS = ("и", "или", "а", "но", "and", "or", "but", "with", "с")
DANGLING_RE = re.compile(r"(?:^|[\s,])(" + "|".join(CONJUNCTIONS) + r")\s*(?:[.!?]|$)", re.IGNORECASE)
REASONS = ("unknown_item", "duplicate_item", "uncited_fact", "repeated_words", "dangling_conjunction", "garbled",
           "empty")
GARBLED_RE = re.compile(r"\ufffd|([^\W\d])\1{3,}|[«»\"]|  ", re.UNICODE)


@dataclass(frozen=True)
class ReplyCheck:
    problems: tuple[str, ...]  # reasons from REASONS, each at most once

    @property
    def ok(self) -> bool:
        return not self.problems


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
                prompt_facts: Sequence[str], item_names: Sequence[str] = ()) -> ReplyCheck:
    """``item_ids``: the items the reply names (in order); ``item_names``: their rendered names, removed before
    the word checks (a product name may repeat a word legitimately)."""
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
    for k, name in enumerate(item_names):  # a distinct placeholder word each: "X и Y." stays a sentence
        plain = plain.replace(name, f"item{k}x")
    plain = CITATION_RE.sub("fact", plain)
    sentences = re.split(r"[.!?;:—]", plain)  # "…не могу. Могу…" is two sentences, not a repeat
    if any(has_repeated_run([w.lower() for w in WORD_RE.findall(s)]) for s in sentences):
        problems.append("repeated_words")
    if DANGLING_RE.search(plain.strip()):
        problems.append("dangling_conjunction")
    if GARBLED_RE.search(plain):  # broken UTF-8, "nnnn", a stray quote outside a whole citation, "  "
        problems.append("garbled")
    if not text.strip():
        problems.append("empty")
    return ReplyCheck(tuple(problems))


class ReplyCheckCounters:
    """Thread-safe totals: replies checked, failed (by reason), regenerated, and still failing after the retry."""

    def __init__(self):
        self._lock = threading.Lock()
        self.checked = 0
        self.failed = 0
        self.regenerated = 0
        self.failed_after_retry = 0
        self.reasons: Counter[str] = Counter()
        self._listeners = []

    def add_listener(self, listener) -> None:
        """``listener(event, reason)`` with event in ("checked", "failed", "regenerated", "failed_after_retry")."""
        self._listeners.append(listener)

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

    def record_regeneration(self) -> None:
        with self._lock:
            self.regenerated += 1
        self._emit("regenerated")

    def snapshot(self) -> dict:
        with self._lock:
            return {"checked": self.checked, "failed": self.failed, "regenerated": self.regenerated,
                    "failed_after_retry": self.failed_after_retry, "reasons": dict(self.reasons)}
