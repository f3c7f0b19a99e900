import numpy as np
import pytest

from builders.build_artifacts import fill_profile
from recllm.profile.differential_privacy import PrivacyConfig
from recllm.profile.refresh import RefreshConfig, refresh_all_profiles
from recllm.profile.sqlite_store import ProfileStore
from recllm.user_layers.user_vector import (
    Demographics, SegmentModel, UserVectorBuilder, UserVectorConfig, kmeans, temporal_counts,
)


@pytest.fixture(scope="module")
def profile(tmp_path_factory, ecosystem, random_item_vectors):
    store = fill_profile(ProfileStore(tmp_path_factory.mktemp("uv") / "profile.db"), ecosystem)
    refresh_all_profiles(store, ecosystem.catalog, random_item_vectors, store.latest_timestamp(),
                         RefreshConfig(privacy=PrivacyConfig(secret=b"user-vector-test-secret-0123456")))
    return store


@pytest.fixture(scope="module")
def builder(profile, ecosystem, random_item_vectors):
    builder = UserVectorBuilder(UserVectorConfig(pref_dim=16, n_segments=3), profile, ecosystem.catalog,
                                random_item_vectors)
    builder.fit_segments(profile.user_ids())
    return builder


def test_layout_and_sources(builder, profile, ecosystem):
    config = builder.config
    s = config.slices()
    warm = max(profile.user_ids(), key=lambda u: len(profile.events_of(u, kind="purchase")))
    u, segment = builder.vector(warm)
    assert u.shape == (config.dim,) and u.dtype == np.float32 and 0 <= segment < 3
    release = profile.released_preferences_of(warm)
    np.testing.assert_allclose(u[s["pref_long"]], release.pref_long, rtol=1e-6)  # the DP release, not raw
    seed = ecosystem.user(warm)
    assert u[s["age_band"]].tolist() == [float(b == seed.age_band) for b in config.age_bands]
    assert u[s["region"]].sum() == 1.0
    assert u[s["day_parts"]].sum() == pytest.approx(1.0) and 0 <= u[s["weekend"]][0] <= 1
    assert u[s["service_share"]].sum() == pytest.approx(1.0)


def test_style_part_reads_the_users_style_requests(builder, profile):
    s = builder.config.slices()
    styled = {}
    for user in profile.user_ids():
        kinds = {e.kind for e in profile.events_of(user, kind=("feedback_style_detailed", "feedback_style_short"))}
        if len(kinds) == 1:
            styled.setdefault(kinds.pop(), user)
    assert set(styled) == {"feedback_style_detailed", "feedback_style_short"}  # the ecosystem has both
    assert builder.vector(styled["feedback_style_detailed"])[0][s["style"]][:2].tolist() == [1.0, 0.0]
    assert builder.vector(styled["feedback_style_short"])[0][s["style"]][:2].tolist() == [0.0, 1.0]
    plain = next(u for u in profile.user_ids() if profile.events_of(u, kind="purchase") and not profile.events_of(
        u, kind=("feedback_style_detailed", "feedback_style_short", "feedback_explain")))
    assert builder.vector(plain)[0][s["style"]].tolist() == [0.0, 0.0, 0.0]


def test_cold_user_gets_its_segment_vector_with_its_demographics(builder, ecosystem):
    cold = next(u.user_id for u in ecosystem.users if not ecosystem.events_of(u.user_id))
    u, segment = builder.vector(cold)
    s = builder.config.slices()
    centroid = builder.segments.centroids[segment]
    np.testing.assert_allclose(u[s["pref_long"]], centroid[s["pref_long"]])
    assert u[s["age_band"]].tolist() == [float(b == ecosystem.user(cold).age_band) for b in builder.config.age_bands]


def test_segments_are_deterministic_and_serialise(builder, profile, tmp_path):
    again = SegmentModel.fit(np.stack([builder.raw_vector(u)[0] for u in profile.user_ids()
                                       if not builder.raw_vector(u)[1]]), builder.config)
    np.testing.assert_array_equal(again.centroids, builder.segments.centroids)
    builder.segments.save(tmp_path / "segments.json")
    loaded = SegmentModel.load(tmp_path / "segments.json")
    np.testing.assert_allclose(loaded.centroids, builder.segments.centroids)
    assert sum(loaded.counts) > 0


def test_temporal_counts_and_kmeans_basics():
    hours, weekdays = temporal_counts([0, 3600 * 5], offset_s=3 * 3600)  # 03:00 and 08:00 Thursday local
    assert hours[3] == 1 and hours[8] == 1 and weekdays[3] == 2
    points = np.concatenate([np.zeros((5, 2)), np.ones((5, 2)) * 10])
    centroids = kmeans(points, 2, 10, seed=0)
    assert sorted(centroids[:, 0].round().tolist()) == [0.0, 10.0]


def test_config_validation(random_item_vectors, profile, ecosystem):
    with pytest.raises(ValueError, match="n_segments"):
        UserVectorConfig(n_segments=0)
    with pytest.raises(ValueError, match="pref_dim=8"):
        UserVectorBuilder(UserVectorConfig(pref_dim=8), profile, ecosystem.catalog, random_item_vectors,
                          demographics={"x": Demographics()})
