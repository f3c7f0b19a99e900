"""Adaptive user layers: personalization quality, multi-LoRA throughput, adapter store behaviour.

Writes ``benchmarks/results/user_layers.md``. Three sections:

* quality — ``builders.train_user_layers.train`` per seed, then per-user next-purchase-category accuracy and
  perplexity on held-out users' held-back purchases for each stack of user layers, plus the swap test (another
  held-out user's ``u`` / another heavy user's adapter);
* throughput — one batch of 8 requests with 8 distinct LoRA adapters: our batched multi-LoRA vs PEFT's mixed batch
  (``adapter_names=``) vs merging each request's adapter into the weights vs no adapter (prefill tokens/s);
* store — adapter disk-load and slot-write time p50/p99, memory per active adapter, LRU hit rates under a Zipf
  user mix.

    python -m benchmarks.user_layers --seeds 0 1 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.machine_info import machine_info, package_version
from builders.train_user_layers import IGNORE, TrainUserLayersConfig, eval_window, train
from recllm.generator.qwen2 import Qwen2Config, build_qwen2
from recllm.generator.qwen2_checkpoint import save_qwen2
from recllm.user_layers.adapter_store import (
    AdapterStore, AdapterStoreConfig, save_adapter, segment_adapter_name, user_adapter_name,
)
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import random_adapter
from recllm.user_layers.multi_lora import install_multi_lora

RESULTS = Path(__file__).parent / "results" / "user_layers.md"
HEAVY_BASE = "heavy held-out users: base"
LAST_STEP = "#last-step"  # store name of a heavy user's last-step adapter beside the chosen one


# ---- quality ----------------------------------------------------------------------------------------------------

def per_user_metrics(logits: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy [B], mean NLL [B]) over each row's scored positions."""
    scored = targets != IGNORE  # [B, T]
    nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")  # [B, T]
    hit = (logits.argmax(-1) == targets) & scored
    n = scored.sum(1).clamp(min=1)
    return (hit.sum(1) / n).numpy(), ((nll * scored).sum(1) / n).numpy()


def evaluate(trained, seq_len: int) -> dict[str, tuple[float, float]]:
    adaptive, users = trained.adaptive, [u for u in trained.users if u.heldout]
    store = AdapterStore(adaptive.slots, AdapterStoreConfig(min_events=1))
    for segment, adapter in trained.segment_adapters.items():
        store.register(adapter)
    for adapter in trained.user_adapters.values():
        store.register(adapter)
    n_seg = len(trained.segment_adapters)
    windows = [eval_window(u, seq_len) for u in users]
    inputs = torch.tensor([w[0] for w in windows])
    targets = torch.tensor([w[1] for w in windows])
    u = torch.from_numpy(np.stack([x.u for x in users]))
    swapped = torch.roll(u, 1, dims=0)  # every user gets the next held-out user's vector
    now = int(time.time())

    def segment_indices(rows):
        return store.batch_indices([None] * len(rows), [r.segment for r in rows], now)

    def gate_batch(vectors, **kwargs):
        expert_slots = torch.tensor(store.activate([segment_adapter_name(s) for s in range(n_seg)]))
        indices, weights = adaptive.gate(vectors, expert_slots)
        return UserBatch(user_vectors=vectors, lora_indices=indices, mix_weights=weights, **kwargs)

    variants = {
        "base": UserBatch(),
        "+ conditional norm": UserBatch(user_vectors=u, use_prefix=False),
        "+ conditional norm + prefix": UserBatch(user_vectors=u),
        "base + segment LoRA": UserBatch(lora_indices=segment_indices(users)),
        "base + MoE gate (top-k segment LoRAs)": gate_batch(u, use_norm=False, use_prefix=False),
        "norm + prefix + MoE gate": gate_batch(u),
        "swap: norm + prefix with another user's u": UserBatch(user_vectors=swapped),
    }
    out = {}
    with torch.no_grad():
        for name, batch in variants.items():
            acc, nll = per_user_metrics(adaptive(inputs, batch), targets)
            out[name] = (float(acc.mean()), float(np.exp(nll.mean())), len(users))
        heavy = [i for i, x in enumerate(users) if x.user_id in trained.user_adapter_selection]
        if len(heavy) >= 2:
            out.update(heavy_user_rows(trained, store, [users[i] for i in heavy], inputs[heavy], targets[heavy],
                                       segment_indices))
    return out


def heavy_user_rows(trained, store: AdapterStore, rows: list, inputs: torch.Tensor, targets: torch.Tensor,
                    segment_indices) -> dict[str, tuple[float, float, int]]:
    """The heavy held-out users' rows: base, their segment's LoRA, their own LoRA at its last step and at the
    checkpoint their validation tail chose, and the swap test (each user gets the next one's last-step LoRA)."""
    selection = [trained.user_adapter_selection[r.user_id] for r in rows]
    for chosen in selection:
        store.register(dataclasses.replace(chosen.last, name=chosen.last.name + LAST_STEP))
    own_last = [s.last.name + LAST_STEP for s in selection]
    batches = {
        HEAVY_BASE: lambda: UserBatch(),
        "heavy held-out users: base + segment LoRA": lambda: UserBatch(lora_indices=segment_indices(rows)),
        "heavy held-out users: base + user LoRA, last step": lambda: UserBatch(
            lora_indices=torch.tensor(store.activate(own_last))[:, None]),
        "heavy held-out users: base + user LoRA, checkpoint chosen on the user's validation tail": lambda: UserBatch(
            lora_indices=torch.tensor(store.activate([s.selected.name for s in selection]))[:, None]),
        "swap: heavy users with another user's LoRA (last step)": lambda: UserBatch(
            lora_indices=torch.tensor(store.activate(own_last[1:] + own_last[:1]))[:, None]),
    }
    out = {}
    for name, batch in batches.items():  # each batch's slots are activated right before it runs
        acc, nll = per_user_metrics(trained.adaptive(inputs, batch()), targets)
        out[name] = (float(acc.mean()), float(np.exp(nll.mean())), len(rows))
    return out


def quality(seeds: list[int], quick: bool, workdir: Path) -> tuple[dict, list[dict], TrainUserLayersConfig, list]:
    results, timings, chosen = {}, [], []
    config = None
    for seed in seeds:
        make = TrainUserLayersConfig.quick if quick else TrainUserLayersConfig
        config = make(output_dir=workdir / f"seed{seed}", seed=seed, progress=False, heavy_users_from="heldout")
        trained = train(config)
        timings.append(trained.timings_s)
        chosen += list(trained.user_adapter_selection.values())
        for name, value in evaluate(trained, config.seq_len).items():
            results.setdefault(name, []).append(value)
    return results, timings, config, chosen


def paired_reference(variant: str) -> str:
    """The row a variant's per-seed difference is taken against (the heavy users' rows: their own base)."""
    return HEAVY_BASE if "heavy" in variant else "base"


def paired_difference(results: dict, variant: str, index: int) -> str:
    """mean ± sd over seeds of (variant − its reference) in the same seed: seed-to-seed spread cancels."""
    if paired_reference(variant) == variant:
        return "—"
    reference = results[paired_reference(variant)]
    deltas = [v[index] - r[index] for v, r in zip(results[variant], reference)]
    text = mean_spread(deltas, signed=True)
    spread = np.std(deltas, ddof=1) if len(deltas) > 2 else 0.0
    return text + (f" (t {np.mean(deltas) / (spread / np.sqrt(len(deltas))):+.1f})" if spread > 0 else "")


def selection_summary(chosen: list) -> list[str]:
    """What the heavy users' validation tails chose, over every seed."""
    scored = [c for c in chosen if c.step is not None]
    steps = sorted({c.step for c in scored})
    counts = ", ".join(f"step {step}: {sum(c.step == step for c in scored)}" for step in steps)
    if len(scored) < len(chosen):
        counts += f", too few purchases to keep a tail (last step kept): {len(chosen) - len(scored)}"
    lines = [f"Checkpoints the heavy users' validation tails chose (all seeds, {len(chosen)} adapters; step 0 = the "
             f"segment adapter it started from): {counts}."]
    if scored:
        lines[0] += (f" Validation-tail NLL: segment adapter {np.mean([c.validation_nll_at_start for c in scored]):.3f}"
                     f" → chosen {np.mean([c.validation_nll for c in scored]):.3f} (mean over the {len(scored)} "
                     "adapters with a tail; the chosen one is the lowest of its checkpoints on that same tail, so "
                     "this is optimistic).")
    return lines


# ---- throughput -------------------------------------------------------------------------------------------------

def timed_interleaved(paths: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """path -> (median wall seconds, median CPU seconds of this process) per call; the paths take turns in every
    round, so on a shared machine they see the same contention. CPU time (one torch thread) is what a path costs;
    wall time also counts the waits for a core."""
    for fn in paths.values():
        fn()  # warm-up
    wall = {name: [] for name in paths}
    cpu = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {name: (float(np.median(wall[name])), float(np.median(cpu[name]))) for name in paths}


OUR_PATHS = {  # multi_lora.LORA_PATHS measured here ("merged" is for one or two requests: a batch of 8 reads 8 copies)
    "kernel": "ours: kernels.multi_lora path, 8 adapters",
    "per_request": "ours, per-request bmm path, 8 adapters",
    "stacked": "ours, stacked path, 8 adapters",
}


def throughput(preset: str, batch: int, seq_lens: list[int], rank: int, repeats: int, workdir: Path
               ) -> dict[int, dict[str, float]]:
    """seq_len -> path -> tokens/s (and the largest logit difference between ours and PEFT)."""
    import transformers
    from peft import PeftModel

    config = Qwen2Config.from_name(preset)
    base = build_qwen2(config, seed=0).eval()
    adapters = [random_adapter(config, f"user/b{i}", rank=rank, seed=i) for i in range(batch)]
    save_qwen2(base, workdir / "tp_base")
    for a in adapters:
        save_adapter(a, workdir / "tp_adapters" / a.name.replace("/", "_"))

    plain = copy.deepcopy(base)
    ours = {}
    for path in OUR_PATHS:
        ours[path] = AdaptiveQwen2(copy.deepcopy(base), UserLayersConfig(
            user_dim=4, num_slots=batch, lora_rank=rank, num_segments=2, prefix_layers=(), lora_path=path))
        for slot, a in enumerate(adapters):
            ours[path].slots.write(slot, a)
    indices = torch.arange(batch, dtype=torch.int32)[:, None]

    hf = transformers.Qwen2ForCausalLM.from_pretrained(workdir / "tp_base").eval()
    hf_plain = transformers.Qwen2ForCausalLM.from_pretrained(workdir / "tp_base").eval()
    names = [a.name.replace("/", "_") for a in adapters]
    peft_model = PeftModel.from_pretrained(hf, workdir / "tp_adapters" / names[0], adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(workdir / "tp_adapters" / name, adapter_name=name)
    peft_model.eval()

    merged = copy.deepcopy(base)
    return {seq_len: _throughput_one_shape(config, batch, seq_len, repeats, adapters, plain, ours, indices,
                                           peft_model, names, hf_plain, merged)
            for seq_len in seq_lens}


def _throughput_one_shape(config, batch, seq_len, repeats, adapters, plain, ours, indices, peft_model, names,
                          hf_plain, merged) -> dict[str, float]:
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))

    def merge_per_request():
        for row, a in enumerate(adapters):
            deltas = {}
            for (layer, module), a_matrix in a.a.items():
                linear = getattr(merged.model.layers[layer].self_attn, module)
                deltas[(layer, module)] = a.b[(layer, module)] @ a_matrix * a.scale
                linear.weight += deltas[(layer, module)]
            merged(tokens[row:row + 1])
            for (layer, module), delta in deltas.items():
                getattr(merged.model.layers[layer].self_attn, module).weight -= delta

    n_tokens = batch * seq_len
    with torch.no_grad():
        peft_logits = peft_model(input_ids=tokens, adapter_names=names).logits
        agree = max(float((model(tokens, UserBatch(lora_indices=indices)) - peft_logits).abs().max())
                    for model in ours.values())
        # a prefill (T > 1) makes its batch's layer context; a decode step (T = 1) reuses the one made at prefill,
        # with what each path prepared per batch (gathered, merged or stacked weights) in it
        contexts = {path: model.context(UserBatch(lora_indices=indices)) for path, model in ours.items()}

        def ours_call(path):
            model = ours[path]
            if seq_len == 1:
                return lambda: model.base(tokens, layer_context=contexts[path])
            return lambda: model(tokens, UserBatch(lora_indices=indices))
        times = timed_interleaved({
            "no adapter (our Qwen2)": lambda: plain(tokens),
            **{label: ours_call(path) for path, label in OUR_PATHS.items()},
            "PEFT mixed batch (adapter_names=)": lambda: peft_model(input_ids=tokens, adapter_names=names),
            "merge one adapter per request": merge_per_request,
            "no adapter (HF Qwen2, PEFT's base)": lambda: hf_plain(input_ids=tokens),
        }, repeats)
    out = {name: (n_tokens / wall, n_tokens / cpu) for name, (wall, cpu) in times.items()}
    out["max |ours - PEFT| logits (every path)"] = agree
    return out


# ---- adapter store ----------------------------------------------------------------------------------------------

def store_behaviour(preset: str, n_users: int, requests: int, zipf_s: float, num_slots: int, max_host: int,
                    rank: int, workdir: Path, seed: int = 0) -> dict:
    config = Qwen2Config.from_name(preset)
    model = build_qwen2(config, seed=0)
    slots = install_multi_lora(model, num_slots=num_slots, rank=rank)
    store = AdapterStore(slots, AdapterStoreConfig(max_host=max_host))
    folder = workdir / "store_adapters"
    adapter_bytes = 0
    for i in range(n_users):
        a = random_adapter(config, user_adapter_name(f"z{i}"), rank=rank, seed=1000 + i, trained_at=int(time.time()),
                           num_events=100)
        adapter_bytes = a.nbytes()
        store.register_folder(save_adapter(a, folder / f"z{i}"))
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_users + 1)
    probs = ranks ** -zipf_s / (ranks ** -zipf_s).sum()
    for user in rng.choice(n_users, size=requests, p=probs):
        store.activate([user_adapter_name(f"z{user}")])
    s = store.stats
    disk = np.array(s.disk_load_s) * 1e3
    write = np.array(s.slot_write_s) * 1e3
    host_total = s.host_hits + s.host_misses
    return {
        "preset": preset, "rank": rank, "adapters": n_users, "requests": requests, "zipf_s": zipf_s,
        "slots": num_slots, "max_host": max_host,
        "adapter bytes (fp32 A+B)": adapter_bytes, "slot bytes per active adapter": slots.slot_nbytes(),
        "disk load ms p50": float(np.percentile(disk, 50)), "disk load ms p99": float(np.percentile(disk, 99)),
        "slot write ms p50": float(np.percentile(write, 50)), "slot write ms p99": float(np.percentile(write, 99)),
        "slot hit rate": s.slot_hit_rate, "host hit rate (of slot misses)": s.host_hits / max(host_total, 1),
        "disk loads": len(disk),
    }


# ---- report -----------------------------------------------------------------------------------------------------

def mean_spread(values: list[float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.4f}"
    return f"{np.mean(values):{sign}.4f} ± {np.std(values, ddof=1):.4f}"


def report(args, quality_results, timings, train_config, tp, store, info, wall_s, chosen=()) -> str:
    lines = ["# Adaptive user layers (`recllm/user_layers`)", "",
             f"Command: `python -m benchmarks.user_layers {' '.join(sys.argv[1:])}`", "",
             f"Date (UTC): {info['date_utc']}; wall time {wall_s:.0f} s; torch threads {args.threads}", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "date_utc")
             + f", peft={package_version('peft')}, transformers={package_version('transformers')}", "",
             "The machine is a shared 2-core box (other jobs were running: see the load average), so absolute "
             "timings are noisy; ratios measured in the same process, interleaved, are the figures to read.", ""]
    if quality_results:
        cfg = {k: v for k, v in asdict(train_config).items() if k not in ("output_dir", "progress", "seed")}
        lines += ["## Personalization quality", "",
                  f"Seeds: {args.seeds} (ecosystem, split, model init and training all follow the seed). "
                  f"Training config: `{cfg}`.", "",
                  "Protocol: synthetic ecosystem (`SyntheticConfig.from_name('default', n_users=...)`); each user's "
                  "purchases in time order become item-category tokens; the last `eval_fraction` (at most "
                  "`max_eval_tokens`) purchases are held back and the profile store only holds events before them, "
                  "so `u` (DP-released preferences, demographics, temporal pattern, service shares) never sees "
                  "them. A quarter of the users are held out of every joint training stage (base, conditional "
                  "norm, prefix, segment adapters, gate); heavy-user adapters are trained for the heaviest "
                  "held-out users (heavy_users_from='heldout': the only users they can be measured on), each on "
                  "its own training purchases only. Metric: per-user next-purchase "
                  "category accuracy over the held-back purchases (context = the preceding `seq_len` tokens), "
                  "averaged over users, and perplexity = exp(mean per-user NLL). LoRA adapters were trained with "
                  "PEFT on the base model (without norm/prefix), so LoRA rows are on top of the base model; "
                  "'norm + prefix + MoE gate' stacks them as trained separately.", "",
                  "Δ columns: the variant minus its reference row (`base`; for the heavy users' rows, their own "
                  "base) in the same seed, mean ± sd over seeds: the seeds' common spread cancels. t = mean / "
                  "(sd / √seeds), the paired t statistic over seeds (with 5 seeds |t| > 2.78 is p < 0.05 two-sided, "
                  "> 4.60 p < 0.01): a Δ with a smaller |t| is not established.", "",
                  "| variant | users | accuracy (mean ± sd over seeds) | Δ accuracy (paired) | perplexity | "
                  "Δ perplexity (paired) |", "|---|---|---|---|---|---|"]
        for name, values in quality_results.items():
            lines.append(f"| {name} | {values[0][2]} | {mean_spread([v[0] for v in values])} | "
                         f"{paired_difference(quality_results, name, 0)} | {mean_spread([v[1] for v in values])} | "
                         f"{paired_difference(quality_results, name, 1)} |")
        lines += [""] + selection_summary(list(chosen))
        lines += ["", f"Training time per seed (s): {[{k: round(v, 1) for k, v in t.items()} for t in timings]}", ""]
    if tp:
        lines += ["## Multi-LoRA throughput", "",
                  f"Model: `Qwen2Config.from_name('{args.tp_preset}')` (random init), one batch of {args.tp_batch} "
                  f"requests, {args.tp_batch} distinct rank-{args.tp_rank} adapters on q/k/v/o of every layer, fp32, "
                  f"median of {args.repeats} rounds after a warm-up, the paths taking turns in each round; "
                  "tokens/s from "
                  "this process's CPU time (one torch thread: what the path costs, robust to the other jobs on the "
                  "box) and from wall time. T = 64 is a prefill; T = 1 is a "
                  "decode-shaped step (one new token per request, no KV cache on either side: the LoRA work per "
                  "step is the same as in decode, attention over the cache is left out; our paths reuse the layer "
                  "context of the batch as decode steps do, so what a path prepares per batch is not in the step). "
                  "'merge one adapter per "
                  "request' merges W += B A·α/r, runs that request alone, unmerges.", ""]
        for seq_len, paths in tp.items():
            lines += [f"### T = {seq_len}", "", "| path | tokens/s (CPU time) | tokens/s (wall) |", "|---|---|---|"]
            for name, value in paths.items():
                if isinstance(value, tuple):
                    lines.append(f"| {name} | {value[1]:,.0f} | {value[0]:,.0f} |")
                else:
                    lines.append(f"| {name} | {value:.3g} | |")
            peft_tps, none = paths["PEFT mixed batch (adapter_names=)"][1], paths["no adapter (our Qwen2)"][1]
            parts = [f"{path} path vs PEFT mixed batch **{paths[label][1] / peft_tps:.2f}×**, "
                     f"**{(1 - paths[label][1] / none) * 100:.1f}%** slower than no adapter"
                     for path, label in OUR_PATHS.items()]
            lines += ["", "CPU time: " + "; ".join(parts) + " (goals: ≥ 2× PEFT, ≤ 15% slower than no adapter).", ""]
    if store:
        lines += ["## Adapter store", "",
                  "Adapters saved in PEFT format (safetensors + adapter_config.json) to local disk, registered by "
                  "folder; requests drawn from a Zipf distribution over users; each request activates its user's "
                  "adapter (two-tier LRU: host cache then slots).", "",
                  "| quantity | value |", "|---|---|"]
        for name, value in store.items():
            lines.append(f"| {name} | {value:.3f} |" if isinstance(value, float) else f"| {name} | {value} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="tiny training (smoke run)")
    parser.add_argument("--sections", nargs="+", default=["quality", "throughput", "store"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tp-preset", default="small")
    parser.add_argument("--tp-batch", type=int, default=8)
    parser.add_argument("--tp-seq-lens", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--tp-rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="user_layers_bench_"))
    try:
        quality_results, timings, train_config, chosen = ({}, [], None, [])
        if "quality" in args.sections:
            quality_results, timings, train_config, chosen = quality(args.seeds, args.quick, workdir)
        tp = throughput(args.tp_preset, args.tp_batch, args.tp_seq_lens, args.tp_rank, args.repeats, workdir) \
            if "throughput" in args.sections else {}
        store = store_behaviour("small", n_users=200, requests=4000, zipf_s=1.1, num_slots=16, max_host=64,
                                rank=8, workdir=workdir) if "store" in args.sections else {}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, quality_results, timings, train_config, tp, store, info, time.perf_counter() - started,
                  chosen)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
