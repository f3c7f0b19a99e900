"""The generator's prompt: the reply act, service, language, the user's (contextual) query and profile facts.

Training (``builders.generator_corpus``) and serving build prompts with this one function, so the model sees the
same layout. The act says what kind of reply the turn needs (``ACTS``); the dialogue layer will decide it, and
until then ``reply_act.derive_act`` does from simple signals. ``relaxation`` names, for ``nothing_left``, the
constraint whose loosening is nearest (``RELAXATIONS``); ``frame`` (``reply_frame``) what a recommend / refine
reply's opening is about.
"""

from __future__ import annotations

from typing import Sequence

from .reply_frame import FRAMES

MAX_PROMPT_FACTS = 3
ACTS = ("recommend", "refine", "clarify", "nothing_left", "decline", "explain")
RELAXATIONS = ("budget", "diet", "seen", "service", "query")


def default_relaxation(has_budget: bool, has_diet: bool, follow_up: bool = False) -> str:
    """What a nothing-left reply offers when its caller names nothing: a higher budget when the request states one,
    the diet dropped when it asks for one, else the ones already seen (a follow-up) or another wording. The training
    corpus pairs its nothing-left replies so (``builders.generator_corpus``), and the generation stage fills a single
    request's offer with it (``GenerationStage.relaxation_of``)."""
    if has_budget:
        return "budget"
    if has_diet:
        return "diet"
    return "seen" if follow_up else "query"


def build_prompt(service: str, language: str, query: str, profile_facts: Sequence[str], act: str = "recommend",
                 relaxation: str = "", frame: str = "") -> str:
    """``frame`` (``reply_frame.reply_frame``) says what a recommend / refine opening is about; empty: generic."""
    if act not in ACTS:
        raise ValueError(f"build_prompt: act must be one of {ACTS}, got {act!r}")
    if relaxation and relaxation not in RELAXATIONS:
        raise ValueError(f"build_prompt: relaxation must be one of {RELAXATIONS} or empty, got {relaxation!r}")
    if frame and frame not in FRAMES:
        raise ValueError(f"build_prompt: frame must be one of {FRAMES} or empty, got {frame!r}")
    facts = "; ".join(profile_facts[:MAX_PROMPT_FACTS]) or "-"
    relax = f" | relax: {relaxation}" if relaxation else ""
    framing = f" | frame: {frame}" if frame else ""
    return f"act: {act}{relax}{framing} | service: {service} | lang: {language} | query: {query} | profile: {facts}"


def prompt_facts(profile_facts: Sequence[str]) -> list[str]:
    """The facts a prompt built from ``profile_facts`` holds (the only ones a reply may cite)."""
    return [f for f in profile_facts[:MAX_PROMPT_FACTS] if f]
