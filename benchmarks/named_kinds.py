"""Requests that name a kind of product («молоко», «корм для кошек», "cat food"): the retriever's ``named_kinds``
off, on with the Russian kind words only, and on with the English names too (items' ``name_en`` and categories'),
side by side on one build.

Two measures, each in the three modes on the same requests:

1. **Named-kind precision**: hand-written requests that name a kind, asked by every user of the build's held-out
   requests; the share of the top-5 items that are of the named kind (``ProductTerms``'s items for the request),
   and how many lists hold another kind at all.
2. **Recall@10 on the build's held-out synthetic requests** (``eval_queries.jsonl``, intent-level, the target being
   the user's next synthetic purchase), split in halves by user (crc32 of the user id: even → valid, odd → test),
   as the ranking evaluation reports it; the requests whose top-10 changed are listed with their targets.

    .venv/bin/python -m benchmarks.named_kinds --artifact-dir artifacts/default
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.artifacts import DEFAULT_ARTIFACT_DIR, ArtifactLayout
from recllm.pipeline import load_ranking_stage, load_retriever
from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.rec_request import parse_request

RESULTS = Path(__file__).resolve().parent / "results"
NAMED_REQUESTS = ("молоко", "хочу кефир", "кофе в зёрнах", "корм для кошек", "наушники", "кроссовки для бега",
                  "подгузники", "хлеб", "сыр", "шоколад", "йогурт без сахара", "молоко без лактозы",
                  "what about cat food?", "good coffee for home", "I need diapers", "headphones please",
                  "cleaning supplies",
                  # shoppers' words the catalog says otherwise, and item-name words that head no name
                  "I need sneakers", "any crisps?", "nappies for my baby", "a coffee maker", "chicken for dinner",
                  "sunscreen",
                  # Russian shoppers' words (recllm/catalog/russian_synonyms.py) and a product's shelf
                  "хочу телефон", "памперсы для малыша", "кроссы для бега", "газировка", "бюджетный смартфон",
                  "I need a phone")
# mode → (RetrieverConfig.named_kinds, English names kept: item heads and head phrases, item-name words, categories)
MODES = {"off": (False, False), "ru": (True, False), "on": (True, True)}


class Stack:
    def __init__(self, layout: ArtifactLayout):
        self.encoder = QueryEncoder.load(layout.query_encoder_dir)
        self.retriever = load_retriever(layout)
        self.ranker = load_ranking_stage(layout)
        self.english_kinds = self.retriever.terms.english_kinds
        self.english_modifiers = self.retriever.terms.english_modifiers

    def top(self, user: str, text: str, k: int, service: str, mode: str) -> list[int]:
        named_kinds, english = MODES[mode]
        self.retriever.config = replace(self.retriever.config, named_kinds=named_kinds)
        self.retriever.terms.english_kinds = self.english_kinds if english else {}
        self.retriever.terms.english_modifiers = self.english_modifiers if english else {}
        request = parse_request(user, text, k, service)
        vector = self.encoder.encode([request.query])[0]
        found = self.retriever.retrieve(request, vector)
        if not len(found.candidate_ids):
            return []
        ranked = self.ranker.rank(request, found.service, found.candidate_ids, found.candidate_scores, found.context)
        return ranked.item_ids.tolist()[:k]


def named_precision(stack: Stack, users: list[str]) -> dict:
    rows = {}
    for text in NAMED_REQUESTS:
        kind = set(stack.retriever.terms.named(text).item_ids.tolist())
        per = {}
        for mode in MODES:
            tops = [stack.top(user, text, 5, "", mode) for user in users]
            shares = [np.mean([i in kind for i in top]) for top in tops if top]
            per[mode] = {"precision@5": round(float(np.mean(shares)), 3) if shares else "– (no list)",
                                          "lists_with_another_kind": sum(any(i not in kind for i in t) for t in tops),
                                          "empty_lists": sum(not t for t in tops)}
        rows[text] = per
    return rows


def held_out_recall(stack: Stack, queries: list[dict]) -> tuple[dict, list[str]]:
    hits = {(split, mode): [] for split in ("valid", "test") for mode in MODES}
    changed = []
    for q in queries:
        split = "valid" if zlib.crc32(q["user_id"].encode()) % 2 == 0 else "test"
        tops = {mode: stack.top(q["user_id"], q["text"], 10, q.get("service", ""), mode) for mode in MODES}
        for mode, top in tops.items():
            hits[(split, mode)].append(q["target_item_id"] in top)
        if len({tuple(t) for t in tops.values()}) > 1:
            target = stack.retriever.catalog.get(q["target_item_id"])
            found = "/".join(str(q["target_item_id"] in top) for top in tops.values())
            changed.append(f"{split}: «{q['text']}» ({q.get('service')}) target {target.name} [{target.category_id}]"
                           f" in top-10 {'/'.join(MODES)}: {found}")
    recall = {f"{split} ({len(hits[(split, 'off')])})": {mode: round(float(np.mean(hits[(split, mode)])), 3)
                                                          for mode in MODES}
              for split in ("valid", "test")}
    return recall, changed


def report(command: str, machine: dict, precision: dict, recall: dict, changed: list[str], users: int) -> str:
    lines = ["# Requests that name a kind of product: named kinds off vs on", "", f"Command: `{command}`", "",
             "Machine: " + json.dumps(machine, ensure_ascii=False), "",
             f"## 1. Named-kind precision ({len(NAMED_REQUESTS)} hand-written requests × {users} users, no service "
             "given)", "",
             "Modes: `off` (no named kinds), `ru` (the Russian kind words only), `on` (and the English names).", "",
             "| request | precision@5 off | ru | on | lists with another kind off | ru | on | empty lists on |",
             "|---|---|---|---|---|---|---|---|"]
    for text, per in precision.items():
        lines.append(f"| {text} | " + " | ".join(str(per[m]["precision@5"]) for m in MODES) + " | "
                     + " | ".join(str(per[m]["lists_with_another_kind"]) for m in MODES)
                     + f" | {per['on']['empty_lists']} |")
    lines += ["", "## 2. Recall@10 on the build's held-out synthetic requests (halves by user)", "",
              "| half | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    lines += [f"| {half} | " + " | ".join(str(r[m]) for m in MODES) + " |" for half, r in recall.items()]
    lines += ["", f"Requests whose top-10 changed ({len(changed)}):", ""] + [f"- {c}" for c in changed] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.named_kinds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact-dir", type=Path, default=DEFAULT_ARTIFACT_DIR)
    parser.add_argument("--users", type=int, default=20, help="users asking the hand-written requests")
    parser.add_argument("--output", type=Path, default=RESULTS / "named_kinds.md")
    args = parser.parse_args(argv)
    layout = ArtifactLayout(args.artifact_dir)
    stack = Stack(layout)
    queries = [json.loads(line) for line in (layout.root / "eval_queries.jsonl").read_text().splitlines() if line]
    users = list(dict.fromkeys(q["user_id"] for q in queries))[: args.users]
    precision = named_precision(stack, users)
    for text, per in precision.items():
        print(text, per)
    recall, changed = held_out_recall(stack, queries)
    print(recall)
    command = "python -m benchmarks.named_kinds " + " ".join(sys.argv[1:] if argv is None else argv)
    args.output.write_text(report(command, machine_info(), precision, recall, changed, len(users)))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
