"""Generate a large synthetic population (users, events, held-out latest interactions) over the expanded catalog.

    python -m builders.generate_population --users 1000000 --items 100000 --output /tmp/population [--seed 7]

Writes ``catalog.jsonl``, ``profile.sqlite`` (the profile store's schema: users, events, item popularity),
``held_out.jsonl`` (each user's latest interactions, kept out of the profile) and ``manifest.json`` into a new
directory, streaming users chunk by chunk in bounded memory (see ``recllm.synthetic.scale``). Defaults come from
``PopulationConfig``; a bad value exits with the config field and value.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from tqdm.auto import tqdm

from recllm.synthetic.scale import PopulationConfig, PopulationSummary, write_population

# CLI flag -> PopulationConfig field; every other field keeps its dataclass default.
FLAGS: dict[str, str] = {"users": "n_users", "items": "n_items", "seed": "seed", "chunk_users": "chunk_users",
                         "cold_start_fraction": "cold_start_fraction", "median_active_days": "median_active_days"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = {f.name: f.default for f in fields(PopulationConfig)}
    parser = argparse.ArgumentParser(prog="python -m builders.generate_population", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=defaults["n_users"], help="number of users (%(default)s)")
    parser.add_argument("--items", type=int, default=defaults["n_items"], help="catalog size (%(default)s)")
    parser.add_argument("--output", type=Path, required=True, help="new or empty directory for the files")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="random seed (%(default)s)")
    parser.add_argument("--chunk-users", type=int, default=defaults["chunk_users"],
                        help="users generated and written per transaction (%(default)s)")
    parser.add_argument("--cold-start-fraction", type=float, default=defaults["cold_start_fraction"],
                        help="share of users without events (%(default)s)")
    parser.add_argument("--median-active-days", type=float, default=defaults["median_active_days"],
                        help="median length of a user's active window in days (%(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> PopulationConfig:
    return PopulationConfig(**{field_name: getattr(args, flag) for flag, field_name in FLAGS.items()})


def run(args: argparse.Namespace) -> PopulationSummary:
    config = config_from_args(args)
    with tqdm(total=config.n_users, unit="user", desc="users", disable=args.no_progress) as bar:
        summary = write_population(config, args.output, on_chunk=lambda chunk: bar.update(len(chunk.users)))
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    events_per_s = summary.history_events / summary.generate_seconds if summary.generate_seconds else 0.0
    print(f"{summary.users} users ({summary.cold_users} cold), {summary.catalog_items} items, "
          f"{summary.history_events} history events, {summary.held_out_events} held-out events "
          f"of {summary.held_out_users} users in {summary.generate_seconds:.1f} s ({events_per_s:,.0f} events/s) "
          f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
