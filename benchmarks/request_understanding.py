"""Request understanding on the labeled test split: the trained understander beside the rules-only baseline.

Protocol: ``recllm/dialogue/labeled/requests.jsonl`` has a fixed train/valid/test split (per intent, by group: a
product line or follow-up core never crosses splits). Hyper-parameters are chosen on **valid** only (a small grid,
scored by the mean of intent, domain and target-services accuracy); the chosen config is trained on train and
measured once on test. The baseline (``keyword_understanding``: first matching keyword list for intent and domain,
services from the domain) shares the rule slots, so slot fields differ only where the intent gates them.
Exact match per field (sets for services, diet, refinement). Latency: one ``understand`` call per message, in
sequence, every test message ``--latency-passes`` times, after one warm-up pass.

    python -m benchmarks.request_understanding [--skip-select] [--latency-passes 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.dialogue.request_understanding import (
    INTENTS,
    RequestUnderstander,
    RequestUnderstandingConfig,
    keyword_understanding,
    load_labeled,
)

REPORT_PATH = Path(__file__).resolve().parent / "results" / "request_understanding.md"
FIELDS = ("language", "domain", "intent", "target_services", "budget_rub", "diet", "delivery_speed", "recipient",
          "age_band", "refinement", "repeat_last_order")
HEAD_FIELDS = ("intent", "domain", "target_services")
GRID = {"l2_hashed": (1e-3, 1e-2), "epochs": (100, 200, 300), "hash_buckets": (1 << 13, 1 << 14)}


def field_value(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def predictions(predict, records: list[dict]) -> list[dict]:
    return [{f: field_value(getattr(p, f)) for f in FIELDS} for p in map(predict, (r["text"] for r in records))]


def field_accuracy(preds: list[dict], records: list[dict]) -> dict[str, float]:
    return {f: float(np.mean([p[f] == field_value(r[f]) for p, r in zip(preds, records)])) for f in FIELDS}


def per_intent(preds: list[dict], records: list[dict]) -> dict[str, tuple[float, float, int]]:
    """intent → (precision, recall, support)."""
    out = {}
    for intent in INTENTS:
        tp = sum(p["intent"] == intent and r["intent"] == intent for p, r in zip(preds, records))
        predicted = sum(p["intent"] == intent for p in preds)
        support = sum(r["intent"] == intent for r in records)
        out[intent] = (tp / predicted if predicted else 0.0, tp / support if support else 0.0, support)
    return out


def select_config(train: list[dict], valid: list[dict]) -> tuple[RequestUnderstandingConfig, list[dict]]:
    rows, best, best_score = [], None, -1.0
    keys = list(GRID)
    for values in np.array(np.meshgrid(*GRID.values(), indexing="ij"), dtype=object).reshape(len(keys), -1).T:
        config = replace(RequestUnderstandingConfig(), **{k: type(GRID[k][0])(v) for k, v in zip(keys, values)})
        start = time.perf_counter()
        model = RequestUnderstander.fit(train, config)
        seconds = time.perf_counter() - start
        acc = field_accuracy(predictions(model.understand, valid), valid)
        score = float(np.mean([acc[f] for f in HEAD_FIELDS]))
        rows.append({**{k: getattr(config, k) for k in keys}, **{f: acc[f] for f in HEAD_FIELDS}, "score": score,
                     "fit_s": seconds})
        logging.info("valid %s: %.4f (%.1f s)", rows[-1], score, seconds)
        if score > best_score:
            best, best_score = config, score
    return best, rows


def latency_ms(model: RequestUnderstander, texts: list[str], passes: int) -> dict[str, float]:
    for text in texts:
        model.understand(text)
    samples = []
    for _ in range(passes):
        for text in texts:
            start = time.perf_counter()
            model.understand(text)
            samples.append((time.perf_counter() - start) * 1000)
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99)),
            "mean": float(np.mean(samples)), "n": len(samples)}


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def report(result: dict) -> str:
    test, n_by_source = result["test"], result["test_by_source_n"]
    lines = ["# Request understanding: intent, domain, services and slots on the labeled test split", "",
             f"Command: `{result['command']}`", "",
             "Machine: {cpu}, {cores} cores, {memory_gib} GiB, load average at start {load_average_at_start}, "
             "Python {python}, commit {git_commit}, {date_utc}. The cores are shared with other jobs.".format(
                 **result["machine"]), "",
             "## Protocol", "",
             f"Data: `recllm/dialogue/labeled/requests.jsonl`, {result['sizes']['train']} train / "
             f"{result['sizes']['valid']} valid / {result['sizes']['test']} test messages (split fixed in the file, "
             "per intent, by group: a product line or follow-up core never crosses splits; "
             f"test = {n_by_source.get('generated', 0)} generated + {n_by_source.get('hand', 0)} hand-written). "
             "Hyper-parameters chosen on valid only (grid below, score = mean accuracy of intent, domain, "
             "target_services); the chosen config trained once on train and measured once on test. Exact match per "
             "field; services, diet and refinement compared as sets. The baseline is `keyword_understanding` "
             "(keyword intent and domain, services from the domain); it shares the rule slots.", "",
             f"Chosen config: `{result['config']}`; training took {result['fit_s']:.1f} s on train.", "",
             "## Accuracy per field, test split", ""]
    rows = [[f, f"{test['model'][f]:.3f}", f"{test['rules'][f]:.3f}", f"{test['model_hand'][f]:.3f}",
             f"{test['rules_hand'][f]:.3f}"] for f in FIELDS]
    lines += table(["field", "trained", "rules only", "trained, hand-written only", "rules, hand-written only"], rows)
    lines += ["", "## Per intent, test split (precision / recall)", ""]
    rows = [[i, n, f"{m[0]:.3f} / {m[1]:.3f}", f"{r[0]:.3f} / {r[1]:.3f}"]
            for i, (m, r) in ((i, (result["intents"]["model"][i], result["intents"]["rules"][i])) for i in INTENTS)
            for n in [m[2]]]
    lines += table(["intent", "support", "trained P / R", "rules P / R"], rows)
    clarify_m, clarify_r = result["intents"]["model"]["clarify_needed"], result["intents"]["rules"]["clarify_needed"]
    lines += ["", f"Clarify (vague request → ask a question): trained precision {clarify_m[0]:.3f}, recall "
              f"{clarify_m[1]:.3f}; rules precision {clarify_r[0]:.3f}, recall {clarify_r[1]:.3f}.", ""]
    lines += ["## Ablations at the chosen config, test split", ""]
    rows = [[name] + [f"{acc[f]:.3f}" for f in HEAD_FIELDS] for name, acc in result["ablations"].items()]
    lines += table(["features", *HEAD_FIELDS], rows)
    lines += ["", "## Latency of one `understand` call, ms (calls in sequence)", "",
              "p50 {p50:.3f}, p99 {p99:.3f}, mean {mean:.3f} over {n} calls.".format(**result["latency_ms"]), ""]
    if result["grid"]:
        lines += ["## Hyper-parameter grid, valid split", ""]
        keys = list(GRID)
        lines += table(keys + list(HEAD_FIELDS) + ["score", "fit s"],
                       [[row[k] for k in keys] + [f"{row[f]:.3f}" for f in HEAD_FIELDS]
                        + [f"{row['score']:.4f}", f"{row['fit_s']:.1f}"] for row in result["grid"]])
        lines.append("")
    lines += ["## Caveats", "",
              "- The generated messages come from a fixed set of frames; the group split keeps product lines apart, "
              "but frames are shared, so the generated part overstates accuracy on open traffic. The hand-written "
              "column is the closer estimate (small: see its n above).",
              "- The keyword lists (baseline, and match features of the trained model) were written with the "
              "generator's product vocabulary in view; domain accuracy on products outside it will be lower.",
              "- ~320 messages per split, grouped by product line: one hard product group moves domain accuracy by "
              "1-2 points, and redrawing the split (an earlier version of the set) moved valid domain accuracy from "
              ".90 to .82. Differences under ~3 points between configs or methods are within that noise.",
              "- English product words have no navec vector (navec is Russian-only); unseen English products lean on "
              "character n-grams and the keyword lists.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-select", action="store_true", help="use the default config, no grid on valid")
    parser.add_argument("--latency-passes", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    machine = machine_info()
    train, valid, test = load_labeled("train"), load_labeled("valid"), load_labeled("test")
    config, grid = (RequestUnderstandingConfig(), []) if args.skip_select else select_config(train, valid)
    start = time.perf_counter()
    model = RequestUnderstander.fit(train, config)
    fit_s = time.perf_counter() - start
    preds = {"model": predictions(model.understand, test), "rules": predictions(keyword_understanding, test)}
    hand = [i for i, r in enumerate(test) if r["source"] == "hand"]
    test_acc = {name: field_accuracy(p, test) for name, p in preds.items()}
    for name, p in preds.items():
        test_acc[name + "_hand"] = field_accuracy([p[i] for i in hand], [test[i] for i in hand])
    ablations = {"all (chosen)": test_acc["model"]}
    for name, change in (("no navec (n-grams + rule cues)", {"use_navec": False}),
                         ("no rule cues (n-grams + navec)", {"use_rule_cues": False})):
        ablated = RequestUnderstander.fit(train, replace(config, **change))
        ablations[name] = field_accuracy(predictions(ablated.understand, test), test)
    result = {
        "command": "python -m benchmarks.request_understanding" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": machine, "config": asdict(config), "fit_s": fit_s, "grid": grid,
        "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
        "test_by_source_n": dict(Counter(r["source"] for r in test)), "test": test_acc,
        "intents": {name: per_intent(p, test) for name, p in preds.items()}, "ablations": ablations,
        "latency_ms": latency_ms(model, [r["text"] for r in test], args.latency_passes),
    }
    REPORT_PATH.write_text(report(result))
    print(json.dumps({"test": test_acc["model"], "rules": test_acc["rules"], "latency_ms": result["latency_ms"]},
                     indent=1))


if __name__ == "__main__":
    main()
