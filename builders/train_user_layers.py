"""Train the adaptive user layers on the synthetic ecosystem, small enough for 2 CPU cores in a few minutes.

Data: users with cross-service histories (``generate_ecosystem``); each user's purchases in time order become a
sequence of item **category tokens** (token = 2 + index of the leaf category; 0 pad, 1 BOS), so the task is
next-purchase-category prediction and personalization is measurable. Each user's last ``eval_fraction`` of
purchases is held back; the profile store holds only the events before that cutoff, so ``u`` (read through
``read_user_context``: DP-released preferences, demographics, temporal pattern, service shares) never sees them.
A quarter of the users (``heldout_fraction``) take no part in any joint training.

Stages (``train``):
1. base: a small Qwen2 (``Qwen2Config.from_name(model_preset)``) on the training users' sequences, no user input;
2. user layers: conditional-norm modulations and the prefix encoder, jointly on all training users, base frozen;
3. segment adapters: ``peft`` LoRA (q/k/v/o) on an HF ``Qwen2ForCausalLM`` built from our checkpoint
   (``qwen2_checkpoint``), one adapter per k-means segment on its training users;
4. heavy-user adapters: the same, warm-started from the user's segment adapter, for the heaviest users (held-out
   ones included: a user adapter only ever sees its own user's training events); the last
   ``user_validation_fraction`` of the user's training purchases stays out of its training and chooses the
   checkpoint kept (every ``user_lora_check_every`` steps; step 0 is the segment adapter itself, so a user whose
   own steps do not beat it there keeps its segment's weights); optional DP-SGD via Opacus (no selection), each
   update charged to the user's privacy ledger in the profile (composed with the DP preference releases; an update
   the window's budget cannot pay for is dropped and the user falls back to the segment adapter);
5. MoE gate: the user-conditioned mixture over the segment adapters, trained through the batched multi-LoRA op.
Everything lands in ``output_dir`` (base checkpoint, ``user_layers.safetensors``, ``segments.json``,
``adapters/<name>/`` in PEFT format, ``state.json``). ``refresh`` retrains the user adapters of users with events
newer than the ones their adapter was trained on.

    python -m builders.train_user_layers train --output-dir /tmp/user_layers
    python -m builders.train_user_layers refresh --output-dir /tmp/user_layers
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from builders.adamw_loop import adamw_loop
from builders.build_artifacts import fill_profile
from recllm.generator.qwen2 import Qwen2, Qwen2Config, build_qwen2
from recllm.generator.qwen2_checkpoint import load_qwen2, save_qwen2
from recllm.profile.differential_privacy import (
    PrivacyConfig, charge_adapter_update, compose_epsilon, dp_sgd_event_mechanism, window_bounds,
)
from recllm.profile.refresh import RefreshConfig, refresh_all_profiles, refresh_user_profile
from recllm.profile.sqlite_store import ProfileStore
from recllm.synthetic.ecosystem import Ecosystem, SyntheticConfig, generate_ecosystem
from recllm.user_layers.adapter_store import (
    adapter_from_peft_state, load_adapter, save_adapter, segment_adapter_name, user_adapter_name,
)
from recllm.user_layers.adaptive_model import AdaptiveQwen2, UserBatch, UserLayersConfig
from recllm.user_layers.lora_adapter import ATTENTION_MODULES, LoRAAdapter, checked_lora_modules
from recllm.user_layers.user_vector import UserVectorBuilder, UserVectorConfig

log = logging.getLogger(__name__)

PAD, BOS, CATEGORY_OFFSET = 0, 1, 2
IGNORE = -100
PRIVACY_SECRET = b"user-layers-synthetic-secret-0123456789"


@dataclass
class TrainUserLayersConfig:
    output_dir: Path = Path("artifacts/user_layers")
    seed: int = 0
    n_users: int = 160
    heldout_fraction: float = 0.25
    eval_fraction: float = 0.2
    max_eval_tokens: int = 16
    seq_len: int = 48
    model_preset: str = "tiny"
    pref_dim: int = 16
    n_segments: int = 4
    batch_size: int = 16
    base_steps: int = 400
    base_lr: float = 3e-3
    user_layer_steps: int = 250
    user_layer_lr: float = 2e-3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_modules: tuple[str, ...] = ATTENTION_MODULES  # LORA_MODULES adds the MLP's gate/up/down projections
    segment_lora_steps: int = 60
    user_lora_steps: int = 40
    user_validation_fraction: float = 0.15  # of a heavy user's training purchases: chooses their adapter's checkpoint
    user_lora_check_every: int = 5  # steps between the checkpoints a heavy user's adapter is chosen from
    lora_lr: float = 3e-3
    heavy_users: int = 8
    heavy_users_from: str = "all"  # "all": the heaviest users; "heldout": the heaviest held-out ones (to measure)
    gate_steps: int = 60
    gate_top_k: int = 2
    dp: bool = False
    dp_noise_multiplier: float = 1.0
    dp_max_grad_norm: float = 1.0
    dp_delta: float = 1e-5
    dp_grad_sample_mode: str = "functorch"  # Opacus per-sample-gradient engine ("hooks" is its default)
    progress: bool = True

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                or value < 0):
                raise ValueError(f"TrainUserLayersConfig.{f.name} must be a non-negative number, got {value!r}")
        self.lora_modules = checked_lora_modules(self.lora_modules, "TrainUserLayersConfig")
        if self.user_lora_check_every < 1:
            raise ValueError(f"TrainUserLayersConfig.user_lora_check_every must be >= 1, "
                             f"got {self.user_lora_check_every!r}")
        for name in ("heldout_fraction", "eval_fraction", "user_validation_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"TrainUserLayersConfig.{name} must be in (0, 1), got {getattr(self, name)!r}")
        if self.heavy_users_from not in ("all", "heldout"):
            raise ValueError(f"TrainUserLayersConfig.heavy_users_from must be 'all' or 'heldout', "
                             f"got {self.heavy_users_from!r}")
        if self.dp_grad_sample_mode not in ("functorch", "hooks", "ew"):
            raise ValueError(f"TrainUserLayersConfig.dp_grad_sample_mode must be 'functorch', 'hooks' or 'ew', "
                             f"got {self.dp_grad_sample_mode!r}")
        if self.seq_len <= self.max_eval_tokens:
            raise ValueError(f"TrainUserLayersConfig.seq_len={self.seq_len} must exceed max_eval_tokens="
                             f"{self.max_eval_tokens}")

    @classmethod
    def quick(cls, **overrides) -> "TrainUserLayersConfig":
        """Seconds, not minutes: for tests."""
        small = dict(n_users=60, seq_len=24, max_eval_tokens=6, n_segments=2, base_steps=30, user_layer_steps=10,
                     segment_lora_steps=4, user_lora_steps=3, heavy_users=2, gate_steps=3, batch_size=8,
                     progress=False)
        return cls(**(small | overrides))


@dataclass
class UserData:
    user_id: str
    tokens: list[int]  # BOS + category tokens of the training purchases
    eval_tokens: list[int]  # the held-back purchases' tokens
    cutoff_ts: int  # last training event time
    num_events: int
    heldout: bool
    u: np.ndarray | None = None
    segment: int = -1


def item_vectors_by_category(ecosystem: Ecosystem, dim: int, seed: int) -> np.ndarray:
    """Unit item vectors: the item's leaf-category direction plus a little item noise (so DP releases of
    preferences say which categories a user buys)."""
    rng = np.random.default_rng(seed)
    categories = sorted({item.category_id for item in ecosystem.catalog.items})
    directions = {c: rng.standard_normal(dim) for c in categories}
    vectors = np.stack([directions[i.category_id] + 0.3 * rng.standard_normal(dim) for i in ecosystem.catalog.items])
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def category_tokens(ecosystem: Ecosystem) -> dict[str, int]:
    return {c: CATEGORY_OFFSET + i for i, c in enumerate(sorted({i.category_id for i in ecosystem.catalog.items}))}


def split_users(ecosystem: Ecosystem, config: TrainUserLayersConfig) -> list[UserData]:
    tokens_of = category_tokens(ecosystem)
    rng = np.random.default_rng(config.seed)
    users = []
    for seed in ecosystem.users:
        purchases = [e for e in ecosystem.events_of(seed.user_id) if e.kind == "purchase"]
        n_eval = min(config.max_eval_tokens, max(1, int(len(purchases) * config.eval_fraction)))
        if len(purchases) < config.seq_len + n_eval:
            continue  # cold and light users: served by the segment fallback, not trained or measured here
        tokens = [tokens_of[ecosystem.catalog.get(e.item_id).category_id] for e in purchases]
        users.append(UserData(seed.user_id, [BOS] + tokens[:-n_eval], tokens[-n_eval:],
                              purchases[-n_eval - 1].timestamp, len(purchases) - n_eval,
                              heldout=bool(rng.random() < config.heldout_fraction)))
    return users


def build_profile(ecosystem: Ecosystem, users: list[UserData], path: Path) -> ProfileStore:
    """The profile as of each user's cutoff: events after it are not in the store."""
    cutoff = {u.user_id: u.cutoff_ts for u in users}
    visible = [e for e in ecosystem.events if e.timestamp <= cutoff.get(e.user_id, 2 ** 62)]
    path.unlink(missing_ok=True)
    store = fill_profile(ProfileStore(path), _ecosystem_view(ecosystem, visible))
    return store


def _ecosystem_view(ecosystem: Ecosystem, events: list) -> Ecosystem:
    return Ecosystem(ecosystem.config, ecosystem.catalog, ecosystem.users, events, [])


def refresh_config() -> RefreshConfig:
    return RefreshConfig(privacy=PrivacyConfig(secret=PRIVACY_SECRET))


def windows(users: list[UserData], seq_len: int, batch_size: int, rng: np.random.Generator):
    """One training batch: (row users, inputs [B, L], targets [B, L]) of random windows of training tokens."""
    picked = rng.integers(len(users), size=batch_size)
    inputs, targets = [], []
    for index in picked:
        tokens = users[index].tokens
        start = int(rng.integers(0, len(tokens) - seq_len))
        window = tokens[start:start + seq_len + 1]
        inputs.append(window[:-1])
        targets.append(window[1:])
    return [users[i] for i in picked], torch.tensor(inputs), torch.tensor(targets)


def eval_window(user: UserData, seq_len: int) -> tuple[list[int], list[int]]:
    """(inputs, targets) of the last ``seq_len`` positions; targets are IGNORE except on held-back purchases."""
    return tail_window(user.tokens + user.eval_tokens, seq_len, len(user.eval_tokens))


def tail_window(tokens: list[int], seq_len: int, n_scored: int) -> tuple[list[int], list[int]]:
    """(inputs, targets) of the last ``seq_len`` positions of ``tokens``; targets are IGNORE except on the last
    ``n_scored`` tokens."""
    window = tokens[-(seq_len + 1):]
    n_targets = len(window) - 1
    targets = [t if i >= n_targets - n_scored else IGNORE for i, t in enumerate(window[1:])]
    return window[:-1], targets


def user_batch(rows: list[UserData], **kwargs) -> UserBatch:
    return UserBatch(user_vectors=torch.from_numpy(np.stack([r.u for r in rows])), **kwargs)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def train_base(config: TrainUserLayersConfig, train_users: list[UserData]) -> Qwen2:
    model = build_qwen2(Qwen2Config.from_name(config.model_preset), seed=config.seed).train()
    rng = np.random.default_rng(config.seed + 1)

    def step():
        _, inputs, targets = windows(train_users, config.seq_len, config.batch_size, rng)
        return lm_loss(model(inputs), targets)

    adamw_loop("base", config.base_steps, list(model.parameters()), step, config.base_lr, config.progress)
    return model.eval()


def train_user_layers(config: TrainUserLayersConfig, adaptive: AdaptiveQwen2, train_users: list[UserData]) -> None:
    for p in adaptive.base.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(config.seed + 2)

    def step():
        rows, inputs, targets = windows(train_users, config.seq_len, config.batch_size, rng)
        return lm_loss(adaptive(inputs, user_batch(rows)), targets)

    params = adaptive.user_layer_parameters()
    for p in params:
        p.requires_grad_(True)
    adamw_loop("user layers", config.user_layer_steps, params, step, config.user_layer_lr, config.progress)
    for p in params:
        p.requires_grad_(False)


# ---- peft LoRA stages -------------------------------------------------------------------------------------------

def hf_peft_model(base_dir: Path, config: TrainUserLayersConfig):
    """An HF Qwen2ForCausalLM from our checkpoint folder, wrapped by peft with one throwaway adapter."""
    import transformers
    from peft import get_peft_model

    hf = transformers.Qwen2ForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return get_peft_model(hf, lora_config(config), adapter_name="init")


def lora_config(config: TrainUserLayersConfig):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=list(config.lora_modules), task_type="CAUSAL_LM")


def train_peft_adapter(peft_model, name: str, users: list[UserData], steps: int, config: TrainUserLayersConfig,
                       rng: np.random.Generator, warm_start: LoRAAdapter | None = None,
                       on_step: Callable[[int], None] | None = None, **adapter_kwargs) -> LoRAAdapter:
    """A PEFT LoRA adapter trained ``steps`` steps on windows of ``users``' training tokens (from ``warm_start``
    when given); ``on_step(n)`` is called with 0 before the first step and n after the n-th, while the adapter is
    the model's active one."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    peft_model.add_adapter(name, lora_config(config))
    if warm_start is not None:
        set_peft_model_state_dict(peft_model, peft_state_of(warm_start), adapter_name=name)
    peft_model.set_adapter(name)  # marks only this adapter trainable
    params = [p for p in peft_model.parameters() if p.requires_grad]
    peft_model.train()

    def step():
        _, inputs, targets = windows(users, config.seq_len, config.batch_size, rng)
        return lm_loss(peft_model(input_ids=inputs).logits, targets)

    if on_step is not None:
        on_step(0)
    adamw_loop(name, steps, params, step, config.lora_lr, False, after_step=on_step)
    state = get_peft_model_state_dict(peft_model, adapter_name=name)
    peft_model.delete_adapter(name)
    return adapter_from_peft_state(state, name, config.lora_rank, config.lora_alpha, **adapter_kwargs)


@dataclass
class SelectedUserAdapter:
    """A heavy user's adapter: ``selected`` is the checkpoint with the lowest NLL on the user's validation tail
    (step 0: the segment adapter it started from), ``last`` the last step's (kept to measure what selection does)."""

    selected: LoRAAdapter
    last: LoRAAdapter
    step: int | None  # the selected checkpoint's step (0: the segment adapter's weights; None: no tail, the last)
    validation_nll: float  # at the selected checkpoint (nan: too few purchases to keep a tail, nothing selected)
    validation_nll_at_start: float  # of the segment adapter

    def report(self) -> dict:
        """For state.json (no tail: the NLLs are null)."""
        return {"step": self.step, "validation_nll": None if math.isnan(self.validation_nll) else self.validation_nll,
                "validation_nll_at_start": None if math.isnan(self.validation_nll_at_start)
                else self.validation_nll_at_start}


def validation_split(user: UserData, config: TrainUserLayersConfig
                     ) -> tuple[UserData, tuple[list[int], list[int]] | None]:
    """The user without the validation tail of their training purchases, and the tail as one scored window; the
    user as is and None when too few purchases are left to keep one (at most ``seq_len // 2`` are scored)."""
    n_tail = min(config.seq_len // 2, max(1, int((len(user.tokens) - 1) * config.user_validation_fraction)))
    if len(user.tokens) - n_tail <= config.seq_len:
        return user, None
    return replace(user, tokens=user.tokens[:-n_tail]), tail_window(user.tokens, config.seq_len, n_tail)


def train_user_adapter(peft_model, name: str, user: UserData, segment_adapter: LoRAAdapter,
                       config: TrainUserLayersConfig, rng: np.random.Generator, **adapter_kwargs
                       ) -> SelectedUserAdapter:
    """A heavy user's adapter, warm-started from their segment's, trained on their purchases before the validation
    tail; the checkpoint kept is the one the tail scores best (checked every ``user_lora_check_every`` steps)."""
    from peft import get_peft_model_state_dict

    trainable, validation = validation_split(user, config)
    if validation is None:
        last = train_peft_adapter(peft_model, name, [user], config.user_lora_steps, config, rng,
                                  warm_start=segment_adapter, **adapter_kwargs)
        return SelectedUserAdapter(last, last, None, math.nan, math.nan)
    inputs, targets = (torch.tensor([part]) for part in validation)
    scores: list[tuple[float, int, dict[str, torch.Tensor]]] = []  # (tail NLL, step, adapter tensors)

    def check(step: int) -> None:
        if step % config.user_lora_check_every and step != config.user_lora_steps:
            return
        with torch.no_grad():
            nll = lm_loss(peft_model(input_ids=inputs).logits, targets).item()
        state = get_peft_model_state_dict(peft_model, adapter_name=name)
        scores.append((nll, step, {k: v.detach().clone() for k, v in state.items()}))

    last = train_peft_adapter(peft_model, name, [trainable], config.user_lora_steps, config, rng,
                              warm_start=segment_adapter, on_step=check, **adapter_kwargs)
    nll, step, state = min(scores, key=lambda s: (s[0], s[1]))
    metadata = adapter_kwargs.pop("metadata", {}) | {"selected_step": str(step), "validation_nll": f"{nll:.6f}",
                                                     "validation_nll_at_start": f"{scores[0][0]:.6f}"}
    selected = adapter_from_peft_state(state, name, config.lora_rank, config.lora_alpha, metadata=metadata,
                                       **adapter_kwargs)
    return SelectedUserAdapter(selected, last, step, nll, scores[0][0])


def peft_state_of(adapter: LoRAAdapter) -> dict[str, torch.Tensor]:
    from recllm.user_layers.adapter_store import peft_tensor_name

    state = {peft_tensor_name(layer, module, "A"): a.clone() for (layer, module), a in adapter.a.items()}
    state.update({peft_tensor_name(layer, module, "B"): b.clone() for (layer, module), b in adapter.b.items()})
    return state


@dataclass
class DPUserUpdate:
    """A DP-SGD adapter update: the adapter, the trainer's ε after each step (privacy unit: one training window) and
    what the event-level ledger needs (``dp_sgd_event_mechanism``)."""

    adapter: LoRAAdapter
    epsilons: list[float]
    noise_multiplier: float
    steps: int
    examples: int  # training windows


def train_dp_user_adapter(peft_model, name: str, user: UserData, config: TrainUserLayersConfig,
                          rng: np.random.Generator, **adapter_kwargs) -> DPUserUpdate:
    """DP-SGD (Opacus) on one user's windows: returns the adapter and ε after each update.

    Opacus's per-sample-gradient hooks did not fire on PEFT LoRA layers in some peft versions (opacus#820):
    training looked normal but nothing was learnt. So this checks every update: each LoRA parameter must carry a
    per-sample gradient, and the LoRA weights must differ from their start at the end, else it raises. (With peft
    0.21.2 and opacus 1.6.0 both the "functorch" and the "hooks" engines pass these checks here.) The privacy unit
    of the reported ε is one training window of the user's sequence. The profile ledger's unit is one purchase
    event, and adding or removing one event shifts every later window of the fixed-stride split, so
    ``charge_dp_update`` charges the run as one event changing every window (``dp_sgd_event_mechanism``): far
    weaker than the reported ε, and what the ledger composes.
    """
    from opacus import PrivacyEngine
    from peft import get_peft_model_state_dict

    peft_model.add_adapter(name, lora_config(config))
    peft_model.set_adapter(name)
    named = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in named.items()}
    inputs, targets = zip(*(eval_window_from(user.tokens, config.seq_len, start)
                            for start in range(0, len(user.tokens) - config.seq_len, max(1, config.seq_len // 4))))
    dataset = torch.utils.data.TensorDataset(torch.tensor(inputs), torch.tensor(targets))
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)))
    optimizer = torch.optim.SGD(list(named.values()), lr=config.lora_lr * 10)
    engine = PrivacyEngine(accountant="rdp")
    module, optimizer, loader = engine.make_private(module=peft_model, optimizer=optimizer, data_loader=loader,
                                                    noise_multiplier=config.dp_noise_multiplier,
                                                    max_grad_norm=config.dp_max_grad_norm,
                                                    grad_sample_mode=config.dp_grad_sample_mode)
    epsilons = []
    for _ in range(max(1, config.user_lora_steps // max(1, len(loader)))):
        for x, y in loader:
            if len(x) == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            lm_loss(module(input_ids=x).logits, y).backward()
            missing = [n for n, p in named.items() if getattr(p, "grad_sample", None) is None]
            if missing:
                raise RuntimeError(f"Opacus computed no per-sample gradient for {missing[:3]} (opacus#820)")
            optimizer.step()
            epsilons.append(engine.get_epsilon(config.dp_delta))
            log.info("%s DP-SGD update %d: epsilon %.3f at delta %g", name, len(epsilons), epsilons[-1],
                     config.dp_delta)
    changed = [n for n, p in named.items() if not torch.equal(p.detach(), before[n])]
    if len(changed) != len(named):
        raise RuntimeError(f"DP-SGD left {len(named) - len(changed)} LoRA tensors unchanged (opacus#820)")
    module.remove_hooks() if hasattr(module, "remove_hooks") else None
    state = get_peft_model_state_dict(peft_model, adapter_name=name)
    peft_model.delete_adapter(name)
    adapter = adapter_from_peft_state(state, name, config.lora_rank, config.lora_alpha, **adapter_kwargs)
    return DPUserUpdate(adapter, epsilons, config.dp_noise_multiplier, len(epsilons), len(dataset))


def charge_dp_update(store: ProfileStore, user_id: str, update: DPUserUpdate, now_ts: int,
                     privacy: PrivacyConfig) -> dict:
    """Charge the update to the user's ledger (window of ``now_ts``); the report: whether it was charged and the
    window's composed ε with it (the ε it would have reached when refused)."""
    entry = charge_adapter_update(store, user_id, now_ts, update.noise_multiplier, update.steps, update.examples,
                                  privacy)
    if entry is not None:
        return {"charged": True, "epsilon_composed": entry.epsilon_spent, "delta": entry.delta_spent,
                "window_start": entry.window_start}
    window_start, _ = window_bounds(now_ts, privacy)
    history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in store.mechanisms_of(user_id, window_start)]
    wanted = compose_epsilon(history + [dp_sgd_event_mechanism(update.noise_multiplier, update.steps,
                                                               update.examples)], privacy.delta_per_window)
    log.info("DP-SGD update of a user refused: composed epsilon %.3f > budget %.3f", wanted,
             privacy.epsilon_per_window)
    return {"charged": False, "epsilon_composed": wanted, "delta": privacy.delta_per_window,
            "window_start": window_start}


def eval_window_from(tokens: list[int], seq_len: int, start: int) -> tuple[list[int], list[int]]:
    window = tokens[start:start + seq_len + 1]
    return window[:-1], window[1:]


def train_gate(config: TrainUserLayersConfig, adaptive: AdaptiveQwen2, train_users: list[UserData],
               expert_slots: torch.Tensor) -> None:
    rng = np.random.default_rng(config.seed + 5)
    params = list(adaptive.gate.parameters())
    for p in params:
        p.requires_grad_(True)

    def step():
        rows, inputs, targets = windows(train_users, config.seq_len, config.batch_size, rng)
        u = torch.from_numpy(np.stack([r.u for r in rows]))
        indices, weights = adaptive.gate(u, expert_slots)
        return lm_loss(adaptive(inputs, UserBatch(lora_indices=indices, mix_weights=weights)), targets)

    adamw_loop("MoE gate", config.gate_steps, params, step, config.lora_lr, config.progress)
    for p in params:
        p.requires_grad_(False)


# ---- the whole run ----------------------------------------------------------------------------------------------

@dataclass
class TrainedUserLayers:
    config: TrainUserLayersConfig
    users: list[UserData]
    adaptive: AdaptiveQwen2
    segment_adapters: dict[int, LoRAAdapter]
    user_adapters: dict[str, LoRAAdapter]
    vectors: UserVectorBuilder
    dp_epsilons: dict[str, list[float]] = field(default_factory=dict)
    dp_ledger: dict[str, dict] = field(default_factory=dict)  # per DP user: charge_dp_update's report
    timings_s: dict[str, float] = field(default_factory=dict)
    user_adapter_selection: dict[str, SelectedUserAdapter] = field(default_factory=dict)  # non-DP heavy users


def prepare_users(config: TrainUserLayersConfig, ecosystem: Ecosystem | None = None):
    ecosystem = ecosystem or generate_ecosystem(SyntheticConfig.from_name("default", n_users=config.n_users,
                                                                          seed=7 + config.seed))
    users = split_users(ecosystem, config)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    store = build_profile(ecosystem, users, config.output_dir / "profile.db")
    item_vectors = item_vectors_by_category(ecosystem, config.pref_dim, config.seed)
    refresh_all_profiles(store, ecosystem.catalog, item_vectors, store.latest_timestamp(), refresh_config(),
                         progress=config.progress)
    vectors = UserVectorBuilder(UserVectorConfig(pref_dim=config.pref_dim, n_segments=config.n_segments,
                                                 seed=config.seed), store, ecosystem.catalog, item_vectors)
    vectors.fit_segments([u.user_id for u in users if not u.heldout])
    for user in users:
        user.u, user.segment = vectors.vector(user.user_id)
    return ecosystem, users, vectors


def train(config: TrainUserLayersConfig, ecosystem: Ecosystem | None = None) -> TrainedUserLayers:
    torch.manual_seed(config.seed)
    timings, started = {}, time.perf_counter()
    ecosystem, users, vectors = prepare_users(config, ecosystem)
    train_users = [u for u in users if not u.heldout]
    timings["data_s"] = time.perf_counter() - started

    t0 = time.perf_counter()
    base = train_base(config, train_users)
    base_dir = save_qwen2(base, config.output_dir / "base")
    timings["base_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    layers_config = UserLayersConfig(user_dim=vectors.config.dim, lora_rank=config.lora_rank,
                                     lora_modules=config.lora_modules,
                                     num_slots=max(8, config.n_segments + config.heavy_users),
                                     num_segments=config.n_segments, gate_top_k=min(config.gate_top_k,
                                                                                    config.n_segments))
    adaptive = AdaptiveQwen2(load_qwen2(base_dir), layers_config)
    train_user_layers(config, adaptive, train_users)
    adaptive.save_user_layers(config.output_dir / "user_layers.safetensors")
    vectors.segments.save(config.output_dir / "segments.json")
    timings["user_layers_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    now = int(time.time())
    peft_model = hf_peft_model(base_dir, config)
    rng = np.random.default_rng(config.seed + 3)
    segment_adapters = {}
    for segment in tqdm(range(config.n_segments), desc="segment LoRA", disable=not config.progress, leave=False):
        members = [u for u in train_users if u.segment == segment] or train_users
        segment_adapters[segment] = train_peft_adapter(
            peft_model, segment_adapter_name(segment), members, config.segment_lora_steps, config, rng,
            kind="segment", trained_at=now, num_events=sum(u.num_events for u in members))
        save_adapter(segment_adapters[segment], config.output_dir / "adapters" / f"segment_{segment}")
    timings["segment_lora_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pool = [u for u in users if u.heldout] if config.heavy_users_from == "heldout" else users
    heavy = sorted(pool, key=lambda u: -u.num_events)[:config.heavy_users]
    user_adapters, selection, dp_epsilons, dp_ledger = {}, {}, {}, {}
    profile = ProfileStore(config.output_dir / "profile.db")
    ledger_ts = profile.latest_timestamp()  # the clock the profile's DP releases were charged at
    for user in tqdm(heavy, desc="user LoRA", disable=not config.progress, leave=False):
        name = user_adapter_name(user.user_id)
        kwargs = dict(kind="user", trained_at=now, num_events=user.num_events,
                      metadata={"last_event_ts": str(user.cutoff_ts)})
        if config.dp:
            update = train_dp_user_adapter(peft_model, name, user, config, rng, **kwargs)
            peft_model = hf_peft_model(base_dir, config)  # Opacus wrapped the last one: start clean
            dp_epsilons[user.user_id] = update.epsilons
            dp_ledger[user.user_id] = charge_dp_update(profile, user.user_id, update, ledger_ts,
                                                       refresh_config().privacy)
            if not dp_ledger[user.user_id]["charged"]:
                continue  # the budget cannot pay for it: no adapter, the user falls back to the segment
            adapter = update.adapter
        else:
            selection[user.user_id] = train_user_adapter(peft_model, name, user, segment_adapters[user.segment],
                                                         config, rng, **kwargs)
            adapter = selection[user.user_id].selected
        user_adapters[user.user_id] = adapter
        save_adapter(adapter, config.output_dir / "adapters" / f"user_{user.user_id}")
    timings["user_lora_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for slot, segment in enumerate(sorted(segment_adapters)):
        adaptive.slots.write(slot, segment_adapters[segment])
    train_gate(config, adaptive, train_users, torch.arange(config.n_segments))
    adaptive.save_user_layers(config.output_dir / "user_layers.safetensors")
    timings["gate_s"] = time.perf_counter() - t0

    state = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
             "users": {u.user_id: {"cutoff_ts": u.cutoff_ts, "heldout": u.heldout, "segment": u.segment}
                       for u in users},
             "user_adapters": {uid: {"last_event_ts": int(a.metadata["last_event_ts"]), "trained_at": a.trained_at}
                               for uid, a in user_adapters.items()},
             "user_adapter_selection": {uid: s.report() for uid, s in selection.items()},
             "dp_epsilons": dp_epsilons, "dp_ledger": dp_ledger, "timings_s": timings}
    (config.output_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    log.info("trained user layers in %.1f s: %s", time.perf_counter() - started, timings)
    return TrainedUserLayers(config, users, adaptive, segment_adapters, user_adapters, vectors, dp_epsilons,
                             dp_ledger, timings, selection)


def refresh(output_dir: Path, store: ProfileStore, catalog, item_vectors: np.ndarray,
            config: TrainUserLayersConfig | None = None, now_ts: int | None = None) -> list[str]:
    """Retrain the user adapters of users whose stored events are newer than their adapter's; returns them.

    Each such user's profile is refreshed (new DP release), their adapter is retrained warm-started from the old
    one on their current history as ``train`` does: the newest ``user_validation_fraction`` of it is not trained on
    but chooses the checkpoint (step 0 is the old adapter, which may have been trained on the older part of that
    tail: the choice leans to keeping it). The adapter is saved over the old folder with a new ``trained_at``, and
    ``state.json`` records the new last event time and the choice.
    """
    output_dir = Path(output_dir)
    state = json.loads((output_dir / "state.json").read_text(encoding="utf-8"))
    config = config or TrainUserLayersConfig(**(state["config"] | {"output_dir": output_dir}))
    tokens_of = {c: CATEGORY_OFFSET + i for i, c in enumerate(sorted({i.category_id for i in catalog.items}))}
    now = int(now_ts if now_ts is not None else time.time())
    stale = []
    for user_id, entry in state["user_adapters"].items():
        purchases = store.events_of(user_id, kind="purchase")
        if not purchases or purchases[-1].timestamp <= entry["last_event_ts"]:
            continue
        stale.append((user_id, purchases))
    if not stale:
        return []
    peft_model = hf_peft_model(output_dir / "base", config)
    rng = np.random.default_rng(config.seed + 7)
    for user_id, purchases in tqdm(stale, desc="refresh user LoRA", disable=not config.progress, leave=False):
        refresh_user_profile(store, catalog, item_vectors, user_id, store.latest_timestamp(), refresh_config())
        folder = output_dir / "adapters" / f"user_{user_id}"
        old = load_adapter(folder)
        tokens = [BOS] + [tokens_of[catalog.get(e.item_id).category_id] for e in purchases]
        user = UserData(user_id, tokens, [], purchases[-1].timestamp, len(purchases), heldout=False)
        chosen = train_user_adapter(peft_model, old.name, user, old, config, rng, kind="user", trained_at=now,
                                    num_events=len(purchases), metadata={"last_event_ts": str(purchases[-1].timestamp)})
        save_adapter(chosen.selected, folder)
        state["user_adapters"][user_id] = {"last_event_ts": purchases[-1].timestamp, "trained_at": now}
        state.setdefault("user_adapter_selection", {})[user_id] = chosen.report()
    (output_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    log.info("refreshed %d user adapters", len(stale))
    return [user_id for user_id, _ in stale]


def main(argv: list[str] | None = None) -> None:
    defaults = TrainUserLayersConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("train", "refresh"))
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-users", type=int, default=defaults.n_users)
    parser.add_argument("--dp", action="store_true", help="DP-SGD (Opacus) for the heavy-user adapters")
    parser.add_argument("--quick", action="store_true", help="tiny step counts (smoke run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides = dict(output_dir=args.output_dir, seed=args.seed, n_users=args.n_users, dp=args.dp)
    config = TrainUserLayersConfig.quick(**overrides) if args.quick else TrainUserLayersConfig(**overrides)
    if args.command == "train":
        train(config)
        return
    store = ProfileStore(args.output_dir / "profile.db")
    ecosystem = generate_ecosystem(SyntheticConfig.from_name("default", n_users=config.n_users, seed=7 + config.seed))
    changed = refresh(args.output_dir, store, ecosystem.catalog,
                      item_vectors_by_category(ecosystem, config.pref_dim, config.seed), config)
    print(json.dumps({"refreshed_users": changed}))


if __name__ == "__main__":
    main()
