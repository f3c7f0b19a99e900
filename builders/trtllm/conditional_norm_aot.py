"""Commands for the AOT route of the conditional-RMSNorm plugin: Triton kernel -> C sources -> TensorRT plugin .so.

The C++ Triton TensorRT-LLM backend cannot run a Python plugin (no interpreter in the server), so for that backend
the kernel is compiled ahead of time (``builders/trtllm/aot_plugin.md`` has the whole route):

1. ``python -m triton.tools.compile`` per engine dtype: the entry kernel of
   :mod:`builders.trtllm.conditional_norm_aot_entry` specialised for one hidden size D, the target GPU (sm_90 for
   H100/H200), unit column strides and a fixed eps, into ``<name>.<hash>_<hints>.{c,h}`` (cubin embedded);
2. ``gcc -c`` / ``g++ -shared``: those C files with the TensorRT plugin class into
   ``librecllm_conditional_rmsnorm.so``; the plugin (``aot_plugin/recllm_conditional_rmsnorm_plugin.cpp``) calls
   each dtype's launcher by the name :func:`variant_function` predicts (``-DRECLLM_COND_RMS_NORM_<DTYPE>=...``, with
   ``-DRECLLM_HIDDEN_SIZE`` and ``-DRECLLM_EPS``). ``triton.tools.link`` is not used: there is one variant per
   dtype, and its dispatcher names embed the eps constant (``1e-06``), which is not a C identifier.

Like the engine builder's ``--dry-run``, :func:`aot_commands` returns the commands as argv lists (printed by
``python -m builders.trtllm.conditional_norm_aot --preset 72b``); ``--run`` executes them, which needs a machine
with the CUDA driver (``compile.py`` asks the driver for the current target even when ``--target`` is given).
Nothing here has run on a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from builders.trtllm.conditional_norm_plugin import DEFAULT_EPS, PLUGIN_NAME, launch_config
from builders.trtllm.model_shape import PRESET_SHAPES

log = logging.getLogger(__name__)

ENTRY_FILE = "builders/trtllm/conditional_norm_aot_entry.py"
AOT_KERNEL_NAME = "cond_rms_norm_rows"
# The entry kernel's parameters in order (a test checks them against the @triton.jit function).
AOT_ARG_NAMES = ("x_ptr", "w_ptr", "g_ptr", "b_ptr", "y_ptr", "n_rows", "D", "eps",
                 "sx_n", "sx_d", "sw_d", "sg_n", "sg_d", "sb_n", "sb_d", "sy_n", "sy_d", "BLOCK_D", "ONE_BLOCK")
AOT_DTYPES = ("bf16", "fp16", "fp32")      # Triton's names; the engine's dtype picks one
GPU_SM = {"h100": 90, "h200": 90, "a100": 80, "l40s": 89}
NUM_STAGES = 3                             # the CUDA backend's default, as in the JIT launch
GRID = "n_rows,1,1"                        # one program per row, as launch_config's grid
LIBRARY_NAME = "librecllm_conditional_rmsnorm.so"
PLUGIN_SOURCE = "builders/trtllm/aot_plugin/recllm_conditional_rmsnorm_plugin.cpp"   # the IPluginV3 class


@dataclass(frozen=True)
class AotPluginConfig:
    """One plugin library: kernel variants for one hidden size and a set of dtypes, for one GPU architecture."""

    hidden_size: int
    dtypes: tuple[str, ...] = ("bf16",)
    sm: int = 90
    eps: float = DEFAULT_EPS
    out_dir: str = "/tmp/recllm-aot"
    repo_root: str = "/opt/recllm"         # this repository on the node (the entry kernel imports kernels/)
    python: str = "python3"
    cuda_home: str = "/usr/local/cuda"
    tensorrt_include: str = "/usr/include/x86_64-linux-gnu"   # NvInfer.h in the NGC images
    tensorrt_lib: str = "/usr/lib/x86_64-linux-gnu"

    def __post_init__(self):
        if isinstance(self.hidden_size, bool) or not isinstance(self.hidden_size, int) or self.hidden_size < 1:
            raise ValueError(f"AotPluginConfig.hidden_size must be a positive int, got {self.hidden_size!r}")
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        bad = [d for d in self.dtypes if d not in AOT_DTYPES]
        if not self.dtypes or bad or len(set(self.dtypes)) != len(self.dtypes):
            raise ValueError(f"AotPluginConfig.dtypes={self.dtypes!r}: expected distinct values from {AOT_DTYPES}")
        if not isinstance(self.sm, int) or self.sm < 80:
            raise ValueError(f"AotPluginConfig.sm={self.sm!r}: need sm >= 80 (bf16 loads; H100/H200 are 90)")
        if not 0 < self.eps < 1:
            raise ValueError(f"AotPluginConfig.eps={self.eps!r} must be in (0, 1)")

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> "AotPluginConfig":
        if preset not in PRESET_SHAPES:
            raise ValueError(f"AotPluginConfig preset={preset!r}: expected one of {sorted(PRESET_SHAPES)}")
        return cls(hidden_size=PRESET_SHAPES[preset].hidden_size,
                   **{k: v for k, v in overrides.items() if v is not None})

    @property
    def target(self) -> str:
        return f"cuda:{self.sm}:32"


def kernel_signature(config: AotPluginConfig, dtype: str) -> list[str]:
    """Per-argument signature: 16-byte-aligned pointers, int32 sizes and row strides, unit column strides and
    eps as constants, then BLOCK_D / ONE_BLOCK as the JIT wrapper picks them for D.

    eps is a constant because Triton >= 3.4's AOT wrapper declares fp32 scalars as C ``double`` while the cubin
    reads 4 bytes (aot_plugin.md, "Known pitfalls"); it is a model constant anyway.
    """
    launch = launch_config(1, config.hidden_size)
    values = {"n_rows": "i32", "D": "i32", "eps": repr(float(config.eps)), "BLOCK_D": str(launch.block_d),
              "ONE_BLOCK": str(int(launch.one_block))}
    signature = []
    for name in AOT_ARG_NAMES:
        if name.endswith("_ptr"):
            signature.append(f"*{dtype}:16")
        elif name.endswith("_d") and name.startswith("s"):
            signature.append("1")                          # contiguous rows (TensorRT's linear format)
        elif name.startswith("s"):
            signature.append("i32")                        # row strides: D for the plugin's buffers
        else:
            signature.append(values[name])
    return signature


def num_warps(config: AotPluginConfig) -> int:
    return launch_config(1, config.hidden_size).num_warps


def out_name(dtype: str) -> str:
    return f"recllm_cond_rms_norm_{dtype}"


def variant_stem(config: AotPluginConfig, dtype: str) -> str:
    """``compile.py``'s output name: ``<out-name>.<sha256(signature + warps/stages)[:8]>_<hint suffix>``.

    Computed the way Triton 3.9's ``compile.py`` does, so the later steps can name its files without a shell glob.
    """
    signature = kernel_signature(config, dtype)
    meta = f"warps{num_warps(config)}xstages{NUM_STAGES}"
    digest = hashlib.sha256(" ".join(signature + [meta]).encode()).hexdigest()[:8]
    hints = "".join(f"{i}d" for i, s in enumerate(signature) if s.endswith(":16"))
    return f"{out_name(dtype)}.{digest}_{hints}"


def dtype_dir(config: AotPluginConfig, dtype: str) -> Path:
    return Path(config.out_dir) / dtype


def compile_command(config: AotPluginConfig, dtype: str) -> list[str]:
    """Step 1 for one dtype: ``triton.tools.compile`` -> ``<dtype>/<stem>.{c,h}`` with the sm_XX cubin."""
    return ["env", f"PYTHONPATH={config.repo_root}", config.python, "-m", "triton.tools.compile",
            str(Path(config.repo_root) / ENTRY_FILE),
            "--kernel-name", AOT_KERNEL_NAME, "--target", config.target,
            "--num-warps", str(num_warps(config)), "--num-stages", str(NUM_STAGES),
            "--out-name", out_name(dtype), "--out-path", str(dtype_dir(config, dtype) / out_name(dtype)),
            "--signature", ", ".join(kernel_signature(config, dtype)), "--grid", GRID]


def variant_function(config: AotPluginConfig, dtype: str) -> str:
    """The C launcher ``compile.py`` writes for one dtype; the plugin calls it (and ``load_``/``unload_`` it)."""
    return variant_stem(config, dtype).replace(".", "_")


def c_sources(config: AotPluginConfig) -> list[str]:
    out = []
    for dtype in config.dtypes:
        folder = dtype_dir(config, dtype)
        out.append(str(folder / f"{variant_stem(config, dtype)}.c"))
    return out


def object_commands(config: AotPluginConfig) -> list[list[str]]:
    """Step 3a: each generated C file to an object (they are C, not C++)."""
    return [["gcc", "-c", "-fPIC", "-O2", f"-I{config.cuda_home}/include", source,
             "-o", str(Path(source).with_suffix(".o"))] for source in c_sources(config)]


def library_command(config: AotPluginConfig) -> list[str]:
    """Step 3b: the plugin class and the kernel objects into one shared library TensorRT can load."""
    includes = [f"-I{dtype_dir(config, d)}" for d in config.dtypes]
    objects = [str(Path(source).with_suffix(".o")) for source in c_sources(config)]
    return ["g++", "-shared", "-fPIC", "-O2", "-std=c++17", str(Path(config.repo_root) / PLUGIN_SOURCE), *objects,
            f"-I{config.cuda_home}/include", f"-I{config.tensorrt_include}", *includes,
            f"-DRECLLM_HIDDEN_SIZE={config.hidden_size}", f"-DRECLLM_EPS={float(config.eps)!r}",
            *(f"-DRECLLM_COND_RMS_NORM_{d.upper()}={variant_function(config, d)}" for d in config.dtypes),
            f"-L{config.cuda_home}/lib64/stubs", f"-L{config.tensorrt_lib}", "-lcuda", "-lnvinfer",
            "-o", str(Path(config.out_dir) / LIBRARY_NAME)]


def aot_commands(config: AotPluginConfig) -> list[list[str]]:
    """Every step in order: per dtype mkdir and compile; then objects and the library."""
    commands = []
    for dtype in config.dtypes:
        commands += [["mkdir", "-p", str(dtype_dir(config, dtype))], compile_command(config, dtype)]
    return commands + object_commands(config) + [library_command(config)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESET_SHAPES))
    parser.add_argument("--dtype", action="append", choices=AOT_DTYPES, dest="dtypes",
                        help="engine dtype(s); default bf16")
    parser.add_argument("--gpu", choices=sorted(GPU_SM), default="h200", help="sets --sm; H100/H200 are sm_90")
    for name in ("out_dir", "repo_root", "python", "cuda_home", "tensorrt_include", "tensorrt_lib"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    parser.add_argument("--eps", type=float, default=None)
    parser.add_argument("--run", action="store_true", help="execute the commands (needs the CUDA driver)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AotPluginConfig:
    overrides = {name: getattr(args, name) for name in
                 ("out_dir", "repo_root", "python", "cuda_home", "tensorrt_include", "tensorrt_lib", "eps")}
    return AotPluginConfig.for_preset(args.preset, dtypes=tuple(args.dtypes or ("bf16",)), sm=GPU_SM[args.gpu],
                                      **overrides)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    commands = aot_commands(config)
    for command in commands:
        print(shlex.join(command))
    if not args.run:
        return 0
    for command in commands:
        log.info("running: %s", shlex.join(command))
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"error: {PLUGIN_NAME} AOT step failed: {shlex.join(command)}: {error}", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
