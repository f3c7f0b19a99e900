import json

import pytest
import torch

from recllm.generator.qwen2_checkpoint import save_qwen2
from recllm.user_layers.adapter_store import (
    AdapterStore, AdapterStoreConfig, load_adapter, save_adapter, segment_adapter_name, user_adapter_name,
)
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LORA_MODULES, random_adapter
from recllm.user_layers.multi_lora import install_multi_lora

NOW = 1_800_000_000


def test_saved_adapter_has_peft_names_and_round_trips(tmp_path, tiny_config):
    adapter = random_adapter(tiny_config, "user/u1", rank=4, alpha=8.0, trained_at=NOW, num_events=42)
    folder = save_adapter(adapter, tmp_path / "u1")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    from safetensors import safe_open
    with safe_open(folder / "adapter_model.safetensors", framework="pt") as f:
        names = set(f.keys())
    assert "base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight" in names
    loaded = load_adapter(folder)
    assert (loaded.name, loaded.trained_at, loaded.num_events, loaded.rank) == ("user/u1", NOW, 42, 4)
    assert loaded.metadata == {"folder": str(folder)}
    adapter.metadata["last_event_ts"] = "1799999000"  # the adapter's own bookkeeping travels with it
    assert load_adapter(save_adapter(adapter, tmp_path / "u1-meta")).metadata["last_event_ts"] == "1799999000"
    for key in adapter.a:
        assert torch.equal(loaded.a[key], adapter.a[key]) and torch.equal(loaded.b[key], adapter.b[key])


@pytest.mark.parametrize("modules", [ATTENTION_MODULES, LORA_MODULES], ids=["attention", "attention+mlp"])
def test_peft_loads_our_adapter_and_gives_our_logits(tmp_path, tiny_model, tiny_config, tokens, modules):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    adapter = random_adapter(tiny_config, "user/u1", rank=8, alpha=16.0, seed=3, modules=modules)
    save_qwen2(tiny_model, tmp_path / "base")
    save_adapter(adapter, tmp_path / "adapter")
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "base").eval()
    peft_model = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=tokens).logits
        adaptive = AdaptiveQwen2(tiny_model, UserLayersConfig(user_dim=4, num_segments=2, prefix_layers=(),
                                                              lora_modules=modules))
        adaptive.slots.write(1, adapter)
        ours = adaptive(tokens, UserBatch(lora_indices=torch.ones(tokens.shape[0], 1, dtype=torch.int32)))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # and what PEFT saves, we load
    peft_model.save_pretrained(tmp_path / "saved_by_peft")
    again = load_adapter(tmp_path / "saved_by_peft", name="user/u1")
    assert set(again.a) == set(adapter.a)
    for key in adapter.a:
        torch.testing.assert_close(again.a[key], adapter.a[key])


def make_store(tiny_model, tiny_config, tmp_path, n_adapters=5, slots=2, **config):
    store = AdapterStore(install_multi_lora(tiny_model, num_slots=slots, rank=8), AdapterStoreConfig(**config))
    for i in range(n_adapters):
        adapter = random_adapter(tiny_config, user_adapter_name(f"u{i}"), seed=i, trained_at=NOW, num_events=50)
        store.register_folder(save_adapter(adapter, tmp_path / f"u{i}"))
    return store


def test_two_tier_lru(tmp_path, tiny_model, tiny_config):
    store = make_store(tiny_model, tiny_config, tmp_path, max_host=2)
    names = [user_adapter_name(f"u{i}") for i in range(5)]
    assert store.activate(names[:2]) == [0, 1]
    assert store.activate([names[0]]) == [0] and store.stats.slot_hits == 1
    store.activate([names[2]])  # evicts u1 (least recently used), takes its slot
    assert store.active() == {names[0]: 0, names[2]: 1}
    assert store.stats.host_misses == 3 and len(store.stats.disk_load_s) == 3
    store.activate([names[1]])  # u1 is still in host memory (max_host=2 keeps u1, u2): no disk read
    assert store.stats.host_misses == 3 and store.stats.host_hits == 1
    store.activate([names[0]])  # u0 left host memory when u2 came in: read from disk again
    assert store.stats.host_misses == 4
    wrapper = store.slots.wrappers[(0, "q_proj")]
    assert torch.equal(wrapper.lora_a[store.active()[names[1]]], load_adapter(tmp_path / "u1").a[(0, "q_proj")])
    with pytest.raises(ValueError, match="3 distinct adapters but there are 2 slots"):
        store.activate(names[:3])


def test_a_batch_never_evicts_its_own_adapters(tmp_path, tiny_model, tiny_config):
    store = make_store(tiny_model, tiny_config, tmp_path, slots=2)
    names = [user_adapter_name(f"u{i}") for i in range(5)]
    store.activate([names[0], names[1]])
    slots = store.activate([names[2], names[0]])  # u0 is in the batch: u1 must be the one evicted
    assert slots == [1, 0]


def test_fallback_policy(tmp_path, tiny_model, tiny_config):
    store = AdapterStore(install_multi_lora(tiny_model, num_slots=3, rank=8),
                         AdapterStoreConfig(ttl_s=1000, min_events=10))
    store.register(random_adapter(tiny_config, user_adapter_name("fresh"), trained_at=NOW - 10, num_events=50))
    store.register(random_adapter(tiny_config, user_adapter_name("old"), trained_at=NOW - 5000, num_events=50))
    store.register(random_adapter(tiny_config, user_adapter_name("thin"), trained_at=NOW, num_events=3))
    store.register(random_adapter(tiny_config, segment_adapter_name(1), kind="segment", trained_at=NOW))
    assert store.resolve("fresh", 1, NOW) == "user/fresh"
    assert store.resolve("old", 1, NOW) == "segment/1"
    assert store.resolve("thin", 1, NOW) == "segment/1"
    assert store.resolve("thin", 2, NOW) is None
    indices = store.batch_indices(["fresh", "old", "nobody", None], [1, 1, 2, None], NOW)
    active = store.active()
    assert indices[:, 0].tolist() == [active["user/fresh"], active["segment/1"], -1, -1]


def test_fallback_chain_lists_every_candidate_best_first():
    from recllm.user_layers.adapter_store import AdapterInfo, fallback_chain
    config = AdapterStoreConfig(ttl_s=1000, min_events=10)
    infos = {"user/fresh": AdapterInfo("user/fresh", None, "user", NOW - 10, 50),
             "user/old": AdapterInfo("user/old", None, "user", NOW - 5000, 50),
             "segment/1": AdapterInfo("segment/1", None, "segment", NOW, 0)}
    chain = lambda user, segment: fallback_chain(user, segment, NOW, infos.get, config)  # noqa: E731
    assert chain("fresh", 1) == ["user/fresh", "segment/1", None]
    assert chain("fresh", 2) == ["user/fresh", None]
    assert chain("old", 1) == ["segment/1", None]
    assert chain(None, None) == [None]


def test_sync_folder_serves_what_a_refresh_rewrote_added_or_removed(tmp_path, tiny_model, tiny_config):
    """A periodic refresh rewrites, adds and removes adapter folders under a running server: the next sync
    registers the new version (the stale copy leaves host memory and its slot), the new one, and drops the removed
    one; a folder still being written (no weights file yet) waits for the next sync."""
    import shutil

    store = make_store(tiny_model, tiny_config, tmp_path, n_adapters=3)
    u0, u1, u2, u3 = (user_adapter_name(f"u{i}") for i in range(4))
    assert store.sync_folder(tmp_path) == ([], [])  # nothing changed since they were registered
    store.activate([u0, u1])
    newer = random_adapter(tiny_config, u0, seed=10, trained_at=NOW + 100, num_events=60)
    save_adapter(newer, tmp_path / "u0")
    save_adapter(random_adapter(tiny_config, u3, seed=3, trained_at=NOW, num_events=50), tmp_path / "u3")
    shutil.rmtree(tmp_path / "u2")
    (tmp_path / "u4").mkdir()  # mid-write
    registered, unregistered = store.sync_folder(tmp_path)
    assert sorted(registered) == [u0, u3] and unregistered == [u2]
    assert store.registered[u0].trained_at == NOW + 100 and u2 not in store.registered
    assert u0 not in store.active() and store.active() == {u1: 1}  # the old u0 left its slot
    slot = store.activate([u0])[0]
    wrapper = store.slots.wrappers[(0, "q_proj")]
    assert torch.equal(wrapper.lora_a[slot, :newer.rank], newer.a[(0, "q_proj")])
    assert store.resolve("u2", None, NOW) is None and store.resolve("u3", None, NOW) == u3
    assert store.sync_folder(tmp_path) == ([], [])
    save_adapter(random_adapter(tiny_config, user_adapter_name("u4"), seed=4, trained_at=NOW, num_events=50),
                 tmp_path / "u4")
    assert store.sync_folder(tmp_path) == ([user_adapter_name("u4")], [])
    assert not list(tmp_path.glob("*/*.partial"))  # weights are written beside and renamed into place
