"""Where the conditional-RMSNorm plugin goes in a Qwen2 TensorRT-LLM network, and what it needs there.

:func:`insertion_plan` turns the chosen decoder layers and the model shape into a :class:`ConditionalNormPlan`:
for each layer both norms (``input_layernorm`` before attention, ``post_layernorm`` before the MLP in
TensorRT-LLM's ``QWenDecoderLayer``; HF's ``post_attention_layernorm``) are replaced by
``RecllmConditionalRMSNorm``, each with its own modulation ``[γ ; β] = W u + b`` (W [2D, d_u], b [2D]), trained by
``recllm.user_layers.ConditionalRMSNorm`` with W = b = 0 at the start (adaLN-Zero: the engine equals the base model
until trained weights are loaded).

How ``u`` reaches the layers: the executor only feeds inputs the model already declares, so ``u`` rides in the
request's prompt-embedding table, the per-request input that already carries the user prefix. Each request's table
is ``user_prefix_tokens`` soft-prefix rows followed by one *user-context row* ``[u (d_u) ; has_user (1) ; 0 ...]``
(hidden-size wide). No input token points at that row; the network gathers it for every token with
``prompt_tasks * prompt_vocab_size + user_prefix_tokens`` (TensorRT-LLM's ``PromptTuningEmbedding`` indexing), so
``prompt_vocab_size`` becomes ``user_prefix_tokens + 1`` and the engine's ``max_prompt_embedding_table_size``
must be ``(user_prefix_tokens + 1) * max_batch_size``. ``has_user = 0`` multiplies γ and β to exactly zero: rows
without a user get the base norm, as ``norm_mask`` does in the torch model.

:func:`user_context_row`, :func:`gather_user_context` and :func:`modulation` are that layout and arithmetic in
torch (what the generator sends, what the network computes), tested against the trained torch module.
:func:`apply_plan` is the TensorRT-LLM code path (:mod:`builders.trtllm.conditional_norm_trtllm`); it needs the
``tensorrt_llm`` package and raises :class:`TensorRTLLMUnavailable` naming it where that import fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from builders.trtllm.conditional_norm_plugin import DEFAULT_EPS, PLUGIN_NAME
from builders.trtllm.engine_config import EngineBuildConfig, max_prompt_embedding_table_size, prompt_vocab_size
from builders.trtllm.model_shape import QwenShape

# Same site names as recllm.user_layers.conditional_norm.NORM_SITES, in the same order (training installs
# layer by layer, input first), so the k-th insertion reads the k-th trained module ``norms.<k>``.
NORM_SITES = ("input", "post_attention")
TRTLLM_NORM_ATTRS = {"input": "input_layernorm", "post_attention": "post_layernorm"}
HF_NORM_ATTRS = {"input": "input_layernorm", "post_attention": "post_attention_layernorm"}
USER_CONTEXT_CARRIER = "prompt_embedding_table"
DEFAULT_USER_DIM = 55      # recllm.user_layers.user_vector.UserVectorConfig().dim with the default layout


class TensorRTLLMUnavailable(RuntimeError):
    """The ``tensorrt_llm`` package cannot be imported here (any machine without a GPU and TensorRT-LLM)."""


@dataclass(frozen=True)
class NormInsertion:
    """One norm replaced by the plugin, with the tensors it needs and where they come from."""

    layer: int
    site: str
    trtllm_module: str                     # e.g. transformer.layers.3.post_layernorm
    hf_module: str                         # e.g. model.layers.3.post_attention_layernorm
    source_prefix: str                     # in user_layers.safetensors: norms.<k>.
    modulation_weight_shape: tuple[int, int]   # [2D, d_u]
    modulation_bias_shape: tuple[int]          # [2D]

    def weight_names(self) -> dict[str, str]:
        """Engine parameter name -> trained tensor name, for W and b (the norm weight stays the base one)."""
        return {f"{self.trtllm_module}.modulation.{p}": f"{self.source_prefix}modulation.{p}"
                for p in ("weight", "bias")}


@dataclass(frozen=True)
class UserContextInput:
    """The per-request carrier of ``u``: one extra row of the request's prompt-embedding table."""

    carrier: str
    row: int                               # row index inside a request's table (after the prefix rows)
    prompt_vocab_size: int                 # rows per request = prefix rows + this row
    user_dim: int                          # u occupies columns [0, user_dim)
    flag_column: int                       # has_user (1.0 / 0.0)
    width: int                             # the table's width: hidden_size
    max_prompt_embedding_table_size: int   # what trtllm-build needs for max_batch_size requests


@dataclass(frozen=True)
class ConditionalNormPlan:
    model: str
    hidden_size: int
    num_layers: int
    user_dim: int
    eps: float
    plugin: str
    layers: tuple[int, ...]
    insertions: tuple[NormInsertion, ...]
    user_context: UserContextInput

    @property
    def modulation_params(self) -> int:
        """Extra weights in the engine: W and b of every replaced norm."""
        per_norm = 2 * self.hidden_size * self.user_dim + 2 * self.hidden_size
        return per_norm * len(self.insertions)

    def weight_names(self) -> dict[str, str]:
        return {k: v for insertion in self.insertions for k, v in insertion.weight_names().items()}

    def as_dict(self) -> dict:
        out = asdict(self)
        out["modulation_params"] = self.modulation_params
        return out


def _check_layers(layers, num_layers: int, model: str) -> tuple[int, ...]:
    layers = tuple(layers)
    if not layers:
        raise ValueError("insertion_plan layers must name at least one decoder layer, got ()")
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"insertion_plan layers: {index!r} is not a layer index (int)")
        if not 0 <= index < num_layers:
            raise ValueError(f"insertion_plan layers: layer {index} is not in [0, {num_layers}) of {model}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"insertion_plan layers={layers} repeats a layer")
    return layers


def insertion_plan(layers, shape: QwenShape, user_dim: int = DEFAULT_USER_DIM, user_prefix_tokens: int = 16,
                   max_batch_size: int = 64, eps: float = DEFAULT_EPS) -> ConditionalNormPlan:
    """Both norms of each layer in ``layers`` (in the given order, as training installed them) replaced."""
    layers = _check_layers(layers, shape.num_layers, shape.name)
    for name, value in (("user_dim", user_dim), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"insertion_plan {name} must be a positive int, got {value!r}")
    if isinstance(user_prefix_tokens, bool) or not isinstance(user_prefix_tokens, int) or user_prefix_tokens < 0:
        raise ValueError(f"insertion_plan user_prefix_tokens must be an int >= 0, got {user_prefix_tokens!r}")
    if user_dim + 1 > shape.hidden_size:
        raise ValueError(f"insertion_plan user_dim={user_dim}: u plus its has_user flag must fit one prompt-table "
                         f"row of hidden_size={shape.hidden_size}")
    dim = shape.hidden_size
    insertions = []
    for layer in layers:
        for site in NORM_SITES:
            insertions.append(NormInsertion(
                layer=layer, site=site,
                trtllm_module=f"transformer.layers.{layer}.{TRTLLM_NORM_ATTRS[site]}",
                hf_module=f"model.layers.{layer}.{HF_NORM_ATTRS[site]}",
                source_prefix=f"norms.{len(insertions)}.",
                modulation_weight_shape=(2 * dim, user_dim), modulation_bias_shape=(2 * dim,)))
    context = UserContextInput(
        carrier=USER_CONTEXT_CARRIER, row=user_prefix_tokens, prompt_vocab_size=prompt_vocab_size(user_prefix_tokens),
        user_dim=user_dim, flag_column=user_dim, width=dim,
        max_prompt_embedding_table_size=max_prompt_embedding_table_size(user_prefix_tokens, max_batch_size))
    return ConditionalNormPlan(model=shape.name, hidden_size=dim, num_layers=shape.num_layers, user_dim=user_dim,
                               eps=eps, plugin=PLUGIN_NAME, layers=layers, insertions=tuple(insertions),
                               user_context=context)


def plan_for_engine(config: EngineBuildConfig, layers, user_dim: int = DEFAULT_USER_DIM) -> ConditionalNormPlan:
    """The plan for an engine build config: its model shape, prefix rows and batch size."""
    return insertion_plan(layers, config.shape, user_dim=user_dim, user_prefix_tokens=config.user_prefix_tokens,
                          max_batch_size=config.max_batch_size)


def user_context_row(plan: ConditionalNormPlan, u: torch.Tensor | None,
                     dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The row a request appends after its prefix rows: ``[u ; 1 ; 0 ...]`` ([hidden]), all zeros without a user."""
    context = plan.user_context
    row = torch.zeros(context.width, dtype=dtype)
    if u is not None:
        if tuple(u.shape) != (context.user_dim,):
            raise ValueError(f"user_context_row: u must be [{context.user_dim}], got {list(u.shape)}")
        row[:context.user_dim] = u.to(dtype)
        row[context.flag_column] = 1
    return row


def gather_user_context(plan: ConditionalNormPlan, table: torch.Tensor, tasks: torch.Tensor,
                        prompt_vocab_size: int) -> torch.Tensor:
    """What the engine gathers per token, in torch: row ``tasks * prompt_vocab_size + row`` of the concatenated
    prompt tables, first ``user_dim + 1`` columns -> [N, d_u + 1] (u, has_user)."""
    context = plan.user_context
    return table[tasks.long() * prompt_vocab_size + context.row, :context.user_dim + 1]


def modulation(plan: ConditionalNormPlan, rows: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """γ, β [N, D] from gathered rows as the engine computes them: ``has_user * (W u + b)`` split in two."""
    u, has_user = rows[:, :plan.user_dim], rows[:, plan.user_dim:plan.user_dim + 1]
    gamma_beta = (u.to(weight.dtype) @ weight.T + bias) * has_user.to(weight.dtype)     # [N, 2D]
    return gamma_beta[:, :plan.hidden_size], gamma_beta[:, plan.hidden_size:]


def require_tensorrt_llm():
    """The ``tensorrt_llm`` module, or :class:`TensorRTLLMUnavailable` saying that package is missing and why."""
    try:
        import tensorrt_llm
    except Exception as error:   # ImportError, or OSError/RuntimeError without libcuda
        raise TensorRTLLMUnavailable(
            f"the conditional-norm network path needs the 'tensorrt_llm' package (TensorRT-LLM, GPU nodes only), "
            f"which cannot be imported here: {type(error).__name__}: {error}. Build on a GPU node inside the "
            f"Triton TensorRT-LLM image (docs/gpu_nodes.md); insertion_plan() works without it.") from error
    return tensorrt_llm


def apply_plan(model, plan: ConditionalNormPlan, modulation_state=None) -> list:
    """Replaces the planned norms of a TensorRT-LLM ``QWenForCausalLM`` by conditional norms calling the plugin;
    loads W/b from ``modulation_state`` (the trained ``user_layers.safetensors`` tensors) when given, else keeps
    them zero. Returns the new modules. Needs ``tensorrt_llm``; untested without a GPU node."""
    require_tensorrt_llm()
    from builders.trtllm import conditional_norm_trtllm   # imports tensorrt_llm at module level

    return conditional_norm_trtllm.apply_plan(model, plan, modulation_state)


__all__ = ["ConditionalNormPlan", "HF_NORM_ATTRS", "NORM_SITES", "NormInsertion", "TRTLLM_NORM_ATTRS",
           "TensorRTLLMUnavailable", "UserContextInput", "apply_plan", "gather_user_context", "insertion_plan",
           "modulation", "plan_for_engine", "require_tensorrt_llm", "user_context_row"]
