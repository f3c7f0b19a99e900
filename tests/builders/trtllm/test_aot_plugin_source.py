"""The AOT plugin's C++ source against what can drift from it here: the Python plugin's identity, the launcher
signature conditional_norm_aot.py compiles, and the macros its link command passes. The .cpp is read as text:
there are no TensorRT headers here, so it is not compiled (aot_plugin.md says where that happens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builders.trtllm import conditional_norm_aot as aot
from builders.trtllm.conditional_norm_plugin import PLUGIN_SPEC

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / aot.PLUGIN_SOURCE
TEXT = SOURCE.read_text()
POINTER_ARGS = [name for name in aot.AOT_ARG_NAMES if name.endswith("_ptr")]


def _string_constant(name: str) -> str:
    match = re.search(rf'constexpr char {name}\[\] = "([^"]*)";', TEXT)
    assert match, f"{name} not found in {SOURCE.name}"
    return match.group(1)


def _int_constant(name: str) -> int:
    match = re.search(rf"constexpr int32_t {name} = (\d+);", TEXT)
    assert match, f"{name} not found in {SOURCE.name}"
    return int(match.group(1))


def launcher_arguments(config: aot.AotPluginConfig, dtype: str) -> list[str]:
    """The C launcher's parameters after ``stream``: every kernel argument whose signature is not a constant."""
    signature = aot.kernel_signature(config, dtype)
    return [name for name, sig in zip(aot.AOT_ARG_NAMES, signature) if sig.startswith("*") or sig == "i32"]


def _split_top_level(arguments: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in arguments:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + [current.strip()]


def declared_parameters() -> list[tuple[str, str]]:
    """(type, name) of the launcher prototype in RECLLM_DECLARE_LAUNCHER."""
    body = re.search(r"#define RECLLM_DECLARE_LAUNCHER\(fn\)(.*?)\n\n", TEXT, re.S).group(1).replace("\\\n", " ")
    params = re.search(r'extern "C" CUresult fn\((.*?)\);', body, re.S).group(1)
    return [tuple(p.split()) for p in _split_top_level(params)]


def call_arguments() -> list[str]:
    """The enqueue's launcher call, argument by argument."""
    call = re.search(r"variant\.launch\((.*?)\);", TEXT, re.S).group(1)
    return [" ".join(a.split()) for a in _split_top_level(call)]


def test_link_command_compiles_the_source_that_exists():
    assert SOURCE.is_file()
    config = aot.AotPluginConfig.for_preset("72b", repo_root="/r")
    library = aot.library_command(config)
    assert library[library.index("-std=c++17") + 1] == f"/r/{aot.PLUGIN_SOURCE}"


def test_identity_and_fields_are_the_python_plugin_s():
    assert _string_constant("kPluginName") == PLUGIN_SPEC.name
    assert _string_constant("kPluginVersion") == PLUGIN_SPEC.version
    assert _string_constant("kPluginNamespace") == PLUGIN_SPEC.namespace
    fields = set(re.findall(r'constexpr char k\w+Field\[\] = "([^"]*)";', TEXT))
    assert fields == set(PLUGIN_SPEC.attributes)
    assert _int_constant("kNbInputs") == len(PLUGIN_SPEC.inputs)
    assert _int_constant("kNbOutputs") == len(PLUGIN_SPEC.outputs)
    assert "REGISTER_TENSORRT_PLUGIN(ConditionalRMSNormCreator);" in TEXT


@pytest.mark.parametrize("preset", ["0.5b", "7b", "72b"])
@pytest.mark.parametrize("dtype", aot.AOT_DTYPES)
def test_declared_launcher_is_the_compiled_kernel_s(preset, dtype):
    expected = launcher_arguments(aot.AotPluginConfig.for_preset(preset, dtypes=(dtype,)), dtype)
    declared = declared_parameters()
    assert declared[0] == ("CUstream", "stream")
    assert [name for _, name in declared[1:]] == expected
    for ctype, name in declared[1:]:              # compile.py's C types: pointers CUdeviceptr, i32 int32_t
        assert ctype == ("CUdeviceptr" if name.endswith("_ptr") else "int32_t"), name


def test_enqueue_passes_the_tensors_and_sizes_in_the_launcher_s_order():
    expected = launcher_arguments(aot.AotPluginConfig(hidden_size=896), "bf16")
    args = call_arguments()
    assert len(args) == 1 + len(expected)
    assert args[0].startswith("reinterpret_cast<CUstream>(stream)")
    pointers = args[1:1 + len(POINTER_ARGS)]
    assert pointers == [f"ptr(inputs[{i}])" for i in range(len(PLUGIN_SPEC.inputs))] + ["ptr(outputs[0])"]
    # x_ptr, w_ptr, g_ptr, b_ptr, y_ptr are the spec's x, weight, gamma, beta, then y
    tensors = [t.name for t in PLUGIN_SPEC.inputs + PLUGIN_SPEC.outputs]
    assert [name[0] for name in POINTER_ARGS] == [name[0] for name in tensors]
    sizes = [re.fullmatch(r"/\*(\w+)=\*/(\w+)", a).groups() for a in args[1 + len(POINTER_ARGS):]]
    assert [name for name, _ in sizes] == expected[len(POINTER_ARGS):]
    values = dict(sizes)
    assert values["n_rows"] == "n" and {values[k] for k in expected[len(POINTER_ARGS) + 1:]} == {"d"}


def test_macros_the_source_needs_are_the_ones_the_link_command_passes():
    config = aot.AotPluginConfig.for_preset("7b", dtypes=aot.AOT_DTYPES)
    passed = {arg[2:].split("=")[0] for arg in aot.library_command(config) if arg.startswith("-D")}
    tested = set(re.findall(r"#\s*ifn?def\s+(RECLLM_\w+)", TEXT)) | set(re.findall(r"defined\((RECLLM_\w+)\)", TEXT))
    defined_here = set(re.findall(r"#define\s+(RECLLM_\w+)", TEXT))
    assert tested - defined_here == passed
    assert passed == {"RECLLM_HIDDEN_SIZE", "RECLLM_EPS"} | {f"RECLLM_COND_RMS_NORM_{d.upper()}" for d in aot.AOT_DTYPES}
    assert f"-DRECLLM_EPS={config.eps!r}" in aot.library_command(config)
