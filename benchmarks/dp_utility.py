"""What the Gaussian mechanism costs the preference vectors: cosine between raw and released vectors per ε.

For every user of a built profile (``--artifact-dir``, default ``artifacts/default``) with purchases, computes the
clipped decayed sums of ``recllm.profile.differential_privacy`` at the profile clock (the newest event), adds the noise a
release with each ``--epsilons`` value (per window, one release per window, δ = ``--delta``) would add, and reports
the median and 10th percentile of cos(released, raw) for the long- and short-term vectors, next to σ and the
median sum norms. Also times ``refresh_user_profile`` (fragments + history + histograms + release) on a copy of the
database. Nothing is written to the artifact folder. Writes ``benchmarks/results/dp_utility.md``.

    .venv/bin/python -m benchmarks.dp_utility [--artifact-dir artifacts/default]   # ~10 s on the default build
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.profile.differential_privacy import PrivacyConfig, clipped_preference_sums, normalize_rows
from recllm.profile.refresh import refresh_user_profile
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.user_signals import DAY_S, compute_user_signals

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "dp_utility.md"


def user_sums(store: ProfileStore, catalog: Catalog, vectors: np.ndarray, now_ts: int, config: PrivacyConfig
              ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(clipped sums [2, D], raw long [D], raw short [D]) per user with purchases."""
    rows = []
    for user_id in store.user_ids():
        purchases = store.events_of(user_id, kind="purchase")
        if not purchases:
            continue
        ages = np.array([(now_ts - e.timestamp) / DAY_S for e in purchases])
        sums = clipped_preference_sums(vectors[[e.item_id for e in purchases]], ages, config)
        raw = compute_user_signals(user_id, purchases, catalog, vectors, now_ts)
        rows.append((sums, raw.pref_long, raw.pref_short))
    return rows


def utility_row(rows: list, epsilon: float, delta: float, seed: int) -> dict:
    config = PrivacyConfig(epsilon_per_window=epsilon, delta_per_window=delta)
    sigma = config.sigma()
    rng = np.random.default_rng(seed)
    cos_long, cos_short = [], []
    for sums, raw_long, raw_short in rows:
        released = normalize_rows(sums + rng.standard_normal(sums.shape) * sigma)
        cos_long.append(float(released[0] @ raw_long))
        cos_short.append(float(released[1] @ raw_short))
    return {"epsilon": epsilon, "sigma": sigma, "long_median": np.median(cos_long),
            "long_p10": np.percentile(cos_long, 10), "short_median": np.median(cos_short),
            "short_p10": np.percentile(cos_short, 10)}


def time_refreshes(layout: ArtifactLayout, catalog: Catalog, vectors: np.ndarray, users: int) -> tuple[float, float]:
    """(p50, p99) ms of refresh_user_profile over ``users`` users, on a copy of the profile database."""
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            source = Path(f"{layout.profile_db}{suffix}")
            if source.exists():
                shutil.copy(source, Path(tmp) / f"profile.db{suffix}")
        store = ProfileStore(Path(tmp) / "profile.db")
        now_ts = store.latest_timestamp()
        times = []
        for k, user_id in enumerate(store.user_ids()[:users]):
            started = time.perf_counter()
            refresh_user_profile(store, catalog, vectors, user_id, now_ts + 1 + k)
            times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def report(command: str, layout: ArtifactLayout, dim: int, num_users: int, norms: np.ndarray, delta: float,
           rows: list[dict], refresh_ms: tuple[float, float], info: dict) -> str:
    lines = [
        "# Differential privacy: utility of released preference vectors",
        "",
        f"Command: `{command}`",
        "",
        f"Profile: `{layout.root}` ({num_users} users with purchases, item vectors D = {dim}); one release per "
        f"window, δ = {delta:g}, clip C = 1, analytic Gaussian calibration (Δ = C·√2). Median clipped sum norm: "
        f"long {norms[0]:.1f}, short {norms[1]:.1f}.",
        "",
        "| ε per window | σ | cos(long) median | cos(long) p10 | cos(short) median | cos(short) p10 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['epsilon']:g} | {r['sigma']:.2f} | {r['long_median']:.3f} | {r['long_p10']:.3f} | "
              f"{r['short_median']:.3f} | {r['short_p10']:.3f} |" for r in rows]
    lines += ["", f"`refresh_user_profile` (fragments, history, histograms, release): p50 {refresh_ms[0]:.1f} ms, "
              f"p99 {refresh_ms[1]:.1f} ms per user.", "", "Machine: " +
              ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=REPO_ROOT / "artifacts" / "default")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--refresh-users", type=int, default=100)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    layout = ArtifactLayout(args.artifact_dir)
    layout.require_built()
    catalog = Catalog.load_jsonl(layout.catalog)
    vectors = np.load(layout.catalog_index_dir / "item_vectors.npy")
    store = ProfileStore(layout.profile_db, read_only=True)
    sums = user_sums(store, catalog, vectors, store.latest_timestamp(), PrivacyConfig())
    norms = np.median([np.linalg.norm(s, axis=1) for s, _, _ in sums], axis=0)
    rows = [utility_row(sums, epsilon, args.delta, seed=k) for k, epsilon in enumerate(args.epsilons)]
    refresh_ms = time_refreshes(layout, catalog, vectors, args.refresh_users)
    command = ".venv/bin/python -m benchmarks.dp_utility " + " ".join(sys.argv[1:])  # as run (~10 s: no lock)
    text = report(command.strip(), layout, vectors.shape[1], len(sums), norms, args.delta, rows, refresh_ms,
                  machine_info())
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
