#!/usr/bin/env bash
# Container entrypoint on GPU nodes: tritonserver on the GPU model repository, one MPI rank per GPU of the engine.
# WORLD_SIZE must equal the engine's tensor parallelism (build_plan.json "tp"). Not run here (no GPU).
# With WORLD_SIZE > 1: one tritonserver per MPI rank, all given the same flags; ranks > 0 load only tensorrt_llm
# (the pattern of TensorRT-LLM's triton_backend/scripts/launch_triton_server.py, which backgrounds mpirun; a
# container entrypoint must stay in the foreground, hence exec here).
set -euo pipefail
REPO="${MODEL_REPOSITORY:-/opt/recllm/model_repository_gpu}"
WORLD_SIZE="${WORLD_SIZE:-1}"
PORTS=(--http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" --metrics-port "${METRICS_PORT:-8002}")

if [[ "$WORLD_SIZE" -eq 1 ]]; then
    exec tritonserver --model-repository="$REPO" "${PORTS[@]}"
fi
ranks=()
for rank in $(seq 0 $((WORLD_SIZE - 1))); do
    [[ "$rank" -gt 0 ]] && ranks+=(":")
    ranks+=(-n 1 tritonserver --model-repository="$REPO" "${PORTS[@]}" --disable-auto-complete-config
            "--backend-config=python,shm-region-prefix-name=prefix${rank}_")
    if [[ "$rank" -gt 0 ]]; then
        ranks+=(--model-control-mode=explicit --load-model=tensorrt_llm)
    fi
done
exec mpirun --allow-run-as-root "${ranks[@]}"
