"""The engine build config: one frozen dataclass, presets per model size, validated on construction.

Every impossible combination is rejected here with the field and the value, before any GPU time is spent:
tensor parallelism that does not split the attention heads / KV heads, INT4-AWQ groups that straddle a
tensor-parallel split, a LoRA rank above what the backend's LoRA cache pages hold, sequence limits beyond the model's
positions, and a per-GPU memory budget that weights + KV cache + LoRA cache + runtime reserve do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from builders.trtllm import memory_plan
from builders.trtllm.model_shape import PRESET_SHAPES, QwenShape

# tensorrtllm_backend's lora_cache_max_adapter_size default: cache pages are sized for ranks up to this.
MAX_LORA_RANK = 64
MAX_TP = 8                                   # one NVLink node; multi-node TP/PP is out of scope here
# Rows a request's prompt table holds after its user-prefix rows: the one row that carries u to the conditional
# norms (builders/trtllm/conditional_norm_network.py gathers it; no input token points at it).
USER_CONTEXT_ROWS = 1

# Per-size defaults; anything not named here comes from the dataclass field defaults.
PRESET_OVERRIDES = {
    "0.5b": {"tp": 1, "quant": "bf16", "gpu_memory_gib": 80.0},
    "7b": {"tp": 1, "quant": "bf16", "gpu_memory_gib": 80.0},
    "72b": {"tp": 4, "quant": "fp8", "gpu_memory_gib": 80.0},
}


def prompt_vocab_size(user_prefix_tokens: int) -> int:
    """Rows of one request's prompt-embedding table: the user-prefix rows, then the user-context row."""
    return user_prefix_tokens + USER_CONTEXT_ROWS


def max_prompt_embedding_table_size(user_prefix_tokens: int, max_batch_size: int) -> int:
    """Prompt-table rows the engine accepts per iteration: every request in the batch brings its own table.

    The one rule for ``trtllm-build --max_prompt_embedding_table_size`` and the conditional-norm plan."""
    return prompt_vocab_size(user_prefix_tokens) * max_batch_size


@dataclass(frozen=True)
class EngineBuildConfig:
    """What ``trtllm-build`` and the checkpoint conversion need, for one engine (one TP group)."""

    preset: str
    tp: int = 1
    quant: str = "bf16"
    gpu_memory_gib: float = 80.0                  # per GPU: H100 SXM 80, H200 141
    max_lora_rank: int = 8                        # per-user adapters are rank 8 (q/k/v/o)
    lora_modules: tuple[str, ...] = memory_plan.LORA_MODULES  # + mlp_h_to_4h / mlp_gate / mlp_4h_to_h for MLP LoRA
    max_batch_size: int = 64                      # requests in flight per engine (inflight batching)
    max_input_len: int = 3072                     # system + profile facts + retrieved items + dialogue
    max_seq_len: int = 4096                       # input + reply
    max_num_tokens: int = 8192                    # tokens per scheduler iteration (context chunks + decode)
    user_prefix_tokens: int = 16                  # soft-prompt rows per request (user prefix embedding)
    lora_cache_gpu_gib: float = 2.0               # GPU LoRA cache per rank
    runtime_reserve_gib: float = 4.0              # activations, CUDA context, NCCL buffers (estimate)
    awq_block_size: int = 128
    calib_size: int = 512                         # ModelOpt calibration samples (FP8 / INT4-AWQ)
    calib_dataset: str = "cnn_dailymail"          # or a local folder: GPU nodes may be offline
    checkpoint_dir: str = ""
    output_dir: str = ""
    trtllm_examples_dir: str = "/opt/TensorRT-LLM/examples"   # a checkout matching the installed wheel
    shape: QwenShape | None = field(default=None, compare=True)

    def __post_init__(self):
        if self.preset not in PRESET_SHAPES:
            raise ValueError(f"EngineBuildConfig.preset={self.preset!r}: expected one of {sorted(PRESET_SHAPES)}")
        if self.shape is None:
            object.__setattr__(self, "shape", PRESET_SHAPES[self.preset])
        self._check_ranges()
        self._check_parallelism()
        self._check_memory()

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> "EngineBuildConfig":
        """The preset's defaults with ``overrides`` (None values ignored) applied."""
        if preset not in PRESET_OVERRIDES:
            raise ValueError(f"EngineBuildConfig.preset={preset!r}: expected one of {sorted(PRESET_OVERRIDES)}")
        values = dict(PRESET_OVERRIDES[preset])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)

    def _check_ranges(self) -> None:
        if self.quant not in memory_plan.QUANT_FORMATS:
            raise ValueError(f"EngineBuildConfig.quant={self.quant!r}: expected one of {memory_plan.QUANT_FORMATS}")
        positive = ("tp", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "awq_block_size",
                    "calib_size", "max_lora_rank")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EngineBuildConfig.{name} must be a positive int, got {value!r}")
        for name in ("gpu_memory_gib", "lora_cache_gpu_gib", "runtime_reserve_gib"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EngineBuildConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.user_prefix_tokens < 0:
            raise ValueError(f"EngineBuildConfig.user_prefix_tokens must be >= 0, got {self.user_prefix_tokens}")
        known = tuple(memory_plan.lora_module_dims(self.shape))
        if not self.lora_modules or not isinstance(self.lora_modules, tuple) \
                or any(m not in known for m in self.lora_modules):
            raise ValueError(f"EngineBuildConfig.lora_modules={self.lora_modules!r}: expected a non-empty tuple of "
                             f"{known}")
        if self.max_lora_rank > MAX_LORA_RANK:
            raise ValueError(f"EngineBuildConfig.max_lora_rank={self.max_lora_rank} exceeds {MAX_LORA_RANK}, the "
                             f"backend's lora_cache_max_adapter_size")
        if self.max_input_len >= self.max_seq_len:
            raise ValueError(f"EngineBuildConfig.max_input_len={self.max_input_len} must be < max_seq_len="
                             f"{self.max_seq_len} (room for the reply)")
        if self.max_seq_len > self.shape.max_position_embeddings:
            raise ValueError(f"EngineBuildConfig.max_seq_len={self.max_seq_len} exceeds the model's "
                             f"max_position_embeddings={self.shape.max_position_embeddings}")
        if self.max_num_tokens < self.max_input_len:
            raise ValueError(f"EngineBuildConfig.max_num_tokens={self.max_num_tokens} < max_input_len="
                             f"{self.max_input_len}: a full prompt could never be scheduled in one iteration")

    def _check_parallelism(self) -> None:
        shape, tp = self.shape, self.tp
        if tp > MAX_TP:
            raise ValueError(f"EngineBuildConfig.tp={tp} exceeds {MAX_TP} GPUs of one node")
        if shape.num_heads % tp:
            raise ValueError(f"EngineBuildConfig.tp={tp} does not divide num_heads={shape.num_heads} of {shape.name}")
        if shape.num_kv_heads % tp and tp % shape.num_kv_heads:
            raise ValueError(f"EngineBuildConfig.tp={tp} neither divides num_kv_heads={shape.num_kv_heads} of "
                             f"{shape.name} nor is a multiple of it (KV heads cannot be split or replicated evenly)")
        for name, width in (("intermediate_size", shape.intermediate_size), ("hidden_size", shape.hidden_size)):
            if width % tp:
                raise ValueError(f"EngineBuildConfig.tp={tp} does not divide {name}={width} of {shape.name}")
        if self.quant == "int4_awq":
            # Row-parallel o_proj / down_proj split their *input* features: each rank needs whole AWQ groups.
            for name, width in (("num_heads*head_dim", shape.q_dim), ("intermediate_size", shape.intermediate_size)):
                if width % (tp * self.awq_block_size):
                    raise ValueError(
                        f"EngineBuildConfig.quant='int4_awq' with tp={tp}: {name}={width} is not a multiple of "
                        f"tp*awq_block_size={tp * self.awq_block_size}, so AWQ groups would straddle ranks; use "
                        f"tp={self._largest_awq_tp()} or a checkpoint whose {name} is padded to a multiple of "
                        f"{tp * self.awq_block_size}")

    def _largest_awq_tp(self) -> int:
        ok = [t for t in range(1, MAX_TP + 1) if self.shape.q_dim % (t * self.awq_block_size) == 0
              and self.shape.intermediate_size % (t * self.awq_block_size) == 0 and self.shape.num_heads % t == 0]
        return max(ok) if ok else 1

    def _check_memory(self) -> None:
        report = self.memory_report()
        if not report.fits:
            gib = report.as_dict()["gib"]
            raise ValueError(
                f"EngineBuildConfig.gpu_memory_gib={self.gpu_memory_gib} does not fit {self.shape.name} "
                f"{self.quant} tp={self.tp}: weights {gib['weights']} + KV cache {gib['kv_cache']} (max_batch_size="
                f"{self.max_batch_size} x max_seq_len={self.max_seq_len}) + LoRA cache {gib['lora_cache']} + "
                f"reserve {gib['runtime_reserve']} = {gib['total']} GiB per GPU; raise tp, quantize, or lower "
                f"max_batch_size / max_seq_len")

    def memory_report(self) -> memory_plan.MemoryReport:
        return memory_plan.memory_report(
            self.shape, tp=self.tp, quant=self.quant, max_batch_size=self.max_batch_size,
            max_seq_len=self.max_seq_len, max_lora_rank=self.max_lora_rank,
            lora_cache_gpu_gib=self.lora_cache_gpu_gib, runtime_reserve_gib=self.runtime_reserve_gib,
            gpu_memory_gib=self.gpu_memory_gib, awq_block_size=self.awq_block_size, lora_modules=self.lora_modules)

    @property
    def max_prompt_embedding_table_size(self) -> int:
        """``(user_prefix_tokens + 1) * max_batch_size``: prefix rows and the user-context row of every request."""
        return max_prompt_embedding_table_size(self.user_prefix_tokens, self.max_batch_size)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "shape"}
        out["shape"] = {f.name: getattr(self.shape, f.name) for f in fields(self.shape)}
        out["shape"]["head_dim"] = self.shape.head_dim
        return out
