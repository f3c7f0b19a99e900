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

HAND_WRITTEN = {"generator_trtllm/1/model.py"}


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
                               "max_input_len": "64"})
    return model_module, model, calls


def _request(user: str) -> dict:
    text = lambda *values: _Tensor("", np.array([v.encode() for v in values], dtype=np.object_))  # noqa: E731
    return {"USER_ID": text(user), "QUERY": text("что на ужин?"), "RESOLVED_SERVICE": text("kuper"),
            "ITEM_IDS": _Tensor("", np.array([1, 2])), "ITEM_NAMES": text("Брокколи", "Салат"),
            "PROFILE_FACTS": text("берёт овощи")}


def _tokens(*ids):
    return [_Response([_Tensor("output_ids", np.array([[i]], np.int32))]) for i in ids]


def _write_adapter(module, tmp_path, user):
    folder = tmp_path / str(module.lora_task_id(user))
    folder.mkdir()
    np.save(folder / "model.lora_weights.npy", np.ones((4, 16), np.float16))
    np.save(folder / "model.lora_config.npy", np.array([[1, 0, 8], [2, 0, 8], [3, 0, 8], [4, 0, 8]]))


def test_first_request_uploads_weights_then_sends_the_id_only(monkeypatch, tmp_path):
    module, model, calls = _load_model(monkeypatch, lambda inputs: _tokens(5, 6), tmp_path)
    _write_adapter(module, tmp_path, "u1")
    first = model.execute([_request("u1")])[0]
    assert not first.has_error() and first.output_tensors[0].as_numpy()[0] == b"5 6"
    model.execute([_request("u1")])
    assert "lora_weights" in calls[0] and calls[0]["lora_weights"].shape == (1, 4, 16)
    assert calls[0]["lora_config"].shape == (1, 4, 3)
    assert "lora_weights" not in calls[1] and calls[1]["lora_task_id"][0, 0] == module.lora_task_id("u1")
    assert calls[0]["input_ids"].dtype == np.int32 and calls[0]["streaming"][0, 0]


def test_evicted_adapter_is_resent_once(monkeypatch, tmp_path):
    def script(inputs):
        if "lora_weights" not in inputs:
            return [_Response(error=_Error("LoRA task 7 not found in cache, please send LoRA weights"))]
        return _tokens(9)

    module, model, calls = _load_model(monkeypatch, script, tmp_path)
    _write_adapter(module, tmp_path, "u2")
    model.execute([_request("u2")])
    response = model.execute([_request("u2")])[0]
    assert not response.has_error() and len(calls) == 3 and "lora_weights" in calls[2]


def test_user_without_adapter_gets_the_base_model(monkeypatch, tmp_path):
    _, model, calls = _load_model(monkeypatch, lambda inputs: _tokens(1), tmp_path)
    assert not model.execute([_request("new-user")])[0].has_error()
    assert "lora_task_id" not in calls[0]


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
