"""Scale benchmark of the synthetic population and per-user profile reads (issue 3: 100K and 1M users, 100K items).

    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.profile_scale --users 100000 1000000 \\
        --items 100000 --workdir /tmp/recllm-profile-scale

For each population size, in fresh subprocesses (so peak RSS belongs to one step):
1. generate: ``write_population`` (catalog, profile SQLite, held-out jsonl) — wall time, events/s, peak RSS and
   RSS after each tenth of the users (flat = bounded memory), disk bytes per user after the WAL checkpoint;
2. lookup: for random users (seeded; cold-start users included) the per-request profile work of the retriever —
   ``events_of(user, "purchase")`` + ``compute_user_signals`` — and the full history read, then the real
   ``Retriever.retrieve`` with a FAISS ``CatalogIndex`` over the expanded catalog (item vectors from the trained
   query encoder in artifacts/default when present, else seeded random unit vectors — flat-search latency does not
   depend on the values). p50/p99 latency and the lookup process's RSS.
The population directories (GBs at 1M users) are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "profile_scale.md"
ENCODER_DIR = REPO_ROOT / "artifacts" / "default" / "query_encoder"
QUERIES = ("что приготовить на ужин, чтобы было полезно?", "хочу что-нибудь вкусное", "нужна экипировка для бега",
           "закончился корм для питомца", "подарок сыну на 7 лет", "хочу хороший кофе", "нужны витамины")


def rss_mib() -> float:
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- step 1: generate (subprocess) ----------------------------------------------------------------------------------


def generate_step(users: int, items: int, seed: int, directory: Path) -> dict:
    from recllm.synthetic.scale import PopulationConfig, write_population

    config = PopulationConfig(seed=seed, n_users=users, n_items=items)
    samples: list[tuple[int, float]] = []
    every = max(1, users // 10)

    def on_chunk(chunk) -> None:
        done = chunk.first_index + len(chunk.users)
        if done // every != chunk.first_index // every or done == users:
            samples.append((done, round(rss_mib(), 1)))
            print(f"  {done} users, RSS {samples[-1][1]} MiB", file=sys.stderr, flush=True)

    started = time.perf_counter()
    summary = write_population(config, directory, on_chunk=on_chunk)
    wall = time.perf_counter() - started
    return {"summary": summary.__dict__, "wall_s": wall, "peak_rss_mib": peak_rss_mib(), "rss_samples": samples}


# --- step 2: lookups (subprocess) -----------------------------------------------------------------------------------


def item_vectors(catalog, seed: int, cache: Path) -> tuple[np.ndarray, str]:
    if cache.exists():
        return np.load(cache), cache.with_suffix(".source").read_text()
    if ENCODER_DIR.exists():
        from recllm.rag.catalog_index import item_search_text
        from recllm.rag.query_encoder import QueryEncoder

        encoder = QueryEncoder.load(ENCODER_DIR)
        texts = [item_search_text(item, catalog) for item in catalog.items]
        vectors = np.concatenate([encoder.encode(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
        source = "trained query encoder (artifacts/default)"
    else:
        vectors = np.random.default_rng(seed).standard_normal((len(catalog), 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        source = "seeded random unit vectors (no trained encoder found)"
    np.save(cache, vectors)
    cache.with_suffix(".source").write_text(source)
    return vectors, source


def percentiles(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def lookup_step(directory: Path, users: int, lookups: int, seed: int, vectors_cache: Path) -> dict:
    from recllm.catalog.product_catalog import Catalog
    from recllm.rag.catalog_index import CatalogIndex
    from recllm.profile.sqlite_store import ProfileStore
    from recllm.rag.rec_request import RecRequest
    from recllm.rag.retriever import Retriever, RetrieverConfig
    from recllm.profile.user_signals import compute_user_signals

    catalog = Catalog.load_jsonl(directory / "catalog.jsonl")
    vectors, source = item_vectors(catalog, seed, vectors_cache)
    store = ProfileStore(directory / "profile.sqlite", read_only=True)
    rng = random.Random(seed)
    user_ids = [f"u{rng.randrange(users):06d}" for _ in range(lookups)]
    rss_before = rss_mib()
    signals_s, full_s, purchases = [], [], []
    for user_id in user_ids:
        started = time.perf_counter()
        events = store.events_of(user_id, kind="purchase")
        compute_user_signals(user_id, events, catalog, vectors)
        signals_s.append(time.perf_counter() - started)
        purchases.append(len(events))
        started = time.perf_counter()
        store.events_of(user_id)
        full_s.append(time.perf_counter() - started)
    retriever = Retriever(catalog, CatalogIndex(vectors, catalog), store, RetrieverConfig())
    from recllm.rag.query_encoder import QueryEncoder
    query_vectors = (QueryEncoder.load(ENCODER_DIR).encode(list(QUERIES)) if "trained" in source
                     else vectors[[rng.randrange(len(catalog)) for _ in QUERIES]])
    retrieve_s = []
    for number, user_id in enumerate(user_ids[: max(1, lookups // 4)]):
        request = RecRequest(user_id, QUERIES[number % len(QUERIES)], 5, "", "ru", None)
        started = time.perf_counter()
        retriever.retrieve(request, query_vectors[number % len(QUERIES)])
        retrieve_s.append(time.perf_counter() - started)
    return {"vectors": source, "lookups": lookups, "mean_purchases_read": float(np.mean(purchases)),
            "signals": percentiles(signals_s), "full_history": percentiles(full_s),
            "retrieve": {**percentiles(retrieve_s), "requests": len(retrieve_s)},
            "rss_before_lookups_mib": rss_before, "rss_after_mib": rss_mib(), "peak_rss_mib": peak_rss_mib()}


# --- driver -----------------------------------------------------------------------------------------------------------


def run_step(args: list[str]) -> dict:
    completed = subprocess.run([sys.executable, "-m", "benchmarks.profile_scale", *args], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def disk_bytes(directory: Path) -> dict:
    sizes = {path.name: path.stat().st_size for path in directory.iterdir()}
    return {"profile_db": sizes.get("profile.sqlite", 0) + sizes.get("profile.sqlite-wal", 0),
            "held_out": sizes.get("held_out.jsonl", 0), "catalog": sizes.get("catalog.jsonl", 0)}


def measure_size(users: int, items: int, seed: int, lookups: int, workdir: Path, keep: bool) -> dict:
    directory = workdir / f"population_{users}"
    if directory.exists():
        shutil.rmtree(directory)
    print(f"generating {users} users x {items} items into {directory}", file=sys.stderr, flush=True)
    generated = run_step(["_generate", str(users), str(items), str(seed), str(directory)])
    disk = disk_bytes(directory)
    print(f"lookups over {users} users", file=sys.stderr, flush=True)
    looked_up = run_step(["_lookup", str(directory), str(users), str(lookups), str(seed),
                          str(workdir / f"item_vectors_{items}_{seed}.npy")])
    if not keep:
        shutil.rmtree(directory)
    return {"users": users, "items": items, "generate": generated, "disk": disk, "lookup": looked_up}


def markdown(results: list[dict], command: str, notes: list[str]) -> str:
    info = machine_info()
    lines = ["# Synthetic population at scale: generator and per-user profile reads", "",
             f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()), "",
             "| users | items | events (history) | events/user | held-out users | generate wall | events/s "
             "| write share | generator peak RSS | RSS first→last tenth | DB bytes/user | held-out bytes/user |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        summary, generated, disk = row["generate"]["summary"], row["generate"], row["disk"]
        samples = generated["rss_samples"]
        lines.append(
            f"| {row['users']:,} | {row['items']:,} | {summary['history_events']:,} "
            f"| {(summary['history_events'] + summary['held_out_events']) / row['users']:.1f} "
            f"| {summary['held_out_users']:,} | {generated['wall_s']:.0f} s "
            f"| {summary['history_events'] / summary['generate_seconds']:,.0f} "
            f"| {summary['write_seconds'] / summary['generate_seconds']:.0%} | {generated['peak_rss_mib']:.0f} MiB "
            f"| {samples[0][1]:.0f}→{samples[-1][1]:.0f} MiB | {disk['profile_db'] / row['users']:,.0f} "
            f"| {disk['held_out'] / row['users']:,.0f} |")
    lines += ["", "Per-user reads (random users, seeded; warm OS page cache — the files were just written):", "",
              "| users | purchases read/user | events_of(purchase) + compute_user_signals p50 / p99 "
              "| events_of (all kinds) p50 / p99 | Retriever.retrieve p50 / p99 (requests) | lookup RSS before→after |",
              "|---|---|---|---|---|---|"]
    for row in results:
        look = row["lookup"]
        lines.append(
            f"| {row['users']:,} | {look['mean_purchases_read']:.1f} "
            f"| {look['signals']['p50_ms']:.2f} / {look['signals']['p99_ms']:.2f} ms "
            f"| {look['full_history']['p50_ms']:.2f} / {look['full_history']['p99_ms']:.2f} ms "
            f"| {look['retrieve']['p50_ms']:.1f} / {look['retrieve']['p99_ms']:.1f} ms ({look['retrieve']['requests']}) "
            f"| {look['rss_before_lookups_mib']:.0f}→{look['rss_after_mib']:.0f} MiB |")
    lines += ["", f"Item vectors: {results[0]['lookup']['vectors']}.", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_generate":
        users, items, seed, directory = int(argv[1]), int(argv[2]), int(argv[3]), Path(argv[4])
        print(json.dumps(generate_step(users, items, seed, directory)))
        return 0
    if argv and argv[0] == "_lookup":
        directory, users, lookups, seed, cache = Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), Path(argv[5])
        print(json.dumps(lookup_step(directory, users, lookups, seed, cache)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recllm-profile-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated populations")
    parser.add_argument("--note", action="append", default=[], help="a line added under the tables")
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only render the saved results_*.json of earlier runs (one run per lock hold)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.merge:
        results = [row for path in args.merge for row in json.loads(path.read_text())]
        command = " ; ".join(dict.fromkeys(row["command"] for row in results))
    else:
        command = "python -m benchmarks.profile_scale " + " ".join(argv)
        results = []
        for users in args.users:
            results.append({**measure_size(users, args.items, args.seed, args.lookups, args.workdir, args.keep),
                            "command": command})
            saved = args.workdir / f"results_{'_'.join(map(str, args.users))}.json"
            saved.write_text(json.dumps(results, indent=1))
    text = markdown(results, command, args.note)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
