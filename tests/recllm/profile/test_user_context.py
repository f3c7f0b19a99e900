"""UserContext: the user's profile read once per request, passed between stages (also as bytes between models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.profile.events import Event
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.user_context import (CONTEXT_FORMAT_VERSION, MAX_CONTEXT_BYTES, DecodedBodies, UserContext,
                                       UserContextCache,
                                       UserContextError, read_user_context)
from recllm.profile.user_signals import compute_user_signals


class CountingStore:
    """The profile storage with every read counted (what the request spine promises to bound)."""

    def __init__(self, store):
        self.store, self.calls = store, []

    def __getattr__(self, name):
        method = getattr(self.store, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return counted


@pytest.fixture(scope="module")
def heavy_user(ecosystem) -> str:
    counts = {}
    for event in ecosystem.events:
        if event.kind == "purchase":
            counts[event.user_id] = counts.get(event.user_id, 0) + 1
    return max(counts, key=counts.get)


def test_reads_the_profile_once_with_the_store_clock(profile_store, catalog, item_vectors, heavy_user):
    store = CountingStore(profile_store)
    context = read_user_context(store, catalog, item_vectors, heavy_user)
    assert sorted(store.calls) == ["events_of", "fragments_of", "latest_timestamp", "released_preferences_of"]
    assert context.now_ts == profile_store.latest_timestamp()
    assert context.purchases == profile_store.events_of(heavy_user, kind="purchase")
    assert [f.fragment_key for f in context.fragments] == [f.fragment_key for f in profile_store.fragments_of(heavy_user)]
    assert context.fragments
    raw = compute_user_signals(heavy_user, context.purchases, catalog, item_vectors, context.now_ts)
    assert context.signals.category_counts == raw.category_counts and context.signals.num_purchases > 0


def test_the_read_is_bounded_to_the_newest_events(profile_store, catalog, item_vectors, heavy_user):
    everything = profile_store.events_of(heavy_user, kind="purchase")
    assert len(everything) > 4
    context = read_user_context(profile_store, catalog, item_vectors, heavy_user, max_events=4)
    assert context.purchases == everything[-4:] and context.signals.num_purchases == 4
    with pytest.raises(ValueError, match="max_events"):
        read_user_context(profile_store, catalog, item_vectors, heavy_user, max_events=0)


def test_released_vectors_replace_the_raw_ones(profile_store, catalog, item_vectors, heavy_user):
    released = read_user_context(profile_store, catalog, item_vectors, heavy_user, "released")
    raw = read_user_context(profile_store, catalog, item_vectors, heavy_user, "raw")
    release = profile_store.released_preferences_of(heavy_user)
    if release is None:
        assert released.signals.pref_long is None
    else:
        np.testing.assert_array_equal(released.signals.pref_long, release.pref_long)
    assert raw.signals.pref_long is not None


def test_bytes_round_trip_keeps_what_the_later_stages_read(profile_store, catalog, item_vectors, heavy_user):
    context = read_user_context(profile_store, catalog, item_vectors, heavy_user, "raw")
    back = UserContext.from_bytes(context.to_bytes(), heavy_user)
    assert back.user_id == context.user_id and back.now_ts == context.now_ts
    assert back.purchases == context.purchases
    assert [tuple(map(type, e)) for e in back.purchases] == [tuple(map(type, e)) for e in context.purchases]
    for name in ("category_counts", "service_category_counts", "family_counts", "brand_counts", "tag_counts",
                 "family_last_ts", "median_price", "last_ts", "num_purchases"):
        assert getattr(back.signals, name) == getattr(context.signals, name), name
    np.testing.assert_array_equal(back.signals.pref_long, context.signals.pref_long)
    assert back.feedback == context.feedback
    # the fragments are the retriever's alone (it sends PROFILE_FACTS): they do not travel
    assert context.fragments and back.fragments == []
    assert b"fragment" not in context.to_bytes()


def test_cold_user_round_trips(profile_store, catalog, item_vectors):
    context = read_user_context(profile_store, catalog, item_vectors, "u_never_seen")
    back = UserContext.from_bytes(context.to_bytes(), "u_never_seen")
    assert back.signals.is_cold and back.purchases == [] and back.fragments == []


def test_another_users_context_is_refused(profile_store, catalog, item_vectors, heavy_user):
    data = read_user_context(profile_store, catalog, item_vectors, heavy_user).to_bytes()
    with pytest.raises(UserContextError, match="another user"):
        UserContext.from_bytes(data, "u_someone_else")


HEADER = json.dumps({"version": CONTEXT_FORMAT_VERSION, "user_id": "u1", "now_ts": 0}).encode()


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", json.dumps({"version": 99}).encode(),
                                  json.dumps({"version": 1, "user_id": "u1"}).encode(), b"\xff\xfe", HEADER,
                                  HEADER + b"\n", HEADER + b"\n[]", b"{}\n{}"] + [
                                      HEADER + b"\n" + json.dumps({"purchases": purchases, "signals": {},
                                                                   "feedback": {}}).encode()
                                      for purchases in ({}, {"item_id": "AAAA"}, [1, 2])])
@pytest.mark.parametrize("bodies", [None, "decoded"])
def test_malformed_bytes_get_a_clear_error(data, bodies):
    with pytest.raises(UserContextError):
        UserContext.from_bytes(data, "u1", DecodedBodies() if bodies else None)


def test_oversized_bytes_are_refused():
    with pytest.raises(UserContextError, match="oversized"):
        UserContext.from_bytes(b" " * (MAX_CONTEXT_BYTES + 1), "u1")


def test_purchase_columns_that_do_not_fit_are_malformed(profile_store, catalog, item_vectors, heavy_user):
    head, _, body = read_user_context(profile_store, catalog, item_vectors, heavy_user).to_bytes().partition(b"\n")
    raw = json.loads(body)
    short_values = json.loads(json.dumps(raw))
    short_values["purchases"]["service"]["values"] = []  # every index points past the distinct values
    short_column = json.loads(json.dumps(raw))
    short_column["purchases"]["price"] = short_column["purchases"]["price"][:8]  # one price fewer (8 base64 = 6 B)
    for broken in (short_values, short_column):
        with pytest.raises(UserContextError, match="malformed"):
            UserContext.from_bytes(head + b"\n" + json.dumps(broken).encode(), heavy_user)


def test_decoded_bodies_are_reused_for_the_same_bytes_and_only_for_their_user(profile_store, catalog, item_vectors,
                                                                              heavy_user):
    context = read_user_context(profile_store, catalog, item_vectors, heavy_user)
    bodies = DecodedBodies(max_bodies=1)
    first = UserContext.from_bytes(context.to_bytes(), heavy_user, bodies)
    context.now_ts += 60  # a later request: the clock moved, the body did not
    later = UserContext.from_bytes(context.to_bytes(), heavy_user, bodies)
    assert (bodies.hits, bodies.misses) == (1, 1) and later.purchases is first.purchases
    assert later.now_ts == first.now_ts + 60 and later.signals == first.signals
    with pytest.raises(UserContextError, match="another user"):
        UserContext.from_bytes(context.to_bytes().replace(heavy_user.encode(), b"u_other", 1), "u_other", bodies)
    cold = read_user_context(profile_store, catalog, item_vectors, "u_never_seen")
    UserContext.from_bytes(cold.to_bytes(), "u_never_seen", bodies)
    assert len(bodies) == 1  # the oldest body made room
    with pytest.raises(ValueError, match="max_bodies"):
        DecodedBodies(max_bodies=0)
    with pytest.raises(ValueError, match="max_bytes"):
        DecodedBodies(max_bytes=0)


def test_decoded_bodies_keep_to_their_byte_budget(profile_store, catalog, item_vectors, heavy_user):
    """A count bound alone let the kept bodies grow with the users' histories (the soak's reply stubs grew ~15 MB a
    minute): the bodies kept stay under ``max_bytes`` of encoded body, the newest one always kept."""
    users = [heavy_user, *[u for u in profile_store.user_ids() if u != heavy_user][:5]]
    contexts = {u: read_user_context(profile_store, catalog, item_vectors, u) for u in users}
    bodies_of = {u: c.to_bytes() for u, c in contexts.items()}
    budget = 3 * max(len(c.body_bytes()) for c in contexts.values())
    bodies = DecodedBodies(max_bodies=100, max_bytes=budget)
    for user in users:
        UserContext.from_bytes(bodies_of[user], user, bodies)
        assert bodies.kept_bytes <= budget
    assert 3 <= len(bodies) < len(users) and bodies.misses == len(users)
    UserContext.from_bytes(bodies_of[users[-1]], users[-1], bodies)  # the newest is still there
    assert bodies.hits == 1
    tiny = DecodedBodies(max_bytes=1)  # smaller than any body: the newest one is still kept
    UserContext.from_bytes(bodies_of[heavy_user], heavy_user, tiny)
    assert len(tiny) == 1 and tiny.kept_bytes > 1


@pytest.fixture()
def writable_store(profile_store, tmp_path):
    """A private copy of the session's profile (SQLite backup): these tests write to it."""
    copy = ProfileStore(tmp_path / "profile.db")
    profile_store.connection().backup(copy.connection())
    return copy


def newer_purchase(store, user_id: str, item_id: int) -> Event:
    return Event(user_id, "kuper", item_id, "purchase", store.latest_timestamp() + 60, "b-new", 10.0, 1, "moscow",
                 "web")


def same_view(a: UserContext, b: UserContext) -> bool:
    return a.to_bytes() == b.to_bytes() and [f.fragment_key for f in a.fragments] == [f.fragment_key for f in b.fragments]


def test_cache_reads_the_profile_once_until_the_user_changes(writable_store, catalog, item_vectors, heavy_user):
    store = CountingStore(writable_store)
    cache = UserContextCache(store, catalog, item_vectors)
    first = cache.read(heavy_user)
    assert same_view(first, read_user_context(writable_store, catalog, item_vectors, heavy_user))
    store.calls.clear()
    again = cache.read(heavy_user)
    assert sorted(store.calls) == ["latest_timestamp", "user_version"] and same_view(again, first)
    assert again.body_bytes() is first.body_bytes()  # encoded once per version for the stages after the retriever
    assert (cache.hits, cache.misses) == (1, 1)

    writable_store.add_events([newer_purchase(writable_store, heavy_user, item_id=7)])
    after = cache.read(heavy_user)
    assert after.purchases[-1].item_id == 7 and len(after.purchases) == len(first.purchases) + 1
    assert after.now_ts == writable_store.latest_timestamp() > first.now_ts
    assert same_view(after, read_user_context(writable_store, catalog, item_vectors, heavy_user))


def test_another_users_write_moves_only_the_clock(writable_store, catalog, item_vectors, heavy_user, ecosystem):
    cache = UserContextCache(writable_store, catalog, item_vectors)
    first = cache.read(heavy_user)
    other = next(u.user_id for u in ecosystem.users if u.user_id != heavy_user)
    writable_store.add_events([newer_purchase(writable_store, other, item_id=3)])
    again = cache.read(heavy_user)
    assert cache.hits == 1 and again.now_ts == writable_store.latest_timestamp() > first.now_ts
    assert again.purchases == first.purchases
    assert same_view(again, read_user_context(writable_store, catalog, item_vectors, heavy_user))


def test_refreshed_fragments_and_release_are_read_again(writable_store, catalog, item_vectors, heavy_user):
    cache = UserContextCache(writable_store, catalog, item_vectors)
    first = cache.read(heavy_user)
    assert first.fragments and first.signals.pref_long is not None
    writable_store.replace_fragments(heavy_user, first.fragments[:1])
    assert [f.fragment_key for f in cache.read(heavy_user).fragments] == [first.fragments[0].fragment_key]
    writable_store.delete_released_preferences(heavy_user)
    assert cache.read(heavy_user).signals.pref_long is None
    assert cache.hits == 0


def test_a_forgotten_user_is_never_served_from_the_cache(writable_store, catalog, item_vectors, heavy_user):
    cache = UserContextCache(writable_store, catalog, item_vectors)
    assert cache.read(heavy_user).purchases
    writable_store.forget_user(heavy_user)
    forgotten = cache.read(heavy_user)
    assert forgotten.purchases == [] and forgotten.fragments == [] and forgotten.signals.is_cold
    assert heavy_user not in cache._kept and cache.hits == 0


def test_a_store_without_versions_is_read_every_time(tmp_path, catalog, item_vectors, heavy_user, profile_store):
    """A file written before the versions, opened read-only (as serving does): nothing can be cached safely."""
    import sqlite3
    path = tmp_path / "old.db"
    profile_store.connection().backup(sqlite3.connect(path))
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TABLE user_versions; DROP TABLE profile_version_seq;")
    store = CountingStore(ProfileStore(path, read_only=True))
    cache = UserContextCache(store, catalog, item_vectors)
    first, again = cache.read(heavy_user), cache.read(heavy_user)
    assert store.calls.count("events_of") == 2 and len(cache) == 0 and same_view(first, again)


def test_the_cache_keeps_the_most_recently_read_users(writable_store, catalog, item_vectors, ecosystem):
    users = [u.user_id for u in ecosystem.users if writable_store.user_version(u.user_id) is not None][:3]
    assert len(users) == 3
    cache = UserContextCache(writable_store, catalog, item_vectors, max_users=2)
    for user in users:
        cache.read(user)
    assert list(cache._kept) == users[1:]
    cache.read(users[1])
    assert cache.hits == 1 and list(cache._kept) == [users[2], users[1]]
    off = UserContextCache(writable_store, catalog, item_vectors, max_users=0)
    off.read(users[0]), off.read(users[0])
    assert off.hits == 0 and len(off) == 0
    with pytest.raises(ValueError, match="max_users"):
        UserContextCache(writable_store, catalog, item_vectors, max_users=-1)


def test_the_cache_keeps_to_its_event_budget(writable_store, catalog, item_vectors, ecosystem):
    """A kept context grows with the user's history: the kept purchases together stay under ``max_kept_events``,
    and a re-read user's old copy stops counting."""
    users = [u.user_id for u in ecosystem.users if writable_store.user_version(u.user_id) is not None][:6]
    sizes = {u: len(read_user_context(writable_store, catalog, item_vectors, u).purchases) for u in users}
    budget = 2 * max(sizes.values())
    cache = UserContextCache(writable_store, catalog, item_vectors, max_kept_events=budget)
    for user in users:
        cache.read(user)
        assert cache.kept_events <= budget and cache.kept_events == sum(sizes[u] for u in cache._kept)
    assert 2 <= len(cache) < len(users) and list(cache._kept)[-1] == users[-1]
    tiny = UserContextCache(writable_store, catalog, item_vectors, max_kept_events=1)
    tiny.read(users[0]), tiny.read(users[1])
    assert list(tiny._kept) == [users[1]]  # the newest is kept whatever its size
    with pytest.raises(ValueError, match="max_kept_events"):
        UserContextCache(writable_store, catalog, item_vectors, max_kept_events=0)
