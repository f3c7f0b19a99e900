"""Write the labeled sets for the safety filters: ``pii.jsonl`` (span-annotated) and ``moderation.jsonl``.

Run from the repository root: ``python -m recllm.safety.labeled.make_labeled_sets``. Deterministic (fixed seed);
the committed files are its output, and a test fails when they drift.

Protocol. Every record has ``split`` = ``train`` or ``test``. Templated records are split by *template*, and the
slot fillers (names, streets, brands, numbers) come from disjoint pools per split, so a test text never shares its
phrasing pattern or its personal data with a training text. Hand-written records are split by a stable hash of
the text. The moderation classifier trains on ``train`` only; metrics are reported on ``test`` only.
``source == "fresh_holdout"`` records were written after the rules and thresholds were last changed and are always
in ``test``: they are the honest estimate for unseen phrasing (the rest of ``test`` was looked at while fixing).

PII records: ``{"id", "text", "lang", "spans": [{"kind", "start", "end"}], "split", "source"}``.
Moderation records: ``{"id", "text", "lang", "label", "split", "source"}`` with label in
ok / unsafe / off_topic / prompt_injection / personal_data.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from recllm.safety.labeled import moderation_texts, pii_pools
from recllm.safety.privacy_filter import text_language as language

HERE = Path(__file__).resolve().parent
SEED = 20261128
TEST_SHARE = 0.3


def stable_split(key: str, test_share: float = TEST_SHARE) -> str:
    """'test' for a fixed ``test_share`` of keys, by SHA-1 (stable across Python versions and runs)."""
    value = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if value < test_share else "train"


def fill(template: str, values: dict[str, tuple[str, str | None]]) -> tuple[str, list[dict]]:
    """Fill ``{slot}`` markers; ``values[slot] = (text, kind or None)``; spans for the slots with a kind."""
    pieces, spans, cursor, length = [], [], 0, 0
    for match in re.finditer(r"\{(\w+)\}", template):
        literal = template[cursor:match.start()]
        pieces.append(literal)
        length += len(literal)
        text, kind = values[match.group(1)]
        if kind is not None:
            spans.append({"kind": kind, "start": length, "end": length + len(text)})
        pieces.append(text)
        length += len(text)
        cursor = match.end()
    pieces.append(template[cursor:])
    return "".join(pieces), spans


def parse_marked(marked: str) -> tuple[str, list[dict]]:
    """«[[kind:text]]» markers → (plain text, spans)."""
    pieces, spans, cursor, length = [], [], 0, 0
    for match in re.finditer(r"\[\[(\w+):(.+?)\]\]", marked):
        literal = marked[cursor:match.start()]
        pieces.append(literal)
        length += len(literal)
        spans.append({"kind": match.group(1), "start": length, "end": length + len(match.group(2))})
        pieces.append(match.group(2))
        length += len(match.group(2))
        cursor = match.end()
    pieces.append(marked[cursor:])
    return "".join(pieces), spans


def pii_records(rng: random.Random) -> list[dict]:
    records = []
    for source, template, copies in pii_pools.TEMPLATES:
        split = stable_split("pii-template:" + source + template)
        pools = pii_pools.Pools(rng, split)
        for _ in range(copies):
            slots = {slot: pools.value(slot) for slot in re.findall(r"\{(\w+)\}", template)}
            text, spans = fill(template, slots)
            records.append({"text": text, "spans": spans, "split": split, "source": source})
    for text in pii_pools.HARD_NEGATIVES:
        records.append({"text": text, "spans": [], "split": stable_split("pii-negative:" + text),
                        "source": "hard_negative"})
    for marked in pii_pools.FRESH_HOLDOUT:
        text, spans = parse_marked(marked)
        records.append({"text": text, "spans": spans, "split": "test", "source": "fresh_holdout"})
    unique = {}
    for record in records:
        unique.setdefault(record["text"], record)
    out = []
    for index, record in enumerate(sorted(unique.values(), key=lambda r: (r["split"], r["source"], r["text"]))):
        out.append({"id": f"pii-{index:04d}", "text": record["text"], "lang": language(record["text"]),
                    "spans": record["spans"], "split": record["split"], "source": record["source"]})
    return out


def moderation_records(rng: random.Random) -> list[dict]:
    records = []
    for label, texts in moderation_texts.HAND_WRITTEN.items():
        for text in texts:
            records.append({"text": text, "label": label, "split": stable_split("mod:" + text),
                            "source": "hand_written"})
    for source, batch in (("fresh_holdout", moderation_texts.FRESH_HOLDOUT),
                          ("fresh_holdout_openings", moderation_texts.FRESH_HOLDOUT_OPENINGS)):
        for label, texts in batch.items():
            for text in texts:
                records.append({"text": text, "label": label, "split": "test", "source": source})
    for label, template, fillers in moderation_texts.TEMPLATES:
        split = stable_split("mod-template:" + template)
        for filler in fillers:
            records.append({"text": template.format(x=filler), "label": label, "split": split,
                            "source": "template"})
    rng.shuffle(records)
    for label, texts in moderation_texts.HAND_WRITTEN_ANSWERS.items():  # after the shuffle: the rest stays as it was
        records += [{"text": text, "label": label, "split": "train", "source": "clarify_answers"} for text in texts]
    unique = {}
    for record in records:
        unique.setdefault(record["text"].strip(), record)
    out = []
    for index, record in enumerate(sorted(unique.values(), key=lambda r: (r["split"], r["label"], r["text"]))):
        text = record["text"].strip()
        out.append({"id": f"mod-{index:04d}", "text": text, "lang": language(text), "label": record["label"],
                    "split": record["split"], "source": record["source"]})
    return out


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    write_jsonl(HERE / "pii.jsonl", pii_records(random.Random(SEED)))
    write_jsonl(HERE / "moderation.jsonl", moderation_records(random.Random(SEED + 1)))


if __name__ == "__main__":
    main()
