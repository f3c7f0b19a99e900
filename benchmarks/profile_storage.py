"""Profile storage backends side by side: event ingest rate and per-user ``events_of`` latency, SQLite vs PostgreSQL.

Generates one synthetic event stream (``--users`` users, ``--events-per-user`` on average, valid per
``recllm.profile.event_schema``: known services, kinds, devices and coarse regions, basket ids where required, positive
prices), writes it in time order in batches of ``--batch`` through ``add_events`` into a fresh store of each
backend, then reads ``--lookups`` random users' histories with ``events_of`` (all events, and purchases only) and
reports p50/p99 per call. SQLite runs with the store's own settings (WAL, synchronous=NORMAL); PostgreSQL is a
fresh loopback cluster (``tests/postgres_server.LocalPostgres``) with default durability, hash-partitioned by user.
Writes ``benchmarks/results/profile_storage.md``.

    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.profile_storage [--users 10000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.catalog.product_catalog import SERVICES
from recllm.profile.event_schema import COARSE_REGIONS
from recllm.profile.storage import ProfileStorage, open_profile_storage
from recllm.profile.postgres_store import PostgresProfileStore
from recllm.profile.events import DEVICES, EVENT_KINDS, Event
from tests.postgres_server import LocalPostgres

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "profile_storage.md"
START_TS = 1_700_000_000
SPAN_S = 180 * 86_400
BASKET_KINDS = frozenset({"add_to_cart", "purchase", "rating", "return"})


@dataclass(frozen=True)
class StorageBenchmarkConfig:
    users: int = 10_000
    events_per_user: int = 50
    batch: int = 5_000
    lookups: int = 2_000
    warmup_lookups: int = 200
    partitions: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("users", "events_per_user", "batch", "lookups", "partitions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"StorageBenchmarkConfig.{name} must be an int >= 1, got {value!r}")
        if self.warmup_lookups < 0:
            raise ValueError(f"StorageBenchmarkConfig.warmup_lookups must be >= 0, got {self.warmup_lookups!r}")


def synthetic_events(config: StorageBenchmarkConfig) -> list[Event]:
    """A time-ordered stream; per-user counts vary (geometric-ish) around ``events_per_user``."""
    rng = random.Random(config.seed)
    events = []
    for u in range(config.users):
        user_id = f"u{u:07d}"
        region, device = rng.choice(COARSE_REGIONS[:-1]), rng.choice(DEVICES)
        for _ in range(max(1, int(rng.expovariate(1 / config.events_per_user)))):
            kind = rng.choice(EVENT_KINDS)
            ts = START_TS + rng.randrange(SPAN_S)
            quantity = rng.randint(1, 5)
            events.append(Event(user_id, rng.choice(SERVICES), rng.randrange(100_000), kind, ts,
                                f"o{u}-{ts // 3600}" if kind in BASKET_KINDS else None,
                                round(rng.uniform(20, 5000), 2), quantity, region, device))
    events.sort(key=lambda e: e.timestamp)
    return events


def ingest(store: ProfileStorage, events: list[Event], batch: int) -> float:
    """Seconds to write all events through add_events in batches."""
    started = time.perf_counter()
    for offset in range(0, len(events), batch):
        store.add_events(events[offset:offset + batch])
    return time.perf_counter() - started


def lookup_latencies_ms(store: ProfileStorage, user_ids: list[str], kind: str | None) -> np.ndarray:
    latencies = np.empty(len(user_ids))
    for i, user_id in enumerate(user_ids):
        started = time.perf_counter()
        store.events_of(user_id, kind=kind)
        latencies[i] = (time.perf_counter() - started) * 1000
    return latencies


def disk_bytes(store: ProfileStorage, sqlite_path: Path | None) -> int:
    if isinstance(store, PostgresProfileStore):
        return store.connection().execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return sum(p.stat().st_size for p in sqlite_path.parent.glob(sqlite_path.name + "*"))


def measure(name: str, store: ProfileStorage, events: list[Event], config: StorageBenchmarkConfig,
            sqlite_path: Path | None = None) -> dict:
    seconds = ingest(store, events, config.batch)
    rng = random.Random(config.seed + 1)
    users = sorted({e.user_id for e in events})
    lookup_latencies_ms(store, rng.sample(users, min(config.warmup_lookups, len(users))), None)
    sample = [rng.choice(users) for _ in range(config.lookups)]
    all_events = lookup_latencies_ms(store, sample, None)
    purchases = lookup_latencies_ms(store, sample, "purchase")
    row = {"backend": name, "events": len(events), "ingest_s": seconds, "events_per_s": len(events) / seconds,
           "all_p50": np.percentile(all_events, 50), "all_p99": np.percentile(all_events, 99),
           "purchase_p50": np.percentile(purchases, 50), "purchase_p99": np.percentile(purchases, 99),
           "disk_mib": disk_bytes(store, sqlite_path) / 2**20}
    print(f"{name}: {row['events_per_s']:,.0f} events/s; events_of p50 {row['all_p50']:.3f} ms p99 "
          f"{row['all_p99']:.3f} ms; purchases p50 {row['purchase_p50']:.3f} ms p99 {row['purchase_p99']:.3f} ms; "
          f"{row['disk_mib']:.1f} MiB", flush=True)
    return row


def run(config: StorageBenchmarkConfig) -> list[dict]:
    events = synthetic_events(config)
    print(f"{len(events):,} events of {config.users:,} users", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recllm-bench-") as folder:
        path = Path(folder) / "profile.db"
        rows.append(measure("SQLite (WAL, synchronous=NORMAL)", open_profile_storage(path), events, config, path))
    with LocalPostgres(settings={}) as server:
        with open_profile_storage(server.new_database("bench"), partitions=config.partitions) as store:
            rows.append(measure(f"PostgreSQL 15 ({config.partitions} hash partitions, fsync on)", store, events,
                                config))
    return rows


def report(command: str, config: StorageBenchmarkConfig, rows: list[dict], info: dict) -> str:
    lines = ["| backend | events | ingest s | events/s | events_of p50 ms | events_of p99 ms | purchases p50 ms "
             "| purchases p99 ms | disk MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['events']:,} | {r['ingest_s']:.1f} | {r['events_per_s']:,.0f} | "
                     f"{r['all_p50']:.3f} | {r['all_p99']:.3f} | {r['purchase_p50']:.3f} | {r['purchase_p99']:.3f} | "
                     f"{r['disk_mib']:.1f} |")
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    return (f"# Profile storage: SQLite vs PostgreSQL\n\nCommand: `{command}`\n\nConfig: `{config}`\n\n"
            f"One synthetic stream written in time order through `add_events` (batches of {config.batch:,}, one "
            f"transaction each; PostgreSQL via COPY), then `events_of(user)` and `events_of(user, kind=\"purchase\")`"
            f" for {config.lookups:,} random users, one call at a time from one thread, after {config.warmup_lookups}"
            f" warm-up calls. PostgreSQL runs on loopback TCP in a fresh cluster on the same 2 cores (client and "
            f"server share them). Disk: SQLite file + WAL; PostgreSQL `pg_database_size`.\n\n"
            + "\n".join(lines) + f"\n\n## Machine\n\n{machine}\n")


def main(argv: list[str] | None = None) -> None:
    defaults = StorageBenchmarkConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("users", "events_per_user", "batch", "lookups", "partitions", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    config = StorageBenchmarkConfig(users=args.users, events_per_user=args.events_per_user, batch=args.batch,
                                    lookups=args.lookups, partitions=args.partitions, seed=args.seed)
    info = machine_info()
    rows = run(config)
    command = "python -m benchmarks.profile_storage " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.output).write_text(report(command.strip(), config, rows, info), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
