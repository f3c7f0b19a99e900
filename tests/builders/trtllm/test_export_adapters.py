import json

import numpy as np
import pytest

from builders.trtllm.export_adapters import export_user_layers, main
from recllm.generator.qwen2 import Qwen2Config
from recllm.user_layers.adapter_store import (
    AdapterStoreConfig, fallback_chain, save_adapter, segment_adapter_name, user_adapter_name,
)
from recllm.user_layers.lora_adapter import random_adapter
from recllm.user_layers.trtllm_export import (
    exported_info, load_exported, lora_task_id, read_user_segments, to_trtllm,
)

NOW = 1_700_000_000


@pytest.fixture
def user_layers_dir(tmp_path):
    """What builders.train_user_layers leaves: two segment adapters, one heavy user's adapter, state.json."""
    config = Qwen2Config.from_name("tiny")
    root = tmp_path / "user_layers"
    adapters = [random_adapter(config, segment_adapter_name(s), seed=s, kind="segment", trained_at=NOW - 60,
                               num_events=500) for s in (0, 1)]
    adapters.append(random_adapter(config, user_adapter_name("u7"), seed=7, trained_at=NOW - 60, num_events=80))
    for adapter in adapters:
        save_adapter(adapter, root / "adapters" / adapter.name.replace("/", "_"))
    users = {"u7": {"segment": 1}, "u8": {"segment": 0}, "cold": {"segment": -1}}
    (root / "state.json").write_text(json.dumps({"users": users}), encoding="utf-8")
    return root, {a.name: a for a in adapters}


def test_every_adapter_lands_under_its_task_id_with_its_bookkeeping(user_layers_dir, tmp_path):
    root, adapters = user_layers_dir
    report = export_user_layers(root, tmp_path / "out", dtype="fp32")
    assert report.adapters == {name: lora_task_id(name) for name in adapters}
    for name, adapter in adapters.items():
        weights, config = load_exported(tmp_path / "out", name)
        expected_weights, expected_config = to_trtllm(adapter, np.float32)
        np.testing.assert_array_equal(config, expected_config)
        np.testing.assert_allclose(weights, expected_weights, rtol=0, atol=0)
        info = exported_info(tmp_path / "out", name)
        assert (info.kind, info.trained_at, info.num_events) == (adapter.kind, adapter.trained_at,
                                                                  adapter.num_events)


def test_segments_are_keyed_by_task_id_and_drive_the_fallback_chain(user_layers_dir, tmp_path):
    root, _ = user_layers_dir
    export_user_layers(root, tmp_path / "out")
    segments = read_user_segments(tmp_path / "out")
    assert segments == {lora_task_id(user_adapter_name("u7")): 1, lora_task_id(user_adapter_name("u8")): 0}
    assert "u7" not in (tmp_path / "out" / "user_segments.json").read_text()  # no user ids on the GPU side
    info_of = lambda name: exported_info(tmp_path / "out", name)  # noqa: E731
    assert fallback_chain("u7", 1, NOW, info_of, AdapterStoreConfig()) == ["user/u7", "segment/1", None]
    assert fallback_chain("u8", 0, NOW, info_of, AdapterStoreConfig()) == ["segment/0", None]


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="train user layers first"):
        export_user_layers(tmp_path, tmp_path / "out")
    (tmp_path / "adapters").mkdir()
    with pytest.raises(FileNotFoundError, match="no adapters"):
        export_user_layers(tmp_path, tmp_path / "out")
    save_adapter(random_adapter(Qwen2Config.from_name("tiny"), "segment/0", kind="segment"),
                 tmp_path / "adapters" / "segment_0")
    with pytest.raises(FileNotFoundError, match="state.json"):
        export_user_layers(tmp_path, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["--user-layers", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "train user layers first" in capsys.readouterr().err
