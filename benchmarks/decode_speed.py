"""Decode speed of our Qwen2 decode loop vs ``transformers`` ``generate()``, side by side, same weights and prompts.

Protocol: one randomly initialised Qwen2 (the ``small`` preset unless told otherwise: the size the product trains on
CPU) is loaded into both ``recllm.generator.qwen2.Qwen2`` and ``transformers.Qwen2ForCausalLM`` (same state dict,
float32). Seeded prompts of different lengths; greedy decoding of exactly ``max_new_tokens`` tokens (no eos) at
batch 1 and batch 8 (HF: left padding with attention mask). Each repetition runs every engine once, interleaved;
after warm-up runs, medians over ``reps`` repetitions are reported. Time to first token (TTFT) is the time from the
call to the first generated token (ours: the first streamed token; HF: a streamer's first ``put`` after the prompt);
tokens/s counts all generated tokens of the batch over the whole call (prefill included). The outputs of every
engine are checked to be identical to HF's.

    python -m benchmarks.decode_speed [--preset small] [--max-new-tokens 64] [--reps 5] [--threads N] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import transformers
from transformers.generation.streamers import BaseStreamer

from benchmarks.machine_info import machine_info
from recllm.generator.decode_loop import DecodeLoop, Request
from recllm.generator.qwen2 import Qwen2Config, build_qwen2

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "decode_speed.md"
GOAL_RATIO = {1: 4.0, 8: 8.0}


@dataclass
class BenchConfig:
    preset: str = "small"
    max_new_tokens: int = 64
    min_prompt_len: int = 16
    max_prompt_len: int = 64
    batch_sizes: tuple[int, ...] = (1, 8)
    reps: int = 5
    warmup: int = 2
    # one thread, and every core the machine has
    threads: tuple[int, ...] = field(default_factory=lambda: tuple(sorted({1, os.cpu_count() or 1})))
    compile: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("max_new_tokens", "min_prompt_len", "reps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BenchConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.threads or min(self.threads) <= 0:
            raise ValueError(f"BenchConfig.threads must be positive thread counts, got {self.threads!r}")
        if self.max_prompt_len < self.min_prompt_len:
            raise ValueError(f"BenchConfig.max_prompt_len={self.max_prompt_len} must be >= "
                             f"min_prompt_len={self.min_prompt_len}")


class _FirstTokenTimer(BaseStreamer):
    """HF streamer: ``put`` is called once with the prompt, then once per generated token."""

    def __init__(self):
        self.calls, self.first_token_at = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self):
        pass


def make_prompts(config: BenchConfig, vocab_size: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(config.seed)
    n = max(config.batch_sizes)
    lengths = torch.randint(config.min_prompt_len, config.max_prompt_len + 1, (n,), generator=g).tolist()
    return [torch.randint(3, vocab_size, (t,), generator=g).tolist() for t in lengths]


def run_ours(loop: DecodeLoop, prompts: list[list[int]], max_new: int):
    requests = [Request(p, max_new_tokens=max_new) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    cpu, started, first = time.process_time(), time.perf_counter(), None
    for i, token in loop.stream(requests):
        if first is None:
            first = time.perf_counter()
        out[i].append(token)
    return first - started, time.perf_counter() - started, time.process_time() - cpu, out


def run_hf(hf: transformers.Qwen2ForCausalLM, prompts: list[list[int]], max_new: int):
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])  # [B, T] left padding
    attention_mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])  # [B, T]
    timer = _FirstTokenTimer()
    cpu, started = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        generated = hf.generate(ids, attention_mask=attention_mask, max_new_tokens=max_new, min_new_tokens=max_new,
                                do_sample=False, pad_token_id=0, eos_token_id=None, streamer=timer)
    total = time.perf_counter() - started
    return timer.first_token_at - started, total, time.process_time() - cpu, generated[:, T:].tolist()


def linear_floor_ms(model, batch: int, steps: int = 50) -> float:
    """CPU ms of one decode step's linear layers alone (every weight read once, as in a real step): the least any
    fp32 engine needs per step on this machine."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(batch, 1, m.in_features) for m in linears}
    with torch.inference_mode():
        for _ in range(5):  # warm-up, also of the thread pool at this thread count
            for m in linears:
                m(inputs[m.in_features])
        cpu = time.process_time()
        for _ in range(steps):
            for m in linears:
                m(inputs[m.in_features])
    return 1000 * (time.process_time() - cpu) / steps


def measure(config: BenchConfig) -> dict:
    model_config = Qwen2Config.from_name(config.preset)
    ours = build_qwen2(model_config, seed=config.seed).eval()
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**model_config.to_hf_config())).eval()
    hf.load_state_dict(ours.state_dict(), strict=True)
    prompts = make_prompts(config, model_config.vocab_size)

    engines = {"ours": (lambda p: run_ours(DecodeLoop(ours), p, config.max_new_tokens))}
    if config.compile:
        compiled = DecodeLoop(ours, compile=True)
        engines["ours+compile"] = lambda p: run_ours(compiled, p, config.max_new_tokens)
    engines["transformers"] = lambda p: run_hf(hf, p, config.max_new_tokens)

    results = {}
    for threads in config.threads:
        torch.set_num_threads(threads)
        for batch in config.batch_sizes:
            measure_batch(config, engines, prompts[:batch], results, key=(threads, batch))
            results[(threads, batch, "linear layers alone (floor)")] = {
                "cpu_ms_per_step": linear_floor_ms(ours, batch)}
    return {"config": config, "model": model_config, "num_parameters": ours.num_parameters(),
            "prompt_lengths": [len(p) for p in prompts], "results": results}


def measure_batch(config: BenchConfig, engines: dict, batch_prompts: list[list[int]], results: dict, key: tuple):
    batch = len(batch_prompts)
    samples = {name: [] for name in engines}
    outputs = {}
    for rep in range(config.warmup + config.reps):
        for name, run in engines.items():
            ttft, total, cpu, out = run(batch_prompts)
            outputs[name] = out
            if rep >= config.warmup:
                samples[name].append((ttft, total, cpu))
    for name, runs in samples.items():
        total = statistics.median(r[1] for r in runs)
        results[(*key, name)] = {
            "ttft_ms": 1000 * statistics.median(r[0] for r in runs),
            "total_ms": 1000 * total,
            "cpu_ms_per_step": 1000 * statistics.median(r[2] for r in runs) / config.max_new_tokens,
            "tokens_per_s": batch * config.max_new_tokens / total,
            "same_tokens_as_hf": outputs[name] == outputs["transformers"],
        }


def table(report: dict) -> str:
    config: BenchConfig = report["config"]
    lines = ["| threads | batch | engine | TTFT ms | total ms | tokens/s | vs transformers | goal | CPU ms per step "
             "| CPU-time ratio vs transformers | same tokens as transformers |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    results = report["results"]
    for threads in config.threads:
        for batch in config.batch_sizes:
            base = results[(threads, batch, "transformers")]
            for (t, b, name), r in results.items():
                if (t, b) != (threads, batch):
                    continue
                cpu_ratio = f"{base['cpu_ms_per_step'] / r['cpu_ms_per_step']:.2f}x"
                if "tokens_per_s" not in r:  # the floor: CPU time only
                    lines.append(f"| {threads} | {batch} | {name} | | | | | | {r['cpu_ms_per_step']:.2f} "
                                 f"| {cpu_ratio} (the most any fp32 engine can get) | |")
                    continue
                goal = "" if name == "transformers" else f">= {GOAL_RATIO.get(batch, 1):.0f}x"
                lines.append(
                    f"| {threads} | {batch} | {name} | {r['ttft_ms']:.1f} | {r['total_ms']:.1f} "
                    f"| {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base['tokens_per_s']:.2f}x | {goal} "
                    f"| {r['cpu_ms_per_step']:.2f} | {cpu_ratio} | {'yes' if r['same_tokens_as_hf'] else 'NO'} |")
    return "\n".join(lines)


def verdict(report: dict) -> str:
    """One line per (threads, batch): the best of ours against the goal and against the floor's bound."""
    config: BenchConfig = report["config"]
    results, lines = report["results"], []
    for threads in config.threads:
        for batch in config.batch_sizes:
            base = results[(threads, batch, "transformers")]
            ours = {name: r for (t, b, name), r in results.items()
                    if (t, b) == (threads, batch) and name.startswith("ours")}
            best = max(ours, key=lambda name: ours[name]["tokens_per_s"])
            ratio = ours[best]["tokens_per_s"] / base["tokens_per_s"]
            floor = results[(threads, batch, "linear layers alone (floor)")]
            bound = base["cpu_ms_per_step"] / floor["cpu_ms_per_step"]
            goal = GOAL_RATIO.get(batch, 1.0)
            lines.append(f"- {threads} thread(s), batch {batch}: best `{best}` {ratio:.2f}x transformers' tokens/s "
                         f"(CPU time {base['cpu_ms_per_step'] / ours[best]['cpu_ms_per_step']:.2f}x); goal >= "
                         f"{goal:.0f}x {'met' if ratio >= goal else 'not met'}; the linear-layer floor bounds any fp32 "
                         f"engine at {bound:.2f}x in CPU time.")
    return "\n".join(lines)


def write_markdown(report: dict, info: dict, command: str, path: Path) -> None:
    config: BenchConfig = report["config"]
    m: Qwen2Config = report["model"]
    text = f"""# Decode speed: our Qwen2 decode loop vs transformers generate()

Command: `{command}`

Date: {info['date_utc']}. Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, load average at
start {info['load_average_at_start']}; Python {info['python']}, torch {info['torch']}, transformers
{transformers.__version__}, git {info['git_commit']}. `torch.set_num_threads(n)` for n in {list(config.threads)}
(the table's first column).

Model: preset `{config.preset}` — vocab {m.vocab_size}, hidden {m.hidden_size}, {m.num_hidden_layers} layers,
{m.num_attention_heads} heads / {m.num_key_value_heads} kv heads, intermediate {m.intermediate_size}, tied embeddings
{m.tie_word_embeddings}: {report['num_parameters'] / 1e6:.2f}M parameters, float32, random init (seed {config.seed}),
the same state dict in both engines.

Protocol: prompt lengths {report['prompt_lengths']} (batch 1 = the first prompt, batch 8 = all eight, left-padded
with an attention mask for transformers); greedy, exactly {config.max_new_tokens} new tokens, no eos. Every
repetition runs each engine once, interleaved; {config.warmup} warm-up repetitions, then the median of
{config.reps}. TTFT = call to first generated token (ours: first streamed token; transformers: a streamer's first
`put` after the prompt). tokens/s = batch x new tokens / whole call (prefill included). `ours+compile` =
`DecodeLoop(model, compile=True)` (`torch.compile` of `decode_one_token`, inductor on CPU); its compile time is in the
warm-up. The last column checks that the engine's tokens equal transformers' tokens.

CPU ms per step = the process's CPU time (all threads) for the whole call / new tokens: on a shared machine wall
time also counts the time other processes held the cores, CPU time does not, so its ratio is the steadier one.
`linear layers alone (floor)` times only the model's {7 * m.num_hidden_layers + 1} linear layers once each
per step (every weight read once, as any engine must): the least CPU time per step any fp32 engine needs with these
weights here, so transformers' CPU time over the floor bounds the ratio any fp32 engine could reach. With more
threads than free cores (load average above the core count) OpenMP workers spin-wait for each other, and CPU time
then measures that contention more than the engine.

{table(report)}

{verdict(report)}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main(argv: list[str] | None = None) -> None:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(BenchConfig):
        if f.name == "compile":
            continue
        default = getattr(defaults, f.name)
        kind = _int_tuple if isinstance(default, tuple) else type(default)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default,
                            help="comma-separated" if isinstance(default, tuple) else None)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(BenchConfig) if f.name != "compile"}
    config = BenchConfig(**values, compile=not args.no_compile)
    info = machine_info()
    report = measure(config)
    command = " ".join(["python -m benchmarks.decode_speed", *(sys.argv[1:] if argv is None else argv)])
    print(table(report))
    write_markdown(report, info, command, Path(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
