"""model_repository_gpu/: generated, parses as Triton ModelConfig, wired like the CPU graph; the generator's LoRA
protocol checked against a fake Python backend (no GPU, no server)."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble import gpu_repository as gpu
from recllm_proto.user_token import Keyring

HAND_WRITTEN = {"generator_trtllm/1/model.py"}
KEYRING = Keyring.generate()


def _committed(relative: str) -> str:
    return (gpu.GPU_REPOSITORY / relative).read_text()


def test_committed_repository_matches_a_fresh_generation(tmp_path):
    gpu.write_repository(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(gpu.GPU_REPOSITORY).as_posix() for p in gpu.GPU_REPOSITORY.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert committed - HAND_WRITTEN == generated, "run `python -m ensemble.gpu_repository`"
    for relative in generated:
        assert _committed(relative) == (tmp_path / relative).read_text(), \
            f"model_repository_gpu/{relative} drifted: run `python -m ensemble.gpu_repository`"


def test_every_config_parses_as_a_model_config():
    for name in gpu.all_configs():
        parsed = text_format.Parse(_committed(f"{name}/config.pbtxt"), mc.ModelConfig())
        assert parsed.name == name
        if parsed.backend == "python":
            assert (gpu.GPU_REPOSITORY / name / "1" / "model.py").exists(), name


def _params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_tensorrt_llm_model_is_inflight_batched_decoupled_with_lora_cache():
    config = text_format.Parse(_committed("tensorrt_llm/config.pbtxt"), mc.ModelConfig())
    params = _params(config)
    assert config.backend == "tensorrtllm" and config.model_transaction_policy.decoupled
    assert params["gpt_model_type"] == "inflight_fused_batching"
    for key in ("lora_cache_optimal_adapter_size", "lora_cache_max_adapter_size", "lora_cache_gpu_memory_fraction",
                "lora_cache_host_memory_bytes", "lora_prefetch_dir", "kv_cache_free_gpu_mem_fraction",
                "guided_decoding_backend", "xgrammar_tokenizer_info_path"):
        assert params[key], key
    inputs = {t.name: t for t in config.input}
    assert inputs["lora_task_id"].data_type == mc.TYPE_UINT64
    assert list(inputs["lora_config"].dims) == [-1, 3] and inputs["lora_config"].data_type == mc.TYPE_INT32
    assert inputs["lora_weights"].optional and inputs["prompt_embedding_table"].optional
    assert {"guided_decoding_guide_type", "guided_decoding_guide", "prompt_vocab_size"} <= set(inputs)
    # The backend places its own ranks on GPUs: the Triton instance group stays KIND_CPU, as in NVIDIA's template.
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]


def test_cache_fractions_come_from_the_engine_memory_plan():
    repo = gpu.GpuRepositoryConfig()
    memory = repo.engine.memory_report()
    params = _params(gpu.tensorrt_llm_config(repo))
    assert float(params["kv_cache_free_gpu_mem_fraction"]) == pytest.approx(memory.kv_cache_free_gpu_mem_fraction)
    assert float(params["lora_cache_gpu_memory_fraction"]) == pytest.approx(memory.lora_cache_gpu_memory_fraction)
    assert params["lora_cache_optimal_adapter_size"] == str(repo.engine.max_lora_rank)
    assert gpu.tensorrt_llm_config(repo).max_batch_size == repo.engine.max_batch_size


def test_retrieval_stages_are_the_cpu_stages_on_gpu():
    for name in gpu.RETRIEVAL_STAGES:
        cpu_config = gpu.cpu_config(name)
        config = text_format.Parse(_committed(f"{name}/config.pbtxt"), mc.ModelConfig())
        assert list(config.input) == list(cpu_config.input) and list(config.output) == list(cpu_config.output)
        assert all(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in config.instance_group)


def test_ensemble_keeps_the_cpu_boundary_and_consumes_only_available_tensors():
    config = text_format.Parse(_committed("recllm/config.pbtxt"), mc.ModelConfig())
    cpu_ensemble = gpu.cpu_config(gpu.ENSEMBLE)
    assert list(config.input) == list(cpu_ensemble.input) and list(config.output) == list(cpu_ensemble.output)
    available = {t.name for t in config.input}
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
    assert {t.name for t in config.output} <= available
    models = [s.model_name for s in config.ensemble_scheduling.step]
    assert models[-1] == gpu.GENERATOR and gpu.CPU_GENERATOR not in models


@pytest.mark.parametrize("overrides, message", [
    ({"guided_decoding_backend": "outlines"}, "guided_decoding_backend='outlines'"),
    ({"reply_tokens": 5000}, "reply_tokens=5000"),
    ({"retrieval_gpus": ()}, "retrieval_gpus"),
    ({"preset": "72b", "tp": 3}, "tp=3"),
])
def test_repository_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        gpu.GpuRepositoryConfig(**overrides)


# ---- generator_trtllm/1/model.py against a fake triton_python_backend_utils --------------------------------------

class _Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    @staticmethod
    def from_dlpack(name, capsule):
        import torch
        from torch.utils import dlpack

        return _Tensor(name, dlpack.from_dlpack(capsule).to(torch.float32).numpy())


class _Response:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors, self._error = list(output_tensors or []), error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


class _Error:
    def __init__(self, message):
        self._message = message

    def message(self):
        return self._message


def _fake_backend(script):
    """A pb_utils whose BLS calls record their inputs and answer from ``script(inputs) -> responses``."""
    calls = []

    class InferenceRequest:
        def __init__(self, model_name, inputs, requested_output_names):
            self.inputs = {t.name(): t.as_numpy() for t in inputs}

        def exec(self, decoupled=False):
            assert decoupled
            calls.append(self.inputs)
            return script(self.inputs)

    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor, module.InferenceResponse, module.TritonError = _Tensor, _Response, _Error
    module.InferenceRequest = InferenceRequest
    module.get_input_tensor_by_name = lambda request, name: request.get(name)
    module.get_output_tensor_by_name = lambda response, name: next(
        (t for t in response.output_tensors if t.name() == name), None)
    return module, calls


class _Tokenizer:
    eos_token_id, pad_token_id = 2, 0

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return [ord(c) % 1000 for c in messages[-1]["content"]]

    def decode(self, tokens, skip_special_tokens):
        return " ".join(str(t) for t in tokens)


def _load_model(monkeypatch, script, tmp_path):
    module, calls = _fake_backend(script)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    spec = importlib.util.spec_from_file_location("gpu_generator_model", gpu.GPU_REPOSITORY / "generator_trtllm/1/model.py")
    model_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_module)
    model = model_module.TritonPythonModel()
    model.setup(_Tokenizer(), {"adapter_dir": str(tmp_path), "llm_model": "tensorrt_llm", "reply_tokens": "8",
                               "max_input_len": "64"}, lambda: KEYRING)
    return model_module, model, calls


class _Request(dict):
    """A request being executed: its inputs by name, never cancelled."""

    def is_cancelled(self):
        return False


def _request(user: str) -> dict:
    text = lambda *values: _Tensor("", np.array([v.encode() for v in values], dtype=np.object_))  # noqa: E731
    return _Request({"USER_TOKEN": text(KEYRING.sign(user)), "QUERY": text("что на ужин?"),
                     "RESOLVED_SERVICE": text("kuper"), "ITEM_IDS": _Tensor("", np.array([1, 2])),
                     "ITEM_NAMES": text("Брокколи", "Салат"), "PROFILE_FACTS": text("берёт овощи")})


def _tokens(*ids):
    return [_Response([_Tensor("output_ids", np.array([[i]], np.int32))]) for i in ids]


NOW = 1_750_000_000
WEEK = 7 * 86_400


def _export(tmp_path, name, kind="user", age_s=0, num_events=50, rows=4):
    """An adapter as recllm.user_layers.trtllm_export writes it (weights, config, adapter_info.json)."""
    from recllm.user_layers.trtllm_export import write_exported
    config = np.array([[module_id, 0, 8] for module_id in range(1, rows + 1)], np.int32)
    write_exported(tmp_path, name, np.full((rows, 16), rows, np.float16), config, kind=kind,
                   trained_at=NOW - age_s, num_events=num_events)


def _setup(monkeypatch, script, tmp_path, segments=None):
    from recllm.user_layers.trtllm_export import write_user_segments
    if segments:
        write_user_segments(tmp_path, segments)
    module, model, calls = _load_model(monkeypatch, script, tmp_path)
    model.now = lambda: NOW
    return module, model, calls


def _adapter_of(module, call) -> str:
    """Which adapter a recorded BLS call asked for: a name from the task id, "base" without one."""
    if "lora_task_id" not in call:
        return "base"
    task = int(call["lora_task_id"][0, 0])
    names = ["user/u1", "user/u2", "segment/0", "segment/1"]
    return next(n for n in names if module.lora_task_id(n) == task) + ("+weights" if "lora_weights" in call else "")


def _write_adapter(module, tmp_path, user):
    """A fresh exported adapter for ``user`` (the generator's policy serves it now)."""
    import time
    from recllm.user_layers.trtllm_export import write_exported
    config = np.array([[1, 0, 8], [2, 0, 8], [3, 0, 8], [4, 0, 8]], np.int32)
    write_exported(tmp_path, f"user/{user}", np.ones((4, 16), np.float16), config, kind="user",
                   trained_at=int(time.time()), num_events=50)


def _failing_for(module, *names):
    """A backend whose LoRA cache never keeps these adapters: uncached error for them, weights or not."""
    failing = {module.lora_task_id(n) for n in names}

    def script(inputs):
        if "lora_task_id" in inputs and int(inputs["lora_task_id"][0, 0]) in failing:
            return [_Response(error=_Error("[TensorRT-LLM] LoRA task 7 not found in cache, please send LoRA "
                                           "weights with request"))]
        return _tokens(9)
    return script


def test_first_request_uploads_weights_then_sends_the_id_only(monkeypatch, tmp_path):
    module, model, calls = _setup(monkeypatch, lambda inputs: _tokens(5, 6), tmp_path)
    _export(tmp_path, "user/u1")
    first = model.execute([_request("u1")])[0]
    assert not first.has_error() and first.output_tensors[0].as_numpy()[0] == b"5 6"
    model.execute([_request("u1")])
    assert "lora_weights" in calls[0] and calls[0]["lora_weights"].shape == (1, 4, 16)
    assert calls[0]["lora_config"].shape == (1, 4, 3)
    assert "lora_weights" not in calls[1] and calls[1]["lora_task_id"][0, 0] == module.lora_task_id("user/u1")
    assert calls[0]["input_ids"].dtype == np.int32 and calls[0]["streaming"][0, 0]
    assert model.served == {"user": 2}


def test_task_id_is_the_exported_adapter_s(monkeypatch, tmp_path):
    """The generator and trtllm_export.export_adapter name one folder for a user."""
    from recllm.user_layers.trtllm_export import lora_task_id
    module, model, calls = _setup(monkeypatch, lambda inputs: _tokens(1), tmp_path)
    assert module.lora_task_id is lora_task_id
    _export(tmp_path, "user/u1")
    model.execute([_request("u1")])
    assert calls[0]["lora_task_id"][0, 0] == lora_task_id("user/u1")


def test_evicted_adapter_is_resent_once(monkeypatch, tmp_path):
    def script(inputs):
        if "lora_weights" not in inputs:
            return [_Response(error=_Error("LoRA task 7 not found in cache, please send LoRA weights"))]
        return _tokens(9)

    module, model, calls = _setup(monkeypatch, script, tmp_path)
    _export(tmp_path, "user/u2")
    model.execute([_request("u2")])
    response = model.execute([_request("u2")])[0]
    assert not response.has_error()
    assert [_adapter_of(module, c) for c in calls] == ["user/u2+weights", "user/u2", "user/u2+weights"]
    assert model.served == {"user": 2}


@pytest.mark.parametrize("user_adapter", [dict(age_s=60 * 86_400), dict(num_events=3), None],
                         ids=["stale", "too-few-events", "absent"])
def test_user_without_a_fresh_adapter_gets_the_segment_s(monkeypatch, tmp_path, user_adapter):
    module, model, calls = _setup(monkeypatch, lambda inputs: _tokens(1), tmp_path, segments={"u1": 1})
    if user_adapter is not None:
        _export(tmp_path, "user/u1", **user_adapter)
    _export(tmp_path, "segment/1", kind="segment", age_s=WEEK)
    assert not model.execute([_request("u1")])[0].has_error()
    assert [_adapter_of(module, c) for c in calls] == ["segment/1+weights"]
    assert model.served == {"segment/1": 1}


def test_user_without_adapter_or_segment_gets_the_base_model(monkeypatch, tmp_path):
    module, model, calls = _setup(monkeypatch, lambda inputs: _tokens(1), tmp_path, segments={"u1": 0})
    _export(tmp_path, "segment/1", kind="segment")              # another segment's adapter
    assert not model.execute([_request("new-user")])[0].has_error()
    assert not model.execute([_request("u1")])[0].has_error()   # segment 0 has no adapter
    assert [_adapter_of(module, c) for c in calls] == ["base", "base"]


def test_uncached_after_a_resend_falls_back_to_the_segment_then_the_base_model(monkeypatch, tmp_path, caplog):
    failing = set()

    def script(inputs):
        return _failing_for(module, *failing)(inputs)

    module, model, calls = _setup(monkeypatch, script, tmp_path, segments={"u1": 0})
    _export(tmp_path, "user/u1")
    _export(tmp_path, "segment/0", kind="segment")
    model.execute([_request("u1")])                                # cached: the id alone would do next time
    failing.update({"user/u1"})                                    # the cache lost it and cannot take it back
    caplog.set_level("INFO", logger=module.__name__)
    assert model.execute([_request("u1")])[0].output_tensors[0].as_numpy()[0] == b"9"
    assert [_adapter_of(module, c) for c in calls] == ["user/u1+weights",
                                                       "user/u1", "user/u1+weights", "segment/0+weights"]
    failing.update({"segment/0"})
    calls.clear()
    assert not model.execute([_request("u1")])[0].has_error()
    assert [_adapter_of(module, c) for c in calls] == ["user/u1+weights", "segment/0", "segment/0+weights", "base"]
    assert model.served == {"user": 1, "segment/0": 1, "base": 1}
    served = [r.getMessage() for r in caplog.records if "served by" in r.getMessage()]
    assert served == ["generator_trtllm reply served by the segment/0 adapter",
                      "generator_trtllm reply served by the base adapter"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "u1" not in logged and str(module.lora_task_id("user/u1")) not in logged and "task 7" not in logged


def test_a_non_lora_error_does_not_fall_back(monkeypatch, tmp_path):
    module, model, calls = _setup(monkeypatch, lambda inputs: [_Response(error=_Error("engine exploded"))], tmp_path,
                                  segments={"u1": 0})
    _export(tmp_path, "user/u1")
    _export(tmp_path, "segment/0", kind="segment")
    response = model.execute([_request("u1")])[0]
    assert response.has_error() and "engine exploded" in response.error().message()
    assert [_adapter_of(module, c) for c in calls] == ["user/u1+weights"] and not model.served


def test_the_policy_s_limits_come_from_the_model_parameters(monkeypatch, tmp_path):
    module, model, _ = _setup(monkeypatch, lambda inputs: _tokens(1), tmp_path)
    from recllm.user_layers.adapter_store import AdapterStoreConfig
    assert model.policy == AdapterStoreConfig()
    model.setup(model.tokenizer, {"adapter_dir": str(tmp_path), "llm_model": "tensorrt_llm", "reply_tokens": "8",
                                  "max_input_len": "64", "adapter_ttl_s": "60", "adapter_min_events": "1"})
    assert (model.policy.ttl_s, model.policy.min_events) == (60, 1)


def test_backend_error_becomes_that_requests_error(monkeypatch, tmp_path):
    _, model, _ = _load_model(monkeypatch, lambda inputs: [_Response(error=_Error("engine exploded"))], tmp_path)
    response = model.execute([_request("u3")])[0]
    assert response.has_error() and "engine exploded" in response.error().message()


def test_task_ids_are_stable_and_positive(monkeypatch, tmp_path):
    module, _, _ = _load_model(monkeypatch, lambda inputs: [], tmp_path)
    ids = {module.lora_task_id(f"u{i:06d}") for i in range(1000)}
    assert len(ids) == 1000 and all(0 <= i < 2 ** 63 for i in ids)
    assert module.lora_task_id("u1") == module.lora_task_id("u1")


def test_retrieval_shims_point_at_existing_cpu_adapters():
    for stage in gpu.RETRIEVAL_STAGES:
        shim = gpu.GPU_REPOSITORY / stage / "1" / "model.py"
        compile(shim.read_text(), str(shim), "exec")
        assert (shim.resolve().parents[3] / "model_repository" / stage / "1" / "model.py").exists()


def test_the_adapter_is_chosen_by_the_verified_token_only(monkeypatch, tmp_path):
    module, model, calls = _load_model(monkeypatch, lambda inputs: _tokens(4), tmp_path)
    _write_adapter(module, tmp_path, "u4")
    forged = _request("u4")
    forged["USER_TOKEN"] = _Tensor("", np.array([Keyring.generate().sign("u4").encode()], dtype=np.object_))
    response = model.execute([forged])[0]
    assert response.has_error() and "unknown key id" in response.error().message() and "u4" not in response.error().message()
    assert calls == []  # refused before anything reached the LLM
    assert not model.execute([_request("u4")])[0].has_error() and "lora_weights" in calls[0]
