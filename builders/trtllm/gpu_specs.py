"""Published specs of the GPUs we plan for (NVIDIA H100 / H200 SXM datasheets), one table.

Bandwidth and dense tensor throughput are the datasheet figures (the datasheets quote FP8/BF16 "with sparsity";
dense is half of that). ``usable_gib`` is the memory ``nvidia-smi`` reports (81,559 MiB and 143,771 MiB), which is
what the runtime can allocate from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: int                 # marketing figure
    usable_gib: float              # as nvidia-smi reports it
    hbm_tb_s: float                # peak HBM bandwidth, TB/s (10^12 bytes/s)
    bf16_dense_tflops: float
    fp8_dense_tflops: float
    nvlink_gb_s: float             # per GPU, bidirectional
    gpus_per_node: int = 8

    def __post_init__(self):
        for field in ("usable_gib", "hbm_tb_s", "bf16_dense_tflops", "fp8_dense_tflops"):
            if not getattr(self, field) > 0:
                raise ValueError(f"GpuSpec.{field} must be > 0, got {getattr(self, field)!r}")

    def dense_tflops(self, quant: str) -> float:
        """Tensor-core throughput the GEMMs of a ``quant`` engine run at (INT4-AWQ dequantizes to bf16 math)."""
        return self.fp8_dense_tflops if quant == "fp8" else self.bf16_dense_tflops


GPUS = {
    "H100": GpuSpec("H100 SXM5 80GB", memory_gb=80, usable_gib=81559 / 1024, hbm_tb_s=3.35,
                    bf16_dense_tflops=989.4, fp8_dense_tflops=1978.9, nvlink_gb_s=900),
    "H200": GpuSpec("H200 SXM 141GB", memory_gb=141, usable_gib=143771 / 1024, hbm_tb_s=4.8,
                    bf16_dense_tflops=989.4, fp8_dense_tflops=1978.9, nvlink_gb_s=900),
}
