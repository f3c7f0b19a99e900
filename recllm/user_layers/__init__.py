"""Adaptive user layers: per-user conditioning of the Qwen2 generator through its ``layer_context`` hooks.

The pieces, in the order a request meets them:

* ``user_vector`` — the user context vector ``u`` from the profile (DP-released preferences, demographics,
  temporal pattern, service shares) and the segments cold users fall back to;
* ``conditional_norm`` — RMSNorm modulated by ``u`` (adaLN-Zero: an untrained one is the base norm);
* ``prefix_attention`` — per-layer prefix keys/values produced from ``u``;
* ``multi_lora`` / ``mixture_gate`` — per-row LoRA adapters from preallocated slots, and a gated mixture of
  segment adapters, in one batched ``kernels.multi_lora`` call;
* ``adapter_store`` — adapters on disk in PEFT's format, a host/slot LRU, the user → segment → base policy;
* ``trtllm_export`` — the same adapters as TensorRT-LLM ``lora_weights`` / ``lora_config`` tensors;
* ``adaptive_model`` — the Qwen2 with all of it plugged in.

``recllm.generator`` knows nothing of this package; training lives in ``builders/train_user_layers.py``.
"""
