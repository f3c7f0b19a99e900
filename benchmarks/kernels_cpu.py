"""CPU throughput of the adaptive-layer kernels' serving paths, and an interpreter correctness check of the Triton ones.

Multi-LoRA: one linear layer ``y = x @ W.T`` (float32, hidden x hidden) for a batch of ``--batch`` sequences, each
with its own adapter (``--batch`` distinct slots), at decode (one token per sequence) and prefill (``--tokens-per-seq``
tokens per sequence) shapes. Three ways: the base layer alone (no adapter), base + the grouped CPU path
(``kernels.multi_lora.grouped``), base + a naive per-row Python loop. Conditional RMSNorm: the reference and the
in-place CPU path against plain RMSNorm (ours and transformers' Qwen2RMSNorm). Throughput is the median over
``--repeats`` timed repeats after a warm-up. The Triton kernels run once under ``TRITON_INTERPRET=1`` and are only
checked for correctness here: their speed needs a GPU node. Writes ``benchmarks/results/kernels_cpu.md``.

    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.kernels_cpu [--hidden 512 2048 --ranks 8 16]
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: the Triton kernels run on CPU tensors

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

from benchmarks.machine_info import machine_info, package_version  # noqa: E402
from kernels.conditional_rmsnorm import cpu as rms_cpu, reference as rms_ref  # noqa: E402
from kernels.multi_lora import grouped  # noqa: E402

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "kernels_cpu.md"


@dataclass(frozen=True)
class KernelsBenchmarkConfig:
    hidden: tuple[int, ...] = (512, 2048)
    ranks: tuple[int, ...] = (8, 16)
    batch: int = 8
    tokens_per_seq: int = 128
    repeats: int = 7
    min_repeat_s: float = 0.1
    threads: int = 1  # intra-op threads; 1 keeps figures comparable on a shared 2-core machine
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "ranks"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"KernelsBenchmarkConfig.{name} must be ints >= 1, got {values!r}")
        for name in ("batch", "tokens_per_seq", "repeats", "threads", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"KernelsBenchmarkConfig.{name} must be an int >= 1, got {value!r}")
        if self.min_repeat_s <= 0:
            raise ValueError(f"KernelsBenchmarkConfig.min_repeat_s must be > 0, got {self.min_repeat_s!r}")


def interleaved_seconds(fns: dict[str, Callable[[], object]], repeats: int,
                        min_repeat_s: float) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per repeat; within a repeat the functions run back to back,
    so that load from other processes on a shared machine hits all of them alike (compare per-repeat ratios)."""
    calls = {}
    for name, fn in fns.items():
        fn()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_repeat_s / 4:
            fn()
            n += 1
        calls[name] = max(1, n * 4)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over repeats of num[i] / den[i] (paired samples taken close together)."""
    return statistics.median(a / b for a, b in zip(num, den))


def naive_multi_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                     scales: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """One row at a time: what the grouped path replaces."""
    for i, slot in enumerate(indices.tolist()):
        if slot >= 0:
            y[i] += (x[i] @ lora_a[slot].T) @ lora_b[slot].T * scales[slot]
    return y


def multi_lora_rows(config: KernelsBenchmarkConfig) -> list[dict]:
    gen = torch.Generator().manual_seed(config.seed)
    rows = []
    for hidden in config.hidden:
        weight = torch.randn(hidden, hidden, generator=gen) * hidden ** -0.5      # base layer [D_out, D_in]
        for rank in config.ranks:
            lora_a = torch.randn(config.batch, rank, hidden, generator=gen) * hidden ** -0.5   # [S, R, D]
            lora_b = torch.randn(config.batch, hidden, rank, generator=gen) * rank ** -0.5     # [S, D, R]
            scales = torch.full((config.batch,), 2.0)
            for shape, per_seq in (("decode", 1), ("prefill", config.tokens_per_seq)):
                indices = torch.arange(config.batch).repeat_interleave(per_seq)           # [N]
                x = torch.randn(len(indices), hidden, generator=gen)                       # [N, D]
                base = lambda: x @ weight.T  # noqa: E731
                with_grouped = lambda: grouped.apply_multi_lora_grouped(  # noqa: E731
                    x @ weight.T, x, lora_a, lora_b, scales, indices)
                with_naive = lambda: naive_multi_lora(x @ weight.T, x, lora_a, lora_b, scales, indices)  # noqa: E731
                torch.testing.assert_close(with_grouped(), with_naive(), rtol=1e-4, atol=1e-4)
                t = interleaved_seconds(dict(base=base, grouped=with_grouped, naive=with_naive),
                                        config.repeats, config.min_repeat_s)
                n = len(indices)
                row = dict(hidden=hidden, rank=rank, shape=shape, tokens=n,
                           strategy=grouped.auto_strategy(indices[:, None], lora_a, lora_b),
                           cost_grouped=median_ratio(t["grouped"], t["base"]) - 1,
                           cost_naive=median_ratio(t["naive"], t["base"]) - 1,
                           speedup=median_ratio(t["naive"], t["grouped"]),
                           **{name: n / statistics.median(v) for name, v in t.items()})
                rows.append(row)
                print(f"multi-LoRA D={hidden} r={rank} {shape:7s} N={n:5d}: base {row['base']:12,.0f} tok/s  "
                      f"grouped {row['grouped']:12,.0f}  naive {row['naive']:12,.0f}  "
                      f"grouped vs naive {row['speedup']:.2f}x", flush=True)
    return rows


def rms_norm_rows(config: KernelsBenchmarkConfig) -> list[dict]:
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    gen = torch.Generator().manual_seed(config.seed)
    rows = []
    for hidden in config.hidden:
        weight = 1 + 0.1 * torch.randn(hidden, generator=gen)
        qwen2 = Qwen2RMSNorm(hidden, eps=1e-6)
        with torch.no_grad():
            qwen2.weight.copy_(weight)
        gamma_user, beta_user = 0.1 * torch.randn(2, config.batch, hidden, generator=gen)
        for shape, per_seq in (("decode", 1), ("prefill", config.tokens_per_seq)):
            row_to_user = torch.arange(config.batch).repeat_interleave(per_seq)
            x = torch.randn(len(row_to_user), hidden, generator=gen)
            gamma, beta = gamma_user[row_to_user], beta_user[row_to_user]       # [N, D] each
            fns = {
                "plain": lambda: rms_ref.rms_norm_reference(x, weight),
                "qwen2": lambda: qwen2(x),
                "cond_reference": lambda: rms_ref.conditional_rms_norm_reference(x, weight, gamma, beta),
                "cond_cpu": lambda: rms_cpu.conditional_rms_norm_cpu(x, weight, gamma, beta),
            }
            n = len(row_to_user)
            with torch.no_grad():
                t = interleaved_seconds(fns, config.repeats, config.min_repeat_s)
            rates = {k: n / statistics.median(v) for k, v in t.items()}
            rows.append(dict(hidden=hidden, shape=shape, rows=n, **rates,
                             ref_vs_plain=median_ratio(t["plain"], t["cond_reference"]),
                             cpu_vs_plain=median_ratio(t["plain"], t["cond_cpu"])))
            print(f"RMSNorm D={hidden} {shape:7s} N={n:5d}: " + "  ".join(f"{k} {v:12,.0f}" for k, v in rates.items())
                  + " rows/s", flush=True)
    return rows


def triton_correctness(config: KernelsBenchmarkConfig) -> list[dict]:
    """One interpreted run of each Triton kernel against its CPU path: max abs error (time is the interpreter's)."""
    from kernels.conditional_rmsnorm import triton_kernel as rms_triton
    from kernels.multi_lora import triton_kernel as lora_triton

    gen = torch.Generator().manual_seed(config.seed)
    hidden, rank = config.hidden[0], config.ranks[-1]
    x = torch.randn(config.batch, hidden, generator=gen)
    lora_a = torch.randn(config.batch, rank, hidden, generator=gen) * hidden ** -0.5
    lora_b = torch.randn(config.batch, hidden, rank, generator=gen) * rank ** -0.5
    scales, indices = torch.full((config.batch,), 2.0), torch.arange(config.batch)
    y0 = torch.zeros(config.batch, hidden)
    start = time.perf_counter()
    got = lora_triton.apply_multi_lora(y0.clone(), x, lora_a, lora_b, scales, indices)
    lora_s = time.perf_counter() - start
    want = grouped.apply_multi_lora_grouped(y0.clone(), x, lora_a, lora_b, scales, indices)
    gamma, beta = 0.1 * torch.randn(2, config.batch, hidden, generator=gen)
    weight = torch.ones(hidden)
    start = time.perf_counter()
    got_norm = rms_triton.conditional_rms_norm(x, weight, gamma, beta)
    norm_s = time.perf_counter() - start
    want_norm = rms_cpu.conditional_rms_norm_cpu(x, weight, gamma, beta)
    return [dict(op=f"apply_multi_lora N={config.batch} D={hidden} r={rank}, {config.batch} adapters",
                 max_abs_err=(got - want).abs().max().item(), interpreter_s=lora_s),
            dict(op=f"conditional_rms_norm N={config.batch} D={hidden}",
                 max_abs_err=(got_norm - want_norm).abs().max().item(), interpreter_s=norm_s)]


def report(command: str, config: KernelsBenchmarkConfig, lora: list[dict], norm: list[dict], triton_rows: list[dict],
           info: dict) -> str:
    lines = [
        "# Adaptive-layer kernels on CPU", "", f"Command: `{command}`", "", f"Config: `{config}`", "",
        f"float32, torch intra-op threads: {torch.get_num_threads()} (with two threads on this shared 2-core machine, "
        "OpenMP-parallel ops were seen waiting 10-150 ms whenever another process held the other core). "
        f"Median of {config.repeats} timed repeats "
        f"(each >= {config.min_repeat_s} s) after a warm-up. The machine is shared (load average below): absolute "
        "figures move with other processes' load, so compare variants within a row.", "",
        "## Multi-LoRA: one hidden x hidden linear layer, batch of "
        f"{config.batch} sequences with {config.batch} distinct adapters", "",
        f"decode = 1 token per sequence ({config.batch} rows); prefill = {config.tokens_per_seq} tokens per sequence "
        f"({config.batch * config.tokens_per_seq} rows). tokens/s, higher is better. *LoRA cost* = base / grouped "
        "throughput - 1 (extra time the adapters add to the layer); *grouped vs naive* = grouped / naive throughput. "
        "Ratios are medians of per-repeat ratios (the three variants run back to back within each repeat).", "",
        "| hidden | rank | shape | tokens | no adapter (base matmul) | base + grouped LoRA (strategy) | "
        "base + naive row loop | LoRA cost (grouped) | LoRA cost (naive) | grouped vs naive |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lora:
        lines.append(f"| {r['hidden']} | {r['rank']} | {r['shape']} | {r['tokens']} | {r['base']:,.0f} | "
                     f"{r['grouped']:,.0f} ({r['strategy']}) | {r['naive']:,.0f} | {r['cost_grouped']:+.0%} | "
                     f"{r['cost_naive']:+.0%} | {r['speedup']:.2f}x |")
    lines += [
        "", "## Conditional RMSNorm (per-row user gamma/beta gathered as `gamma_user[row_to_user]`)", "",
        "rows/s, higher is better. *plain* = `rms_norm_reference` (float32 RMSNorm); *qwen2* = transformers "
        f"{package_version('transformers')} `Qwen2RMSNorm`; *cond ref* = `conditional_rms_norm_reference`; "
        "*cond cpu* = `conditional_rms_norm_cpu` (the dispatcher's CPU path, bit-identical to the reference). "
        "The last two columns are throughput relative to plain (medians of per-repeat ratios).", "",
        "| hidden | shape | rows | plain | qwen2 | cond ref | cond cpu | cond ref / plain | cond cpu / plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in norm:
        lines.append(f"| {r['hidden']} | {r['shape']} | {r['rows']} | {r['plain']:,.0f} | {r['qwen2']:,.0f} | "
                     f"{r['cond_reference']:,.0f} | {r['cond_cpu']:,.0f} | {r['ref_vs_plain']:.2f} | "
                     f"{r['cpu_vs_plain']:.2f} |")
    lines += [
        "", "## Triton kernels: correctness only", "",
        f"triton {package_version('triton')} under `TRITON_INTERPRET=1` on CPU tensors, compared with the CPU path. "
        "The interpreter executes each program in Python, so its time says nothing about GPU speed; the kernels' "
        "throughput (and block-size tuning) needs a GPU node.", "",
        "| op | max abs error vs CPU path | interpreter time s |", "|---|---|---|",
    ]
    lines += [f"| {r['op']} | {r['max_abs_err']:.2e} | {r['interpreter_s']:.2f} |" for r in triton_rows]
    lines += ["", "## Machine", ""] + [f"- {key}: {value}" for key, value in info.items()]
    lines.append(f"- load_average_at_end: {list(os.getloadavg())}")
    lines.append(f"- triton: {package_version('triton')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    defaults = KernelsBenchmarkConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=list(defaults.hidden))
    parser.add_argument("--ranks", type=int, nargs="+", default=list(defaults.ranks))
    for name in ("batch", "tokens_per_seq", "repeats", "threads", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--min-repeat-s", type=float, default=defaults.min_repeat_s)
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    config = KernelsBenchmarkConfig(hidden=tuple(args.hidden), ranks=tuple(args.ranks), batch=args.batch,
                                    tokens_per_seq=args.tokens_per_seq, repeats=args.repeats,
                                    min_repeat_s=args.min_repeat_s, threads=args.threads, seed=args.seed)
    torch.set_num_threads(config.threads)
    info = machine_info()
    lora = multi_lora_rows(config)
    norm = rms_norm_rows(config)
    triton_rows = triton_correctness(config)
    for r in triton_rows:
        print(f"triton (interpreter) {r['op']}: max abs err {r['max_abs_err']:.2e}")
    python = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else "python"
    command = f"{python} -m benchmarks.kernels_cpu " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.output).write_text(report(command.strip(), config, lora, norm, triton_rows, info), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
