"""Stub crashes after decoupled BLS streams, with and without ``recllm.serving.bls_stream``: the plain loop against
the product's way of reading a stream, on the real tritonserver (2.51, from the nvidia-pytriton wheel).

Why: ``recllm_chat`` died with a segfault in ordinary Python code about once per 2,000-3,200 chat turns under load
(benchmarks/results/soak_chat_segfault.md). The cause is in the Python backend of this release (see the
docstring of ``recllm/serving/bls_stream.py``). This script isolates it in a two-model repository
(``benchmarks/bls_stream_repro/``: ``stream_source`` streams string tensors, ``stream_caller`` reads them through
decoupled BLS and then runs plain Python), so that a release of Triton or a change of ours can be checked in minutes.

Each mode runs on its own server start, one after the other, for the same time at the same concurrency: clients
send ``stream_caller`` requests over gRPC streams; counted are turns answered, error answers, and stub crashes
(``Fatal Python error`` in the server log: the caller enables ``faulthandler``). The Python backend restarts a dead
stub by itself, so a run goes on after a crash.

    .venv/bin/python -m benchmarks.bls_stream_release --seconds 90 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info
from recllm.config.field_checks import require_above
from recllm.serving.triton_server import TritonServer, TritonServerConfig, crash_traces, free_port

REPRO = Path(__file__).resolve().parent / "bls_stream_repro"
RESULTS = Path(__file__).resolve().parent / "results"
MODES = {0: "plain loop (`for response in request.exec(decoupled=True)`)",
         1: "`DecoupledBlsStreams.responses` (held until the stub's cleanup)"}
REPLY_TIMEOUT_S = 20.0

CONFIGS = {
    "stream_source": """name: "stream_source"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
instance_group [ { count: %(source_instances)d kind: KIND_CPU } ]
""",
    "stream_caller": """name: "stream_caller"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "STRINGS" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: %(caller_instances)d kind: KIND_CPU } ]
""",
}


@dataclass
class ReproConfig:
    """One run: how long each mode is loaded, by how many client streams, how many responses a stream carries."""

    seconds: float = 90.0
    concurrency: int = 8
    responses_per_stream: int = 12
    caller_instances: int = 4
    source_instances: int = 2

    def __post_init__(self) -> None:
        for name in ("seconds", "concurrency", "responses_per_stream", "caller_instances", "source_instances"):
            require_above(self, name, 0)


@dataclass
class ModeResult:
    mode: int
    seconds: float
    turns: int
    errors: int
    stub_crashes: int
    wrong_counts: int

    @property
    def crashes_per_1000_turns(self) -> float:
        return 1000.0 * self.stub_crashes / max(self.turns, 1)


def write_repository(target: Path, config: ReproConfig) -> Path:
    """The repro repository: the committed model code, configs generated from ``config``."""
    if target.exists():
        shutil.rmtree(target)
    for model in CONFIGS:
        shutil.copytree(REPRO / model, target / model, ignore=shutil.ignore_patterns("__pycache__"))
        (target / model / "config.pbtxt").write_text(CONFIGS[model] % asdict(config))
    return target


def client_loop(url: str, mode: int, config: ReproConfig, stop_at: float, tally: dict, lock: threading.Lock) -> None:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415 - a client dependency of benchmarks only

    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    expected = config.responses_per_stream * 32
    try:
        while time.monotonic() < stop_at:
            inputs = [grpcclient.InferInput("N", [1], "INT32"), grpcclient.InferInput("MODE", [1], "INT32")]
            inputs[0].set_data_from_numpy(np.array([config.responses_per_stream], dtype=np.int32))
            inputs[1].set_data_from_numpy(np.array([mode], dtype=np.int32))
            client.async_stream_infer("stream_caller", inputs)
            try:
                result, error = answers.get(timeout=REPLY_TIMEOUT_S)
            except queue.Empty:
                with lock:
                    tally["errors"] += 1
                return  # the stream is stuck: this client stops
            with lock:
                if error is not None:
                    tally["errors"] += 1
                else:
                    tally["turns"] += 1
                    tally["wrong_counts"] += int(result.as_numpy("STRINGS")[0] != expected)
            if error is not None:
                time.sleep(0.2)  # the stub is being restarted
    finally:
        client.stop_stream()


def run_mode(mode: int, config: ReproConfig, work: Path) -> ModeResult:
    repository = write_repository(work / f"repository_{mode}", config)
    server_config = TritonServerConfig(artifact_dir=work / "artifacts", model_repository=repository,
                                       grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                                       runtime_dir=work / f"runtime_{mode}", stub_watchdog=None,
                                       startup_timeout_s=120.0)
    log_path = work / f"tritonserver_{mode}.log"
    server = TritonServer(server_config, log_path=log_path).launch()
    tally, lock = {"turns": 0, "errors": 0, "wrong_counts": 0}, threading.Lock()
    try:
        stop_at = time.monotonic() + config.seconds
        clients = [threading.Thread(target=client_loop, args=(server_config.grpc_url, mode, config, stop_at, tally,
                                                              lock)) for _ in range(config.concurrency)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
    finally:
        server.stop()
    crashes = len(crash_traces(log_path)["serving"])  # (a stub may also crash tearing down at the stop: not counted)
    return ModeResult(mode, config.seconds, tally["turns"], tally["errors"], crashes, tally["wrong_counts"])


def render(results: list[ModeResult], config: ReproConfig, command: str) -> str:
    lines = ["# Decoupled BLS streams: stub crashes with the plain loop and with `DecoupledBlsStreams`", "",
             f"Command: `{command}`", "", f"Machine: {json.dumps(machine_info())}", "",
             f"Load: each mode on its own tritonserver start, {config.concurrency} gRPC client streams for "
             f"{config.seconds:.0f} s; a `stream_caller` turn reads {config.responses_per_stream} responses of 32 "
             f"strings from `stream_source` through decoupled BLS, then runs plain Python "
             f"({config.caller_instances} caller / {config.source_instances} source instances; "
             f"`benchmarks/bls_stream_repro/`).", "",
             "| mode | turns answered | error answers | stub crashes | crashes per 1,000 turns | wrong counts |",
             "|---|---|---|---|---|---|"]
    for result in results:
        lines.append(f"| {MODES[result.mode]} | {result.turns} | {result.errors} | {result.stub_crashes} | "
                     f"{result.crashes_per_1000_turns:.2f} | {result.wrong_counts} |")
    lines += ["", "A stub crash is a `Fatal Python error` in the server log before the server was stopped; the "
              "Python backend restarts the stub, and the turns in flight then get error answers, and a client whose "
              "turn is never answered stops after "
              f"{REPLY_TIMEOUT_S:.0f} s: the plain loop's modes answer fewer turns for that. Wrong counts: a turn "
              "answered with other than every string streamed to it."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=ReproConfig.seconds, help="load time per mode")
    parser.add_argument("--concurrency", type=int, default=ReproConfig.concurrency)
    parser.add_argument("--modes", default="0,1", help="comma-separated: 0 plain loop, 1 DecoupledBlsStreams")
    parser.add_argument("--output", type=Path, default=RESULTS / "bls_stream_release.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ModeResult]:
    args = parse_args(argv)
    modes = [int(mode) for mode in args.modes.split(",")]
    if not modes or any(mode not in MODES for mode in modes):
        raise SystemExit(f"--modes: choose from {sorted(MODES)}, got {args.modes!r}")
    config = ReproConfig(seconds=args.seconds, concurrency=args.concurrency)
    results = []
    with tempfile.TemporaryDirectory(prefix="bls_repro_") as tmp:
        for mode in modes:
            result = run_mode(mode, config, Path(tmp))
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
    command = "python -m benchmarks.bls_stream_release " + " ".join(argv if argv is not None else sys.argv[1:])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(results, config, command.strip()))
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
