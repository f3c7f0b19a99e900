"""Differential privacy for the preference vectors released to the model: a Gaussian mechanism with a per-user ledger.

What is protected. The model (retriever blend and reranker similarity features) reads a user's long- and
short-term preference vectors. Raw, they are decayed sums of the vectors of the items the user bought
(``profile.user_signals``); released, they are

    S   = Σ_events clip_C([w_long(e)·v(e) ; w_short(e)·v(e)])      [2, D]: each half's contribution clipped to L2 ≤ C
    S̃   = S + N(0, σ²·I)                                           one draw per coordinate, seeded (see below)
    out = (S̃[0] / ‖S̃[0]‖, S̃[1] / ‖S̃[1]‖)                          normalization is post-processing: free

Neighbouring histories differ by adding or removing **one purchase event** (event-level DP, "unbounded"
adjacency). One event moves each half of S by at most C, so the joint L2 sensitivity is Δ = C·√2; honest item
vectors are unit and decay weights ≤ 1, so at the default C = 1 no real event is clipped and a malformed
(adversarial) vector cannot move the sum by more than C per half.

Calibration. σ is the smallest value satisfying the *analytic Gaussian mechanism* of Balle & Wang (ICML 2018,
Theorem 8), valid for every ε > 0:

    Φ(Δ/(2σ) − εσ/Δ) − e^ε · Φ(−Δ/(2σ) − εσ/Δ) ≤ δ

found by bisection (``analytic_gaussian_sigma``). It is tight (the left side *is* the mechanism's δ at that ε)
and smaller than the classic bound σ = Δ·√(2 ln(1.25/δ))/ε (Dwork & Roth, Thm A.1, only valid for ε < 1), which
is kept as ``classic_gaussian_sigma`` for comparison and selectable with ``PrivacyConfig.calibration``.

Accounting. Budgets are per user per window: a window is ``window_days`` local calendar days (Moscow, UTC+3, as
in ``profile.history``). Each release costs (ε_window / releases_per_window, δ_window / releases_per_window) and
releases within a window compose **basically** (ε and δ add up). The ledger table ``privacy_ledger`` keeps, per
(user, window), the spent ε, spent δ and the number of releases; ``ProfileStore.commit_release`` charges it and
stores the release in one transaction, so a release is never served without being charged. When the window's budget
cannot pay for another release, the last release is served again (re-serving an output costs nothing). A refresh
whose purchase history is unchanged since the last release also re-serves it without a charge (same input, and
the normalized decayed sum does not drift with time alone: every weight shrinks by the same factor).

Scope and limits (stated, not hidden): the guarantee is per window. An event stays in the sums for as long as it is
retained, so over many windows its privacy loss composes across them (basic composition: at most the sum of the
windows' ε over the event's retention period); the per-service TTL in ``profile.retention`` bounds that period.
Nothing is released for a user with no purchases, so the single fact "has purchased at least once" is not protected
(the model sees it anyway through the non-private count features of ``profile.user_signals``, which this module does not
cover: only the preference vectors are released through the mechanism).

Noise seeding. The noise of release k of user u in window w is drawn from a generator seeded by
HMAC-SHA256(secret, "u|w|k"), with a 32-byte server secret stored in the profile database (``privacy_secret``):
a release is reproducible (tests, audits) but not predictable by anyone who does not hold the secret — and whoever
can read that database already sees the raw events, so keeping the secret elsewhere would protect nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recllm.profile.history import MOSCOW_UTC_OFFSET_HOURS
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import PreferenceRelease
from recllm.profile.user_signals import DAY_S, LONG_HALF_LIFE_DAYS, PURCHASE_KINDS, SHORT_HALF_LIFE_DAYS
from recllm.config.field_checks import require_in_interval, require_positive_ints

log = logging.getLogger(__name__)

CALIBRATIONS = ("analytic", "classic")
NUM_PREFERENCE_VECTORS = 2  # long-term, short-term


@dataclass
class PrivacyConfig:
    """(ε, δ) per user per window, how many releases share it, the per-event clip and the calibration."""

    epsilon_per_window: float = 1.0
    delta_per_window: float = 1e-6
    releases_per_window: int = 1
    window_days: int = 1
    utc_offset_hours: float = MOSCOW_UTC_OFFSET_HOURS
    clip_norm: float = 1.0  # per-event L2 clip C of each preference vector's contribution
    calibration: str = "analytic"
    long_half_life_days: float = LONG_HALF_LIFE_DAYS
    short_half_life_days: float = SHORT_HALF_LIFE_DAYS
    secret: bytes | None = None  # None: the profile database's own secret

    def __post_init__(self) -> None:
        require_in_interval(self, "epsilon_per_window", "(0, 50]")
        require_in_interval(self, "delta_per_window", "(0, 1)")
        require_positive_ints(self, ("releases_per_window", "window_days"))
        for name in ("clip_norm", "long_half_life_days", "short_half_life_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PrivacyConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"PrivacyConfig.calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.calibration == "classic" and self.epsilon_per_release >= 1:
            raise ValueError(f"PrivacyConfig.calibration 'classic' needs a per-release epsilon < 1, got "
                             f"{self.epsilon_per_release!r}; use 'analytic'")
        if self.secret is not None and len(self.secret) < 16:
            raise ValueError(f"PrivacyConfig.secret must be at least 16 bytes, got {len(self.secret)}")

    @property
    def epsilon_per_release(self) -> float:
        return self.epsilon_per_window / self.releases_per_window

    @property
    def delta_per_release(self) -> float:
        return self.delta_per_window / self.releases_per_window

    @property
    def sensitivity(self) -> float:
        """Joint L2 sensitivity of the [long; short] sum to adding or removing one event."""
        return self.clip_norm * math.sqrt(NUM_PREFERENCE_VECTORS)

    def sigma(self) -> float:
        if self.calibration == "classic":
            return classic_gaussian_sigma(self.epsilon_per_release, self.delta_per_release, self.sensitivity)
        return analytic_gaussian_sigma(self.epsilon_per_release, self.delta_per_release, self.sensitivity)


# --- calibration -----------------------------------------------------------------------------------------------

def standard_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def classic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """σ = Δ·√(2 ln(1.25/δ))/ε, sufficient for (ε, δ)-DP when ε < 1."""
    if not 0 < epsilon < 1:
        raise ValueError(f"classic Gaussian calibration needs 0 < epsilon < 1, got {epsilon!r}")
    check_delta_and_sensitivity(delta, sensitivity)
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def analytic_gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """The exact δ at ``epsilon`` of the Gaussian mechanism with noise ``sigma`` (Balle & Wang 2018, Thm 8)."""
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    tail = standard_normal_cdf(-a - b)
    # e^ε·Φ(−a−b) in logs: Φ underflows to 0 long before e^ε would overflow for ε ≤ 50.
    second = math.exp(epsilon + math.log(tail)) if tail > 0 else 0.0
    return max(standard_normal_cdf(a - b) - second, 0.0)


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float, rel_tol: float = 1e-10) -> float:
    """The smallest σ whose Gaussian mechanism is (ε, δ)-DP for L2 sensitivity Δ (bisection on the exact δ(σ))."""
    if not epsilon > 0:
        raise ValueError(f"analytic Gaussian calibration needs epsilon > 0, got {epsilon!r}")
    check_delta_and_sensitivity(delta, sensitivity)
    low, high = sensitivity * 1e-3, sensitivity
    while analytic_gaussian_delta(high, epsilon, sensitivity) > delta:
        low, high = high, high * 2.0
    while analytic_gaussian_delta(low, epsilon, sensitivity) <= delta:
        low /= 2.0
    while high - low > rel_tol * high:  # invariant: δ(low) > target ≥ δ(high); δ(σ) decreases in σ
        middle = 0.5 * (low + high)
        if analytic_gaussian_delta(middle, epsilon, sensitivity) > delta:
            low = middle
        else:
            high = middle
    return high


def check_delta_and_sensitivity(delta: float, sensitivity: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity!r}")


# --- the mechanism ---------------------------------------------------------------------------------------------

def clip_rows(contributions: np.ndarray, clip_norm: float) -> np.ndarray:
    """Scale each row [.., D] down to L2 norm ≤ ``clip_norm`` (rows already inside are unchanged)."""
    norms = np.linalg.norm(contributions, axis=-1, keepdims=True)
    scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-30))
    return contributions * scale


def clipped_preference_sums(vectors: np.ndarray, ages_days: np.ndarray, config: PrivacyConfig) -> np.ndarray:
    """[2, D] float64: Σ clip_C(w_long·v) and Σ clip_C(w_short·v) over the events (rows of ``vectors`` [P, D])."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if not np.all(np.isfinite(vectors)):
        raise ValueError("item vectors of the released events must be finite")
    ages = np.clip(np.asarray(ages_days, dtype=np.float64), 0.0, None)
    half_lives = np.array([config.long_half_life_days, config.short_half_life_days])
    weights = 0.5 ** (ages[None, :] / half_lives[:, None])  # [2, P]
    contributions = weights[:, :, None] * vectors[None, :, :]  # [2, P, D]
    return clip_rows(contributions, config.clip_norm).sum(axis=1)  # [2, D]


def release_seed(secret: bytes, user_id: str, window_start: int, release_index: int) -> int:
    message = f"{user_id}|{window_start}|{release_index}".encode()
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest(), "big")


def release_noise(secret: bytes, user_id: str, window_start: int, release_index: int, shape: tuple[int, ...],
                  sigma: float) -> np.ndarray:
    """N(0, σ²) noise of one release, reproducible from (secret, user, window, release index)."""
    rng = np.random.default_rng(release_seed(secret, user_id, window_start, release_index))
    return rng.standard_normal(shape) * sigma


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def window_bounds(ts: int, config: PrivacyConfig) -> tuple[int, int]:
    """[start, end) of the budget window containing ``ts``: ``window_days`` local days from a local midnight."""
    offset = int(round(config.utc_offset_hours * 3600))
    length = config.window_days * DAY_S
    start = (ts + offset) // length * length - offset
    return start, start + length


def history_digest(purchases: Sequence) -> str:
    """Digest of the purchases a release is computed from (item, time, service): equal digests, equal inputs."""
    digest = hashlib.sha256()
    for event in sorted(purchases, key=lambda e: (e.timestamp, e.item_id, e.service)):
        digest.update(f"{event.item_id},{event.timestamp},{event.service};".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ReleaseOutcome:
    """What ``release_preferences`` did: "released", "unchanged" (same history: last release re-served),
    "budget_spent" (window budget exhausted: last release re-served) or "no_purchases" (nothing released)."""

    status: str
    release: PreferenceRelease | None


def release_preferences(store: ProfileStore, user_id: str, events: Sequence, item_vectors: np.ndarray, now_ts: int,
                        config: PrivacyConfig | None = None, max_attempts: int = 5) -> ReleaseOutcome:
    """Release the user's preference vectors through the Gaussian mechanism, charging the window's ledger."""
    config = config or PrivacyConfig()
    purchases = [e for e in events if e.kind in PURCHASE_KINDS]
    if not purchases:
        store.delete_released_preferences(user_id)  # no events left behind the old release: it must go too
        return ReleaseOutcome("no_purchases", None)
    digest = history_digest(purchases)
    window_start, window_end = window_bounds(now_ts, config)
    secret = config.secret or store.privacy_secret()
    for _ in range(max_attempts):  # a concurrent writer may take the index we drew noise for: draw again
        last = store.released_preferences_of(user_id)
        if last is not None and last.history_digest == digest:
            return ReleaseOutcome("unchanged", last)
        spent = store.privacy_ledger_of(user_id, window_start)
        index = spent[0].releases if spent else 0
        release = noisy_release(user_id, purchases, item_vectors, now_ts, window_start, index, digest, secret, config)
        if store.commit_release(release, window_end, config.epsilon_per_window, config.delta_per_window):
            return ReleaseOutcome("released", release)
        if store.privacy_ledger_of(user_id, window_start) == spent:  # nothing moved: the budget is what stopped us
            log.info("privacy budget of window %d spent for a user; re-serving the last release", window_start)
            return ReleaseOutcome("budget_spent", store.released_preferences_of(user_id))
    raise RuntimeError(f"release_preferences for user {user_id!r} lost {max_attempts} races for the ledger")


def noisy_release(user_id: str, purchases: Sequence, item_vectors: np.ndarray, now_ts: int, window_start: int,
                  release_index: int, digest: str, secret: bytes, config: PrivacyConfig) -> PreferenceRelease:
    ids = np.array([e.item_id for e in purchases], dtype=np.int64)
    ages = np.array([(now_ts - e.timestamp) / DAY_S for e in purchases], dtype=np.float64)
    sums = clipped_preference_sums(item_vectors[ids], ages, config)  # [2, D]
    sigma = config.sigma()
    noisy = sums + release_noise(secret, user_id, window_start, release_index, sums.shape, sigma)
    pref_long, pref_short = normalize_rows(noisy)
    return PreferenceRelease(user_id, window_start, release_index, int(now_ts), config.epsilon_per_release,
                             config.delta_per_release, sigma, config.clip_norm, digest, pref_long, pref_short)
