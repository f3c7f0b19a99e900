"""The charge decision both profile backends make inside their ledger transaction, free of torch and of SQL.

A window's ledger is the composition of every DP mechanism run on the user's data in that window
(``privacy_mechanisms`` rows: preference releases and adapter updates). Charging a new mechanism composes the
window's recorded history plus the new one with ``compose`` (``profile.differential_privacy.compose_epsilon``:
Opacus' RDP accountant, passed in so the stores import neither Opacus nor torch) and accepts it only if the
composed ε at the window's δ fits the budget. ``ProfileStore.charge_mechanism`` (SQLite, under ``BEGIN IMMEDIATE``)
and its PostgreSQL counterpart (under a per-user advisory lock) read the ledger and the history, call
``next_ledger_entry`` and write what it returns, so the decision and the write see the same rows.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from recllm.profile.records import MECHANISM_KINDS, PREFERENCE_RELEASE, LedgerEntry, MechanismRun, PreferenceRelease

# (history of (noise_multiplier, sample_rate, steps), δ) -> ε of their composition at δ
ComposeEpsilon = Callable[[list[tuple[float, float, int]], float], float]
FLOAT_SLACK = 1e-9  # the calibration targets the budget exactly: a float hair above it still fits


def check_charge(run: MechanismRun, release: PreferenceRelease | None) -> None:
    """A release comes with its preference-release mechanism, of the same user and window; nothing else does."""
    if run.kind not in MECHANISM_KINDS:
        raise ValueError(f"MechanismRun.kind must be one of {MECHANISM_KINDS}, got {run.kind!r}")
    if (release is not None) != (run.kind == PREFERENCE_RELEASE):
        raise ValueError(f"a {run.kind!r} mechanism is charged {'without' if release is None else 'with'} a release")
    if release is not None and (release.user_id, release.window_start) != (run.user_id, run.window_start):
        raise ValueError(f"release of ({release.user_id!r}, {release.window_start}) charged as a mechanism of "
                         f"({run.user_id!r}, {run.window_start})")
    if not (run.noise_multiplier >= 0 and 0 < run.sample_rate <= 1 and run.steps >= 1):
        raise ValueError(f"mechanism needs noise_multiplier >= 0, sample_rate in (0, 1] and steps >= 1, got {run!r}")


def next_ledger_entry(run: MechanismRun, window_end: int, releases: int, history: Sequence[tuple],
                      epsilon_budget: float, delta: float, compose: ComposeEpsilon,
                      release: PreferenceRelease | None) -> LedgerEntry | None:
    """The window's ledger entry once ``run`` is charged, or None when it must not be.

    ``releases``: the ledger's release count (0 without a row); ``history``: the window's recorded mechanisms as
    (kind, noise_multiplier, sample_rate, steps) in charge order. None when the composed ε exceeds the budget, when
    ``release`` is not the window's next release (another writer released first), or when the ledger counts
    releases the history does not hold (charged by basic composition before mechanisms were recorded: their
    parameters are unknown, so the window is treated as spent until it ends).
    """
    check_charge(run, release)
    if sum(row[0] == PREFERENCE_RELEASE for row in history) != releases:
        return None
    if release is not None and release.release_index != releases:
        return None
    composed = [(float(z), float(q), int(steps)) for _, z, q, steps in history]
    epsilon = float(compose(composed + [(run.noise_multiplier, run.sample_rate, run.steps)], delta))
    if not (math.isfinite(epsilon) and epsilon <= epsilon_budget * (1 + FLOAT_SLACK)):
        return None
    return LedgerEntry(run.user_id, run.window_start, window_end, epsilon, delta,
                       releases + (release is not None))
