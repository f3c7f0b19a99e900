"""Semantic IDs on Amazon Beauty and the synthetic catalog, and a tiny generative retriever over Beauty SIDs.

1. SID stats (collision rate, maximum collision depth, per-level usage and normalised entropy) for Beauty (12,101
   items) and for the unified synthetic catalog (default preset, one codebook over samokat, megamarket and kuper).
2. The generative retriever (``recllm.sid.generative_retrieval``) trained on the leave-one-out train split, decoded
   with trie-constrained beam search (``--beam`` items per user) and scored with ``recllm.seqrec.full_ranking``:
   items outside the beam rank below every beam item, so R@K / N@K for K <= beam are exact full-ranking figures.
   "filtered" removes the user's history from the same beams (so it ranks fewer than ``--beam`` items).
3. Invalid rate: share of decoded items whose SID is not an item's SID — for beam search, for sampling with several
   temperature / top-k / top-p settings, and (for contrast) for greedy decoding without the trie.

    flock /tmp/recllm-cpu.lock python -m benchmarks.beauty_sids [--epochs N] [--max-train-minutes M] [--seed S]
    python -m benchmarks.beauty_sids --sids-only     # part 1 alone, ~1 minute

Writes ``benchmarks/results/beauty_sids.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine_info import machine_info
from recllm.datasets.amazon_beauty import DEFAULT_DATA_DIR, leave_one_out, load_amazon_beauty
from recllm.datasets.interaction_dataset import NextItemExample
from recllm.seqrec.full_ranking import filter_history, metrics_from_ranks, target_ranks
from recllm.sid.content_encoder import ContentEncoderConfig
from recllm.sid.generative_retrieval import (GenerativeRetriever, GenerativeRetrieverConfig, retrieve, sample_items,
                                             train_generative_retriever, unconstrained_greedy_sids)
from recllm.sid.item_sids import (SidBuildConfig, amazon_semantic_ids, catalog_item_sids, catalog_semantic_ids,
                                  padded_item_table, service_sid_counts)
from recllm.sid.prefix_trie import DecodedItems, SamplingConfig
from recllm.synthetic.assortment import build_synthetic_catalog
from recllm.synthetic.ecosystem import SyntheticConfig

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "beauty_sids.md"
COLUMNS = ("R@5", "R@10", "R@20", "N@5", "N@10", "N@20")
SAMPLING_SETTINGS = (SamplingConfig(temperature=1.0), SamplingConfig(temperature=2.0, top_k=50),
                     SamplingConfig(temperature=0.7, top_p=0.9), SamplingConfig(temperature=5.0, top_k=0, top_p=1.0))
SAMPLED_USERS, SAMPLES_PER_USER = 2000, 10
TIGER_PUBLISHED = {"R@5": 0.0454, "N@5": 0.0321, "R@10": 0.0648, "N@10": 0.0384}

logger = logging.getLogger(__name__)


def beam_scores(decoded: DecodedItems, n_items: int) -> np.ndarray:
    """[U, n_items + 1] scores: the beam's log-probs, -inf for every other item."""
    scores = np.full((len(decoded.item_ids), n_items + 1), -np.inf, dtype=np.float32)
    rows, cols = np.nonzero(decoded.valid())
    scores[rows, decoded.item_ids[rows, cols]] = decoded.log_probs[rows, cols]
    return scores


def invalid_rate(decoded_sids: np.ndarray, decoded_items: np.ndarray, item_sids: np.ndarray) -> float:
    """Share of decoded (item, SID) pairs where the SID is no item's SID or not the returned item's SID."""
    known = {tuple(row) for row in item_sids[1:].tolist()}
    sids = decoded_sids.reshape(-1, item_sids.shape[1])
    items = decoded_items.ravel()
    bad = [tuple(sid) not in known or item < 1 or tuple(item_sids[item]) != tuple(sid)
           for sid, item in zip(sids.tolist(), items.tolist()) if item != -1 or tuple(sid) != (-1,) * len(sid)]
    return float(np.mean(bad)) if bad else 0.0


def evaluate(model: GenerativeRetriever, examples: list[NextItemExample], beam: int) -> dict:
    histories, targets = [ex.history for ex in examples], [ex.target for ex in examples]
    start = time.perf_counter()
    decoded = retrieve(model, histories, top_k=beam)
    seconds = time.perf_counter() - start
    scores = beam_scores(decoded, len(model.item_sids) - 1)
    ks = tuple(k for k in (5, 10, 20) if k <= beam)
    return {"raw": metrics_from_ranks(target_ranks(scores, targets), ks),
            "filtered": metrics_from_ranks(target_ranks(filter_history(scores, histories), targets), ks),
            "invalid_rate": invalid_rate(decoded.sids, decoded.item_ids, model.item_sids.numpy()),
            "decoded": int(decoded.valid().sum()), "decode_seconds": seconds}


def sampling_invalid_rates(model: GenerativeRetriever, examples: list[NextItemExample], seed: int) -> list[dict]:
    histories = [ex.history for ex in examples[:SAMPLED_USERS]]
    rows = []
    for setting in SAMPLING_SETTINGS:
        config = SamplingConfig(setting.temperature, setting.top_k, setting.top_p, seed)
        decoded = sample_items(model, histories, SAMPLES_PER_USER, config)
        rows.append({"temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p,
                     "samples": int(decoded.item_ids.size),
                     "invalid_rate": invalid_rate(decoded.sids, decoded.item_ids, model.item_sids.numpy()),
                     "distinct_items": int(len(np.unique(decoded.item_ids)))})
    return rows


def unconstrained_invalid_rate(model: GenerativeRetriever, examples: list[NextItemExample]) -> float:
    sids = unconstrained_greedy_sids(model, [ex.history for ex in examples])
    known = {tuple(row) for row in model.item_sids.numpy()[1:].tolist()}
    return float(np.mean([tuple(sid) not in known for sid in sids.tolist()]))


def stats_table(name: str, stats: dict) -> str:
    levels = "; ".join(f"L{level['level']}: {level['codes_used']}/{stats['codebook_size']} used, "
                       f"entropy {level['normalized_entropy']:.3f}" for level in stats["per_level"])
    return (f"| {name} | {stats['n_items']} | {stats['unique_prefixes']} | {stats['collision_rate']:.4f} | "
            f"{stats['max_collision_depth']} | {stats['unique_sids']} | {levels} |")


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.4f}" if c in metrics else "–" for c in COLUMNS)
                     + " |")
    return "\n".join(lines)


def sid_report(results: dict) -> str:
    beauty, synthetic = results["beauty_stats"], results["synthetic_stats"]
    services = ", ".join(f"{name} {v['items']} items / {v['distinct_sids']} SIDs"
                         for name, v in synthetic["services"].items())
    return f"""## SID statistics

Content vectors: `{results['encoder']}` (TF-IDF blocks of brand, category path, words and char 3-grams, plus navec
for the Russian synthetic names, seeded LSA to 64 dims). Quantizer: `{results['rq']}` + collision level.
Collision rate = share of items whose 3-level code is shared with another item; max depth = most items on one
3-level code (= largest collision index + 1). The last level is spread within shared prefixes (items sharing the first
two codes take distinct, nearest-free third codes); the contrast row assigns every item its nearest third code. SID builds took {results['beauty_sid_seconds']:.0f} s (Beauty) and
{results['synthetic_sid_seconds']:.0f} s (synthetic).

| data | items | distinct 3-level codes | collision rate | max collision depth | unique SIDs | per level |
|---|---|---|---|---|---|---|
{stats_table('Amazon Beauty', beauty)}
{stats_table('Amazon Beauty, plain last level (contrast)', results['beauty_plain_stats'])}
{stats_table('synthetic unified catalog (families)', synthetic)}

Synthetic catalog: {synthetic['catalog_items']} catalog items in {synthetic['n_items']} product families
({synthetic['items_in_several_services']} families sold in two services share one SID); per service: {services}.
"""


def report(command: str, results: dict, info: dict) -> str:
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    header = f"# Semantic IDs (RQ-KMeans) and a tiny generative retriever on Amazon Beauty\n\nCommand: `{command}`\n\n"
    if "valid" not in results:
        return (header + sid_report(results) + "\n## Generative retrieval\n\nNot run by this command (--sids-only)."
                f"\n\n## Machine\n\n{machine}\n")
    sampling = "\n".join(f"| T={row['temperature']} top_k={row['top_k']} top_p={row['top_p']} | {row['samples']} | "
                         f"{row['distinct_items']} | {row['invalid_rate']:.4f} |" for row in results["sampling"])
    return header + sid_report(results) + f"""
## Generative retrieval on Beauty (full ranking over 12,101 items, leave-one-out)

Model: `{results['model_config']}`, {results['epochs_trained']} epochs, training {results['train_seconds']:.0f} s.
Beam search with the prefix trie, beam {results['beam']}; every item outside the beam ranks below the beam, so the
figures are exact full-ranking R@K / N@K for K <= beam. "filtered" drops history items from the same beams.

{metrics_table(results['metric_rows'])}

TIGER (published, test): R@5 {TIGER_PUBLISHED['R@5']}, N@5 {TIGER_PUBLISHED['N@5']}, R@10 {TIGER_PUBLISHED['R@10']},
N@10 {TIGER_PUBLISHED['N@10']}.

## Invalid rate (decoded SIDs that are not an item's SID)

| decoding | decoded items | distinct | invalid rate |
|---|---|---|---|
| beam {results['beam']} (valid users) | {results['valid']['decoded']} | – | {results['valid']['invalid_rate']:.4f} |
| beam {results['beam']} (test users) | {results['test']['decoded']} | – | {results['test']['invalid_rate']:.4f} |
{sampling}
| greedy WITHOUT the trie (contrast, test users) | {len(results['test_users'])} | – | \
{results['unconstrained_invalid_rate']:.4f} |

Sampling rows: first {SAMPLED_USERS} test users x {SAMPLES_PER_USER} samples each.
Beam decoding time: valid {results['valid']['decode_seconds']:.0f} s, test {results['test']['decode_seconds']:.0f} s.

## Machine

{machine}
"""


def main(argv: list[str] | None = None) -> None:
    defaults = GenerativeRetrieverConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-train-minutes", type=float, default=9.0)
    parser.add_argument("--beam", type=int, default=defaults.beam_size)
    parser.add_argument("--output", default=str(RESULTS_PATH))
    parser.add_argument("--sids-only", action="store_true", help="only the SID statistics (part 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    info = machine_info()
    results: dict = {"beam": args.beam}

    start = time.perf_counter()
    beauty_config = SidBuildConfig(encoder=ContentEncoderConfig.from_name("amazon"), seed=args.seed)
    beauty = amazon_semantic_ids(args.data_dir, beauty_config)
    results.update(beauty_stats=beauty.stats, beauty_sid_seconds=time.perf_counter() - start,
                   encoder=beauty_config.encoder, rq=beauty_config.rq)
    plain_config = replace(beauty_config, rq=replace(beauty_config.rq, spread_last_level=False))
    results["beauty_plain_stats"] = amazon_semantic_ids(args.data_dir, plain_config).stats
    start = time.perf_counter()
    synthetic = SyntheticConfig()
    catalog = build_synthetic_catalog(synthetic.seed, synthetic.samokat_items, synthetic.megamarket_items,
                                      synthetic.kuper_items)
    families = catalog_semantic_ids(catalog, SidBuildConfig(encoder=ContentEncoderConfig.from_name("synthetic"),
                                                            seed=args.seed))
    families.stats["services"] = service_sid_counts(catalog, catalog_item_sids(catalog, families))
    results.update(synthetic_stats=families.stats, synthetic_sid_seconds=time.perf_counter() - start)
    print(json.dumps({"beauty": beauty.stats, "synthetic": families.stats}, indent=1))
    command = "python -m benchmarks.beauty_sids " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.sids_only:
        Path(args.output).write_text(report(command.strip(), results, info), encoding="utf-8")
        return

    split = leave_one_out(load_amazon_beauty(args.data_dir))
    item_sids = padded_item_table(beauty.item_ids, beauty.sids.codes)
    config = GenerativeRetrieverConfig(epochs=args.epochs, beam_size=args.beam, seed=args.seed,
                                       max_train_seconds=args.max_train_minutes * 60)
    start = time.perf_counter()
    model = train_generative_retriever(list(split.train.values()), item_sids, config, progress=True)
    results.update(model_config=config, train_seconds=time.perf_counter() - start, epochs_trained=model.epochs_trained)
    results["valid"], results["test"] = evaluate(model, split.valid, args.beam), evaluate(model, split.test, args.beam)
    results["metric_rows"] = {"valid raw": results["valid"]["raw"], "valid filtered": results["valid"]["filtered"],
                              "test raw": results["test"]["raw"], "test filtered": results["test"]["filtered"],
                              "TIGER (published test)": TIGER_PUBLISHED}
    results["sampling"] = sampling_invalid_rates(model, split.test, args.seed)
    results["test_users"] = split.test
    results["unconstrained_invalid_rate"] = unconstrained_invalid_rate(model, split.test)
    print(metrics_table(results["metric_rows"]))
    print(json.dumps({"sampling": results["sampling"], "beam_invalid": [results["valid"]["invalid_rate"],
                      results["test"]["invalid_rate"]], "unconstrained": results["unconstrained_invalid_rate"]}))
    Path(args.output).write_text(report(command.strip(), results, info), encoding="utf-8")


if __name__ == "__main__":
    main()
