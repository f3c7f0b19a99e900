"""Kernels for the adaptive user layers: batched multi-LoRA over adapter slots and conditional RMSNorm.

Each op lives in its own package with a pure-torch ``reference`` (the ground truth, written as the loop it
computes), an OpenAI-Triton kernel (``triton_kernel``) used on CUDA tensors, and the torch path that serves on
CPU. The functions exported here dispatch on the device of their tensors; ``triton`` is only imported when a
CUDA tensor arrives, so CPU-only installs never need it.
"""

from kernels.conditional_rmsnorm import conditional_rms_norm
from kernels.multi_lora import apply_multi_lora, lora_expand, lora_shrink

__all__ = ["apply_multi_lora", "conditional_rms_norm", "lora_expand", "lora_shrink"]
