"""The generator's prompt: service, language, the user's (contextual) query and retrieved profile facts.

Training (``builders``) and serving build prompts with this one function, so the model sees the same layout.
"""

from __future__ import annotations

from typing import Sequence

MAX_PROMPT_FACTS = 3


def build_prompt(service: str, language: str, query: str, profile_facts: Sequence[str]) -> str:
    facts = "; ".join(profile_facts[:MAX_PROMPT_FACTS]) or "-"
    return f"service: {service} | lang: {language} | query: {query} | profile: {facts}"
