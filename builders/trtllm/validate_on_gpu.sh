#!/usr/bin/env bash
# Validate the GPU path of Rec-LLM on ONE GPU node (operator script).
#
# NOT RUN HERE: this repository is developed on CPU-only machines where TensorRT-LLM cannot be installed.
# This script has only been syntax-checked (`bash -n`, tests/builders/trtllm/test_validate_on_gpu_script.py).
# Its result file is the first real evidence for the GPU path; record it in docs/gpu_nodes.md.
#
# Where: inside nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3 (deploy/Dockerfile builds on it), repo at
# the working directory, one GPU visible. Needs, all local (GPU nodes may be offline):
#   CHECKPOINT       Qwen2-0.5B HF checkpoint folder, SID rows included in embed_tokens/lm_head (config.json,
#                    tokenizer, safetensors)
#   TRTLLM_EXAMPLES  TensorRT-LLM examples/ of the same version as the image's tensorrt_llm wheel
# Optional: WORK (default /tmp/recllm-gpu-validate), RESULT (default $WORK/result.json), PORT_BASE (default 18000).
#
# Steps: 1 record the node; 2 plan + build the 0.5B engine with LoRA; 3 write two users' adapters; 4 generate the
# GPU model repository for that engine; 5 start tritonserver (tensorrt_llm + generator_trtllm); 6 one chat turn as
# a user without adapter and as two users with different adapters; 7 perf_analyzer (when installed); 8 result file.
set -euo pipefail

: "${CHECKPOINT:?set CHECKPOINT to a Qwen2-0.5B HF checkpoint folder}"
: "${TRTLLM_EXAMPLES:?set TRTLLM_EXAMPLES to TensorRT-LLM/examples of the installed version}"
WORK="${WORK:-/tmp/recllm-gpu-validate}"
RESULT="${RESULT:-$WORK/result.json}"
PORT_BASE="${PORT_BASE:-18000}"
HTTP_PORT=$((PORT_BASE)); GRPC_PORT=$((PORT_BASE + 1)); METRICS_PORT=$((PORT_BASE + 2))
PYTHON="${PYTHON:-python3}"
mkdir -p "$WORK"
LOG="$WORK/steps.log"; : > "$LOG"
SERVER_PID=""

step() { echo "== $(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
cleanup() { if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

step "1 node"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.csv"
GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n1)
GPU_GIB=$("$PYTHON" -c "print(round($GPU_MIB / 1024, 1))")
"$PYTHON" -c "import tensorrt_llm; print('tensorrt_llm', tensorrt_llm.__version__)" | tee "$WORK/versions.txt"
tritonserver --version 2>/dev/null | head -n 3 >> "$WORK/versions.txt" || echo "tritonserver --version unavailable" >> "$WORK/versions.txt"

step "2 engine build (0.5b, bf16, TP1, LoRA rank 8)"
BUILD_ARGS=(--preset 0.5b --checkpoint "$CHECKPOINT" --output "$WORK/engine" --tp 1 --quant bf16
            --gpu-memory-gib "$GPU_GIB" --max-lora-rank 8 --trtllm-examples-dir "$TRTLLM_EXAMPLES" --python "$PYTHON")
"$PYTHON" -m builders.trtllm.build_engine "${BUILD_ARGS[@]}" --dry-run
BUILD_START=$(date +%s)
"$PYTHON" -m builders.trtllm.build_engine "${BUILD_ARGS[@]}" 2>&1 | tee "$WORK/build.log"
BUILD_SECONDS=$(( $(date +%s) - BUILD_START ))
du -sb "$WORK/engine/engine" | cut -f1 > "$WORK/engine_bytes.txt"

step "3 adapters for two users"
"$PYTHON" -m builders.trtllm.gpu_smoke adapters --preset 0.5b --checkpoint "$CHECKPOINT" \
    --adapter-dir "$WORK/adapters/users" | tee "$WORK/adapters.json"
mkdir -p "$WORK/adapters/prefetch"

step "4 GPU model repository"
"$PYTHON" -m ensemble.gpu_repository --repository "$WORK/model_repository_gpu" --preset 0.5b \
    --gpu-memory-gib "$GPU_GIB" --engine-dir "$WORK/engine/engine" --tokenizer-dir "$CHECKPOINT" \
    --adapter-dir "$WORK/adapters/users" --lora-prefetch-dir "$WORK/adapters/prefetch" --guided-decoding-backend ""
cp model_repository_gpu/generator_trtllm/1/model.py "$WORK/model_repository_gpu/generator_trtllm/1/model.py"

step "5 tritonserver"
# generator_trtllm verifies signed user tokens with this run's own keyring (created 0600; never reused elsewhere)
KEYRING="$WORK/keyring.json"
"$PYTHON" -m builders.trtllm.gpu_smoke keyring --keyring "$KEYRING"
RECLLM_KEYRING="$KEYRING" tritonserver --model-repository="$WORK/model_repository_gpu" --model-control-mode=explicit \
    --load-model=tensorrt_llm --load-model=generator_trtllm \
    --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --metrics-port "$METRICS_PORT" > "$WORK/tritonserver.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    if curl -sf "localhost:$HTTP_PORT/v2/health/ready" > /dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "tritonserver exited; see $WORK/tritonserver.log"; exit 1; fi
    sleep 2
done
curl -sf "localhost:$HTTP_PORT/v2/health/ready" > /dev/null
curl -sf "localhost:$HTTP_PORT/v2/health/live" > /dev/null

step "6 chat turn: no adapter, adapter A, adapter B"
CHAT_RC=0
"$PYTHON" -m builders.trtllm.gpu_smoke chat --url "localhost:$GRPC_PORT" --keyring "$KEYRING" --result "$WORK/chat.json" || CHAT_RC=$?

step "7 perf_analyzer"
PERF_STATUS="skipped: perf_analyzer not on PATH"
if command -v perf_analyzer > /dev/null; then
    "$PYTHON" -m builders.trtllm.gpu_smoke perf-input --keyring "$KEYRING" --output "$WORK/perf_input.json"
    perf_analyzer -m generator_trtllm -u "localhost:$GRPC_PORT" -i grpc --input-data "$WORK/perf_input.json" \
        --concurrency-range 1:16:3 --measurement-interval 10000 -f "$WORK/perf.csv" > "$WORK/perf.txt" 2>&1 \
        && PERF_STATUS="ok" || PERF_STATUS="failed: see perf.txt"
fi
curl -sf "localhost:$METRICS_PORT/metrics" > "$WORK/metrics.txt" || true

step "8 result"
"$PYTHON" - "$WORK" "$RESULT" "$BUILD_SECONDS" "$CHAT_RC" "$PERF_STATUS" <<'EOF'
import json, pathlib, sys
work, result, build_seconds, chat_rc, perf_status = sys.argv[1:]
work = pathlib.Path(work)
read = lambda name: (work / name).read_text().strip() if (work / name).exists() else None
plan = json.loads(read("engine/build_plan.json") or "{}")
out = {
    "ran_on_gpu": True, "gpu": read("gpu.csv"), "versions": read("versions.txt"),
    "build_seconds": int(build_seconds), "engine_bytes": int(read("engine_bytes.txt") or 0),
    "planned_memory_gib": plan.get("memory_per_gpu", {}).get("gib"),
    "chat": json.loads(read("chat.json") or "null"), "chat_exit_code": int(chat_rc),
    "perf_analyzer": perf_status, "perf_csv": read("perf.csv"),
    "kv_cache_log": [l for l in (read("tritonserver.log") or "").splitlines() if "KV cache" in l or "LoRA" in l][:20],
}
pathlib.Path(result).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {result}")
EOF
exit "$CHAT_RC"
