"""Gaussian mechanism for preference vectors: calibration, clipping, ledger composition, budget exhaustion, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.profile.differential_privacy import (
    PrivacyConfig,
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    charge_adapter_update,
    classic_gaussian_sigma,
    clipped_preference_sums,
    compose_epsilon,
    dp_sgd_event_mechanism,
    history_digest,
    normalize_rows,
    rdp_noise_multiplier,
    release_noise,
    release_preferences,
    window_bounds,
)
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.records import EventRow, MechanismRun
from recllm.profile.retention import forget_user
from recllm.profile.user_signals import DAY_S

SECRET = b"test-secret-0123456789abcdef"
DIM = 16
NOW = 1_763_900_000  # 2025-11-23 12:13 UTC: 15:13 in Moscow


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(5)
    v = rng.standard_normal((50, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path) -> ProfileStore:
    return ProfileStore(tmp_path / "profile.db")


def purchase(item_id: int, ts: int, user: str = "u1", kind: str = "purchase") -> EventRow:
    return EventRow(user, "samokat", item_id, kind, ts, "b", 100.0, 1, "moscow", "ios")


def history(n: int, user: str = "u1") -> list[EventRow]:
    return [purchase(k % 50, NOW - (n - k) * 3600, user) for k in range(n)]


def privacy_loss_delta_monte_carlo(sigma: float, epsilon: float, sensitivity: float, samples: int) -> float:
    """δ(ε) = E_P[(1 − e^{ε − L})₊] with P = N(Δ, σ²), Q = N(0, σ²), L = log p/q: the tight δ, by sampling."""
    rng = np.random.default_rng(0)
    y = sensitivity + sigma * rng.standard_normal(samples)
    loss = (2 * y * sensitivity - sensitivity**2) / (2 * sigma**2)
    return float(np.maximum(0.0, 1.0 - np.exp(epsilon - loss)).mean())


# --- calibration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_analytic_sigma_is_the_smallest_that_meets_delta(epsilon, delta):
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity=2.0)
    assert analytic_gaussian_delta(sigma, epsilon, 2.0) <= delta
    assert analytic_gaussian_delta(sigma * 0.999, epsilon, 2.0) > delta
    assert analytic_gaussian_sigma(epsilon, delta, 1.0) == pytest.approx(sigma / 2.0, rel=1e-8)  # linear in Δ


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 0.9])
def test_analytic_calibration_beats_the_classic_bound_below_epsilon_one(epsilon):
    classic = classic_gaussian_sigma(epsilon, 1e-6, 1.0)
    assert classic == pytest.approx(math.sqrt(2 * math.log(1.25e6)) / epsilon)
    assert analytic_gaussian_sigma(epsilon, 1e-6, 1.0) < classic
    assert analytic_gaussian_delta(classic, epsilon, 1.0) <= 1e-6  # the classic σ is private, just loose


@pytest.mark.parametrize("epsilon, delta", [(0.5, 1e-2), (1.0, 1e-3), (2.0, 1e-3)])
def test_calibrated_delta_matches_a_monte_carlo_of_the_privacy_loss(epsilon, delta):
    sigma = analytic_gaussian_sigma(epsilon, delta, 1.0)
    estimate = privacy_loss_delta_monte_carlo(sigma, epsilon, 1.0, samples=2_000_000)
    assert estimate == pytest.approx(delta, rel=0.1)
    # and 20% less noise is measurably not (ε, δ)-DP
    assert privacy_loss_delta_monte_carlo(0.8 * sigma, epsilon, 1.0, samples=2_000_000) > 1.5 * delta


def test_classic_calibration_refuses_epsilon_one_or_more():
    with pytest.raises(ValueError, match="epsilon < 1"):
        classic_gaussian_sigma(1.0, 1e-6, 1.0)
    with pytest.raises(ValueError, match="calibration 'classic' needs a per-release epsilon < 1"):
        PrivacyConfig(calibration="classic", epsilon_per_window=1.0)
    assert PrivacyConfig(calibration="classic", epsilon_per_window=1.0, releases_per_window=2).sigma() == \
        pytest.approx(classic_gaussian_sigma(0.5, 5e-7, math.sqrt(2)))


@pytest.mark.parametrize("field, value, message", [
    ("epsilon_per_window", 0.0, r"epsilon_per_window must be in \(0, 50\]"),
    ("delta_per_window", 1.0, r"delta_per_window must be in \(0, 1\)"),
    ("releases_per_window", 0, "releases_per_window must be a positive int"),
    ("window_days", 1.5, "window_days must be a positive int"),
    ("clip_norm", -1.0, "clip_norm must be > 0"),
    ("calibration", "laplace", "calibration must be one of"),
    ("secret", b"short", "secret must be at least 16 bytes"),
])
def test_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        PrivacyConfig(**{field: value})


def test_per_release_cost_splits_the_window_budget_under_analytic_calibration():
    config = PrivacyConfig(epsilon_per_window=2.0, delta_per_window=1e-6, releases_per_window=4,
                           calibration="analytic")
    assert config.epsilon_per_release == 0.5 and config.delta_per_release == pytest.approx(2.5e-7)
    assert config.sensitivity == pytest.approx(math.sqrt(2))
    assert config.sigma() == pytest.approx(analytic_gaussian_sigma(0.5, 2.5e-7, math.sqrt(2)))


@pytest.mark.parametrize("epsilon, releases", [(1.0, 1), (2.0, 4), (0.5, 3)])
def test_rdp_calibration_spends_the_window_budget_on_exactly_its_releases(epsilon, releases):
    config = PrivacyConfig(epsilon_per_window=epsilon, delta_per_window=1e-6, releases_per_window=releases)
    z = config.noise_multiplier()
    assert z == rdp_noise_multiplier(epsilon, 1e-6, releases)
    spent = compose_epsilon([(z, 1.0, 1)] * releases, 1e-6)
    assert epsilon - 1e-3 <= spent <= epsilon
    assert compose_epsilon([(z, 1.0, 1)] * (releases + 1), 1e-6) > epsilon  # one more does not fit


def test_rdp_calibration_needs_less_noise_than_splitting_the_budget_for_several_releases():
    rdp = PrivacyConfig(epsilon_per_window=2.0, delta_per_window=1e-6, releases_per_window=4)
    split = PrivacyConfig(epsilon_per_window=2.0, delta_per_window=1e-6, releases_per_window=4,
                          calibration="analytic")
    assert rdp.sigma() < 0.6 * split.sigma()  # 6.74 vs 12.21 at Δ = √2


# --- composition through Opacus' accountant --------------------------------------------------------------------

def test_composed_epsilon_equals_opacus_rdp_accountant_stepped_through_the_same_history():
    from opacus.accountants import RDPAccountant

    history = [(4.0, 1.0, 1), (1.1, 0.05, 30), (4.0, 1.0, 1), (0.8, 0.2, 3)]
    accountant = RDPAccountant()
    for z, q, steps in history:
        for _ in range(steps):
            accountant.step(noise_multiplier=z, sample_rate=q)
    for delta in (1e-5, 1e-7):
        assert compose_epsilon(history, delta) == pytest.approx(accountant.get_epsilon(delta), rel=1e-12)
    assert compose_epsilon([], 1e-6) == 0 and compose_epsilon([(0.0, 1.0, 1)], 1e-6) == math.inf


@pytest.mark.parametrize("z", [1.0, 4.0, 20.0])
def test_k_releases_compose_to_less_than_k_single_releases(z):
    single = compose_epsilon([(z, 1.0, 1)], 1e-6)
    composed = [compose_epsilon([(z, 1.0, 1)] * k, 1e-6) for k in range(1, 9)]
    assert composed[0] == single
    for k, epsilon in enumerate(composed[1:], start=2):
        assert single < epsilon < k * single  # RDP composes sublinearly: the conversion's log(1/δ) is paid once
    assert all(a < b for a, b in zip(composed, composed[1:]))
    # the gain is largest where one release's ε is dominated by the δ term (much noise)
    assert composed[7] / (8 * single) < (0.5 if z >= 4 else 0.9)


def test_a_dp_sgd_run_is_charged_per_event_without_sampling_amplification():
    assert dp_sgd_event_mechanism(1.0, 12, 1) == (0.5, 1.0, 12)
    assert dp_sgd_event_mechanism(30.0, 4, 5) == (3.0, 1.0, 4)
    with pytest.raises(ValueError, match="examples_per_event >= 1"):
        dp_sgd_event_mechanism(1.0, 4, 0)


# --- clipping --------------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(0, 400)), min_size=1, max_size=12),
    st.integers(0, 11),
    st.floats(0.1, 5.0),
)
def test_one_event_moves_each_sum_by_at_most_the_clip(rows, drop, clip_norm):
    """Adversarial events (huge or tiny vectors, any age) cannot move either preference sum by more than C."""
    rng = np.random.default_rng(len(rows))
    vectors = rng.standard_normal((len(rows), 4)) * np.array([scale for scale, _ in rows])[:, None]
    ages = np.array([age for _, age in rows])
    config = PrivacyConfig(clip_norm=clip_norm)
    drop = drop % len(rows)
    keep = np.arange(len(rows)) != drop
    full = clipped_preference_sums(vectors, ages, config)
    without = clipped_preference_sums(vectors[keep], ages[keep], config)
    moved = np.linalg.norm(full - without, axis=1)
    assert np.all(moved <= clip_norm * (1 + 1e-9))
    assert np.linalg.norm(full - without) <= config.sensitivity * (1 + 1e-9)


def test_honest_unit_events_are_not_clipped_and_the_sums_match_the_raw_decay(vectors):
    ages = np.array([0.0, 7.0, 60.0])
    sums = clipped_preference_sums(vectors[:3], ages, PrivacyConfig())
    np.testing.assert_allclose(sums[0], (0.5 ** (ages / 60.0))[:, None].__mul__(vectors[:3]).sum(0), rtol=1e-6)
    np.testing.assert_allclose(sums[1], (0.5 ** (ages / 7.0))[:, None].__mul__(vectors[:3]).sum(0), rtol=1e-6)


def test_non_finite_vectors_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        clipped_preference_sums(np.array([[np.nan, 0.0]]), np.array([0.0]), PrivacyConfig())


# --- noise -----------------------------------------------------------------------------------------------------

def test_noise_is_reproducible_from_the_secret_and_distinct_per_release():
    draw = lambda secret=SECRET, user="u1", window=10, index=0: release_noise(secret, user, window, index, (2, DIM), 1.0)  # noqa: E731
    np.testing.assert_array_equal(draw(), draw())
    for other in (draw(secret=b"another-secret-0123456789"), draw(user="u2"), draw(window=11), draw(index=1)):
        assert not np.allclose(other, draw())


def test_empirical_noise_std_matches_sigma():
    sigma = PrivacyConfig().sigma()
    noise = np.concatenate([release_noise(SECRET, f"u{k}", 0, k % 3, (2, 128), sigma).ravel() for k in range(400)])
    assert noise.mean() == pytest.approx(0.0, abs=3 * sigma / math.sqrt(noise.size) * 2)
    assert noise.std() == pytest.approx(sigma, rel=0.01)  # 102,400 draws: the std's own error is ~0.2%


def test_a_release_is_the_normalized_noisy_clipped_sum(store, vectors):
    events = history(30)
    config = PrivacyConfig(secret=SECRET)
    outcome = release_preferences(store, "u1", events, vectors, NOW, config)
    assert outcome.status == "released"
    release = outcome.release
    ids = [e.item_id for e in events]
    ages = np.array([(NOW - e.timestamp) / DAY_S for e in events])
    sums = clipped_preference_sums(vectors[ids], ages, config)
    start, _ = window_bounds(NOW, config)
    expected = normalize_rows(sums + release_noise(SECRET, "u1", start, 0, sums.shape, config.sigma()))
    np.testing.assert_allclose(release.pref_long, expected[0], rtol=1e-6)
    np.testing.assert_allclose(release.pref_short, expected[1], rtol=1e-6)
    assert release.sigma == pytest.approx(config.sigma()) and release.clip_norm == 1.0
    stored = store.released_preferences_of("u1")
    np.testing.assert_array_equal(stored.pref_long, release.pref_long)
    assert stored._replace(pref_long=None, pref_short=None) == release._replace(pref_long=None, pref_short=None)


def test_the_database_secret_is_created_once_and_kept(store, tmp_path):
    secret = store.privacy_secret()
    assert len(secret) == 32
    assert ProfileStore(store.path).privacy_secret() == secret
    assert ProfileStore(store.path, read_only=True).privacy_secret() == secret
    other = ProfileStore(tmp_path / "other.db").privacy_secret()
    assert other != secret


# --- windows and the ledger ------------------------------------------------------------------------------------

def test_windows_start_at_moscow_midnight():
    start, end = window_bounds(NOW, PrivacyConfig())
    assert (start + 3 * 3600) % DAY_S == 0 and end - start == DAY_S and start <= NOW < end
    start3, end3 = window_bounds(NOW, PrivacyConfig(window_days=3))
    assert end3 - start3 == 3 * DAY_S and start3 <= NOW < end3


def test_releases_compose_in_the_ledger_and_an_exhausted_window_reserves_the_last_release(store, vectors):
    config = PrivacyConfig(epsilon_per_window=1.0, delta_per_window=1e-6, releases_per_window=4, secret=SECRET)
    start, end = window_bounds(NOW, config)
    z = config.noise_multiplier()
    releases = []
    for k in range(4):
        outcome = release_preferences(store, "u1", history(10 + k), vectors, NOW + k, config)
        assert outcome.status == "released" and outcome.release.release_index == k
        releases.append(outcome.release)
        (entry,) = store.privacy_ledger_of("u1")
        assert (entry.window_start, entry.window_end, entry.releases) == (start, end, k + 1)
        assert entry.epsilon_spent == compose_epsilon([(z, 1.0, 1)] * (k + 1), 1e-6)  # composed, not summed
        assert entry.delta_spent == 1e-6
        if k:
            assert entry.epsilon_spent < (k + 1) * outcome.release.epsilon
    assert releases[0].epsilon == compose_epsilon([(z, 1.0, 1)], 1e-6) and releases[0].delta == 1e-6
    assert store.mechanisms_of("u1") == [MechanismRun("u1", start, "preference_release", z, 1.0, 1, NOW + k)
                                         for k in range(4)]
    assert 1.0 - 1e-3 <= store.privacy_ledger_of("u1")[0].epsilon_spent <= 1.0
    exhausted = release_preferences(store, "u1", history(20), vectors, NOW + 10, config)
    assert exhausted.status == "budget_spent"
    np.testing.assert_array_equal(exhausted.release.pref_long, releases[-1].pref_long)
    assert store.privacy_ledger_of("u1")[0].releases == 4  # re-serving is free
    assert len(store.mechanisms_of("u1")) == 4
    assert store.released_preferences_of("u1").history_digest == history_digest(history(13))

    next_window = release_preferences(store, "u1", history(20), vectors, end + 60, config)
    assert next_window.status == "released" and next_window.release.release_index == 0
    assert [e.window_start for e in store.privacy_ledger_of("u1")] == [start, end]
    assert store.privacy_ledger_of("u1", end)[0].epsilon_spent == releases[0].epsilon


def test_an_adapter_update_after_releases_is_composed_into_the_same_window(store, vectors):
    config = PrivacyConfig(epsilon_per_window=2.0, delta_per_window=1e-6, releases_per_window=3, secret=SECRET)
    release = release_preferences(store, "u1", history(12), vectors, NOW, config).release
    z = config.noise_multiplier()
    entry = charge_adapter_update(store, "u1", NOW + 30, noise_multiplier=80.0, steps=4, examples_per_event=2,
                                  config=config)  # z 20 per event, 4 unsampled steps
    assert entry is not None and entry.releases == 1
    assert entry.epsilon_spent == compose_epsilon([(z, 1.0, 1), (20.0, 1.0, 4)], 1e-6)
    assert release.epsilon < entry.epsilon_spent < release.epsilon + compose_epsilon([(20.0, 1.0, 4)], 1e-6)
    assert store.privacy_ledger_of("u1") == [entry]
    assert [m.kind for m in store.mechanisms_of("u1")] == ["preference_release", "adapter_update"]
    second = release_preferences(store, "u1", history(13), vectors, NOW + 60, config)
    assert second.status == "released" and second.release.release_index == 1  # the release index ignores updates
    (final,) = store.privacy_ledger_of("u1")
    assert final.epsilon_spent == compose_epsilon([(z, 1.0, 1), (20.0, 1.0, 4), (z, 1.0, 1)], 1e-6) <= 2.0


def test_a_release_after_a_big_adapter_update_is_refused_and_reserves_the_last_release(store, vectors):
    config = PrivacyConfig(epsilon_per_window=1.0, delta_per_window=1e-6, releases_per_window=2, secret=SECRET)
    first = release_preferences(store, "u1", history(12), vectors, NOW, config).release
    assert charge_adapter_update(store, "u1", NOW + 1, noise_multiplier=40.0, steps=2, examples_per_event=1,
                                 config=config) is not None  # z 20 per event for 2 steps: ε ≈ 0.26 on its own
    ledger = store.privacy_ledger_of("u1")
    outcome = release_preferences(store, "u1", history(14), vectors, NOW + 2, config)
    assert outcome.status == "budget_spent"
    np.testing.assert_array_equal(outcome.release.pref_long, first.pref_long)
    assert store.privacy_ledger_of("u1") == ledger and len(store.mechanisms_of("u1")) == 2
    # and an update the budget cannot pay for is refused without a trace
    assert charge_adapter_update(store, "u1", NOW + 3, 1.0, 50, 4, config) is None
    assert store.privacy_ledger_of("u1") == ledger and len(store.mechanisms_of("u1")) == 2


def test_forget_user_removes_the_recorded_mechanisms(store, vectors):
    from recllm.dialogue.session_store import SessionStore

    config = PrivacyConfig(secret=SECRET, releases_per_window=2, epsilon_per_window=3.0)
    for user in ("u1", "u2"):
        release_preferences(store, user, history(12, user=user), vectors, NOW, config)
        charge_adapter_update(store, user, NOW, 60.0, 2, 2, config)
    removed = forget_user(store, SessionStore(store.path.parent / "sessions.db"), "u1")
    assert removed["privacy_mechanisms"] == 2 and removed["privacy_ledger"] == 1
    assert store.mechanisms_of("u1") == [] and len(store.mechanisms_of("u2")) == 2


def test_a_window_charged_before_mechanisms_were_recorded_counts_as_spent(store, vectors):
    config = PrivacyConfig(secret=SECRET, releases_per_window=4)
    start, end = window_bounds(NOW, config)
    with store.connection() as conn:  # a ledger row written by the old basic-composition code
        conn.execute("INSERT INTO privacy_ledger VALUES ('u1', ?, ?, 0.25, 2.5e-7, 1)", (start, end))
    assert release_preferences(store, "u1", history(12), vectors, NOW, config).status == "budget_spent"
    assert charge_adapter_update(store, "u1", NOW, 100.0, 1, 1, config) is None
    assert store.mechanisms_of("u1") == []


def test_unchanged_history_reserves_the_release_without_a_charge(store, vectors):
    config = PrivacyConfig(secret=SECRET)
    first = release_preferences(store, "u1", history(12), vectors, NOW, config)
    again = release_preferences(store, "u1", history(12) + [purchase(3, NOW, kind="view")], vectors, NOW + 5, config)
    assert again.status == "unchanged"
    np.testing.assert_array_equal(again.release.pref_short, first.release.pref_short)
    assert store.privacy_ledger_of("u1")[0].releases == 1


def test_the_ledger_is_per_user(store, vectors):
    config = PrivacyConfig(secret=SECRET)
    release_preferences(store, "u1", history(12), vectors, NOW, config)
    outcome = release_preferences(store, "u2", history(12, user="u2"), vectors, NOW, config)
    assert outcome.status == "released"
    assert [e.releases for e in store.privacy_ledger_of("u1")] == [1]
    assert [e.releases for e in store.privacy_ledger_of("u2")] == [1]
    assert not np.allclose(outcome.release.pref_long, store.released_preferences_of("u1").pref_long)


def test_a_stale_release_index_is_refused_so_concurrent_writers_cannot_double_spend(store, vectors):
    config = PrivacyConfig(releases_per_window=2, secret=SECRET)
    first = release_preferences(store, "u1", history(12), vectors, NOW, config).release
    start, end = window_bounds(NOW, config)
    racing_writer = ProfileStore(store.path)  # its own connection, as another ingest thread would have
    run = MechanismRun("u1", start, "preference_release", config.noise_multiplier(), 1.0, 1, NOW)

    def commit(release):
        return racing_writer.charge_mechanism(run, end, 1.0, 1e-6, compose_epsilon, release) is not None

    assert not commit(first._replace(history_digest="x"))  # index 0 is taken
    assert commit(first._replace(release_index=1, history_digest="x"))
    assert not commit(first._replace(release_index=2, history_digest="y"))
    assert store.privacy_ledger_of("u1")[0].releases == 2 and len(store.mechanisms_of("u1")) == 2


def test_a_user_without_purchases_has_no_release_and_loses_an_old_one(store, vectors):
    config = PrivacyConfig(secret=SECRET)
    assert release_preferences(store, "u1", [purchase(1, NOW, kind="view")], vectors, NOW, config).status == \
        "no_purchases"
    release_preferences(store, "u1", history(5), vectors, NOW, config)
    assert store.released_preferences_of("u1") is not None
    assert release_preferences(store, "u1", [], vectors, NOW, config).release is None
    assert store.released_preferences_of("u1") is None


def test_read_only_store_without_release_tables_reads_as_no_release(tmp_path):
    import sqlite3  # noqa: PLC0415

    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE events (user_id TEXT)").connection.commit()
    assert ProfileStore(path, read_only=True).released_preferences_of("u1") is None
