"""The build trains the reply generator's user layers and saves them in the served format."""

from __future__ import annotations

import json

import pytest

from types import SimpleNamespace

import numpy as np

from builders.train_reply_layers import ReplyLayersConfig, UserRows, is_heldout, split_heavy_users
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
                                         ("user_eval_fraction", 1.0), ("user_min_replies", 0),
                                         ("user_learning_rate", 0.0)])
def test_config_is_checked(field, value):
    with pytest.raises(ValueError, match=field):
        ReplyLayersConfig(**{field: value})


def test_the_heaviest_users_get_adapters_of_their_own_served_when_they_beat_the_mixture(test_artifacts):
    folder = test_artifacts.user_layers_dir
    report = json.loads((folder / "report.json").read_text())["heavy_users"]
    own = sorted((folder / "adapters").glob("user-*"))
    assert report["users"] == ReplyLayersConfig.from_name("test").user_adapters
    assert report["promoted"] == len(own) and report["test_replies"] >= report["users"]
    for variant in ("base", "MoE gate (no own adapter)", "own adapter", "served (own adapter if promoted)",
                    "swap: another heavy user's adapter"):
        assert report[variant]["nll"] > 0
    segments = [load_adapter(p) for p in sorted((folder / "adapters").glob("segment-*"))]
    for path in own:
        user_id = path.name.removeprefix("user-")
        adapter, info = load_adapter(path), read_adapter_info(path)
        assert adapter.name == user_adapter_name(user_id) and adapter.kind == "user"
        assert int(adapter.metadata["last_event_ts"]) <= info.trained_at
        assert is_fresh(info, info.trained_at, AdapterStoreConfig())  # served in place of the segment mixture
        # trained on the user's own replies: no longer any segment's adapter it started from
        assert all(any(not torch_equal(adapter.b[k], s.b[k]) for k in adapter.b) for s in segments)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_heavy_users_are_the_most_active_with_enough_replies_and_lose_their_kept_replies():
    rows = lambda n: [([i], [i]) for i in range(n)]  # noqa: E731 - (input, labels) stand-ins
    train = [UserRows(f"u{i}", np.zeros(3, np.float32), i % 2, rows(n)) for i, n in enumerate((12, 4, 8, 10))]
    purchases = {"u0": 5, "u1": 50, "u2": 30, "u3": 40}  # u1 is the most active but has too few replies
    profile = SimpleNamespace(events_of=lambda user_id, kind=None: [SimpleNamespace(timestamp=t)
                                                                       for t in range(purchases[user_id])])
    config = ReplyLayersConfig(n_segments=2, user_adapters=2, user_min_replies=8, user_eval_fraction=0.25)
    kept, heavy = split_heavy_users(train, profile, config)
    assert [h.user.user_id for h in heavy] == ["u3", "u2"] and [h.slot for h in heavy] == [2, 3]
    assert [(len(h.valid_rows), len(h.test_rows)) for h in heavy] == [(1, 1), (1, 1)]
    assert [h.num_events for h in heavy] == [40, 30] and heavy[0].test_rows == train[3].rows[-1:]
    assert [len(u.rows) for u in kept] == [12, 4, 6, 8]  # the kept replies train nothing
    assert split_heavy_users(train, profile, ReplyLayersConfig(user_adapters=0)) == (train, [])
