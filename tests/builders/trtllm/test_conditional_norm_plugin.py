"""The conditional-RMSNorm TensorRT-LLM plugin without a GPU: its description, its launch arguments against the
kernel's own wrapper, the kernel under TRITON_INTERPRET=1 for the plugin's dtypes, the plugin class's structure
against a stand-in ``tensorrt_llm``, the AOT commands (compiled to sm_90 C sources here, never run), and the
network insertion plan. Nothing here runs on a GPU or imports the real TensorRT-LLM."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

# Like tests/kernels/conftest.py: the interpreter must be on before any @triton.jit function is created.
DEVICE = os.environ.get("KERNELS_TEST_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from builders.trtllm import conditional_norm_aot as aot  # noqa: E402
from builders.trtllm import conditional_norm_network as network  # noqa: E402
from builders.trtllm import conditional_norm_plugin as plugin  # noqa: E402
from builders.trtllm.engine_config import EngineBuildConfig  # noqa: E402
from builders.trtllm.model_shape import PRESET_SHAPES, QwenShape  # noqa: E402
from kernels.conditional_rmsnorm import reference, triton_kernel  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "gpu_nodes.md"
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
       torch.float16: dict(rtol=2e-3, atol=2e-3)}


def _trtllm_importable() -> bool:
    try:
        import tensorrt_llm  # noqa: F401
    except Exception:
        return False
    return True


HAS_TRTLLM = _trtllm_importable()


def _interpreted() -> bool:
    return DEVICE != "cpu" or type(triton_kernel._cond_rms_norm_kernel).__name__ == "InterpretedFunction"


needs_kernel_run = pytest.mark.skipif(not _interpreted(), reason="triton_kernel was imported before "
                                      "TRITON_INTERPRET=1 was set in this process; run this file on its own")


def make_inputs(n_rows: int, dim: int, dtype: torch.dtype, seed: int = 0, layout: str = "per_row"):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=gen)).to(dtype=dtype, device=DEVICE)

    x, weight = rand(n_rows, dim, scale=3.0), rand(dim, scale=0.1, shift=1.0)
    if layout == "per_row":
        gamma, beta = rand(n_rows, dim, scale=0.2), rand(n_rows, dim, scale=0.2)
    else:                                         # one user's modulation for every row, stride 0
        gamma, beta = rand(1, dim, scale=0.2).expand(n_rows, dim), rand(dim, scale=0.2).expand(n_rows, dim)
    return x, weight, gamma, beta


# ---------------------------------------------------------------- 1. the plugin: description and forward path

def test_spec_names_inputs_attribute_and_output():
    spec = plugin.PLUGIN_SPEC
    assert (spec.name, spec.version, spec.namespace) == ("RecllmConditionalRMSNorm", "1", "tensorrt_llm")
    assert spec.input_names() == ("x", "weight", "gamma", "beta")
    assert [t.shape for t in spec.inputs] == [("N", "D"), ("D",), ("N", "D"), ("N", "D")]
    assert spec.attributes == {"eps": 1e-6}
    assert [(t.name, t.shape, t.dtype) for t in spec.outputs] == [("y", ("N", "D"), "like x")]
    assert spec.as_dict()["inputs"][2]["shape"] == ["N", "D"]


@pytest.mark.skipif(HAS_TRTLLM, reason="tensorrt_llm is importable here: the class is defined")
def test_without_tensorrt_llm_the_module_is_description_only():
    assert plugin.ConditionalRMSNormPlugin is None and not plugin.plugin_available()
    assert plugin.TRTLLM_IMPORT_ERROR is not None


@pytest.mark.parametrize("dtype", plugin.PLUGIN_DTYPES)
def test_output_shape_and_dtype_are_x_s(dtype):
    assert plugin.infer_output((7, 896), dtype) == ((7, 896), dtype)


@pytest.mark.parametrize("shape,dtype", [((2, 7, 896), torch.bfloat16), ((7, 896), torch.int32)])
def test_output_inference_rejects_padded_or_integer_x(shape, dtype):
    with pytest.raises(ValueError, match="RecllmConditionalRMSNorm"):
        plugin.infer_output(shape, dtype)


def test_block_cap_is_the_kernel_s():
    assert plugin.MAX_BLOCK_D == triton_kernel.MAX_BLOCK_D


class RecordingKernel:
    """Stands in for ``_cond_rms_norm_kernel``: records ``kernel[grid](*args, **meta)`` instead of running."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((tuple(grid), args, meta))


def _describe(arg):
    if isinstance(arg, torch.Tensor):
        return ("tensor", tuple(arg.shape), arg.stride(), arg.dtype)
    return arg


@pytest.mark.parametrize("dim,max_block_d", [(64, 8192), (896, 8192), (1000, 8192), (3584, 8192), (8192, 8192),
                                             (8192, 1024), (1000, 256)])
@pytest.mark.parametrize("layout", ["per_row", "one_user"])
def test_launch_arguments_equal_the_kernel_wrapper_s(monkeypatch, dim, max_block_d, layout):
    recorder = RecordingKernel()
    monkeypatch.setattr(triton_kernel, "_cond_rms_norm_kernel", recorder)
    x, weight, gamma, beta = make_inputs(3, dim, torch.float32, layout=layout)
    triton_kernel.conditional_rms_norm(x, weight, gamma, beta, 1e-5, max_block_d=max_block_d)
    plugin.launch(x, weight, gamma, beta, torch.empty_like(x), 1e-5, max_block_d=max_block_d)
    (grid_w, args_w, meta_w), (grid_p, args_p, meta_p) = recorder.calls
    assert grid_p == grid_w == (3,)
    assert [_describe(a) for a in args_p] == [_describe(a) for a in args_w]
    assert [a.data_ptr() for a in args_p[:4]] == [a.data_ptr() for a in args_w[:4]]
    assert meta_p == meta_w
    config = plugin.launch_config(3, dim, max_block_d)
    assert meta_p == config.meta() and config.grid == (3,)


@needs_kernel_run
@pytest.mark.parametrize("dtype", plugin.PLUGIN_DTYPES)
@pytest.mark.parametrize("dim", [64, 896, 1000])
def test_plugin_launch_matches_reference(dtype, dim):
    x, weight, gamma, beta = make_inputs(5, dim, dtype)
    y = torch.full_like(x, float("nan"))
    assert plugin.launch(x, weight, gamma, beta, y, 1e-6) is y
    torch.testing.assert_close(y, reference.conditional_rms_norm_reference(x, weight, gamma, beta, 1e-6),
                               **TOL[dtype])


@needs_kernel_run
def test_plugin_launch_two_pass_rows_and_broadcast_modulation():
    x, weight, gamma, beta = make_inputs(4, 1000, torch.float32, layout="one_user")
    y = plugin.launch(x, weight, gamma, beta, torch.empty_like(x), 1e-2, max_block_d=256)
    torch.testing.assert_close(y, reference.conditional_rms_norm_reference(x, weight, gamma, beta, 1e-2),
                               **TOL[torch.float32])


def test_plugin_launch_rejects_an_output_unlike_x():
    x, weight, gamma, beta = make_inputs(2, 64, torch.float32)
    with pytest.raises(ValueError, match="y must be"):
        plugin.launch(x, weight, gamma, beta, torch.empty(2, 64, dtype=torch.bfloat16))


def _fake_tensorrt_llm(monkeypatch):
    """A stand-in for the two TensorRT-LLM modules the plugin file imports (the real ones need CUDA)."""
    registry = {}

    class PluginBase:
        def __init__(self):
            self.num_outputs = type(self)._num_outputs

    class SymTensor:
        def __init__(self, dtype, shape):
            self.dtype, self.shape = dtype, shape

    def trtllm_plugin(name, *, plugin_version="1", plugin_namespace="tensorrt_llm", plugin_num_outputs=None):
        def register(cls):
            assert issubclass(cls, PluginBase)
            cls._num_outputs = plugin_num_outputs
            registry[name] = (cls, plugin_version, plugin_namespace, plugin_num_outputs)
            return cls
        return register

    top = types.ModuleType("tensorrt_llm")
    top.PluginBase = PluginBase
    sub = types.ModuleType("tensorrt_llm.python_plugin")
    sub.SymTensor, sub.trtllm_plugin, sub.convert_to_torch_tensor = SymTensor, trtllm_plugin, lambda t: t
    monkeypatch.setitem(sys.modules, "tensorrt_llm", top)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.python_plugin", sub)
    return registry, SymTensor


def _load_plugin_module_fresh(monkeypatch):
    """A second copy of the plugin module, executed while the stand-in is installed (the real one stays as is)."""
    name = "recllm_plugin_under_fake_trtllm"
    spec = importlib.util.spec_from_file_location(name, REPO / "builders/trtllm/conditional_norm_plugin.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)     # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@needs_kernel_run
def test_plugin_class_registers_infers_and_forwards_with_a_stand_in_tensorrt_llm(monkeypatch):
    registry, sym_tensor = _fake_tensorrt_llm(monkeypatch)
    module = _load_plugin_module_fresh(monkeypatch)
    assert module.plugin_available() and module.TRTLLM_IMPORT_ERROR is None
    cls, version, namespace, outputs = registry["RecllmConditionalRMSNorm"]
    assert cls is module.ConditionalRMSNormPlugin and (version, namespace, outputs) == ("1", "tensorrt_llm", 1)
    instance = cls(eps=1e-5)
    assert instance.eps == 1e-5 and instance.num_outputs == 1
    inferred = instance.shape_dtype_inference([sym_tensor("bf16", ["N", 896]), sym_tensor("bf16", [896]),
                                               sym_tensor("bf16", ["N", 896]), sym_tensor("bf16", ["N", 896])])
    assert (inferred.dtype, inferred.shape) == ("bf16", ["N", 896])
    x, weight, gamma, beta = make_inputs(3, 896, torch.bfloat16)
    y = torch.zeros_like(x)
    instance.forward((x, weight, gamma, beta), (y,))
    torch.testing.assert_close(y, reference.conditional_rms_norm_reference(x, weight, gamma, beta, 1e-5),
                               **TOL[torch.bfloat16])


# ---------------------------------------------------------------- 2. the AOT route (commands as text)

def _flag(command, name):
    return command[command.index(name) + 1]


def test_aot_argument_names_are_the_entry_kernel_s():
    from builders.trtllm import conditional_norm_aot_entry as entry
    fn = getattr(entry.cond_rms_norm_rows, "fn", entry.cond_rms_norm_rows)
    assert tuple(inspect.signature(fn).parameters) == aot.AOT_ARG_NAMES
    kernel_fn = getattr(triton_kernel._cond_rms_norm_kernel, "fn", triton_kernel._cond_rms_norm_kernel)
    shared = [name for name in aot.AOT_ARG_NAMES if name != "n_rows"]
    assert tuple(inspect.signature(kernel_fn).parameters) == tuple(shared)


@needs_kernel_run
def test_aot_entry_runs_the_same_kernel_body():
    from builders.trtllm import conditional_norm_aot_entry as entry
    x, weight, gamma, beta = make_inputs(4, 896, torch.float32)
    y = torch.empty_like(x)
    args = plugin.kernel_arguments(x, weight, gamma, beta, y, 1e-6)
    config = plugin.launch_config(4, 896)
    entry.cond_rms_norm_rows[config.grid](*args[:5], 4, *args[5:], BLOCK_D=config.block_d,
                                          ONE_BLOCK=config.one_block, num_warps=config.num_warps)
    torch.testing.assert_close(y, reference.conditional_rms_norm_reference(x, weight, gamma, beta),
                               **TOL[torch.float32])


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_h100_and_h200_compile_for_sm90(gpu):
    config = aot.config_from_args(aot.parse_args(["--preset", "7b", "--gpu", gpu]))
    assert config.sm == 90 and config.target == "cuda:90:32"


@pytest.mark.parametrize("preset", sorted(PRESET_SHAPES))
def test_aot_compile_command_per_preset(preset):
    config = aot.AotPluginConfig.for_preset(preset, dtypes=("bf16", "fp16", "fp32"), out_dir="/w", repo_root="/r")
    dim = PRESET_SHAPES[preset].hidden_size
    launch = plugin.launch_config(1, dim)
    commands = aot.aot_commands(config)
    compiles = [c for c in commands if "triton.tools.compile" in c]
    assert len(compiles) == 3
    for dtype, command in zip(config.dtypes, compiles):
        assert command[:5] == ["env", "PYTHONPATH=/r", "python3", "-m", "triton.tools.compile"]
        assert command[5] == "/r/builders/trtllm/conditional_norm_aot_entry.py"
        assert _flag(command, "--kernel-name") == "cond_rms_norm_rows"
        assert _flag(command, "--target") == "cuda:90:32"
        assert _flag(command, "--num-warps") == str(launch.num_warps)
        assert _flag(command, "--grid") == "n_rows,1,1"
        assert _flag(command, "--out-path") == f"/w/{dtype}/recllm_cond_rms_norm_{dtype}"
        signature = dict(zip(aot.AOT_ARG_NAMES, _flag(command, "--signature").split(", ")))
        assert {signature[n] for n in ("x_ptr", "w_ptr", "g_ptr", "b_ptr", "y_ptr")} == {f"*{dtype}:16"}
        assert signature["BLOCK_D"] == str(launch.block_d) and signature["ONE_BLOCK"] == "1"
        assert signature["eps"] == "1e-06"                 # a constant: no fp32 scalar in the C wrapper
        assert [signature[n] for n in ("sx_d", "sw_d", "sg_d", "sb_d", "sy_d")] == ["1"] * 5
        assert [signature[n] for n in ("n_rows", "D", "sx_n", "sg_n", "sb_n", "sy_n")] == ["i32"] * 6
    library = commands[-1]
    assert library[:2] == ["g++", "-shared"] and _flag(library, "-o") == "/w/librecllm_conditional_rmsnorm.so"
    assert "-lnvinfer" in library and "-lcuda" in library and f"-DRECLLM_HIDDEN_SIZE={dim}" in library
    objects = [c[-1] for c in commands if c[:2] == ["gcc", "-c"]]
    assert objects == [a for a in library if a.endswith(".o")] and len(objects) == 3
    for dtype in config.dtypes:
        assert f"-DRECLLM_COND_RMS_NORM_{dtype.upper()}={aot.variant_function(config, dtype)}" in library


@pytest.mark.parametrize("overrides,field", [({"hidden_size": 0}, "hidden_size"), ({"dtypes": ("int8",)}, "dtypes"),
                                             ({"sm": 75}, "sm"), ({"dtypes": ()}, "dtypes"), ({"eps": 0.0}, "eps")])
def test_aot_config_rejections_name_the_field(overrides, field):
    values = {"hidden_size": 896, **overrides}
    with pytest.raises(ValueError, match=f"AotPluginConfig.{field}"):
        aot.AotPluginConfig(**values)


def test_aot_cli_prints_every_command(capsys):
    assert aot.main(["--preset", "72b", "--dtype", "bf16", "--out-dir", "/w", "--repo-root", "/r"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    config = aot.AotPluginConfig.for_preset("72b", out_dir="/w", repo_root="/r")
    assert [shlex.split(line) for line in lines] == aot.aot_commands(config)


_OFFLINE_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.driver import ty_to_cpp
from triton.tools import compile as ttc

class OfflineCudaDriver:  # compile.py asks the driver for a target even with --target; there is no GPU here
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)
    def map_python_to_cpp_type(self, ty):
        return ty_to_cpp(ty)

triton.runtime.driver.set_active(OfflineCudaDriver())
sys.argv = ["compile.py"] + sys.argv[1:]
ttc.main()
"""


def test_aot_compile_command_writes_sm90_c_sources_here(tmp_path):
    """Runs Triton's own compile.py with the generated arguments (a stand-in driver, no GPU): ptxas builds the
    sm_90 cubin and the C launcher lands under the predicted name. The cubin is never loaded or launched."""
    pytest.importorskip("triton.backends.nvidia.driver")
    config = aot.AotPluginConfig.for_preset("0.5b", out_dir=str(tmp_path), repo_root=str(REPO),
                                            python=sys.executable)
    command = aot.compile_command(config, "bf16")
    aot.dtype_dir(config, "bf16").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(REPO), TRITON_DEFAULT_FP_FUSION="1")
    args = command[command.index("triton.tools.compile") + 1:]
    run = subprocess.run([sys.executable, "-c", _OFFLINE_COMPILE, *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    stem = aot.variant_stem(config, "bf16")
    header = (aot.dtype_dir(config, "bf16") / f"{stem}.h").read_text()
    source = aot.dtype_dir(config, "bf16") / f"{stem}.c"
    function = aot.variant_function(config, "bf16")
    assert f"CUresult {function}(CUstream stream, CUdeviceptr x_ptr" in header
    assert "double" not in header                       # eps is baked in, not passed as a C double
    assert "n_rows" in header and re.search(r"unsigned int gX = n_rows;", source.read_text())
    # the C++ plugin declares this launcher itself (the header's name is known only at build time): same parameters
    generated = re.search(rf"CUresult {function}\((.*?)\);", header, re.S).group(1)
    plugin_source = (REPO / aot.PLUGIN_SOURCE).read_text().replace("\\\n", " ")
    declared = re.search(r'extern "C" CUresult fn\((.*?)\);', plugin_source, re.S).group(1)
    assert " ".join(generated.split()) == " ".join(declared.split())
    cuda_include = Path(importlib.util.find_spec("triton").origin).parent / "backends/nvidia/include"
    if shutil.which("gcc") and (cuda_include / "cuda.h").exists():
        obj = subprocess.run(["gcc", "-c", "-fPIC", f"-I{cuda_include}", str(source), "-o",
                              str(source.with_suffix(".o"))], capture_output=True, text=True)
        assert obj.returncode == 0, obj.stderr[-2000:]


# ---------------------------------------------------------------- 3. the network insertion plan

@pytest.mark.parametrize("preset,layers", [("0.5b", (0, 11, 23)), ("7b", (27,)), ("72b", tuple(range(0, 80, 8)))])
def test_plan_replaces_both_norms_of_each_chosen_layer(preset, layers):
    config = EngineBuildConfig.for_preset(preset)
    plan = network.plan_for_engine(config, layers)
    dim = config.shape.hidden_size
    assert plan.layers == layers and plan.hidden_size == dim and plan.plugin == "RecllmConditionalRMSNorm"
    assert [(i.layer, i.site) for i in plan.insertions] == [(l, s) for l in layers for s in network.NORM_SITES]
    for k, insertion in enumerate(plan.insertions):
        assert 0 <= insertion.layer < config.shape.num_layers
        attr = {"input": "input_layernorm", "post_attention": "post_layernorm"}[insertion.site]
        assert insertion.trtllm_module == f"transformer.layers.{insertion.layer}.{attr}"
        assert insertion.source_prefix == f"norms.{k}."
        assert insertion.modulation_weight_shape == (2 * dim, plan.user_dim)
        assert insertion.modulation_bias_shape == (2 * dim,)
    context = plan.user_context
    assert context.carrier == "prompt_embedding_table" and context.width == dim
    assert context.row == config.user_prefix_tokens and context.prompt_vocab_size == config.user_prefix_tokens + 1
    assert context.flag_column == plan.user_dim and plan.user_dim + 1 <= dim
    assert context.max_prompt_embedding_table_size == (config.user_prefix_tokens + 1) * config.max_batch_size
    assert context.max_prompt_embedding_table_size == config.max_prompt_embedding_table_size
    assert plan.modulation_params == len(layers) * 2 * (2 * dim * plan.user_dim + 2 * dim)
    assert len(plan.weight_names()) == 4 * len(layers) and plan.as_dict()["layers"] == layers


@pytest.mark.parametrize("layers,message", [((24,), r"layer 24 is not in \[0, 24\)"), ((-1,), "layer -1"),
                                            ((), "at least one"), ((3, 3), "repeats"), ((True,), "not a layer"),
                                            (("2",), "not a layer")])
def test_plan_refuses_layers_outside_the_model(layers, message):
    with pytest.raises(ValueError, match=message):
        network.insertion_plan(layers, PRESET_SHAPES["0.5b"])


def test_plan_refuses_a_user_vector_wider_than_a_table_row():
    shape = QwenShape("narrow", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                      vocab_size=2048)
    with pytest.raises(ValueError, match="user_dim=64"):
        network.insertion_plan((0,), shape, user_dim=64)


def test_default_user_dim_is_the_user_vector_s():
    from recllm.user_layers.user_vector import UserVectorConfig
    assert network.DEFAULT_USER_DIM == UserVectorConfig().dim


def test_plan_reads_the_tensors_training_writes():
    """The k-th insertion's source prefix names the module that AdaptiveQwen2 installed at that layer and norm."""
    from recllm.generator.qwen2 import Qwen2Config, build_qwen2
    from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserLayersConfig
    cfg = Qwen2Config.from_name("tiny")
    shape = QwenShape("tiny", hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
                      num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
                      intermediate_size=cfg.intermediate_size, vocab_size=cfg.vocab_size, sid_vocab_size=0)
    layers = (1, 0)
    model = AdaptiveQwen2(build_qwen2(cfg, seed=0), UserLayersConfig(user_dim=12, norm_layers=layers))
    plan = network.insertion_plan(layers, shape, user_dim=12)
    state = model.user_layer_state()
    for insertion in plan.insertions:
        k = int(insertion.source_prefix.split(".")[1])
        module = getattr(model.base.model.layers[insertion.layer], insertion.hf_module.rsplit(".", 1)[1])
        assert module is model.norms[k]
        for engine_name, source in insertion.weight_names().items():
            expected = insertion.modulation_weight_shape if source.endswith("weight") \
                else insertion.modulation_bias_shape
            assert tuple(state[source].shape) == expected and engine_name.startswith(insertion.trtllm_module)
            assert not state[source].any()              # adaLN-Zero: untrained modulation is zero


@needs_kernel_run
def test_u_through_the_prompt_table_and_the_plugin_equals_the_trained_norm():
    """Three packed requests (one without a user): prefix rows + user-context row per request, gathered with the
    prompt-tuning indexing, modulated and normalised by the plugin's launch = recllm's ConditionalRMSNorm."""
    from recllm.generator.qwen2 import Qwen2Config, build_qwen2
    from recllm.user_layers.conditional_norm import ConditionalRMSNorm
    from recllm.user_layers.layer_context import UserLayerContext
    cfg = Qwen2Config.from_name("tiny")
    shape = QwenShape("tiny", hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
                      num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
                      intermediate_size=cfg.intermediate_size, vocab_size=cfg.vocab_size, sid_vocab_size=0)
    plan = network.insertion_plan((0,), shape, user_dim=12, user_prefix_tokens=2, max_batch_size=3)
    torch.manual_seed(0)
    norm = ConditionalRMSNorm(build_qwen2(cfg, seed=0).model.layers[0].input_layernorm, 12)
    torch.nn.init.normal_(norm.modulation.weight, std=0.3)
    torch.nn.init.normal_(norm.modulation.bias, std=0.3)
    u, has_user = torch.randn(3, 12), torch.tensor([True, False, True])
    vocab = plan.user_context.prompt_vocab_size
    table = torch.cat([torch.cat([torch.randn(2, cfg.hidden_size),
                                  network.user_context_row(plan, u[r] if has_user[r] else None, torch.float32)[None]])
                       for r in range(3)])                                    # [3 * vocab, D]
    x = torch.randn(3, 4, cfg.hidden_size)
    tasks = torch.arange(3).repeat_interleave(4)                             # packed: request index per token
    rows = network.gather_user_context(plan, table, tasks, vocab)
    gamma, beta = network.modulation(plan, rows, norm.modulation.weight.detach(), norm.modulation.bias.detach())
    packed = x.reshape(12, -1)
    got = plugin.launch(packed, norm.base.weight.detach(), gamma, beta, torch.empty_like(packed), norm.base.eps)
    with torch.no_grad():
        expected = norm(x, UserLayerContext(norm_vectors=u, norm_mask=has_user)).reshape(12, -1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(gamma[4:8], torch.zeros_like(gamma[4:8]))             # no user: exactly the base norm


def test_user_context_row_layout():
    plan = network.insertion_plan((0,), PRESET_SHAPES["0.5b"])
    row = network.user_context_row(plan, torch.ones(plan.user_dim))
    assert row.shape == (896,) and row.dtype == torch.bfloat16
    assert row[:plan.user_dim].eq(1).all() and row[plan.user_dim] == 1 and not row[plan.user_dim + 1:].any()
    assert not network.user_context_row(plan, None).any()
    with pytest.raises(ValueError, match=r"u must be \[55\]"):
        network.user_context_row(plan, torch.ones(3))


@pytest.mark.skipif(HAS_TRTLLM, reason="tensorrt_llm is importable here")
def test_network_code_path_names_the_missing_package():
    plan = network.insertion_plan((0,), PRESET_SHAPES["0.5b"])
    with pytest.raises(network.TensorRTLLMUnavailable, match="'tensorrt_llm' package"):
        network.apply_plan(object(), plan)


def test_trtllm_code_path_parses_and_imports_only_tensorrt_llm_and_our_modules():
    tree = ast.parse((REPO / "builders/trtllm/conditional_norm_trtllm.py").read_text())
    roots = {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    roots |= {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert roots <= {"__future__", "torch", "tensorrt_llm", "builders"}


# ---------------------------------------------------------------- 4. docs/gpu_nodes.md

def test_documented_aot_command_parses():
    text = DOC.read_text().replace("\\\n", " ")
    commands = re.findall(r"python -m builders\.trtllm\.conditional_norm_aot ([^\n#`]+)", text)
    assert commands
    for command in commands:
        config = aot.config_from_args(aot.parse_args(command.split()))
        assert config.sm == 90
