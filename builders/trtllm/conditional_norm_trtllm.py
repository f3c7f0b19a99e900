"""The TensorRT-LLM side of :mod:`builders.trtllm.conditional_norm_network` (imports ``tensorrt_llm``: GPU nodes).

Written against TensorRT-LLM's ``QWenForCausalLM`` (``transformer.layers[i].input_layernorm`` /
``post_layernorm``, ``RmsNorm.weight`` / ``.eps``, ``transformer.forward(..., prompt_embedding_table,
prompt_tasks, prompt_vocab_size)``) and functional API (``embedding``, ``slice``, ``split``, ``shape``, ``concat``).
It has not been run: nothing here has been on a GPU node. Import it through ``conditional_norm_network.apply_plan``,
which says clearly when ``tensorrt_llm`` is missing.
"""

from __future__ import annotations

import torch
from tensorrt_llm._utils import str_dtype_to_torch
from tensorrt_llm.functional import concat, embedding, shape, slice, split
from tensorrt_llm.layers import Linear
from tensorrt_llm.module import Module

from builders.trtllm.conditional_norm_network import ConditionalNormPlan
from builders.trtllm.conditional_norm_plugin import ConditionalRMSNormPlugin, TRTLLM_IMPORT_ERROR


class UserContextRows:
    """Per network build: the user-context row of every token, gathered once from the prompt table."""

    def __init__(self, plan: ConditionalNormPlan):
        self.plan = plan
        self.inputs = None
        self._rows = None

    def bind(self, prompt_embedding_table, prompt_tasks, prompt_vocab_size) -> None:
        if prompt_embedding_table is None:
            size = self.plan.user_context.max_prompt_embedding_table_size
            raise ValueError("conditional norms read u from the prompt-embedding table: build the engine with "
                             f"max_prompt_embedding_table_size={size}")
        self.inputs = (prompt_embedding_table, prompt_tasks, prompt_vocab_size)
        self._rows = None

    def rows(self):
        """[N, d_u + 1]: u and the has_user flag of each token's request."""
        if self._rows is None:
            table, tasks, vocab = self.inputs
            context = self.plan.user_context
            index = tasks * vocab + context.row                     # [N] row of the request's user-context row
            full = embedding(index, table)                          # [N, hidden]
            self._rows = slice(full, starts=[0, 0], sizes=concat([shape(full, 0), context.user_dim + 1]))
        return self._rows


class ConditionalRmsNorm(Module):
    """``rmsnorm(x) * weight * (1 + γ) + β`` through the plugin, ``[γ ; β] = has_user * (W u + b)``."""

    def __init__(self, base, rows: UserContextRows, plan: ConditionalNormPlan, dtype):
        super().__init__()
        self.weight = base.weight                                   # same parameter name as the base RmsNorm
        self.eps = float(base.eps)
        self.rows = rows
        self.user_dim, self.hidden_size = plan.user_dim, plan.hidden_size
        self.modulation = Linear(plan.user_dim, 2 * plan.hidden_size, bias=True, dtype=dtype)

    def forward(self, hidden_states):                               # [N, D] (remove_input_padding)
        rows = self.rows.rows()
        n = shape(rows, 0)
        u = slice(rows, starts=[0, 0], sizes=concat([n, self.user_dim]))              # [N, d_u]
        has_user = slice(rows, starts=[0, self.user_dim], sizes=concat([n, 1]))       # [N, 1]
        gamma, beta = split(self.modulation(u) * has_user, self.hidden_size, dim=1)   # [N, D] each
        return ConditionalRMSNormPlugin(self.eps)(hidden_states, self.weight.value, gamma, beta)


def apply_plan(model, plan: ConditionalNormPlan, modulation_state=None) -> list:
    if ConditionalRMSNormPlugin is None:
        raise RuntimeError(f"the plugin class is not registered: {TRTLLM_IMPORT_ERROR}")
    rows = UserContextRows(plan)
    installed = []
    for insertion in plan.insertions:
        layer = model.transformer.layers[insertion.layer]
        attr = insertion.trtllm_module.rsplit(".", 1)[1]
        norm = ConditionalRmsNorm(getattr(layer, attr), rows, plan, model.config.dtype)
        for param, param_shape in (("weight", insertion.modulation_weight_shape),
                                   ("bias", insertion.modulation_bias_shape)):
            # adaLN-Zero without trained weights: W = b = 0, i.e. the base norm
            value = torch.zeros(param_shape) if modulation_state is None \
                else modulation_state[f"{insertion.source_prefix}modulation.{param}"]
            getattr(norm.modulation, param).value = value.to(str_dtype_to_torch(model.config.dtype))
        setattr(layer, attr, norm)
        installed.append(norm)

    original_forward = model.transformer.forward

    def forward(*args, prompt_embedding_table=None, prompt_tasks=None, prompt_vocab_size=None, **kwargs):
        rows.bind(prompt_embedding_table, prompt_tasks, prompt_vocab_size)
        return original_forward(*args, prompt_embedding_table=prompt_embedding_table, prompt_tasks=prompt_tasks,
                                prompt_vocab_size=prompt_vocab_size, **kwargs)

    model.transformer.forward = forward
    return installed
