"""TensorRT-LLM engine builds for the GPU generator (Qwen2 + per-user LoRA + Semantic-ID vocabulary).

Nothing here imports ``tensorrt_llm``: the package turns a build config into the official command lines
(``convert_checkpoint.py`` / ModelOpt ``quantize.py`` then ``trtllm-build``), a memory plan and a capacity plan, so
it is tested on CPU machines; the commands themselves only run on GPU nodes (``validate_on_gpu.sh``).

Modules: ``model_shape`` (Qwen2 dimensions, presets, HF ``config.json``), ``engine_config`` (the validated build
config), ``memory_plan`` (bytes per GPU), ``build_engine`` (commands + CLI), ``gpu_specs`` + ``capacity_plan``
(``docs/capacity.md``).
"""
