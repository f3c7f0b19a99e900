"""The training builder end to end at tiny step counts: artifacts, refresh, DP-SGD through Opacus and its charge to
the user's privacy ledger."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from builders.train_user_layers import (
    BOS, IGNORE, TrainUserLayersConfig, UserData, charge_dp_update, eval_window, hf_peft_model,
    item_vectors_by_category, lm_loss, peft_state_of, refresh, tail_window, train, train_dp_user_adapter,
    train_user_adapter, validation_split,
)
from recllm.profile.differential_privacy import (
    PrivacyConfig, compose_epsilon, dp_sgd_event_mechanism, release_preferences,
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


def test_the_build_keeps_each_heavy_users_chosen_checkpoint(trained):
    state = json.loads((trained.config.output_dir / "state.json").read_text())
    assert set(trained.user_adapter_selection) == set(trained.user_adapters) == set(state["user_adapter_selection"])
    for user_id, chosen in trained.user_adapter_selection.items():
        assert trained.user_adapters[user_id] is chosen.selected
        assert state["user_adapter_selection"][user_id]["step"] == chosen.step
        saved = load_adapter(trained.config.output_dir / "adapters" / f"user_{user_id}")
        assert saved.metadata.get("selected_step") == (None if chosen.step is None else str(chosen.step))
        assert all(torch.equal(saved.b[k], chosen.selected.b[k]) for k in saved.b)


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
    assert after.metadata["last_event_ts"] == str(last + 180)
    # the checkpoint its new tail chose: step 0 keeps the old adapter's weights, a later one moved them
    kept_old = after.metadata["selected_step"] == "0"
    assert torch.equal(after.a[(0, "q_proj")], before.a[(0, "q_proj")]) is kept_old
    state = json.loads((out / "state.json").read_text())
    assert state["user_adapters"][user_id] == {"last_event_ts": last + 180, "trained_at": 2_000_000_000}
    assert state["user_adapter_selection"][user_id]["step"] == int(after.metadata["selected_step"])
    assert refresh(out, store, ecosystem.catalog, vectors, trained.config, now_ts=2_000_000_001) == []


def test_tail_window_scores_only_the_last_tokens():
    tokens = list(range(10, 30))
    inputs, targets = tail_window(tokens, 8, 3)
    assert inputs == tokens[-9:-1] and targets == [IGNORE] * 5 + tokens[-3:]
    user = UserData("u", [BOS] + tokens[:-4], tokens[-4:], 0, 16, heldout=True)
    assert eval_window(user, 8) == tail_window([BOS] + tokens, 8, 4)


def test_validation_split_keeps_the_tail_out_of_training_and_needs_enough_purchases():
    config = TrainUserLayersConfig.quick(user_validation_fraction=0.25)  # seq_len 24
    user = UserData("u", [BOS] + list(range(2, 42)), [], 0, 40, heldout=True)
    trainable, (inputs, targets) = validation_split(user, config)
    assert trainable.tokens == user.tokens[:-10] and user.tokens[-10:] == [t for t in targets if t != IGNORE]
    short = UserData("s", [BOS] + list(range(2, 26)), [], 0, 24, heldout=True)  # 25 - 6 tokens <= seq_len
    assert validation_split(short, config) == (short, None)
    with pytest.raises(ValueError, match="user_lora_check_every"):
        TrainUserLayersConfig.quick(user_lora_check_every=0)


def test_a_heavy_users_adapter_is_the_checkpoint_its_validation_tail_scores_best(trained):
    from peft import set_peft_model_state_dict

    config = dataclasses.replace(trained.config, user_lora_steps=12, user_lora_check_every=4)
    peft_model = hf_peft_model(config.output_dir / "base", config)
    user = max((u for u in trained.users if u.heldout), key=lambda u: len(u.tokens))
    segment = trained.segment_adapters[user.segment]
    chosen = train_user_adapter(peft_model, "user/probe", user, segment, config, np.random.default_rng(0),
                                kind="user", num_events=user.num_events, metadata={"last_event_ts": "1"})
    _, validation = validation_split(user, config)
    inputs, targets = (torch.tensor([part]) for part in validation)

    def tail_nll(adapter):
        peft_model.add_adapter("probe", peft_model.peft_config["init"])
        set_peft_model_state_dict(peft_model, peft_state_of(adapter), adapter_name="probe")
        peft_model.set_adapter("probe")
        with torch.no_grad():
            nll = lm_loss(peft_model(input_ids=inputs).logits, targets).item()
        peft_model.delete_adapter("probe")
        return nll

    assert chosen.step in (0, 4, 8, 12)
    assert chosen.validation_nll == pytest.approx(tail_nll(chosen.selected), abs=1e-5)
    assert chosen.validation_nll_at_start == pytest.approx(tail_nll(segment), abs=1e-5)
    assert chosen.validation_nll <= min(chosen.validation_nll_at_start, tail_nll(chosen.last)) + 1e-6
    assert chosen.selected.metadata == {"last_event_ts": "1", "selected_step": str(chosen.step),
                                        "validation_nll": f"{chosen.validation_nll:.6f}",
                                        "validation_nll_at_start": f"{chosen.validation_nll_at_start:.6f}"}
    if chosen.step == 0:
        assert all(torch.equal(chosen.selected.b[k], segment.b[k]) for k in segment.b)
    else:
        assert not all(torch.equal(chosen.selected.b[k], segment.b[k]) for k in segment.b)


@pytest.fixture(scope="module")
def dp_update(trained):
    config = TrainUserLayersConfig.quick(output_dir=trained.config.output_dir, dp=True, user_lora_steps=4)
    peft_model = hf_peft_model(trained.config.output_dir / "base", config)
    rng = np.random.default_rng(0)
    user = UserData("dp-user", [BOS] + list(rng.integers(2, 40, size=80)), [], 0, 80, heldout=False)
    return train_dp_user_adapter(peft_model, "user/dp-user", user, config, rng)


def test_dp_sgd_reports_epsilon_per_update_and_changes_the_lora_weights(dp_update):
    epsilons = dp_update.epsilons
    assert len(epsilons) >= 2 and all(e > 0 for e in epsilons)
    assert all(b > a for a, b in zip(epsilons, epsilons[1:]))  # the accountant composes every update
    assert all(b.abs().sum() > 0 for b in dp_update.adapter.b.values())  # B starts at zero: DP updates reached it
    assert dp_update.steps == len(epsilons) and dp_update.noise_multiplier == 1.0
    assert dp_update.examples == len(range(0, 81 - 24, 6))  # windows of the quick seq_len 24 at stride 6


def test_a_dp_update_is_charged_to_the_users_ledger_after_the_release_or_refused(dp_update, tmp_path):
    store = ProfileStore(tmp_path / "profile.db")
    privacy = PrivacyConfig(secret=b"dp-ledger-test-secret-0123", epsilon_per_window=2.0, releases_per_window=2)
    now = 1_763_900_000
    vectors = np.eye(8, dtype=np.float32)
    events = [EventRow("dp-user", "kuper", i % 8, "purchase", now - 3600 * i, "b", 10.0, 1, "moscow", "web")
              for i in range(10)]
    release = release_preferences(store, "dp-user", events, vectors, now, privacy).release
    ledger = store.privacy_ledger_of("dp-user")

    refused = charge_dp_update(store, "dp-user", dp_update, now + 60, privacy)  # z = 1 over every window: far over
    assert refused["charged"] is False and refused["epsilon_composed"] > privacy.epsilon_per_window
    assert store.privacy_ledger_of("dp-user") == ledger and len(store.mechanisms_of("dp-user")) == 1

    noisy = dataclasses.replace(dp_update, noise_multiplier=2000.0)
    charged = charge_dp_update(store, "dp-user", noisy, now + 60, privacy)
    z, q, steps = dp_sgd_event_mechanism(2000.0, dp_update.steps, dp_update.examples)
    expected = compose_epsilon([(privacy.noise_multiplier(), 1.0, 1), (z, q, steps)], privacy.delta_per_window)
    assert charged == {"charged": True, "epsilon_composed": expected, "delta": privacy.delta_per_window,
                       "window_start": release.window_start}
    assert release.epsilon < expected <= privacy.epsilon_per_window
    assert store.privacy_ledger_of("dp-user")[0].epsilon_spent == expected
    assert [m.kind for m in store.mechanisms_of("dp-user")] == ["preference_release", "adapter_update"]


def test_train_with_dp_drops_an_update_the_ledger_refuses_and_reports_it(tmp_path, ecosystem):
    config = TrainUserLayersConfig.quick(output_dir=tmp_path, n_users=40, dp=True, heavy_users=1)
    trained = train(config, ecosystem)
    state = json.loads((tmp_path / "state.json").read_text())
    (user_id,) = state["dp_ledger"]
    report = state["dp_ledger"][user_id]
    assert report["charged"] is False and report["epsilon_composed"] > 1.0  # the default budget: ε 1 per window
    assert state["dp_epsilons"][user_id] and trained.user_adapters == {} and state["user_adapters"] == {}
    assert not (tmp_path / "adapters" / f"user_{user_id}").exists()
    store = ProfileStore(tmp_path / "profile.db")
    assert [m.kind for m in store.mechanisms_of(user_id)] == ["preference_release"]  # the build's release only


def test_peft_targets_follow_the_configured_lora_modules():
    from builders.train_user_layers import TrainUserLayersConfig, lora_config
    from recllm.user_layers.lora_adapter import LORA_MODULES

    assert set(lora_config(TrainUserLayersConfig()).target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert set(lora_config(TrainUserLayersConfig(lora_modules=LORA_MODULES)).target_modules) == set(LORA_MODULES)
    with pytest.raises(ValueError, match="lora_modules"):
        TrainUserLayersConfig(lora_modules=())
