"""The build trains the reply generator's user layers and saves them in the served format."""

from __future__ import annotations

import json

import pytest

from builders.train_reply_layers import ReplyLayersConfig, is_heldout
from recllm.user_layers.adapter_store import load_adapter, segment_adapter_name
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
                                         ("lora_steps", -1)])
def test_config_is_checked(field, value):
    with pytest.raises(ValueError, match=field):
        ReplyLayersConfig(**{field: value})
