"""Adapters in the TensorRT-LLM backend's [module_id, layer, rank] + flattened A/B row format."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types

import numpy as np
import pytest

from builders.trtllm import gpu_smoke, lora_tensors
from builders.trtllm.model_shape import PRESET_SHAPES, QwenShape

TINY = QwenShape("tiny", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                 vocab_size=1000, sid_vocab_size=16)


def test_rows_are_a_then_scaled_b_padded_to_the_longest_module():
    rank = 4
    rng = np.random.default_rng(0)
    a = {("attn_q", 1): rng.normal(size=(rank, 64)), ("attn_k", 0): rng.normal(size=(rank, 64))}
    b = {("attn_q", 1): rng.normal(size=(64, rank)), ("attn_k", 0): rng.normal(size=(32, rank))}
    weights, config = lora_tensors.pack_adapter(a, b, TINY, rank, alpha=8)
    assert config.tolist() == [[2, 0, 4], [1, 1, 4]]                 # sorted by layer, then module id
    assert weights.shape == (2, 4 * 64 + 64 * 4)
    k_row = np.concatenate([a[("attn_k", 0)].reshape(-1), (b[("attn_k", 0)] * 2).reshape(-1)])
    np.testing.assert_allclose(weights[0, :k_row.size], k_row.astype(np.float16), rtol=1e-3)
    assert not weights[0, k_row.size:].any()                          # k/v rows are shorter: zero padding


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError, match="attn_q layer 0"):
        lora_tensors.pack_adapter({("attn_q", 0): np.zeros((4, 10))}, {("attn_q", 0): np.zeros((64, 4))}, TINY, 4)


def test_random_adapter_covers_every_layer_and_module():
    weights, config = lora_tensors.random_adapter(TINY, rank=8, seed=1)
    assert config.shape == (TINY.num_layers * 4, 3) and set(config[:, 0]) == {1, 2, 3, 4}
    assert weights.dtype == np.float16 and weights.shape[1] == 8 * (64 + 64)


def test_task_id_matches_the_gpu_generator(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    from ensemble.gpu_repository import GPU_REPOSITORY

    spec = importlib.util.spec_from_file_location("gpu_gen", GPU_REPOSITORY / "generator_trtllm/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for user in ("u000001", "gpu-smoke-a", "пользователь"):
        assert module.lora_task_id(user) == lora_tensors.lora_task_id(user)


def test_smoke_adapters_are_written_in_the_prefetch_layout(tmp_path):
    from recllm.user_layers.adapter_store import AdapterStoreConfig, fallback_chain
    from recllm.user_layers.trtllm_export import exported_info

    written = gpu_smoke.write_adapters("0.5b", tmp_path / "no-checkpoint", tmp_path)
    assert set(written) == {"gpu-smoke-a", "gpu-smoke-b"}
    for user in written:                  # the generator's policy picks each smoke user's own adapter
        chain = fallback_chain(user, None, int(time.time()), lambda name: exported_info(tmp_path, name),
                               AdapterStoreConfig())
        assert chain == [f"user/{user}", None] and written[user] == lora_tensors.lora_task_id(chain[0])
    for task_id in written.values():
        config = np.load(tmp_path / str(task_id) / "model.lora_config.npy")
        assert config.shape == (PRESET_SHAPES["0.5b"].num_layers * 4, 3)
        assert (tmp_path / str(task_id) / "model.lora_weights.npy").exists()


def test_perf_input_matches_the_generator_inputs(tmp_path):
    from recllm_proto.user_token import load_keyring

    keyring = tmp_path / "keyring.json"
    assert gpu_smoke.main(["keyring", "--keyring", str(keyring)]) == 0
    assert gpu_smoke.main(["perf-input", "--keyring", str(keyring), "--output", str(tmp_path / "p.json"),
                           "--token-ttl-s", "900"]) == 0
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o600      # live tokens: owner only
    data = json.loads((tmp_path / "p.json").read_text())["data"]
    assert len(data) == len(gpu_smoke.USERS)
    from ensemble.gpu_repository import GENERATOR_INPUTS

    assert set(data[0]) == set(GENERATOR_INPUTS) and data[0]["ITEM_IDS"]["shape"] == [3]
    # Each row is a token the server's keyring verifies as that smoke user, valid for the whole run.
    keys = load_keyring(keyring)
    verified = [keys.verify(row["USER_TOKEN"]["content"][0], now=time.time() + 800) for row in data]
    assert [v.subject for v in verified] == list(gpu_smoke.USERS)
    assert all(v.scope == "user" for v in verified)
    assert not any(user in json.dumps(data) for user in gpu_smoke.USERS)   # the user travels only inside tokens
