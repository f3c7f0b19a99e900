"""Throughput and latency of the served models measured by NVIDIA perf_analyzer against the real tritonserver.

Starts tritonserver on the built artifacts (``recllm.serving.triton_server``), turns the held-out requests in
``<artifact-dir>/eval_queries.jsonl`` into a perf_analyzer ``--input-data`` JSON, and runs perf_analyzer over
gRPC at a concurrency range for:

* ``recllm_rank`` - the ranking ensemble (encoder → retriever → reranker, batched stages), no reply;
* ``recllm`` - the ensemble (encoder → retriever → reranker → generator), one response per request;
* ``recllm_chat`` - the decoupled chat model, driven with ``--streaming``; perf_analyzer's latency there is
  request sent → last streamed response, and the time to the first streamed response is computed from its
  ``--profile-export-file`` timestamps.

The served models take a signed ``user_token``, never a user id (``recllm_proto.user_token``). perf_analyzer replays
fixed tensors, so each row's token is signed with the server's keyring just before that model's run and stays valid
for the run (``token_ttl_s``). Those tokens are live credentials: their input file is written 0600 into the work
folder and deleted after the run; ``benchmarks/results/`` gets the same requests with each token replaced by a
placeholder naming its user (``redacted_token``), so nothing committed can call the server.

perf_analyzer comes from the tritonclient 2.41.0 wheel, fetched into ``artifacts/tools/`` without touching the
venv (see ``benchmarks/perf_analyzer_tool.py``). Writes ``benchmarks/results/perf_analyzer.md`` (table, exact
command lines, machine info) and the raw CSVs as ``benchmarks/results/perf_analyzer_<model>.csv``.

    python -m benchmarks.perf_analyzer_run [--artifact-dir artifacts/default] [--concurrency-range 1:4:3]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from typing import Callable

from benchmarks.machine_info import machine_info
from benchmarks.perf_analyzer_tool import DEFAULT_TOOLS_DIR, PerfAnalyzerTool, ensure_perf_analyzer
from recllm.serving.triton_server import REPO_ROOT, TritonServer, TritonServerConfig, free_port
from recllm_client import RecLLMClient
from recllm_proto import tensors as T
from recllm_proto.user_token import Keyring, load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
MAX_TOP_K = 50
USEC_PER_MS = 1000.0
NSEC_PER_MS = 1_000_000.0
UNSTABLE_MARKER = "Failed to obtain stable measurement"
WARMUP_REQUESTS = 3
TOKEN_MARGIN_S = 120.0  # on top of the longest a model's runs may take (first attempt + retry)


@dataclass(frozen=True)
class ModelSpec:
    """How perf_analyzer must drive one served model."""

    name: str
    streaming: bool  # decoupled model: gRPC stream only
    needs_session: bool
    ensemble: bool  # perf_analyzer's top-level server queue/compute leave out the composing models' queueing


MODELS = {
    T.RANK_MODEL: ModelSpec(T.RANK_MODEL, streaming=False, needs_session=False, ensemble=True),
    T.ENSEMBLE_MODEL: ModelSpec(T.ENSEMBLE_MODEL, streaming=False, needs_session=False, ensemble=True),
    T.CHAT_MODEL: ModelSpec(T.CHAT_MODEL, streaming=True, needs_session=True, ensemble=False),
}


def parse_concurrency_range(text: str) -> tuple[int, int, int]:
    """``"start[:end[:step]]"`` → (start, end, step), all positive, end >= start."""
    parts = str(text).split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"PerfAnalyzerConfig.concurrency_range must be 'start[:end[:step]]', got {text!r}")
    try:
        numbers = [int(p) for p in parts]
    except ValueError as exc:
        raise ValueError(f"PerfAnalyzerConfig.concurrency_range must hold integers, got {text!r}") from exc
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    step = numbers[2] if len(numbers) > 2 else 1
    if start < 1 or step < 1 or end < start:
        raise ValueError(
            f"PerfAnalyzerConfig.concurrency_range needs start >= 1, step >= 1 and end >= start, got {text!r}"
        )
    return start, end, step


@dataclass
class PerfAnalyzerConfig:
    """What to measure and how long; defaults finish in a few minutes on a 2-core machine."""

    artifact_dir: Path = REPO_ROOT / "artifacts" / "default"
    models: tuple[str, ...] = ("recllm_rank", "recllm", "recllm_chat")
    concurrency_range: str = "1:4:3"
    measurement_interval_ms: int = 4000
    stability_percentage: float = 50.0
    max_trials: int = 5
    top_k: int = 5
    max_rows: int = 64
    run_timeout_s: float = 900.0
    results_dir: Path = RESULTS
    tools_dir: Path = DEFAULT_TOOLS_DIR
    work_dir: Path = REPO_ROOT / "artifacts" / "perf_analyzer"
    concurrencies: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("artifact_dir", "results_dir", "tools_dir", "work_dir"):
            setattr(self, name, Path(getattr(self, name)))
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in MODELS]
        if not self.models or unknown:
            raise ValueError(f"PerfAnalyzerConfig.models must be a non-empty subset of {sorted(MODELS)}, "
                             f"got {list(self.models)}")
        start, end, step = parse_concurrency_range(self.concurrency_range)
        self.concurrencies = tuple(range(start, end + 1, step))
        checks = {
            "measurement_interval_ms": self.measurement_interval_ms > 0,
            "stability_percentage": self.stability_percentage > 0,
            "max_trials": self.max_trials >= 1,
            "top_k": 1 <= self.top_k <= MAX_TOP_K,
            "max_rows": self.max_rows >= 1,
            "run_timeout_s": self.run_timeout_s > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"PerfAnalyzerConfig.{name} is out of range: {getattr(self, name)!r}"
                                 + (f" (expected 1..{MAX_TOP_K})" if name == "top_k" else ""))


# ---------------------------------------------------------------------------------------------- input data


def load_eval_rows(path: Path, limit: int) -> list[dict]:
    """The first ``limit`` held-out requests (user_id, text, service) written by the artifact build."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build the artifacts first (python -m builders.build_artifacts)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no requests")
    return rows[:limit]


def redacted_token(user_id: str) -> str:
    """What the committed copy of the input data holds instead of a token: who it was signed for, and that it was."""
    return f"<user token for {user_id}, signed at run time>"


def token_ttl_s(config: PerfAnalyzerConfig) -> float:
    """How long one model's tokens must stay valid: its first perf_analyzer attempt and a retry, with a margin."""
    return 2 * config.run_timeout_s + TOKEN_MARGIN_S


def signer(keyring: Keyring, ttl_s: float) -> Callable[[str], str]:
    """user id -> a user token from ``keyring`` valid for ``ttl_s`` seconds from now."""
    if not ttl_s > 0:
        raise ValueError(f"token ttl_s must be > 0, got {ttl_s!r}")
    return lambda user_id: keyring.sign(user_id, ttl_s=ttl_s)


def build_input_data(rows: list[dict], model: str, top_k: int, session_prefix: str = "pa",
                     sign: Callable[[str], str] = redacted_token) -> dict:
    """perf_analyzer ``--input-data`` JSON: one entry per request, every input a flat list of its [1] shape
    (for the batched ensembles perf_analyzer adds the batch dim itself, ``-b 1``).

    ``sign`` turns each row's user id into its ``user_token`` (``signer`` for a run; the default
    ``redacted_token`` for the committed copy). The chat model gets one session id per row; perf_analyzer replays
    the rows round-robin, so each session sees the same message several times (later turns exclude items already
    shown in that session).
    """
    spec = MODELS[model]
    data = []
    for index, row in enumerate(rows):
        entry = {}
        if spec.needs_session:
            entry[T.SESSION_ID.client_name] = [f"{session_prefix}-{index:04d}"]
        entry[T.USER_TOKEN.client_name] = [sign(str(row["user_id"]))]
        entry[T.QUERY.client_name] = [str(row["text"])]
        entry[T.TOP_K.client_name] = [int(top_k)]
        entry[T.SERVICE.client_name] = [str(row.get("service") or "")]
        data.append(entry)
    return {"data": data}


def write_json(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_private_json(data: dict, path: Path) -> Path:
    """``write_json`` for a file holding live tokens: created 0600 (owner only) before anything is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, ensure_ascii=False, indent=1))
    return path


# ------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class RunPaths:
    """Files of one perf_analyzer run."""

    input_json: Path     # what perf_analyzer reads: live tokens, 0600, deleted after the run
    requests_json: Path  # the same requests with redacted tokens: what ``save_results`` commits
    csv: Path
    export_json: Path
    log: Path

    @classmethod
    def under(cls, work_dir: Path, model: str) -> "RunPaths":
        return cls(input_json=work_dir / f"{model}_input.json", requests_json=work_dir / f"{model}_requests.json",
                   csv=work_dir / f"{model}.csv", export_json=work_dir / f"{model}_profile_export.json",
                   log=work_dir / f"{model}.log")


def perf_analyzer_command(binary: Path, model: str, grpc_url: str, paths: RunPaths,
                          config: PerfAnalyzerConfig) -> list[str]:
    command = [
        str(binary), "-m", model, "-u", grpc_url, "-i", "grpc",
        "--input-data", str(paths.input_json),
        "--concurrency-range", config.concurrency_range,
        "--measurement-mode", "time_windows",
        "--measurement-interval", str(config.measurement_interval_ms),
        "--stability-percentage", f"{config.stability_percentage:g}",
        "--max-trials", str(config.max_trials),
        "-f", str(paths.csv),
    ]
    if MODELS[model].streaming:
        command += ["--streaming", "--profile-export-file", str(paths.export_json)]
    return command


@dataclass(frozen=True)
class RunOutcome:
    returncode: int
    output_tail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_perf_analyzer(command: list[str], env: dict[str, str], log_path: Path, timeout_s: float) -> RunOutcome:
    """Run perf_analyzer, keeping its full output in ``log_path``; never raises on a failed measurement."""
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        returncode, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = -1
        captured = [c.decode(errors="replace") if isinstance(c, bytes) else (c or "")
                    for c in (exc.stdout, exc.stderr)]
        output = "".join(captured) + f"\nperf_analyzer timed out after {timeout_s:.0f} s"
    log_path.write_text(output, encoding="utf-8")
    tail = "\n".join(output.strip().splitlines()[-15:])
    return RunOutcome(returncode=returncode, output_tail=tail, seconds=time.monotonic() - started)


# ------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class LatencyRow:
    """One concurrency level of perf_analyzer's CSV, latencies in ms."""

    concurrency: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    server_queue_ms: float | None = None
    server_compute_ms: float | None = None
    response_throughput: float | None = None
    first_response_p50_ms: float | None = None
    first_response_p95_ms: float | None = None


def _optional_float(record: dict, column: str, scale: float = 1.0) -> float | None:
    value = record.get(column)
    return None if value in (None, "") else float(value) / scale


def parse_perf_csv(text: str) -> list[LatencyRow]:
    """perf_analyzer ``-f`` CSV (latency columns in µs) → rows sorted by concurrency."""
    reader = csv.DictReader(io.StringIO(text))
    required = {"Concurrency", "Inferences/Second", "p50 latency", "p90 latency", "p95 latency", "p99 latency"}
    missing = required - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"perf_analyzer CSV lacks columns {sorted(missing)}; header: {reader.fieldnames}")
    rows = [
        LatencyRow(
            concurrency=int(record["Concurrency"]),
            throughput=float(record["Inferences/Second"]),
            p50_ms=float(record["p50 latency"]) / USEC_PER_MS,
            p90_ms=float(record["p90 latency"]) / USEC_PER_MS,
            p95_ms=float(record["p95 latency"]) / USEC_PER_MS,
            p99_ms=float(record["p99 latency"]) / USEC_PER_MS,
            server_queue_ms=_optional_float(record, "Server Queue", USEC_PER_MS),
            server_compute_ms=_optional_float(record, "Server Compute Infer", USEC_PER_MS),
            response_throughput=_optional_float(record, "Response Throughput"),
        )
        for record in reader
        if record.get("Concurrency")
    ]
    return sorted(rows, key=lambda row: row.concurrency)


def first_response_percentiles(export: dict) -> dict[int, tuple[float, float]]:
    """Per concurrency: (p50, p95) ms from request sent to its first streamed response (profile export)."""
    result = {}
    for experiment in export.get("experiments", []):
        if experiment.get("experiment", {}).get("mode") != "concurrency":
            continue
        waits = [(r["response_timestamps"][0] - r["timestamp"]) / NSEC_PER_MS
                 for r in experiment.get("requests", []) if r.get("response_timestamps")]
        if waits:
            result[int(experiment["experiment"]["value"])] = (float(np.percentile(waits, 50)),
                                                              float(np.percentile(waits, 95)))
    return result


def with_first_response(rows: list[LatencyRow], first: dict[int, tuple[float, float]]) -> list[LatencyRow]:
    updated = []
    for row in rows:
        p50, p95 = first.get(row.concurrency, (None, None))
        updated.append(LatencyRow(**{**{f.name: getattr(row, f.name) for f in fields(row)},
                                     "first_response_p50_ms": p50, "first_response_p95_ms": p95}))
    return updated


# ------------------------------------------------------------------------------------------- report


@dataclass
class ModelReport:
    model: str
    command: list[str]
    outcome: RunOutcome
    rows: list[LatencyRow]
    error: str = ""
    note: str = ""


def _cell(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(report: ModelReport) -> str:
    spec = MODELS[report.model]
    header = ["concurrency", "throughput infer/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms"]
    if not spec.ensemble:
        header += ["server queue ms", "server compute ms"]
    if spec.streaming:
        header += ["responses/s", "first response p50 ms", "first response p95 ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in report.rows:
        cells = [str(row.concurrency), _cell(row.throughput, 2), _cell(row.p50_ms), _cell(row.p90_ms),
                 _cell(row.p95_ms), _cell(row.p99_ms)]
        if not spec.ensemble:
            cells += [_cell(row.server_queue_ms), _cell(row.server_compute_ms)]
        if spec.streaming:
            cells += [_cell(row.response_throughput), _cell(row.first_response_p50_ms),
                      _cell(row.first_response_p95_ms)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_section(report: ModelReport) -> str:
    spec = MODELS[report.model]
    what = ("decoupled chat model over a gRPC stream (`--streaming`); latency = request sent → last response"
            if spec.streaming else "ensemble, one response per request")
    parts = [f"## `{report.model}` — {what}", ""]
    if report.rows:
        parts += [markdown_table(report), ""]
    if report.rows and spec.ensemble:
        parts += ["perf_analyzer's per-step server times (queue/compute of each composing model) are in its "
                  "console log; the ensemble's own top-level server columns in the raw CSV leave that queueing out.",
                  ""]
    if not report.outcome.ok or report.error:
        parts += [f"**perf_analyzer did not complete** (exit {report.outcome.returncode}) {report.error}".rstrip(),
                  "", "```", report.outcome.output_tail, "```", ""]
    if report.note:
        parts += [f"Note: {report.note}.", ""]
    parts += ["Command:", "", "```", shlex.join(report.command), "```", ""]
    return "\n".join(parts)


def render_markdown(reports: list[ModelReport], config: PerfAnalyzerConfig, machine: dict,
                    tool: PerfAnalyzerTool) -> str:
    intro = [
        "# perf_analyzer", "",
        f"NVIDIA perf_analyzer (tritonclient 2.41.0 wheel) against tritonserver 2.51 over gRPC on "
        f"`{config.artifact_dir}`, with real held-out requests from `eval_queries.jsonl` "
        f"(first {config.max_rows}, replayed round-robin, top_k={config.top_k}). "
        f"Concurrency range `{config.concurrency_range}`, time windows of {config.measurement_interval_ms} ms, "
        f"stability ±{config.stability_percentage:g}% within {config.max_trials} trials. Latencies are client-side; "
        "server queue/compute are perf_analyzer's server-side averages per request. The measurement client "
        "runs on the same cores as the server. "
        "`recllm_chat` turns are recorded in the artifacts' session store like any other chat turn. "
        "Each request carries a user token signed with the server's keyring before the model's run and valid "
        f"for {token_ttl_s(config):.0f} s; the committed `perf_analyzer_<model>_input.json` files show the replayed "
        "requests with each token replaced by a placeholder naming its user.", "",
        "Generated by `python -m benchmarks.perf_analyzer_run`.", "",
    ]
    env_line = f"LD_LIBRARY_PATH={tool.private_lib_dir}:{tool.bundled_lib_dir}"
    outro = ["## Environment", "", "```", env_line, "```", "", "## Machine", "", "```json",
             json.dumps(machine, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(intro + [model_section(r) for r in reports] + outro)


# ------------------------------------------------------------------------------------------- orchestration


def server_config(artifact_dir: Path) -> TritonServerConfig:
    return TritonServerConfig(artifact_dir=artifact_dir, grpc_port=free_port(), http_port=free_port(),
                              metrics_port=free_port())


def warm_up(grpc_url: str, rows: list[dict], config: PerfAnalyzerConfig, session_prefix: str,
            keyring: Keyring) -> None:
    """A few real calls to each model first, so one-off first-call costs do not make the first window unstable."""
    with RecLLMClient(grpc_url, timeout_s=120, keyring=keyring) as client:
        for index, row in enumerate(rows[:WARMUP_REQUESTS]):
            service = row.get("service") or ""
            if "recllm_rank" in config.models:
                client.rank(row["user_id"], row["text"], config.top_k, service)
            if "recllm" in config.models:
                client.recommend(row["user_id"], row["text"], config.top_k, service)
            if "recllm_chat" in config.models:
                client.chat(f"{session_prefix}-warmup-{index}", row["user_id"], row["text"], config.top_k, service)


def doubled_interval(config: PerfAnalyzerConfig) -> PerfAnalyzerConfig:
    return replace(config, measurement_interval_ms=2 * config.measurement_interval_ms)


def measure_model(model: str, tool: PerfAnalyzerTool, grpc_url: str, rows: list[dict],
                  config: PerfAnalyzerConfig, session_prefix: str, keyring: Keyring) -> ModelReport:
    """One perf_analyzer run; if it gives up on stability, one retry with windows twice as long. The rows' tokens
    are signed now with ``keyring`` (the server's) for both attempts; their file is gone when this returns."""
    paths = RunPaths.under(config.work_dir, model)
    for stale in (paths.csv, paths.export_json):
        stale.unlink(missing_ok=True)
    write_json(build_input_data(rows, model, config.top_k, session_prefix), paths.requests_json)
    write_private_json(build_input_data(rows, model, config.top_k, session_prefix,
                                        signer(keyring, token_ttl_s(config))), paths.input_json)
    try:
        command = perf_analyzer_command(tool.binary, model, grpc_url, paths, config)
        outcome = run_perf_analyzer(command, tool.environment(), paths.log, config.run_timeout_s)
        retried = ""
        if not outcome.ok and UNSTABLE_MARKER in outcome.output_tail:
            retried = (f"first attempt with {config.measurement_interval_ms} ms windows found no stable "
                       "measurement; this is the retry with windows twice as long")
            command = perf_analyzer_command(tool.binary, model, grpc_url, paths, doubled_interval(config))
            outcome = run_perf_analyzer(command, tool.environment(), paths.log, config.run_timeout_s)
    finally:
        paths.input_json.unlink(missing_ok=True)
    report = ModelReport(model=model, command=command, outcome=outcome, rows=[], note=retried)
    if not paths.csv.exists():
        report.error = "and wrote no CSV"
        return report
    report.rows = parse_perf_csv(paths.csv.read_text(encoding="utf-8"))
    if paths.export_json.exists():
        first = first_response_percentiles(json.loads(paths.export_json.read_text(encoding="utf-8")))
        report.rows = with_first_response(report.rows, first)
    return report


def run(config: PerfAnalyzerConfig) -> tuple[list[ModelReport], PerfAnalyzerTool, dict]:
    tool = ensure_perf_analyzer(config.tools_dir)
    rows = load_eval_rows(config.artifact_dir / "eval_queries.jsonl", config.max_rows)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    session_prefix = f"pa{int(time.time())}"
    server = TritonServer(server_config(config.artifact_dir), log_path=config.work_dir / "tritonserver.log")
    with server:
        keyring = load_keyring(server.config.keyring_path).backend_view()  # created by the server's start
        warm_up(server.config.grpc_url, rows, config, session_prefix, keyring)
        reports = [measure_model(model, tool, server.config.grpc_url, rows, config, session_prefix, keyring)
                   for model in config.models]
    return reports, tool, machine


def plot_latency_vs_throughput(reports: list[ModelReport], target: Path) -> Path | None:
    """p95 latency against throughput per model and concurrency (matplotlib when installed)."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for report in reports:
        if report.rows:
            ax.plot([r.throughput for r in report.rows], [r.p95_ms for r in report.rows], marker="o",
                    label=report.model)
            for r in report.rows:
                ax.annotate(f"c{r.concurrency}", (r.throughput, r.p95_ms), fontsize=7)
    ax.set_xlabel("throughput, inferences/s (perf_analyzer)")
    ax.set_ylabel("p95 latency, ms")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    return target


def save_results(reports: list[ModelReport], markdown: str, config: PerfAnalyzerConfig) -> Path:
    config.results_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        raw = RunPaths.under(config.work_dir, report.model).csv
        if raw.exists():
            shutil.copyfile(raw, config.results_dir / f"perf_analyzer_{report.model}.csv")
        # The requests perf_analyzer replayed, committed beside its figures, tokens replaced by placeholders.
        data = RunPaths.under(config.work_dir, report.model).requests_json
        if data.exists():
            shutil.copyfile(data, config.results_dir / f"perf_analyzer_{report.model}_input.json")
    plot_latency_vs_throughput(reports, config.results_dir / "perf_analyzer.png")
    target = config.results_dir / "perf_analyzer.md"
    target.write_text(markdown, encoding="utf-8")
    return target


def parse_args(argv: list[str] | None) -> PerfAnalyzerConfig:
    defaults = PerfAnalyzerConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(defaults.models))
    parser.add_argument("--concurrency-range", default=defaults.concurrency_range, help="start:end:step")
    parser.add_argument("--measurement-interval-ms", type=int, default=defaults.measurement_interval_ms)
    parser.add_argument("--stability-percentage", type=float, default=defaults.stability_percentage)
    parser.add_argument("--max-trials", type=int, default=defaults.max_trials)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--max-rows", type=int, default=defaults.max_rows, help="eval requests in the input data")
    parser.add_argument("--run-timeout-s", type=float, default=defaults.run_timeout_s)
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    parser.add_argument("--tools-dir", type=Path, default=defaults.tools_dir)
    parser.add_argument("--work-dir", type=Path, default=defaults.work_dir)
    args = parser.parse_args(argv)
    try:
        return PerfAnalyzerConfig(**{k: (tuple(v) if k == "models" else v) for k, v in vars(args).items()})
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    reports, tool, machine = run(config)
    markdown = render_markdown(reports, config, machine, tool)
    target = save_results(reports, markdown, config)
    print(markdown)
    print(f"written: {target}")
    return 0 if all(r.outcome.ok and r.rows for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
