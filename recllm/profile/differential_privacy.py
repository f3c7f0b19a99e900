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

Accounting. Budgets are per user per window: a window is ``window_days`` local calendar days (Moscow, UTC+3, as
in ``profile.history``), with a budget (ε_window, δ_window). Every DP mechanism run on the user's data in the window
is recorded (table ``privacy_mechanisms``: kind, noise multiplier z = σ/Δ, sample rate q, steps, time): the
preference releases of this module (z, q = 1, 1 step) and the DP-SGD updates of the user's LoRA adapter
(``builders.train_user_layers``, converted to the same event-level unit by ``dp_sgd_event_mechanism``). The
window's spent ε is their **composition** by Opacus' ``RDPAccountant`` (``compose_epsilon``) at δ_window — not a
sum. Charging a mechanism composes the window's history plus the new one and refuses it if ε(δ_window) would exceed
ε_window; ``ProfileStorage.charge_mechanism`` does that, records the mechanism, updates the ledger
(``privacy_ledger``: composed ε, δ_window, release count) and stores the release in one transaction, so a release is
never served without being charged. The stores get the accountant as a function, so they import neither Opacus nor
torch. When the window cannot pay for another release, the last release is served again (re-serving an output
costs nothing). A refresh whose purchase history is unchanged since the last release also re-serves it without a
charge (same input, and the normalized decayed sum does not drift with time alone: every weight shrinks by the same
factor). A window charged before mechanisms were recorded (basic composition) counts as spent until it ends.

Why RDP, not PRV. The mechanisms are Gaussian (a release: q = 1, exact RDP α/(2z²)) and subsampled Gaussian
(DP-SGD), which Opacus' RDP accountant composes exactly in Rényi divergence, deterministically and in milliseconds,
for any mix of (z, q, steps); it is also the accountant the DP-SGD trainer runs (``PrivacyEngine(accountant="rdp")``),
so the ledger and the trainer's own report speak the same accountant. PRV is tighter for long DP-SGD runs but
numerical (a discretization with an error bound and a domain sized from the history); at a handful of mechanisms
per window its gain is small, and the ledger's refusals would depend on discretization settings.

Calibration. With ``calibration="rdp"`` (default) the release's noise multiplier is Opacus' ``get_noise_multiplier``
for ``releases_per_window`` unsampled Gaussian releases at (ε_window, δ_window) under the same RDP accountant: the
ledger composes exactly what the calibration assumed, so ``releases_per_window`` releases fit the window (when no
adapter update spent part of it) and the guarantee is the ledger's. The per-release *analytic Gaussian mechanism*
of Balle & Wang (ICML 2018, Theorem 8) — the smallest σ with

    Φ(Δ/(2σ) − εσ/Δ) − e^ε · Φ(−Δ/(2σ) − εσ/Δ) ≤ δ

at (ε_window / k, δ_window / k) (``analytic_gaussian_sigma``, bisection) — and the classic bound
σ = Δ·√(2 ln(1.25/δ))/ε (Dwork & Roth, Thm A.1, ε < 1; ``classic_gaussian_sigma``) stay selectable for
comparison, but they split the budget by basic composition while the ledger charges by RDP: RDP's conversion to
(ε, δ) is looser than the exact single-release bound, so under them fewer than k releases may fit a window (never
more: the ledger decides). A release records its own ε (RDP, alone, at δ_window) and δ_window.

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
from functools import lru_cache
from typing import Sequence

import numpy as np

from recllm.profile.history import MOSCOW_UTC_OFFSET_HOURS
from recllm.profile.records import ADAPTER_UPDATE, PREFERENCE_RELEASE, LedgerEntry, MechanismRun, PreferenceRelease
from recllm.profile.storage import ProfileStorage
from recllm.profile.user_signals import DAY_S, LONG_HALF_LIFE_DAYS, PURCHASE_KINDS, SHORT_HALF_LIFE_DAYS
from recllm.config.field_checks import require_in_interval, require_positive_ints

log = logging.getLogger(__name__)

CALIBRATIONS = ("rdp", "analytic", "classic")
NOISE_MULTIPLIER_TOLERANCE = 1e-3  # ε tolerance of Opacus' bisection: a calibrated σ spends within 0.001 of ε
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
    calibration: str = "rdp"
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

    def noise_multiplier(self) -> float:
        """σ / Δ of one release: what the ledger's accountant is given."""
        if self.calibration == "rdp":
            return rdp_noise_multiplier(self.epsilon_per_window, self.delta_per_window, self.releases_per_window)
        return self.sigma() / self.sensitivity

    def sigma(self) -> float:
        """Noise std per coordinate of one release."""
        if self.calibration == "rdp":
            return self.noise_multiplier() * self.sensitivity
        if self.calibration == "classic":
            return classic_gaussian_sigma(self.epsilon_per_release, self.delta_per_release, self.sensitivity)
        return analytic_gaussian_sigma(self.epsilon_per_release, self.delta_per_release, self.sensitivity)


# --- accounting (Opacus, imported on first use: torch is heavy and the stores never need it) --------------------

# The RDP orders the accountant optimises over: Opacus' defaults (1.1 … 63) plus higher ones, which the large noise
# multipliers of unsampled releases need (with the defaults alone Opacus warns "optimal order is the largest alpha"
# and its ε is looser than it has to be).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512, 1024]


def compose_epsilon(history: Sequence[tuple[float, float, int]], delta: float) -> float:
    """ε at ``delta`` of the composition of (noise multiplier, sample rate, steps) Gaussian mechanisms, by Opacus'
    ``RDPAccountant`` (its history set directly); 0 for no mechanism, inf when one has no noise."""
    from opacus.accountants import RDPAccountant  # noqa: PLC0415

    accountant = RDPAccountant()
    accountant.history = [(float(z), float(q), int(steps)) for z, q, steps in history]
    if any(z <= 0 for z, _, _ in accountant.history):
        return math.inf
    return float(accountant.get_epsilon(delta, alphas=RDP_ORDERS))


@lru_cache(maxsize=64)
def rdp_noise_multiplier(epsilon: float, delta: float, releases: int) -> float:
    """The noise multiplier z = σ/Δ at which ``releases`` unsampled Gaussian releases compose (RDP) to at most
    ``epsilon`` at ``delta`` (Opacus' ``get_noise_multiplier``, within ``NOISE_MULTIPLIER_TOLERANCE`` below ε)."""
    from opacus.accountants.utils import get_noise_multiplier  # noqa: PLC0415

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=1.0, steps=releases,
                                      accountant="rdp", epsilon_tolerance=NOISE_MULTIPLIER_TOLERANCE,
                                      alphas=RDP_ORDERS))


def dp_sgd_event_mechanism(noise_multiplier: float, steps: int, examples_per_event: int) -> tuple[float, float, int]:
    """(z, q, steps) of a DP-SGD run in the ledger's unit, one purchase event, when one event can change up to
    ``examples_per_event`` training examples.

    Each step adds N(0, (z·C)²) to the sum of per-example gradients clipped to C. An event that changes g examples
    (each changed example moves its clipped gradient by at most 2C) moves that sum by at most 2gC, so the step is a
    Gaussian mechanism with noise multiplier z / (2g) with respect to the event. Sampling amplification is not
    claimed (q = 1): the g examples are not sampled as one unit, and the worst case samples them all.
    """
    if not (noise_multiplier > 0 and steps >= 1 and examples_per_event >= 1):
        raise ValueError(f"dp_sgd_event_mechanism needs noise_multiplier > 0, steps >= 1 and examples_per_event >= 1, "
                         f"got {noise_multiplier!r}, {steps!r}, {examples_per_event!r}")
    return noise_multiplier / (2 * examples_per_event), 1.0, int(steps)


def charge_adapter_update(store: ProfileStorage, user_id: str, now_ts: int, noise_multiplier: float, steps: int,
                          examples_per_event: int, config: PrivacyConfig | None = None) -> LedgerEntry | None:
    """Charge a DP-SGD update of the user's adapter to the window of ``now_ts``: the new ledger entry (composed ε),
    or None when the window's budget cannot pay for it (then the update must not be used)."""
    config = config or PrivacyConfig()
    window_start, window_end = window_bounds(now_ts, config)
    z, q, steps = dp_sgd_event_mechanism(noise_multiplier, steps, examples_per_event)
    run = MechanismRun(user_id, window_start, ADAPTER_UPDATE, z, q, steps, int(now_ts))
    entry = store.charge_mechanism(run, window_end, config.epsilon_per_window, config.delta_per_window,
                                   compose_epsilon)
    if entry is None:
        log.info("privacy budget of window %d cannot pay for an adapter update of a user", window_start)
    return entry


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


def release_preferences(store: ProfileStorage, user_id: str, events: Sequence, item_vectors: np.ndarray, now_ts: int,
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
    noise_multiplier = config.noise_multiplier()  # loads Opacus before any transaction: no lock held for an import
    sigma = noise_multiplier * config.sensitivity
    for _ in range(max_attempts):  # a concurrent writer may take the index we drew noise for: draw again
        last = store.released_preferences_of(user_id)
        if last is not None and last.history_digest == digest:
            return ReleaseOutcome("unchanged", last)
        spent = store.privacy_ledger_of(user_id, window_start)
        index = spent[0].releases if spent else 0
        release = noisy_release(user_id, purchases, item_vectors, now_ts, window_start, index, digest, secret, config,
                                sigma)
        run = MechanismRun(user_id, window_start, PREFERENCE_RELEASE, noise_multiplier, 1.0, 1, int(now_ts))
        if store.charge_mechanism(run, window_end, config.epsilon_per_window, config.delta_per_window,
                                  compose_epsilon, release) is not None:
            return ReleaseOutcome("released", release)
        if store.privacy_ledger_of(user_id, window_start) == spent:  # nothing moved: the budget is what stopped us
            log.info("privacy budget of window %d spent for a user; re-serving the last release", window_start)
            return ReleaseOutcome("budget_spent", store.released_preferences_of(user_id))
    raise RuntimeError(f"release_preferences for user {user_id!r} lost {max_attempts} races for the ledger")


def noisy_release(user_id: str, purchases: Sequence, item_vectors: np.ndarray, now_ts: int, window_start: int,
                  release_index: int, digest: str, secret: bytes, config: PrivacyConfig,
                  sigma: float | None = None) -> PreferenceRelease:
    """One release's vectors; its ε is this release alone under RDP at δ_window (what the ledger adds to)."""
    ids = np.array([e.item_id for e in purchases], dtype=np.int64)
    ages = np.array([(now_ts - e.timestamp) / DAY_S for e in purchases], dtype=np.float64)
    sums = clipped_preference_sums(item_vectors[ids], ages, config)  # [2, D]
    sigma = config.sigma() if sigma is None else sigma
    epsilon = compose_epsilon([(sigma / config.sensitivity, 1.0, 1)], config.delta_per_window)
    noisy = sums + release_noise(secret, user_id, window_start, release_index, sums.shape, sigma)
    pref_long, pref_short = normalize_rows(noisy)
    return PreferenceRelease(user_id, window_start, release_index, int(now_ts), epsilon, config.delta_per_window,
                             sigma, config.clip_norm, digest, pref_long, pref_short)
