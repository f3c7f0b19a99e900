"""Train the served reply generator's adaptive user layers on the build's own corpus, each example under its user.

Every generator training example (``builders.generator_corpus``) comes from one user's request; that user's ``u``
(``recllm.user_layers.user_vector``: DP-released preferences, demographics, temporal pattern, service shares, read
from the build's profile) conditions the layers. The trained generator stays frozen; on top of it, in order:

1. conditional RMSNorm + user prefix, jointly on all training users (adaLN-Zero: step 0 is the base model);
2. one LoRA adapter (q/k/v/o) per k-means segment of ``u``, all segments in one loop (each row trains its own
   segment's slot of the batched multi-LoRA op), with 1. switched on as it will be when served;
3. the MoE gate mixing the top-k segment adapters per user, started as a nearest-segment classifier;
4. one LoRA adapter of their own for each of the heaviest training users (most purchase events, enough requests),
   warm-started from their segment's adapter and trained on their replies only, all users in one loop (each row its
   user's slot). An adapter is saved (and then served in place of the segment mixture while fresh,
   ``AdapterStoreConfig``: TTL, min events) only when it beats that mixture on the user's validation requests.

A share of users (``heldout_fraction``, by a hash of the id) takes part in none of it; the report measures on their
examples, per user, the reply negative log-likelihood of the base model, of each stage, and of the layers fed
another held-out user's ``u`` (the swap test). Each heavy user's last ``user_eval_fraction`` of requests (all the
replies of a request together) is kept out of every stage here: its first half decides whether their adapter is
served, its second half scores the result against the segment mixture and another heavy user's adapter. (The base
generator, trained before on the whole corpus, has seen those replies, and the held-out users' too: these scores
compare the user layers, not the base model against them.) Output: ``layout.user_layers_dir`` in the format
``recllm.user_layers.reply_personalizer`` serves (segment adapters in PEFT's layout), plus ``report.json``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from builders.adamw_loop import adamw_loop
from recllm.config.field_checks import require_positive_ints
from recllm.generator import ReplyGenerator
from recllm.generator.training import GeneratorExample, collate, encode_example, reply_loss
from recllm.user_layers.adapter_store import AdapterStoreConfig, save_adapter, segment_adapter_name, user_adapter_name
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LoRAAdapter, checked_lora_modules
from recllm.user_layers.reply_personalizer import (
    ADAPTERS_DIR, LAYERS_FILE, SEGMENTS_FILE, save_layers_config,
)
from recllm.user_layers.user_vector import UserVectorBuilder, UserVectorConfig

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
HEAVY_USERS_FILE = "heavy_users.json"  # user id → the record ``heavy_user_record`` writes


@dataclass
class ReplyLayersConfig:
    n_segments: int = 4
    heldout_fraction: float = 0.2
    batch_size: int = 16
    joint_steps: int = 200
    lora_steps: int = 120
    gate_steps: int = 40
    learning_rate: float = 2e-3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_modules: tuple[str, ...] = ATTENTION_MODULES  # LORA_MODULES adds the MLP's gate/up/down projections
    num_prefix: int = 4
    prefix_hidden: int = 64
    user_slots: int = 8  # adapter slots beyond the segments' (per-user adapters of a batch)
    user_adapters: int = 8  # heavy training users given an adapter of their own (0: none)
    user_min_requests: int = 4  # ... each with at least this many requests in the corpus (>= 3: train, valid, test)
    user_min_events: int = AdapterStoreConfig.min_events  # ... and as many purchases as the store needs to serve it
    user_lora_steps: int = 40
    user_check_every: int = 5  # steps between the checkpoints a heavy user's own adapter is chosen from
    user_learning_rate: float = 5e-4  # a few replies per user: gentler than the shared stages
    user_eval_fraction: float = 0.3  # a heavy user's replies kept out (half to promote their adapter, half to score)
    eval_examples: int = 600  # held-out users' examples the report scores
    seed: int = 0

    def __post_init__(self):
        require_positive_ints(self, ("n_segments", "batch_size", "joint_steps", "lora_steps", "gate_steps",
                                     "lora_rank", "num_prefix", "prefix_hidden", "user_slots", "eval_examples",
                                     "user_min_requests", "user_lora_steps", "user_check_every"))
        self.lora_modules = checked_lora_modules(self.lora_modules, "ReplyLayersConfig")
        if self.user_min_requests < 3:
            raise ValueError(f"ReplyLayersConfig.user_min_requests must be >= 3 (train, validation, test), got "
                             f"{self.user_min_requests}")
        for name in ("heldout_fraction", "user_eval_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"ReplyLayersConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        if isinstance(self.user_adapters, bool) or not isinstance(self.user_adapters, int) \
                or not 0 <= self.user_adapters <= self.user_slots:
            raise ValueError(f"ReplyLayersConfig.user_adapters must be an int in [0, user_slots={self.user_slots}], "
                             f"got {self.user_adapters!r}")
        for name in ("learning_rate", "user_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ReplyLayersConfig.{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_name(cls, name: str) -> "ReplyLayersConfig":
        return cls(**PRESETS[name])


PRESETS = {"default": {}, "test": dict(joint_steps=30, lora_steps=30, gate_steps=10, eval_examples=120,
                                      user_adapters=4, user_min_requests=3, user_lora_steps=20)}


@dataclass
class UserRows:
    """A user's encoded examples with their ``u`` and segment."""

    user_id: str
    u: np.ndarray
    segment: int
    rows: list[tuple[list[int], list[int]]]
    requests: list[int] = field(default_factory=list)  # per row: which of the user's requests it came from


@dataclass
class HeavyUser:
    """A heavy training user: their adapter's slot, the replies kept from it, what their profile holds."""

    user: UserRows  # the replies every stage trains on (the kept ones removed)
    valid_rows: list[tuple[list[int], list[int]]]  # choose the adapter's checkpoint and whether it is served
    test_rows: list[tuple[list[int], list[int]]]  # score what is served
    slot: int
    num_events: int  # purchase events in the profile
    last_event_ts: int
    chosen_step: int = 0  # the checkpoint ``train_user_slots`` kept (0: the adapter it started from)
    last_step_slot: dict | None = None  # the slot's tensors at the last step (``slot_copy``), kept to measure


def split_heavy_users(train: list[UserRows], profile, config: "ReplyLayersConfig"
                      ) -> tuple[list[UserRows], list[HeavyUser]]:
    """The ``user_adapters`` training users with the most purchase events among those with ``user_min_requests``
    requests and ``user_min_events`` purchases; each one's last ``user_eval_fraction`` of requests (at least two:
    validation, then test; at least one left to train on), with all their replies, kept out of every stage. Returns
    the training users with those replies removed, and the heavy users."""
    if not config.user_adapters:
        return train, []
    eligible = {u.user_id: u for u in train if len(set(u.requests)) >= config.user_min_requests}
    purchases = {uid: profile.events_of(uid, kind="purchase") for uid in eligible}
    ranked = sorted((uid for uid, bought in purchases.items() if len(bought) >= config.user_min_events),
                    key=lambda uid: (-len(purchases[uid]), uid))
    heavy = {user_id: hold_out_requests(eligible[user_id], config.n_segments + j, purchases[user_id], config)
             for j, user_id in enumerate(ranked[:config.user_adapters])}
    return [heavy[u.user_id].user if u.user_id in heavy else u for u in train], list(heavy.values())


def hold_out_requests(user: UserRows, slot: int, purchases: Sequence, config: "ReplyLayersConfig") -> HeavyUser:
    """``user`` as a heavy user in adapter ``slot``: their last ``user_eval_fraction`` of requests (at least two:
    validation, then test; at least one left to train on), all their replies, kept out of training."""
    order = list(dict.fromkeys(user.requests))
    if len(order) < 3:
        raise ValueError(f"user {user.user_id} has {len(order)} requests; a heavy user needs >= 3 (train, "
                         "validation, test)")
    kept = min(max(2, round(len(order) * config.user_eval_fraction)), len(order) - 1)
    valid, test = set(order[-kept:len(order) - kept // 2]), set(order[len(order) - kept // 2:])
    rows_of = lambda requests: [r for r, q in zip(user.rows, user.requests) if q in requests]  # noqa: E731
    trained = [q for q in user.requests if q not in valid | test]
    return HeavyUser(replace(user, rows=rows_of(set(trained)), requests=trained), rows_of(valid), rows_of(test),
                     slot, len(purchases), int(purchases[-1].timestamp))


def is_heldout(user_id: str, fraction: float) -> bool:
    return zlib.crc32(user_id.encode("utf-8")) % 1000 < fraction * 1000


def user_rows(examples: Sequence[GeneratorExample], generator: ReplyGenerator, vectors: UserVectorBuilder,
              ) -> list[UserRows]:
    by_user: dict[str, list[GeneratorExample]] = defaultdict(list)
    for example in examples:
        if example.user_id:
            by_user[example.user_id].append(example)
    config = generator.config
    out = []
    for user_id in sorted(by_user):
        u, segment = vectors.vector(user_id)
        rows = [encode_example(generator.tokenizer, generator.codes, e, config.max_position_embeddings,
                               config.max_new_tokens) for e in by_user[user_id]]
        out.append(UserRows(user_id, u, segment, rows, request_numbers(by_user[user_id])))
    return out


def request_numbers(examples: Sequence[GeneratorExample]) -> list[int]:
    """Per example (one user's, in corpus order), the number of the request it came from: the corpus writes a
    request's examples one after another, each query starting with the request's own (a refine or explain adds its
    words to it)."""
    numbers, base, request = [], None, -1
    for example in examples:
        query = example.prompt.split(" | query: ", 1)[-1].split(" | profile: ", 1)[0]
        if base is None or not query.startswith(base):
            base, request = query, request + 1
        numbers.append(request)
    return numbers


def sample_batch(users: list[UserRows], size: int, rng: random.Random) -> tuple[list[UserRows], torch.Tensor,
                                                                               torch.Tensor]:
    """``size`` random examples (a random user, then one of their examples): users weigh equally."""
    picked = [rng.choice(users) for _ in range(size)]
    input_ids, labels = collate([rng.choice(p.rows) for p in picked], pad_id=0)
    return picked, input_ids, labels


def batch_of(adaptive: AdaptiveQwen2, picked: list[UserRows], lora: str = "none") -> UserBatch:
    """``lora``: "none", "segment" (each row its segment's slot) or "gate" (the MoE mixture of segment slots)."""
    u = torch.from_numpy(np.stack([p.u for p in picked]))
    indices = weights = None
    if lora == "segment":
        indices = torch.tensor([[p.segment] for p in picked])
    elif lora == "gate":
        indices, weights = adaptive.gate(u, torch.arange(adaptive.config.num_segments))
    return UserBatch(u, torch.ones(len(picked), dtype=torch.bool), indices, weights)


def own_batch(heavy: list[HeavyUser]) -> UserBatch:
    """Each row its heavy user's own adapter alone (weight 1), as served for a user with a fresh adapter."""
    u = torch.from_numpy(np.stack([h.user.u for h in heavy]))
    return UserBatch(u, torch.ones(len(heavy), dtype=torch.bool), torch.tensor([[h.slot] for h in heavy]),
                     torch.ones(len(heavy), 1))


def warm_start_user_slots(adaptive: AdaptiveQwen2, heavy: list[HeavyUser]) -> None:
    """Each heavy user's slot starts as their segment's trained adapter."""
    with torch.no_grad():
        for wrapper in adaptive.slots.wrappers.values():
            for h in heavy:
                wrapper.lora_a[h.slot] = wrapper.lora_a[h.user.segment]
                wrapper.lora_b[h.slot] = wrapper.lora_b[h.user.segment]
                wrapper.scales[h.slot] = wrapper.scales[h.user.segment]


def train_user_slots(adaptive: AdaptiveQwen2, heavy: list[HeavyUser], config: "ReplyLayersConfig",
                     rng: random.Random, progress: bool) -> float:
    """The heavy users' own slots, each trained on its user's replies only (all users in one loop, each row its
    user's slot, ``own_batch``); the rest of the model stays frozen. Every ``user_check_every`` steps each user's
    validation replies score their slot, and each slot ends as its best checkpoint (step 0: the adapter it started
    from; ``HeavyUser.chosen_step``): a few replies a user, and the last step overfits. Returns the stage's final
    loss."""
    slot_tensors = [t for w in adaptive.slots.wrappers.values() for t in (w.lora_a, w.lora_b)]
    best = {h.slot: (user_nll(adaptive, h.valid_rows, own_batch([h])), 0, slot_copy(adaptive, h.slot))
            for h in heavy}

    def keep_best(step: int) -> None:
        if step % config.user_check_every and step != config.user_lora_steps:
            return
        for h in heavy:
            nll = user_nll(adaptive, h.valid_rows, own_batch([h]))
            if nll < best[h.slot][0]:
                best[h.slot] = (nll, step, slot_copy(adaptive, h.slot))

    def own_loss():
        picked = [rng.choice(heavy) for _ in range(config.batch_size)]
        input_ids, labels = collate([rng.choice(h.user.rows) for h in picked], pad_id=0)
        return reply_loss(adaptive, input_ids, labels, batch=own_batch(picked))

    for t in slot_tensors:
        t.requires_grad_(True)
    try:
        loss = train_stage("user layers: heavy users' own LoRA", slot_tensors, config.user_lora_steps,
                           config.user_learning_rate, own_loss, progress, after_step=keep_best)
    finally:
        for t in slot_tensors:
            t.requires_grad_(False)
    for h in heavy:
        h.last_step_slot = slot_copy(adaptive, h.slot)
        _, h.chosen_step, kept = best[h.slot]
        write_slot(adaptive, h.slot, kept)
    log.info("heavy users' adapters: checkpoints kept %s", {h.user.user_id: h.chosen_step for h in heavy})
    return loss


def slot_copy(adaptive: AdaptiveQwen2, slot: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A copy of one slot's A and B in every wrapped projection."""
    return {key: (w.lora_a[slot].detach().clone(), w.lora_b[slot].detach().clone())
            for key, w in adaptive.slots.wrappers.items()}


def write_slot(adaptive: AdaptiveQwen2, slot: int, tensors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for key, (a, b) in tensors.items():
            adaptive.slots.wrappers[key].lora_a[slot] = a
            adaptive.slots.wrappers[key].lora_b[slot] = b


def slot_adapter(adaptive: AdaptiveQwen2, slot: int, name: str, kind: str, alpha: float, trained_at: int,
                 num_events: int, metadata: dict[str, str] | None = None) -> LoRAAdapter:
    a = {key: w.lora_a[slot].detach().clone() for key, w in adaptive.slots.wrappers.items()}
    b = {key: w.lora_b[slot].detach().clone() for key, w in adaptive.slots.wrappers.items()}
    return LoRAAdapter(name, adaptive.config.lora_rank, alpha, a, b, trained_at=trained_at, num_events=num_events,
                       kind=kind, metadata=metadata or {})


def user_nll(adaptive: AdaptiveQwen2, rows, batch: UserBatch | None) -> float:
    """Mean reply NLL of ``rows`` under ``batch`` (one row's user layers)."""
    with torch.inference_mode():
        return float(np.mean([float(reply_loss(adaptive, *collate([row], pad_id=0), batch=batch)) for row in rows]))


def promoted_users(adaptive: AdaptiveQwen2, heavy: list[HeavyUser], nll=user_nll) -> list[HeavyUser]:
    """The heavy users whose own adapter beats their segment mixture on their validation replies (``nll``: how a
    batch scores rows, ``user_nll``)."""
    return [h for h in heavy if nll(adaptive, h.valid_rows, own_batch([h]))
            < nll(adaptive, h.valid_rows, batch_of(adaptive, [h.user], "gate"))]


def save_user_adapters(adaptive: AdaptiveQwen2, promoted: list[HeavyUser], folder: Path, alpha: float,
                       trained_at: int, base_model: str = "") -> None:
    """Each promoted user's slot as ``folder/user-<id>`` (PEFT layout; the store serves it while fresh)."""
    for h in promoted:
        adapter = slot_adapter(adaptive, h.slot, user_adapter_name(h.user.user_id), "user", alpha, trained_at,
                               h.num_events, {"last_event_ts": str(h.last_event_ts)})
        save_adapter(adapter, Path(folder) / f"user-{h.user.user_id}", base_model=base_model)


def heavy_user_record(heavy: HeavyUser, promoted: bool, trained_at: int) -> dict:
    """What ``heavy_users.json`` keeps of a heavy user: the newest purchase their adapter has seen (the refresh
    retrains them once the profile holds a newer one), how many, whether their adapter is served, and when."""
    return {"last_event_ts": heavy.last_event_ts, "num_events": heavy.num_events, "promoted": promoted,
            "trained_at": trained_at, "chosen_step": heavy.chosen_step}


def write_heavy_users(folder: Path, records: dict[str, dict]) -> None:
    path = Path(folder) / HEAVY_USERS_FILE
    path.write_text(json.dumps(dict(sorted(records.items())), indent=2) + "\n", encoding="utf-8")


def read_heavy_users(folder: Path) -> dict[str, dict]:
    path = Path(folder) / HEAVY_USERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the build predates the heavy users' record; run "
                                "`recllm build --force`")
    return json.loads(path.read_text(encoding="utf-8"))


def evaluate_user_adapters(adaptive: AdaptiveQwen2, heavy: list[HeavyUser], promoted: list[HeavyUser]) -> dict:
    """On each heavy user's test replies, the mean reply NLL of the base model, the segment mixture (what the user
    gets without an adapter of their own), their own adapter (the chosen checkpoint; and at its last step, when
    ``train_user_slots`` kept it), what is served (own when promoted, else the mixture) and the next heavy user's
    adapter (swap); then averaged over the users."""
    per_user: dict[str, list[float]] = defaultdict(list)
    served_own = {h.user.user_id for h in promoted}
    for j, h in enumerate(heavy):
        other = heavy[(j + 1) % len(heavy)]
        gate, own = batch_of(adaptive, [h.user], "gate"), own_batch([h])
        batches = {"base": None, "MoE gate (no own adapter)": gate, "own adapter": own,
                   "served (own adapter if promoted)": own if h.user.user_id in served_own else gate,
                   "swap: another heavy user's adapter": replace(own, lora_indices=torch.tensor([[other.slot]]))}
        for name, batch in batches.items():
            per_user[name].append(user_nll(adaptive, h.test_rows, batch))
        if h.last_step_slot is not None:  # what the slot was before its checkpoint was chosen (never served)
            chosen = slot_copy(adaptive, h.slot)
            write_slot(adaptive, h.slot, h.last_step_slot)
            per_user["own adapter at its last step (not served)"].append(user_nll(adaptive, h.test_rows, own))
            write_slot(adaptive, h.slot, chosen)
    out: dict = {name: {"nll": round(float(np.mean(v)), 4), "nll_sd_over_users": round(float(np.std(v)), 4)}
                 for name, v in per_user.items()}
    own, gate = per_user["own adapter"], per_user["MoE gate (no own adapter)"]
    out["own_better_than_gate"] = round(float(np.mean([o < g for o, g in zip(own, gate)])), 4)
    out.update(users=len(heavy), promoted=len(promoted), test_replies=sum(len(h.test_rows) for h in heavy),
               chosen_steps=sorted(h.chosen_step for h in heavy))
    return out


def train_stage(desc: str, params: list[torch.Tensor], steps: int, lr: float, loss_fn, progress: bool,
                after_step=None) -> float:
    """One training stage (gradients clipped to 1; ``after_step`` as ``adamw_loop``'s); the mean loss over its last
    20% of steps."""
    losses = adamw_loop(desc, steps, params, loss_fn, lr, progress, clip_grad_norm=1.0, after_step=after_step)
    return float(np.mean(losses[int(steps * 0.8):]))


def init_segment_slots(adaptive: AdaptiveQwen2, n_segments: int, alpha: float, seed: int) -> list[torch.Tensor]:
    """PEFT's init for each segment slot (A small random, B zero: the adapter starts as no change); returns the
    slot tensors, made trainable."""
    generator = torch.Generator().manual_seed(seed)
    rank = adaptive.config.lora_rank
    tensors = []
    with torch.no_grad():
        for wrapper in adaptive.slots.wrappers.values():
            d_in = wrapper.lora_a.shape[-1]
            wrapper.lora_a[:n_segments] = torch.randn(n_segments, rank, d_in, generator=generator) / math.sqrt(d_in)
            wrapper.lora_b[:n_segments] = 0.0
            wrapper.scales[:n_segments] = alpha / rank
    for wrapper in adaptive.slots.wrappers.values():
        tensors += [wrapper.lora_a.requires_grad_(True), wrapper.lora_b.requires_grad_(True)]
    return tensors


def evaluate(adaptive: AdaptiveQwen2, users: list[UserRows], max_examples: int, seed: int) -> dict:
    """Per-user mean reply NLL (then averaged over users) for base, each stage, and the swap test."""
    rng = random.Random(seed)
    rows = [(i, row) for i, user in enumerate(users) for row in user.rows]
    rng.shuffle(rows)
    rows = rows[:max_examples]
    swap = {i: (i + 1 + rng.randrange(len(users) - 1)) % len(users) if len(users) > 1 else i
            for i in range(len(users))}
    variants = {"base": None, "norm + prefix": "none", "norm + prefix + segment LoRA": "segment",
                "norm + prefix + MoE gate (served)": "gate", "swap: another user's u (served layers)": "swap"}
    per_user: dict[str, dict[int, list[float]]] = {name: defaultdict(list) for name in variants}
    with torch.inference_mode():
        for index, row in rows:
            input_ids, labels = collate([row], pad_id=0)
            for name, mode in variants.items():
                if mode is None:
                    batch = None
                else:
                    owner = users[swap[index]] if mode == "swap" else users[index]
                    batch = batch_of(adaptive, [owner], "gate" if mode == "swap" else mode)
                per_user[name][index].append(float(reply_loss(adaptive, input_ids, labels, batch=batch)))
    out = {}
    for name, by_user in per_user.items():
        means = np.array([np.mean(v) for v in by_user.values()])
        out[name] = {"users": len(means), "nll": round(float(means.mean()), 4),
                     "nll_sd_over_users": round(float(means.std()), 4),
                     "perplexity": round(float(np.exp(means.mean())), 4)}
    base = {i: np.mean(v) for i, v in per_user["base"].items()}
    served = {i: np.mean(v) for i, v in per_user["norm + prefix + MoE gate (served)"].items()}
    out["users_better_than_base"] = round(float(np.mean([served[i] < base[i] for i in base])), 4)
    out["examples"] = len(rows)
    return out


def train_reply_layers(generator_dir: Path, examples: Sequence[GeneratorExample], profile, catalog,
                       item_vectors: np.ndarray, out_dir: Path, config: ReplyLayersConfig,
                       progress: bool = True) -> dict:
    """Train and save the layers; returns the report (also written to ``out_dir/report.json``)."""
    started = time.monotonic()
    torch.manual_seed(config.seed)
    generator = ReplyGenerator.load(generator_dir)
    vector_config = UserVectorConfig(pref_dim=int(item_vectors.shape[1]), n_segments=config.n_segments,
                                     seed=config.seed)
    vectors = UserVectorBuilder(vector_config, profile, catalog, item_vectors)
    corpus_users = sorted({e.user_id for e in examples if e.user_id})
    train_ids = [u for u in corpus_users if not is_heldout(u, config.heldout_fraction)]
    segments = vectors.fit_segments(train_ids)
    users = user_rows(examples, generator, vectors)
    train = [u for u in users if not is_heldout(u.user_id, config.heldout_fraction)]
    heldout = [u for u in users if is_heldout(u.user_id, config.heldout_fraction)]
    train, heavy = split_heavy_users(train, profile, config)
    if not train or not heldout:
        raise ValueError(f"train_reply_layers needs training and held-out users, got {len(train)} / {len(heldout)}")

    layers_config = UserLayersConfig(
        user_dim=vector_config.dim, num_prefix=config.num_prefix, prefix_hidden=config.prefix_hidden,
        lora_rank=config.lora_rank, lora_modules=config.lora_modules, num_slots=config.n_segments + config.user_slots,
        num_segments=config.n_segments, gate_top_k=min(2, config.n_segments), lora_path="auto")
    model = generator.model
    for p in model.parameters():
        p.requires_grad_(False)
    adaptive = AdaptiveQwen2(model, layers_config).train()
    rng = random.Random(config.seed)

    def loss(lora: str):
        picked, input_ids, labels = sample_batch(train, config.batch_size, rng)
        return reply_loss(adaptive, input_ids, labels, batch=batch_of(adaptive, picked, lora))

    layer_params = adaptive.user_layer_parameters()
    for p in layer_params:
        p.requires_grad_(True)
    losses = {"norm + prefix": train_stage("user layers: norm + prefix", layer_params, config.joint_steps,
                                           config.learning_rate, lambda: loss("none"), progress)}
    for p in layer_params:
        p.requires_grad_(False)
    slot_tensors = init_segment_slots(adaptive, config.n_segments, config.lora_alpha, config.seed)
    losses["segment LoRA"] = train_stage("user layers: segment LoRA", slot_tensors, config.lora_steps,
                                         config.learning_rate, lambda: loss("segment"), progress)
    for t in slot_tensors:
        t.requires_grad_(False)
    adaptive.gate.init_from_centroids(torch.from_numpy(segments.centroids))
    gate_params = list(adaptive.gate.parameters())
    for p in gate_params:
        p.requires_grad_(True)
    losses["MoE gate"] = train_stage("user layers: MoE gate", gate_params, config.gate_steps,
                                     config.learning_rate, lambda: loss("gate"), progress)
    for p in gate_params:
        p.requires_grad_(False)
    if heavy:
        warm_start_user_slots(adaptive, heavy)
        losses["user LoRA"] = train_user_slots(adaptive, heavy, config, rng, progress)
    adaptive.eval()
    promoted = promoted_users(adaptive, heavy)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    adaptive.save_user_layers(out_dir / LAYERS_FILE)
    segments.save(out_dir / SEGMENTS_FILE)
    save_layers_config(out_dir, layers_config, vector_config)
    trained_at = int(profile.latest_timestamp() or 0)
    for s in range(config.n_segments):
        members = [u for u in train if u.segment == s]
        adapter = slot_adapter(adaptive, s, segment_adapter_name(s), "segment", config.lora_alpha, trained_at,
                               sum(len(u.rows) for u in members))
        save_adapter(adapter, out_dir / ADAPTERS_DIR / f"segment-{s}", base_model=str(generator_dir))
    save_user_adapters(adaptive, promoted, out_dir / ADAPTERS_DIR, config.lora_alpha, trained_at, str(generator_dir))
    served = {h.user.user_id for h in promoted}
    write_heavy_users(out_dir, {h.user.user_id: heavy_user_record(h, h.user.user_id in served, trained_at)
                                for h in heavy})
    report = {
        "config": asdict(config), "train_users": len(train), "heldout_users": len(heldout),
        "train_examples": sum(len(u.rows) for u in train), "final_train_loss": losses,
        "heldout": evaluate(adaptive, heldout, config.eval_examples, config.seed),
        "heavy_users": evaluate_user_adapters(adaptive, heavy, promoted) if heavy else {"users": 0},
        "seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info("reply user layers trained in %.0f s: %s", report["seconds"], report["heldout"])
    return report


__all__ = ["HEAVY_USERS_FILE", "PRESETS", "REPORT_FILE", "ReplyLayersConfig", "is_heldout", "read_heavy_users",
           "train_reply_layers"]
