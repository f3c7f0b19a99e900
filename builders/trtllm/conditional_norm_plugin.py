"""Conditional RMSNorm as a TensorRT-LLM Python plugin, ``RecllmConditionalRMSNorm`` (GPU nodes only).

The plugin runs the OpenAI-Triton kernel of :mod:`kernels.conditional_rmsnorm.triton_kernel` inside a TensorRT
engine: for every row i of x [N, D], in float32,

    y[i, d] = x[i, d] * rsqrt(mean_d(x[i, d]^2) + eps) * weight[d] * (1 + gamma[i, d]) + beta[i, d]

returned in x's dtype. Its inputs, attribute and output are described by :data:`PLUGIN_SPEC`, which needs nothing
but this file. The plugin class itself (``ConditionalRMSNormPlugin``, a ``tensorrt_llm.PluginBase`` registered with
``@trtllm_plugin`` when this module is imported) exists only where ``import tensorrt_llm`` works, i.e. on a GPU
node; elsewhere ``ConditionalRMSNormPlugin`` is None and :data:`TRTLLM_IMPORT_ERROR` says why.

The forward path is :func:`launch`: it takes torch tensors (the plugin converts TensorRT's buffers first), computes
the kernel's launch arguments with :func:`launch_config` / :func:`kernel_arguments` (the same grid, block and warp
choices as the kernel's own wrapper, which a test checks) and launches the same ``@triton.jit`` kernel. On CPU the
tests run :func:`launch` under ``TRITON_INTERPRET=1``.

A Python plugin needs a Python interpreter in the process that deserializes the engine: the C++ Triton
TensorRT-LLM backend has none, so for that backend the kernel is AOT-compiled into a TensorRT plugin library
instead (``builders/trtllm/aot_plugin.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from kernels.conditional_rmsnorm.checks import check_conditional_rms_norm

log = logging.getLogger(__name__)

PLUGIN_NAME = "RecllmConditionalRMSNorm"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "tensorrt_llm"            # TensorRT-LLM's plugin namespace, the decorator's default
PLUGIN_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DEFAULT_EPS = 1e-6                           # Qwen2's rms_norm_eps
MAX_BLOCK_D = 8192                           # = triton_kernel.MAX_BLOCK_D (a test keeps them equal)


@dataclass(frozen=True)
class TensorSpec:
    """One plugin tensor: symbolic shape (dimension names) and which dtypes it takes."""

    name: str
    shape: tuple[str, ...]
    dtype: str                               # "float": fp32/fp16/bf16; "like x": x's dtype
    meaning: str


@dataclass(frozen=True)
class PluginSpec:
    """What the engine sees: plugin identity, inputs in order, attributes, outputs."""

    name: str
    version: str
    namespace: str
    inputs: tuple[TensorSpec, ...]
    attributes: dict[str, float] = field(default_factory=dict)
    outputs: tuple[TensorSpec, ...] = ()

    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    def as_dict(self) -> dict:
        def tensor(t: TensorSpec) -> dict:
            return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "meaning": t.meaning}
        return {"name": self.name, "version": self.version, "namespace": self.namespace,
                "inputs": [tensor(t) for t in self.inputs], "attributes": dict(self.attributes),
                "outputs": [tensor(t) for t in self.outputs]}


PLUGIN_SPEC = PluginSpec(
    name=PLUGIN_NAME, version=PLUGIN_VERSION, namespace=PLUGIN_NAMESPACE,
    inputs=(
        TensorSpec("x", ("N", "D"), "float", "hidden states, one row per token (packed, no padding)"),
        TensorSpec("weight", ("D",), "float", "the RMSNorm's own weight"),
        TensorSpec("gamma", ("N", "D"), "float", "per-token scale from the user vector u (0 = base norm)"),
        TensorSpec("beta", ("N", "D"), "float", "per-token shift from the user vector u (0 = base norm)"),
    ),
    attributes={"eps": DEFAULT_EPS},
    outputs=(TensorSpec("y", ("N", "D"), "like x", "normalised and modulated hidden states"),),
)


def infer_output(x_shape: tuple[int, ...], x_dtype: torch.dtype) -> tuple[tuple[int, ...], torch.dtype]:
    """Output shape and dtype of the plugin: x's. ``shape_dtype_inference`` returns the same, symbolically."""
    if len(x_shape) != 2:
        raise ValueError(f"{PLUGIN_NAME}: x must be [N, D] (the engine must use remove_input_padding), "
                         f"got shape {list(x_shape)}")
    if x_dtype not in PLUGIN_DTYPES:
        raise ValueError(f"{PLUGIN_NAME}: x dtype must be one of {PLUGIN_DTYPES}, got {x_dtype}")
    return tuple(x_shape), x_dtype


@dataclass(frozen=True)
class LaunchConfig:
    """Grid and compile-time choices of one launch: one program per row, a row in BLOCK_D-wide chunks."""

    grid: tuple[int, ...]
    block_d: int
    one_block: bool
    num_warps: int

    def meta(self) -> dict:
        return {"BLOCK_D": self.block_d, "ONE_BLOCK": self.one_block, "num_warps": self.num_warps}


def _next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def launch_config(n_rows: int, dim: int, max_block_d: int = MAX_BLOCK_D) -> LaunchConfig:
    """The kernel wrapper's choices: BLOCK_D = next power of two of D capped at ``max_block_d``; rows that fit
    take the one-block path; num_warps = BLOCK_D / 256 clamped to [1, 8] (the Triton layer-norm tutorial's rule)."""
    if n_rows < 0 or dim < 1:
        raise ValueError(f"{PLUGIN_NAME}: need n_rows >= 0 and D >= 1, got n_rows={n_rows}, D={dim}")
    block_d = min(_next_power_of_2(dim), max_block_d)
    return LaunchConfig(grid=(n_rows,), block_d=block_d, one_block=dim <= block_d,
                        num_warps=min(max(block_d // 256, 1), 8))


def kernel_arguments(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                     y: torch.Tensor, eps: float) -> tuple:
    """Positional arguments of ``_cond_rms_norm_kernel`` in its order: pointers, D, eps, then every stride."""
    return (x, weight, gamma, beta, y, x.shape[1], eps,
            *x.stride(), weight.stride(0), *gamma.stride(), *beta.stride(), *y.stride())


def launch(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, y: torch.Tensor,
           eps: float = DEFAULT_EPS, max_block_d: int = MAX_BLOCK_D) -> torch.Tensor:
    """Writes the conditional RMSNorm of x into ``y`` (x's shape and dtype) with the Triton kernel; returns y.

    gamma/beta may be [N, D] (any strides) or [1, D] / [D]; the plugin always passes [N, D] buffers.
    """
    from kernels.conditional_rmsnorm import triton_kernel   # imports triton: kept out of the description path

    gamma, beta = check_conditional_rms_norm(x, weight, gamma, beta)
    if tuple(y.shape) != tuple(x.shape) or y.dtype != x.dtype:
        raise ValueError(f"{PLUGIN_NAME}: y must be {list(x.shape)} {x.dtype} like x, got {list(y.shape)} {y.dtype}")
    if y.numel() == 0:
        return y
    config = launch_config(x.shape[0], x.shape[1], max_block_d)
    # looked up on the module at call time, so the kernel the tests record is the one the wrapper uses
    triton_kernel._cond_rms_norm_kernel[config.grid](*kernel_arguments(x, weight, gamma, beta, y, eps),
                                                      **config.meta())
    return y


def _define_plugin():
    """The registered plugin class, or (None, the import error) where TensorRT-LLM cannot be imported."""
    try:
        from tensorrt_llm import PluginBase
        from tensorrt_llm.python_plugin import SymTensor, convert_to_torch_tensor, trtllm_plugin
    except Exception as error:   # ImportError, or OSError/RuntimeError when libcuda is missing
        return None, error

    # plugin_num_outputs is given because postponed annotations hide the SymTensor return type from the decorator
    @trtllm_plugin(PLUGIN_NAME, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE,
                   plugin_num_outputs=len(PLUGIN_SPEC.outputs))
    class ConditionalRMSNormPlugin(PluginBase):
        """``y = rmsnorm(x) * weight * (1 + gamma) + beta``; inputs (x, weight, gamma, beta), attribute eps."""

        def __init__(self, eps: float = DEFAULT_EPS):
            super().__init__()
            self.eps = float(eps)            # pickled with the plugin into the engine

        def shape_dtype_inference(self, inputs):
            x = inputs[0]
            return SymTensor(x.dtype, x.shape)

        def forward(self, inputs, outputs):
            x, weight, gamma, beta = (convert_to_torch_tensor(t) for t in inputs)
            launch(x, weight, gamma, beta, convert_to_torch_tensor(outputs[0]), self.eps)

    return ConditionalRMSNormPlugin, None


ConditionalRMSNormPlugin, TRTLLM_IMPORT_ERROR = _define_plugin()
if ConditionalRMSNormPlugin is None:
    log.debug("tensorrt_llm not importable (%s): %s is description-only", TRTLLM_IMPORT_ERROR, PLUGIN_NAME)


def plugin_available() -> bool:
    """True where the plugin class is defined and registered (TensorRT-LLM imported)."""
    return ConditionalRMSNormPlugin is not None


__all__ = ["ConditionalRMSNormPlugin", "LaunchConfig", "PLUGIN_NAME", "PLUGIN_SPEC", "PluginSpec", "TensorSpec",
           "TRTLLM_IMPORT_ERROR", "infer_output", "kernel_arguments", "launch", "launch_config", "plugin_available"]
