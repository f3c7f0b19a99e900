"""Health items only when asked: the chat's first turns over the labeled requests, in-process.

    python -m benchmarks.health_routing --artifacts DIR [--limit 400] [--out benchmarks/results/health_routing.md]

Protocol: every request of ``recllm/dialogue/labeled/requests.jsonl`` whose labeled intent asks for goods
(recommend, refine, clarify_needed) is sent as the first turn of its own session to ``ChatEngine`` on the build in
``--artifacts`` (a copy is used: turns write feedback into the profile), users taken in turn from the build's
profile. For requests labeled outside the health domain, a list with an item the catalog flags as health
(``sensitive_item_mask``) is a leak (goal 0: the product note's "health purchases surfaced unless the user asked");
for requests labeled health, the share answered with at least one health item shows the rule does not simply shut
the pharmacy. The labels are the request-understanding set's (written for that issue, not tuned here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.dialogue.chat_engine import InProcessChatStages, ItemsChunk, load_chat_engine
from recllm.pipeline import RecPipeline
from recllm.safety.health_rule import sensitive_item_mask

REQUESTS = Path(__file__).resolve().parents[1] / "recllm" / "dialogue" / "labeled" / "requests.jsonl"
RESULTS = Path(__file__).resolve().parent / "results" / "health_routing.md"
GOODS_INTENTS = ("recommend", "refine", "clarify_needed")


def first_turn_items(engine, user: str, text: str) -> list[int] | None:
    """The items of the first turn of a fresh session (None: the turn gave no list)."""
    for chunk in engine.turn("H" + uuid.uuid4().hex[:10], user, text, 5, ""):
        if isinstance(chunk, ItemsChunk):
            return [int(i) for i in chunk.arrays["item_ids"]]
    return None


def measure(artifacts: Path, limit: int) -> dict:
    rows = [json.loads(line) for line in REQUESTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["intent"] in GOODS_INTENTS]
    other = [r for r in rows if r["domain"] != "health"][:limit]
    health = [r for r in rows if r["domain"] == "health"][:limit]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "build"
        shutil.copytree(artifacts, copy, ignore=shutil.ignore_patterns("triton_runtime"))
        pipeline = RecPipeline.load(copy)
        engine = load_chat_engine(ArtifactLayout(copy), InProcessChatStages(pipeline))
        sensitive = sensitive_item_mask(pipeline.catalog)
        users = pipeline.retriever.profile.user_ids()
        result = {"other": {"requests": len(other), "lists": 0, "leaks": []},
                  "health": {"requests": len(health), "lists": 0, "with_health_item": 0}}
        for k, row in enumerate(other):
            items = first_turn_items(engine, users[k % len(users)], row["text"])
            if items:
                result["other"]["lists"] += 1
                flagged = [pipeline.catalog.get(i).name for i in items if sensitive[i]]
                if flagged:
                    result["other"]["leaks"].append((row["text"], flagged))
        for k, row in enumerate(health):
            items = first_turn_items(engine, users[k % len(users)], row["text"])
            if items:
                result["health"]["lists"] += 1
                result["health"]["with_health_item"] += any(sensitive[i] for i in items)
    return result


def markdown(result: dict, info: dict, command: str) -> str:
    other, health = result["other"], result["health"]
    leaks = "\n".join(f"- «{text}» → {', '.join(names)}" for text, names in other["leaks"]) or "- none"
    share = health["with_health_item"] / health["lists"] if health["lists"] else 0.0
    return f"""# Health items only when asked (chat first turns over the labeled requests)

Command: `{command}`
Machine: {info.get("cpu", "?")}, {info.get("cores", "?")} cores, load average at start
{info.get("load_average_at_start")}; {info.get("date_utc", "?")}; git {info.get("git_commit", "?")}.

{__doc__.split("Protocol:", 1)[1].strip()}

| requests | sent | answered with a list | with a health item |
|---|---:|---:|---:|
| labeled outside health | {other["requests"]} | {other["lists"]} | **{len(other["leaks"])}** (goal 0) |
| labeled health | {health["requests"]} | {health["lists"]} | {health["with_health_item"]} ({share:.2f} of the lists) |

Leaks:
{leaks}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=400, help="requests per group (outside health, health)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.limit <= 0:
        parser.error("--limit must be > 0")
    result = measure(args.artifacts, args.limit)
    command = " ".join(["python -m benchmarks.health_routing", *(sys.argv[1:] if argv is None else argv)])
    text = markdown(result, machine_info(), command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
