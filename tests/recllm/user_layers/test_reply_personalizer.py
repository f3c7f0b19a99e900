"""The served generator's user layers on the session's test build: per-row user layers in one decode batch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from recllm.catalog.product_catalog import Catalog
from recllm.generator import ReplyRequest, build_prompt
from recllm.pipeline import USER_LAYERS_ENV, load_generation_stage
from recllm.profile.sqlite_store import ProfileStore
from recllm.user_layers.adapter_store import user_adapter_name
from recllm.user_layers.lora_adapter import random_adapter
from recllm.user_layers.reply_personalizer import PersonalizerConfig, UserVectorCache

QUERY = "что приготовить на ужин, чтобы было полезно?"


@pytest.fixture(scope="module")
def stage(test_artifacts):
    return load_generation_stage(test_artifacts, user_layers=True)


@pytest.fixture(scope="module")
def users(test_artifacts):
    store = ProfileStore(test_artifacts.profile_db, read_only=True)
    return [u for u in store.user_ids() if store.events_of(u, kind="purchase")][:4]


@pytest.fixture(scope="module")
def items(test_artifacts):
    return [item.item_id for item in Catalog.load_jsonl(test_artifacts.catalog).in_service("samokat")][:4]


def request(items, user_id):
    prompt = build_prompt("samokat", "ru", QUERY, ["вы часто берёте кефир"], "recommend")
    return ReplyRequest(prompt, tuple(items), user_id=user_id)


def test_the_build_s_user_layers_are_served(stage):
    assert stage.generator.personalizer is not None


def test_each_row_of_a_mixed_batch_equals_that_user_alone(stage, users, items):
    generator = stage.generator
    rows = [users[0], None, users[1], users[2]]
    batched = generator.generate_batch([request(items, u) for u in rows], stage.item_name)
    for user, reply in zip(rows, batched):
        alone = generator.generate_batch([request(items, user)], stage.item_name)[0]
        assert reply.token_ids == alone.token_ids


def test_a_row_without_a_user_is_the_base_model(stage, users, items):
    generator = stage.generator
    with_layers = generator.generate_batch([request(items, users[0]), request(items, None)], stage.item_name)
    personalizer, generator.personalizer = generator.personalizer, None
    try:
        base = generator.generate_batch([request(items, None)], stage.item_name)[0]
    finally:
        generator.personalizer = personalizer
    assert with_layers[1].token_ids == base.token_ids


def test_user_layers_change_the_logits_per_user(stage, users):
    personalizer = stage.generator.personalizer
    tokens = torch.randint(10, 100, (1, 12), generator=torch.Generator().manual_seed(0)).repeat(3, 1)
    with torch.inference_mode():
        base = personalizer.adaptive(tokens)
        personal = personalizer.adaptive.base(tokens, layer_context=personalizer.layer_context(
            [users[0], users[1], None]))
    assert not torch.allclose(personal[0], base[0], atol=1e-5)
    assert not torch.allclose(personal[0], personal[1], atol=1e-5)
    torch.testing.assert_close(personal[2], base[2])  # no user: exactly the base model


def test_adapters_follow_the_policy_user_then_gated_segments(stage, users, test_artifacts):
    personalizer = stage.generator.personalizer
    batch = personalizer.user_batch([users[0], None])
    k = personalizer.adaptive.config.gate_top_k
    assert batch.lora_indices.shape == (2, k)
    assert (batch.lora_indices[0] >= 0).all() and torch.isclose(batch.mix_weights[0].sum(), torch.tensor(1.0))
    assert (batch.lora_indices[1] == -1).all() and bool(batch.has_user[0]) and not bool(batch.has_user[1])
    store = personalizer.store
    now = int(personalizer.profile.latest_timestamp())
    config = personalizer.adaptive.base.config
    fresh = random_adapter(config, user_adapter_name(users[1]), rank=4, seed=3, trained_at=now, num_events=500)
    store.register(fresh)
    try:
        batch = personalizer.user_batch([users[0], users[1]])
        assert int(batch.lora_indices[1, 0]) == store.active()[fresh.name]
        assert batch.mix_weights[1].tolist() == [1.0] + [0.0] * (k - 1)
        stale = random_adapter(config, fresh.name, rank=4, seed=3, trained_at=now - 10 ** 9, num_events=500)
        store.register(stale)
        batch = personalizer.user_batch([users[1]])
        assert all(store.active().get(fresh.name) != int(i) for i in batch.lora_indices[0])
    finally:
        store.registered.pop(fresh.name, None)


def test_u_is_read_once_per_ttl(stage, users):
    vectors = stage.generator.personalizer.cache.vectors
    cache = UserVectorCache(vectors, ttl_s=3600, max_users=2)
    u0, segment = cache.get(users[0])
    again, _ = cache.get(users[0])
    assert cache.reads == 1 and (u0 == again).all()
    assert u0.shape == (vectors.config.dim,) and 0 <= segment < len(vectors.segments.centroids)
    cache.get(users[1])
    cache.get(users[2])  # evicts users[0] (max_users=2)
    cache.get(users[0])
    assert cache.reads == 4
    expired = UserVectorCache(vectors, ttl_s=0, max_users=2)
    expired.get(users[0])
    expired.get(users[0])
    assert expired.reads == 2


def test_u_comes_from_the_retriever_s_context_without_a_second_profile_read(stage, users, test_artifacts):
    from recllm.pipeline import load_retriever

    retriever = load_retriever(test_artifacts)
    contexts = [retriever.read_context(u) for u in users[:2]]
    vectors = stage.generator.personalizer.cache.vectors
    cache = UserVectorCache(vectors, ttl_s=3600, max_users=8)
    for user, context in zip(users, contexts):
        u, segment = cache.get(user, context)
        expected, expected_segment = vectors.vector(user)  # a read of its own
        assert np.array_equal(u, expected) and segment == expected_segment
    assert cache.reads == 0
    with pytest.raises(ValueError, match="another user"):
        vectors.vector(users[1], contexts[0])
    # a turn's own context wins over the kept u: the style the user asked for a turn ago shows at once
    from dataclasses import replace

    asked = replace(contexts[0], feedback=replace(contexts[0].feedback, style="detailed", explain_requests=9))
    u_asked, _ = cache.get(users[0], asked)
    assert not np.array_equal(u_asked, u_plain := cache.get(users[0], contexts[0])[0])
    assert np.array_equal(cache.get(users[0])[0], u_plain)  # kept for a request without a context
    assert cache.reads == 0
    personalizer = stage.generator.personalizer
    reads = personalizer.cache.reads
    fresh = [u for u in users[2:4]]
    personalizer.cache.forget(fresh[0])
    batch = personalizer.user_batch([fresh[0], None], [retriever.read_context(fresh[0]), None])
    assert personalizer.cache.reads == reads and np.array_equal(batch.user_vectors[0].numpy(),
                                                                 vectors.vector(fresh[0])[0])


def test_beam_search_applies_the_user_s_layers_to_every_beam(stage, users, items, monkeypatch):
    generator = stage.generator
    asked = []
    real = generator.personalizer.layer_context
    monkeypatch.setattr(generator.personalizer, "layer_context",
                        lambda ids, contexts=None: asked.append(list(ids)) or real(ids, contexts))
    for user in users[:2]:
        greedy = generator.generate_batch([request(items, user)], stage.item_name)[0]
        beam = generator.beam_search(request(items, user).prompt, tuple(items), stage.item_name, beam_width=1,
                                     max_new_tokens=generator.config.max_new_tokens, user_id=user)
        assert beam.token_ids[:len(greedy.token_ids)] == greedy.token_ids[:len(beam.token_ids)]
        wide = generator.beam_search(request(items, user).prompt, tuple(items), stage.item_name, beam_width=3,
                                     user_id=user)
        assert set(wide.item_ids) <= set(items) and len(set(wide.item_ids)) == len(wide.item_ids)
    assert asked == [rows for user in users[:2] for rows in ([user], [user], [user] * 3)]


def test_switches_and_foreign_checkpoints(test_artifacts, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv(USER_LAYERS_ENV, "off")
    assert load_generation_stage(test_artifacts).generator.personalizer is None
    monkeypatch.delenv(USER_LAYERS_ENV)
    import shutil

    other = tmp_path / "generator"
    shutil.copytree(test_artifacts.generator_dir, other)
    with caplog.at_level(logging.WARNING):
        stage = load_generation_stage(test_artifacts, generator_dir=other)
    assert stage.generator.personalizer is None and "serving without them" in caplog.text
    with pytest.raises(ValueError, match="vector_ttl_s"):
        PersonalizerConfig(vector_ttl_s=-1)
    with pytest.raises(ValueError, match="adapter_rescan_s"):
        PersonalizerConfig(adapter_rescan_s=-1)


def test_adapters_a_refresh_writes_or_removes_are_served_without_a_restart(test_artifacts, users, tmp_path):
    """`recllm refresh-adapters` rewrites the adapters folder under a running server: the personalizer re-reads it
    every ``adapter_rescan_s``; a user whose adapter appears gets it alone (weight 1), one whose adapter is removed
    falls back to the gate's segment mixture."""
    import shutil
    import time

    from recllm.artifacts import ArtifactLayout
    from recllm.user_layers.adapter_store import save_adapter

    layout = ArtifactLayout(tmp_path / "build")
    shutil.copytree(test_artifacts.root, layout.root)
    personalizer = load_generation_stage(layout, user_layers=True).generator.personalizer
    user = next(u for u in users if not (layout.user_layers_dir / "adapters" / f"user-{u}").exists())
    k = personalizer.adaptive.config.gate_top_k
    assert personalizer.user_batch([user]).mix_weights[0].tolist() != [1.0] + [0.0] * (k - 1)  # the mixture
    now = int(personalizer.profile.latest_timestamp())
    fresh = random_adapter(personalizer.adaptive.base.config, user_adapter_name(user), rank=4, seed=5,
                           trained_at=now, num_events=500)
    folder = save_adapter(fresh, layout.user_layers_dir / "adapters" / f"user-{user}")
    assert fresh.name not in personalizer.store.registered  # not yet re-read (every 30 s by default)
    personalizer.config = PersonalizerConfig(adapter_rescan_s=0.05)
    assert personalizer.rescan_adapters() == ([fresh.name], [])  # the next periodic re-read: 0.05 s from now
    batch = personalizer.user_batch([user])
    assert batch.mix_weights[0].tolist() == [1.0] + [0.0] * (k - 1)
    assert int(batch.lora_indices[0, 0]) == personalizer.store.active()[fresh.name]
    shutil.rmtree(folder)
    time.sleep(0.1)
    batch = personalizer.user_batch([user])  # the periodic re-read saw the folder go
    assert fresh.name not in personalizer.store.registered
    assert batch.mix_weights[0].tolist() != [1.0] + [0.0] * (k - 1) and (batch.lora_indices[0] >= 0).all()


def test_an_adapter_removed_before_the_next_rescan_falls_back_instead_of_failing_the_batch(test_artifacts, users,
                                                                                            tmp_path):
    """Review: a refresh that demotes a user removes their folder; until the next rescan the store still lists it,
    and loading it failed the whole decode batch. The row gets the segment mixture and the adapter is dropped."""
    import shutil

    from recllm.artifacts import ArtifactLayout
    from recllm.user_layers.adapter_store import save_adapter

    layout = ArtifactLayout(tmp_path / "build")
    shutil.copytree(test_artifacts.root, layout.root)
    personalizer = load_generation_stage(layout, user_layers=True).generator.personalizer
    user = next(u for u in users if not (layout.user_layers_dir / "adapters" / f"user-{u}").exists())
    now = int(personalizer.profile.latest_timestamp())
    adapter = random_adapter(personalizer.adaptive.base.config, user_adapter_name(user), rank=4, seed=6,
                             trained_at=now, num_events=500)
    folder = save_adapter(adapter, layout.user_layers_dir / "adapters" / f"user-{user}")
    personalizer.rescan_adapters()  # registered, not yet loaded
    shutil.rmtree(folder)  # the refresh demoted the user before the next rescan
    other = next(u for u in users if u != user)
    batch = personalizer.user_batch([user, other])
    k = personalizer.adaptive.config.gate_top_k
    assert (batch.lora_indices >= 0).all() and batch.mix_weights[0].tolist() != [1.0] + [0.0] * (k - 1)
    assert adapter.name not in personalizer.store.registered
