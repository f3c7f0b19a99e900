"""The training builder end to end at tiny step counts: artifacts, refresh, DP-SGD through Opacus."""

import json

import numpy as np
import pytest
import torch

from builders.train_user_layers import (
    BOS, TrainUserLayersConfig, UserData, hf_peft_model, item_vectors_by_category, refresh, train,
    train_dp_user_adapter,
)
from recllm.profile.records import EventRow
from recllm.profile.sqlite_store import ProfileStore
from recllm.synthetic.ecosystem import SyntheticConfig, generate_ecosystem
from recllm.user_layers.adapter_store import load_adapter
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch
from recllm.generator.qwen2_checkpoint import load_qwen2

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def ecosystem():
    return generate_ecosystem(SyntheticConfig.from_name("default", n_users=40, seed=7))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ecosystem):
    torch.set_num_threads(1)
    config = TrainUserLayersConfig.quick(output_dir=tmp_path_factory.mktemp("train"), n_users=40)
    return train(config, ecosystem)


def test_artifacts_are_written_and_reload(trained):
    out = trained.config.output_dir
    state = json.loads((out / "state.json").read_text())
    assert set(state["user_adapters"]) == set(trained.user_adapters)
    assert (out / "segments.json").is_file() and (out / "profile.db").is_file()
    for segment in trained.segment_adapters:
        adapter = load_adapter(out / "adapters" / f"segment_{segment}")
        assert adapter.kind == "segment" and adapter.rank == trained.config.lora_rank
        assert any(b.abs().sum() > 0 for b in adapter.b.values())  # PEFT starts B at zero: it was trained
    reloaded = AdaptiveQwen2(load_qwen2(out / "base"), trained.adaptive.config)
    reloaded.load_user_layers(out / "user_layers.safetensors")
    assert any(p.abs().sum() > 0 for p in reloaded.user_layer_parameters()[:2])  # adaLN-Zero left zero
    users = [u for u in trained.users if u.heldout][:2]
    tokens = torch.tensor([u.tokens[-10:] for u in users])
    batch = UserBatch(user_vectors=torch.from_numpy(np.stack([u.u for u in users])))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens, batch), trained.adaptive(tokens, batch))


def test_users_split_and_u_never_sees_held_back_events(trained):
    assert any(u.heldout for u in trained.users) and not all(u.heldout for u in trained.users)
    store = ProfileStore(trained.config.output_dir / "profile.db")
    for user in trained.users[:5]:
        assert max(e.timestamp for e in store.events_of(user.user_id)) <= user.cutoff_ts


def test_refresh_retrains_only_users_with_new_events(trained, ecosystem):
    out = trained.config.output_dir
    store = ProfileStore(out / "profile.db")
    vectors = item_vectors_by_category(ecosystem, trained.config.pref_dim, trained.config.seed)
    assert refresh(out, store, ecosystem.catalog, vectors, trained.config, now_ts=2_000_000_000) == []
    user_id = next(iter(trained.user_adapters))
    folder = out / "adapters" / f"user_{user_id}"
    before = load_adapter(folder)
    item = ecosystem.catalog.items[0]
    last = store.events_of(user_id)[-1].timestamp
    store.add_events([EventRow(user_id, item.service, item.item_id, "purchase", last + 60 * i, "b", item.price, 1,
                               "moscow", "web") for i in range(1, 4)])
    assert refresh(out, store, ecosystem.catalog, vectors, trained.config, now_ts=2_000_000_000) == [user_id]
    after = load_adapter(folder)
    assert after.trained_at == 2_000_000_000
    assert after.num_events == len(store.events_of(user_id, kind="purchase")) > before.num_events
    assert not torch.equal(after.a[(0, "q_proj")], before.a[(0, "q_proj")])
    assert refresh(out, store, ecosystem.catalog, vectors, trained.config, now_ts=2_000_000_001) == []


def test_dp_sgd_reports_epsilon_per_update_and_changes_the_lora_weights(trained):
    config = TrainUserLayersConfig.quick(output_dir=trained.config.output_dir, dp=True, user_lora_steps=4)
    peft_model = hf_peft_model(trained.config.output_dir / "base", config)
    rng = np.random.default_rng(0)
    user = UserData("dp-user", [BOS] + list(rng.integers(2, 40, size=80)), [], 0, 80, heldout=False)
    adapter, epsilons = train_dp_user_adapter(peft_model, "user/dp-user", user, config, rng)
    assert len(epsilons) >= 2 and all(e > 0 for e in epsilons)
    assert all(b > a for a, b in zip(epsilons, epsilons[1:]))  # the accountant composes every update
    assert all(b.abs().sum() > 0 for b in adapter.b.values())  # B starts at zero: DP updates reached it
