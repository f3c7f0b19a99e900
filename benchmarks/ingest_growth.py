"""Ingest ack latency while users' event logs grow: the profile refresh bounded to a user's newest events vs the
whole log, side by side.

The 6–10 minute soaks (``benchmarks/results/soak*.md``) saw ingest latency roughly double over the run as the soak's
36 users piled up thousands of events each, while the async refresh thread rebuilt each user's derived profile
(fragments, history, histograms, DP release) from their whole log after every commit. Here the real
``EventWriter`` (async refresh, ``synchronous=FULL`` commits on SQLite) ingests the same event stream in each
variant, on a fresh copy of a build's profile: ``--users`` users, batches of ``--batch`` events spread over them
(one client's stream: submit a batch, wait for every ack), until each user has ``--events-per-user`` more events.
Reported per tenth of the run: the users' mean log length, ack latency p50/p95 of the batches, and how many
refreshes ran; and the refresh backlog drained after the last ack. Variants: ``RefreshConfig.max_events`` at its
default (5,000) and unbounded (the whole log). Both run in one process, one after the other, on the same machine.

    .venv/bin/python -m benchmarks.ingest_growth --artifact-dir artifacts/default
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.artifacts import DEFAULT_ARTIFACT_DIR, ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.profile.events import Event
from recllm.profile.refresh import RefreshConfig, refresh_user_profile
from recllm.profile.storage import open_profile_storage
from recllm.profile_service.config import IngestPolicy
from recllm.profile_service.event_writer import EventWriter
from recllm.rag.catalog_index import CatalogIndex

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"bounded (5,000 newest)": RefreshConfig().max_events, "whole log": 10 ** 9}
KINDS = ("view", "view", "add_to_cart", "purchase")


def event_stream(catalog: Catalog, users: list[str], per_user: int, batch: int, start_ts: int, seed: int
                 ) -> list[list[Event]]:
    """Batches of events spread over ``users``, ``per_user`` each, one event a minute apart."""
    rng = random.Random(seed)
    order = [u for u in users for _ in range(per_user)]
    rng.shuffle(order)
    events = []
    for n, user in enumerate(order):
        item = rng.choice(catalog.items)
        events.append(Event(user, item.service, item.item_id, rng.choice(KINDS), start_ts + 60 * n, f"b{n // 3}",
                            item.price, 1, "moscow", "web", f"growth-{seed}-{n}"))
    return [events[i:i + batch] for i in range(0, len(events), batch)]


def run_variant(profile: Path, catalog: Catalog, vectors: np.ndarray, batches: list[list[Event]], max_events: int,
                users: list[str]) -> dict:
    config = RefreshConfig(max_events=max_events)
    refreshes = [0]

    def refresh(store, catalog_, vectors_, user_id, now_ts):
        refreshes[0] += 1
        refresh_user_profile(store, catalog_, vectors_, user_id, now_ts, config)

    writer = EventWriter(profile, catalog, vectors, IngestPolicy(), refresh=refresh).start()
    rows, latencies, tenth = [], [], max(1, len(batches) // 10)
    counted = {u: 0 for u in users}
    try:
        for n, batch in enumerate(batches):
            started = time.perf_counter()
            futures = [writer.submit(e) for e in batch]
            for future in futures:
                future.result()
            latencies.append(time.perf_counter() - started)
            for event in batch:
                counted[event.user_id] += 1
            if (n + 1) % tenth == 0 or n + 1 == len(batches):
                ms = np.array(latencies) * 1000
                rows.append({"batches": n + 1, "mean_log": float(np.mean(list(counted.values()))),
                             "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                             "refreshes": refreshes[0]})
                latencies = []
        drain_started = time.perf_counter()
        writer.wait_refreshed(600)
        drain_s = time.perf_counter() - drain_started
    finally:
        writer.stop()
    return {"rows": rows, "drain_s": drain_s, "refreshes": refreshes[0],
            "refresh_ms": one_refresh_ms(profile, catalog, vectors, users[0], config)}


def one_refresh_ms(profile: Path, catalog: Catalog, vectors: np.ndarray, user_id: str, config: RefreshConfig
                   ) -> float:
    """One refresh of a user at the end of the run (their whole grown log in the store), best of three."""
    store = open_profile_storage(profile)
    now = store.latest_timestamp()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        refresh_user_profile(store, catalog, vectors, user_id, now, config)
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def report(command: str, machine: dict, args, results: dict) -> str:
    lines = ["# Ingest ack latency as users' logs grow: refresh bounded vs whole log", "",
             f"Command: `{command}`", "", f"Machine: {machine}", "",
             f"Protocol: a fresh copy of `{args.artifact_dir}`'s profile per variant; {args.users} new users, "
             f"{args.events_per_user} events each (views, carts, purchases of random catalog items), in batches of "
             f"{args.batch} submitted by one client that waits for every ack before the next batch; the real "
             "`EventWriter` (async refresh, `synchronous=FULL`). Rows: each tenth of the run (ack latency of its "
             "batches; the users' mean log length at its end; refreshes run so far).", ""]
    for name, result in results.items():
        lines += [f"## {name}", "", "| batches | users' mean log | ack p50 ms | ack p95 ms | refreshes so far |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['batches']} | {r['mean_log']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['refreshes']} |"
                  for r in result["rows"]]
        lines += ["", f"Refresh backlog drained {result['drain_s']:.1f} s after the last ack; {result['refreshes']} "
                      f"refreshes in all. One refresh of a user at the end (log {args.events_per_user:,} events): "
                      f"{result['refresh_ms']:.1f} ms (best of 3).", ""]
    names = list(results)
    # the second tenth, not the first: the first holds each process's and database's warm-up
    early = (results[n]["rows"][min(1, len(results[n]["rows"]) - 1)] for n in names)
    last = (results[n]["rows"][-1] for n in names)
    lines += ["## Side by side", "",
              "| variant | ack p50 2nd tenth | last tenth | growth | one refresh at the end | refreshes run |",
              "|---|---|---|---|---|---|"]
    for name, a, b in zip(names, early, last):
        lines.append(f"| {name} | {a['p50']:.1f} ms | {b['p50']:.1f} ms | {b['p50'] / a['p50']:.2f}x | "
                     f"{results[name]['refresh_ms']:.1f} ms | {results[name]['refreshes']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=DEFAULT_ARTIFACT_DIR)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--events-per-user", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "ingest_growth.md")
    args = parser.parse_args(argv)
    layout = ArtifactLayout(args.artifact_dir)
    catalog = Catalog.load_jsonl(layout.catalog)
    vectors = CatalogIndex.load(layout.catalog_index_dir, catalog).item_vectors
    users = [f"u_growth_{i:03d}" for i in range(args.users)]
    batches = event_stream(catalog, users, args.events_per_user, args.batch, 1_790_000_000, args.seed)
    machine = machine_info()
    results = {}
    for name, max_events in VARIANTS.items():
        with tempfile.TemporaryDirectory() as scratch:
            profile = Path(scratch) / "profile.sqlite"
            shutil.copy(layout.profile_db, profile)
            print(f"{name}: {len(batches)} batches", flush=True)
            results[name] = run_variant(profile, catalog, vectors, batches, max_events, users)
            print(report("", machine, args, {name: results[name]}).split("## ", 1)[1], flush=True)
    command = "python -m benchmarks.ingest_growth " + " ".join(sys.argv[1:] if argv is None else argv)
    args.output.write_text(report(command, machine, args, results))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
