"""HF Qwen2 checkpoint folders: ours -> transformers, transformers -> ours, sharding, and the load-time errors."""

import dataclasses
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from recllm.generator.qwen2 import Qwen2, Qwen2Config, build_qwen2
from recllm.generator.qwen2_checkpoint import (
    INDEX_FILE, SINGLE_FILE, CheckpointError, load_qwen2, parse_size, save_qwen2,
)

TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine more threads only wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides) -> Qwen2Config:
    return dataclasses.replace(Qwen2Config.from_name("tiny"), **overrides)


def ours_model(tie=True, seed=0) -> Qwen2:
    model = build_qwen2(tiny(tie_word_embeddings=tie), seed=seed)
    with torch.no_grad():  # non-trivial biases and norms, so a dropped tensor would show
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


TOKENS = torch.randint(0, 128, (2, 11), generator=torch.Generator().manual_seed(0))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        out = model(TOKENS)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("tie", [True, False])
def test_saved_by_us_read_by_transformers(tmp_path, tie):
    model = ours_model(tie)
    save_qwen2(model, tmp_path)
    assert (tmp_path / SINGLE_FILE).is_file() and not (tmp_path / INDEX_FILE).exists()
    assert ("lm_head.weight" in load_file(tmp_path / SINGLE_FILE)) == (not tie)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert (logits(hf) - logits(model)).abs().max() <= TOL


def test_sharded_save_read_by_transformers_and_by_us(tmp_path):
    model = ours_model(tie=False)
    save_qwen2(model, tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / SINGLE_FILE).exists()
    sizes = {f: sum(t.numel() * t.element_size() for t in load_file(tmp_path / f).values()) for f in shards}
    largest_tensor = max(t.numel() * t.element_size() for t in model.state_dict().values())
    assert all(size <= max(40_000, largest_tensor) for size in sizes.values())
    assert index["metadata"]["total_size"] == sum(sizes.values())
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert (logits(hf) - logits(model)).abs().max() <= TOL
    assert (logits(load_qwen2(tmp_path)) - logits(model)).abs().max() <= TOL


@pytest.mark.parametrize("tie, shard", [(True, None), (False, None), (False, "30KB")])
def test_saved_by_transformers_read_by_us(tmp_path, tie, shard):
    config = tiny(tie_word_embeddings=tie)
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config.to_hf_config()))
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    hf.eval()
    hf.save_pretrained(tmp_path, **({} if shard is None else {"max_shard_size": shard}))
    if shard is not None:
        assert (tmp_path / INDEX_FILE).is_file()
    ours = load_qwen2(tmp_path)
    assert ours.config == config
    assert (logits(ours) - logits(hf)).abs().max() <= TOL
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tie


def test_round_trip_in_bfloat16(tmp_path):
    model = ours_model()
    save_qwen2(model, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = load_qwen2(tmp_path)
    assert loaded.lm_head.weight.dtype == torch.bfloat16
    assert load_qwen2(tmp_path, dtype=torch.float32).lm_head.weight.dtype == torch.float32


def test_resave_replaces_old_shards(tmp_path):
    model = ours_model()
    save_qwen2(model, tmp_path, max_shard_size=30_000)
    save_qwen2(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", SINGLE_FILE]


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_qwen2(tmp_path / "nope")


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_qwen2(tmp_path)


def test_non_qwen2_model_type(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text()) | {"model_type": "llama"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type must be 'qwen2', got 'llama'"):
        load_qwen2(tmp_path)


def test_no_weights(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    (tmp_path / SINGLE_FILE).unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        load_qwen2(tmp_path)


def test_missing_shard(tmp_path):
    save_qwen2(ours_model(), tmp_path, max_shard_size=30_000)
    next(tmp_path.glob("model-00002-of-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-.*missing"):
        load_qwen2(tmp_path)


def _rewrite(tmp_path, edit):
    tensors = load_file(tmp_path / SINGLE_FILE)
    edit(tensors)
    save_file(tensors, tmp_path / SINGLE_FILE, metadata={"format": "pt"})


def test_missing_tensor(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    _rewrite(tmp_path, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensors \['model.layers.1.self_attn.k_proj.bias'\]"):
        load_qwen2(tmp_path)


def test_unexpected_tensor(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    _rewrite(tmp_path, lambda t: t.update({"model.layers.2.mlp.up_proj.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['model.layers.2.mlp.up_proj.weight'\]"):
        load_qwen2(tmp_path)


def test_shape_mismatch(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    _rewrite(tmp_path, lambda t: t.update({"model.norm.weight": torch.ones(32)}))
    with pytest.raises(CheckpointError, match=r"model.norm.weight: checkpoint \(32,\) vs model \(64,\)"):
        load_qwen2(tmp_path)


def test_tied_checkpoint_with_stored_lm_head_loads(tmp_path):
    save_qwen2(ours_model(), tmp_path)
    _rewrite(tmp_path, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"].clone()}))
    assert load_qwen2(tmp_path).config.tie_word_embeddings


@pytest.mark.parametrize("size, expected", [(1000, 1000), ("5GB", 5 * 10**9), ("500MB", 5 * 10**8),
                                            ("2GiB", 2 * 2**30), ("40kb", 40_000), ("7", 7)])
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["big", "0", -1, "5 parsecs"])
def test_parse_size_rejects(size):
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size(size)
