"""The build trains the reply generator's user layers and saves them in the served format."""

from __future__ import annotations

import json

import pytest

from types import SimpleNamespace

import numpy as np
import torch

from builders.train_reply_layers import ReplyLayersConfig, UserRows, is_heldout, read_heavy_users, split_heavy_users
from recllm.user_layers.adapter_store import (AdapterStoreConfig, is_fresh, load_adapter, read_adapter_info,
                                              segment_adapter_name, user_adapter_name)
from recllm.user_layers.reply_personalizer import load_layers_config


def test_the_build_writes_layers_segments_adapters_and_a_report(test_artifacts):
    folder = test_artifacts.user_layers_dir
    layers, vectors = load_layers_config(folder)
    assert layers.num_segments == vectors.n_segments and layers.user_dim == vectors.dim
    for segment in range(layers.num_segments):
        adapter = load_adapter(folder / "adapters" / f"segment-{segment}")
        assert adapter.name == segment_adapter_name(segment) and adapter.kind == "segment"
        assert adapter.rank == layers.lora_rank and adapter.num_events > 0
        assert any(b.abs().sum() > 0 for b in adapter.b.values())  # trained: B left its zero init
    config = json.loads((folder / "adapters" / "segment-0" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and sorted(config["target_modules"]) == sorted(layers.lora_modules)
    report = json.loads((folder / "report.json").read_text())
    assert report["train_users"] > 0 and report["heldout_users"] > 0
    heldout = report["heldout"]
    for variant in ("base", "norm + prefix", "norm + prefix + MoE gate (served)",
                    "swap: another user's u (served layers)"):
        assert heldout[variant]["users"] == report["heldout_users"] or heldout[variant]["users"] > 0
        assert heldout[variant]["nll"] > 0
    manifest = test_artifacts.read_manifest()
    assert manifest["user_layers"]["heldout"] == heldout


def test_heldout_split_is_stable_and_near_its_fraction():
    ids = [f"u{i:06d}" for i in range(4000)]
    share = sum(is_heldout(u, 0.2) for u in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [is_heldout(u, 0.2) for u in ids[:50]] == [is_heldout(u, 0.2) for u in ids[:50]]


@pytest.mark.parametrize("field,value", [("n_segments", 0), ("heldout_fraction", 1.0), ("learning_rate", 0.0),
                                         ("lora_steps", -1), ("user_adapters", 9), ("user_adapters", -1),
                                         ("user_eval_fraction", 1.0), ("user_min_requests", 2),
                                         ("user_learning_rate", 0.0)])
def test_config_is_checked(field, value):
    with pytest.raises(ValueError, match=field):
        ReplyLayersConfig(**{field: value})


def test_the_heaviest_users_get_adapters_of_their_own_served_when_they_beat_the_mixture(test_artifacts):
    folder = test_artifacts.user_layers_dir
    report = json.loads((folder / "report.json").read_text())["heavy_users"]
    own = sorted((folder / "adapters").glob("user-*"))
    assert report["users"] == ReplyLayersConfig.from_name("test").user_adapters
    assert report["promoted"] == len(own) <= report["users"] and report["test_replies"] >= report["users"]
    assert report["own adapter at its last step (not served)"]["nll"] > 0  # beside the chosen one, same replies
    records = read_heavy_users(folder)  # what `recllm refresh-adapters` starts from
    assert len(records) == report["users"]
    assert sorted(u for u, r in records.items() if r["promoted"]) == [p.name.removeprefix("user-") for p in own]
    segments = [load_adapter(p) for p in sorted((folder / "adapters").glob("segment-*"))]
    for path in own:
        user_id = path.name.removeprefix("user-")
        adapter, info = load_adapter(path), read_adapter_info(path)
        assert adapter.name == user_adapter_name(user_id) and adapter.kind == "user"
        assert int(adapter.metadata["last_event_ts"]) <= info.trained_at
        assert is_fresh(info, info.trained_at, AdapterStoreConfig())  # served in place of the segment mixture
        # trained on the user's own replies: no longer the segment's adapter it started from, unless the
        # validation replies chose the start (step 0)
        step = records[user_id]["chosen_step"]
        assert step in range(0, ReplyLayersConfig.from_name("test").user_lora_steps + 1)
        assert any(all(torch.equal(adapter.b[k], s.b[k]) for k in adapter.b) for s in segments) is (step == 0)


def test_heavy_users_are_the_most_active_with_enough_requests_and_lose_whole_kept_requests():
    def user(i, requests):  # two replies per request; a row is (input, labels) stand-ins
        numbers = [q for q in range(requests) for _ in range(2)]
        return UserRows(f"u{i}", np.zeros(3, np.float32), i % 2, [([i, k], [k]) for k in range(len(numbers))], numbers)

    train = [user(0, 6), user(1, 2), user(2, 4), user(3, 5), user(4, 6)]
    # u1 is the most active but has too few requests; u4 has too few purchases for the store to serve its adapter
    purchases = {"u0": 25, "u1": 90, "u2": 30, "u3": 40, "u4": 19}
    profile = SimpleNamespace(events_of=lambda user_id, kind=None: [SimpleNamespace(timestamp=t)
                                                                       for t in range(purchases[user_id])])
    config = ReplyLayersConfig(n_segments=2, user_adapters=2, user_min_requests=4, user_eval_fraction=0.25)
    kept, heavy = split_heavy_users(train, profile, config)
    assert [h.user.user_id for h in heavy] == ["u3", "u2"] and [h.slot for h in heavy] == [2, 3]
    assert [h.num_events for h in heavy] == [40, 30]
    u3 = train[3]
    assert heavy[0].valid_rows == u3.rows[6:8] and heavy[0].test_rows == u3.rows[8:10]  # requests 3 and 4, whole
    assert heavy[0].user.rows == u3.rows[:6] and heavy[0].user.requests == [0, 0, 1, 1, 2, 2]
    assert [len(u.rows) for u in kept] == [12, 4, 4, 6, 12]  # the kept replies train nothing
    assert split_heavy_users(train, profile, ReplyLayersConfig(user_adapters=0)) == (train, [])


def test_request_numbers_follow_the_corpus_order_of_one_user_s_examples():
    from builders.train_reply_layers import request_numbers
    from recllm.generator.training import GeneratorExample

    def example(query):
        return GeneratorExample(f"act: recommend | service: samokat | lang: ru | query: {query} | profile: -", (), "")

    queries = ["молоко", "молоко подешевле", "молоко почему?", "хлеб", "хлеб ещё", "молоко"]
    assert request_numbers([example(q) for q in queries]) == [0, 0, 0, 1, 1, 2]


def test_only_adapters_that_beat_the_mixture_on_validation_are_saved_and_saved_whole(tmp_path):
    from builders.train_reply_layers import HeavyUser, promoted_users, save_user_adapters
    from recllm.generator.qwen2 import Qwen2Config, build_qwen2
    from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserLayersConfig

    adaptive = AdaptiveQwen2(build_qwen2(Qwen2Config.from_name("tiny"), seed=0).eval(),
                             UserLayersConfig(user_dim=3, num_segments=2, num_slots=4))
    with torch.no_grad():
        for wrapper in adaptive.slots.wrappers.values():
            wrapper.lora_b[2:].normal_()  # the users' own slots, trained
    rows = [([1, 2, 3], [-100, 2, 3])]
    heavy = [HeavyUser(UserRows(f"u{k}", np.zeros(3, np.float32), 0, rows, [0]), rows, rows, 2 + k, 40, 1000 + k)
             for k in range(2)]

    def nll(model, scored_rows, batch):  # u0's own adapter scores better than the mixture, u1's worse
        own = batch.lora_indices.shape[1] == 1 and int(batch.lora_indices[0, 0]) >= 2
        return {(True, 2): 0.1, (True, 3): 0.3}.get((own, int(batch.lora_indices[0, 0])), 0.2)

    promoted = promoted_users(adaptive, heavy, nll)
    assert [h.user.user_id for h in promoted] == ["u0"]
    save_user_adapters(adaptive, promoted, tmp_path, alpha=16.0, trained_at=2000)
    assert [p.name for p in tmp_path.iterdir()] == ["user-u0"]
    saved = load_adapter(tmp_path / "user-u0")
    assert (saved.name, saved.kind, saved.num_events, saved.metadata["last_event_ts"]) == ("user/u0", "user", 40, "1000")
    assert all(torch.equal(saved.b[key], w.lora_b[2]) for key, w in adaptive.slots.wrappers.items())


def test_lora_modules_may_add_the_mlp_and_are_checked():
    from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LORA_MODULES

    assert ReplyLayersConfig().lora_modules == ATTENTION_MODULES
    assert ReplyLayersConfig(lora_modules=list(LORA_MODULES)).lora_modules == LORA_MODULES  # a JSON override
    with pytest.raises(ValueError, match="lora_modules"):
        ReplyLayersConfig(lora_modules=("q_proj", "mlp"))


def test_a_heavy_users_slot_ends_as_the_checkpoint_its_validation_replies_score_best():
    """A few replies a user and the last step overfits (served adapters scored worse than the mixture): every
    ``user_check_every`` steps the validation replies score the slot, and the slot keeps its best checkpoint."""
    import random

    from builders.train_reply_layers import HeavyUser, own_batch, train_user_slots, user_nll
    from recllm.generator.qwen2 import Qwen2Config, build_qwen2
    from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserLayersConfig

    torch.manual_seed(0)
    model = build_qwen2(Qwen2Config.from_name("tiny"), seed=0)
    adaptive = AdaptiveQwen2(model, UserLayersConfig(user_dim=4, num_slots=2, num_segments=1, gate_top_k=1))
    rng = np.random.default_rng(0)

    def rows(low, high, n):  # token runs the user's replies are made of; labels on the second half
        out = []
        for _ in range(n):
            ids = [int(t) for t in rng.integers(low, high, size=12)]
            out.append((ids, [-100] * 6 + ids[6:]))
        return out

    user = UserRows("u1", np.ones(4, dtype=np.float32), 0, rows(10, 20, 6))
    heavy = [HeavyUser(user, rows(30, 40, 3), [], slot=1, num_events=20, last_event_ts=0)]  # unlike the training
    with torch.no_grad():
        for wrapper in adaptive.slots.wrappers.values():
            wrapper.lora_a[1] = torch.randn_like(wrapper.lora_a[1]) * 0.01
    start = user_nll(adaptive, heavy[0].valid_rows, own_batch(heavy))
    before = {k: w.lora_b[1].clone() for k, w in adaptive.slots.wrappers.items()}
    config = ReplyLayersConfig(user_lora_steps=10, user_check_every=5, batch_size=4, user_learning_rate=5e-2)
    adaptive.train()
    train_user_slots(adaptive, heavy, config, random.Random(0), progress=False)
    adaptive.eval()
    kept = user_nll(adaptive, heavy[0].valid_rows, own_batch(heavy))
    assert heavy[0].chosen_step in (0, 5, 10) and kept <= start + 1e-6
    moved = any(not torch.equal(w.lora_b[1], before[k]) for k, w in adaptive.slots.wrappers.items())
    assert moved is (heavy[0].chosen_step > 0)
    with pytest.raises(ValueError, match="user_check_every"):
        ReplyLayersConfig(user_check_every=0)
