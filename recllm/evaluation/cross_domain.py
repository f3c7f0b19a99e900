"""Food–Kitchen (LLMCDSR release): per-domain next-item metrics, the cross-domain lift, and the sampled protocol.

One model is trained on the three training files (Food-only, overlapping users' mixed sequences, and by default
every second Kitchen-only user, for time: 36k items make full-softmax training costly on two cores).
Each valid / test line is a mixed-domain history whose last item is the target; three measurements follow:

1. **Per-domain full ranking**: the target is ranked among all items of its own domain (8,661 food or 27,637
   kitchen items), raw and history-filtered, Recall/NDCG @5/10/20 per domain.
2. **Cross-domain lift**: for the users whose history holds both domains, the same ranking with the full mixed
   history vs with only the target domain's part of it (raw). The difference is what the other service adds.
3. **LLMCDSR's own protocol**: the target against 999 negatives drawn uniformly from its domain (excluding the
   target only, as LLMCDSR's ``Evaluator``; history items can be negatives), raw scores, HR/NDCG @1/5/10 per
   domain. The negatives are seeded, so runs are comparable.

Item ids are shifted by one (0 is the model's padding), as LLMCDSR's loader does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recllm.datasets.food_kitchen import FOOD, KITCHEN, FoodKitchenDataset
from recllm.datasets.interaction_dataset import NextItemExample
from recllm.evaluation.next_item import TargetRanks, train_and_rank
from recllm.evaluation.report_table import EvalReport
from recllm.seqrec.full_ranking import metrics_from_ranks
from recllm.seqrec.sasrec import SASRecConfig

logger = logging.getLogger(__name__)

FULL_KS = (5, 10, 20)
SAMPLED_KS = (1, 5, 10)
DOMAIN_POOL, SAMPLED_POOL = "domain", "sampled"
SPLITS = ("valid", "test")


def default_model() -> SASRecConfig:
    # 36k items make a full-softmax epoch ~8x Beauty's: two epochs of small batches (more steps for the same
    # compute) keep the whole run near 15 minutes on the shared 2-core machine.
    return SASRecConfig.from_name("default", epochs=2, batch_size=32)


@dataclass
class CrossDomainEvalConfig:
    model: SASRecConfig = field(default_factory=default_model)
    n_negatives: int = 999
    negative_seed: int = 0
    train_user_stride: int = 1          # keep every n-th user of each training file (quick runs)
    kitchen_only_stride: int = 2        # and every n-th Kitchen-only user (2/3 of all training items; for time)
    max_eval_lines: int | None = None   # keep the first n lines of valid and of test (quick runs)

    def __post_init__(self) -> None:
        if self.n_negatives < 1:
            raise ValueError(f"CrossDomainEvalConfig.n_negatives must be >= 1, got {self.n_negatives!r}")
        for name in ("train_user_stride", "kitchen_only_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"CrossDomainEvalConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_eval_lines is not None and self.max_eval_lines < 1:
            raise ValueError(f"CrossDomainEvalConfig.max_eval_lines must be >= 1 or None, got {self.max_eval_lines!r}")

    @classmethod
    def from_name(cls, name: str) -> "CrossDomainEvalConfig":
        if name == "default":
            return cls()
        if name == "quick":
            return cls(SASRecConfig.from_name("test", epochs=5), train_user_stride=10, max_eval_lines=200)
        raise ValueError(f"CrossDomainEvalConfig preset {name!r} unknown; expected 'default' or 'quick'")


@dataclass
class EvalLine:
    """One ranking request: which split / domain / history variant it measures."""

    split: str
    domain: str
    variant: str                 # "mixed" (whole history) or "target_only" (the target domain's items only)
    history: tuple[int, ...]     # model ids (dataset id + 1)
    target: int
    negatives: np.ndarray        # model ids, shared by the mixed and target-only line of the same user
    overlapping: bool            # the whole history holds both domains


def domain_items(dataset: FoodKitchenDataset, domain: str) -> np.ndarray:
    """Model ids (dataset id + 1) of every item of ``domain``."""
    if domain == FOOD:
        return np.arange(1, dataset.n_food_items + 1)
    return np.arange(dataset.n_food_items + 1, dataset.n_food_items + dataset.n_kitchen_items + 1)


def sample_negatives(pool: np.ndarray, target: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct ids of ``pool`` other than ``target``, uniformly (all of them when the pool is smaller)."""
    others = pool[pool != target]
    return others if count >= len(others) else rng.choice(others, size=count, replace=False)


def eval_lines(dataset: FoodKitchenDataset, split: str, examples: Sequence[NextItemExample],
               config: CrossDomainEvalConfig, rng: np.random.Generator) -> list[EvalLine]:
    pools = {FOOD: domain_items(dataset, FOOD), KITCHEN: domain_items(dataset, KITCHEN)}
    lines = []
    for example in examples[:config.max_eval_lines]:
        history = tuple(item + 1 for item in example.history)
        target, domain = example.target + 1, example.target_domain
        negatives = sample_negatives(pools[domain], target, config.n_negatives, rng)
        in_domain = tuple(item for item in history if pools[domain][0] <= item <= pools[domain][-1])
        overlapping = 0 < len(in_domain) < len(history)
        lines.append(EvalLine(split, domain, "mixed", history, target, negatives, overlapping))
        if overlapping:
            lines.append(EvalLine(split, domain, "target_only", in_domain, target, negatives, overlapping))
    return lines


def _in_domain(line: EvalLine, pools: dict[str, np.ndarray]) -> bool:
    """Whether the line's history holds any item of its target's domain."""
    first, last = pools[line.domain][0], pools[line.domain][-1]
    return any(first <= item <= last for item in line.history)


def training_sequences(dataset: FoodKitchenDataset, stride: int, kitchen_only_stride: int = 1) -> list[list[int]]:
    """Model ids of every ``stride``-th user of train_A and train_overlap and every ``stride * kitchen_only_stride``-th
    user of train_B."""
    parts = ((dataset.train_a, stride), (dataset.train_b, stride * kitchen_only_stride),
             (dataset.train_overlap, stride))
    return [[item + 1 for item in sequence] for part, step in parts for sequence in list(part.values())[::step]]


def _select(lines: list[EvalLine], ranks: np.ndarray, **where) -> np.ndarray:
    keep = [all(getattr(line, key) == value for key, value in where.items()) for line in lines]
    return ranks[np.asarray(keep, dtype=bool)]


def _per_domain_rows(lines: list[EvalLine], ranks: TargetRanks) -> dict[str, dict[str, float]]:
    rows = {}
    for split in SPLITS:
        for domain in (FOOD, KITCHEN):
            for variant, values in (("raw", ranks.raw), ("filtered", ranks.filtered)):
                selected = _select(lines, values, split=split, domain=domain, variant="mixed")
                if len(selected):
                    rows[f"{split} {domain} {variant} (n={len(selected)})"] = metrics_from_ranks(selected, FULL_KS)
    return rows


def _lift_rows(lines: list[EvalLine], ranks: TargetRanks) -> tuple[dict, dict]:
    rows, notes = {}, {}
    for split in SPLITS:
        for domain in (FOOD, KITCHEN):
            both = _select(lines, ranks.raw, split=split, domain=domain, variant="mixed", overlapping=True)
            alone = _select(lines, ranks.raw, split=split, domain=domain, variant="target_only")
            if not len(both):
                continue
            with_both = metrics_from_ranks(both, FULL_KS)
            only_target = metrics_from_ranks(alone, FULL_KS)
            rows[f"{split} {domain}: both domains' history (n={len(both)})"] = with_both
            rows[f"{split} {domain}: {domain} history only"] = only_target
            lift = {key: with_both[key] - only_target[key] for key in with_both}
            rows[f"{split} {domain}: lift (both − only)"] = lift
            notes[f"{split} {domain}: lift (both − only)"] = _relative(with_both, only_target, "R@10")
    return rows, notes


def _relative(new: dict[str, float], old: dict[str, float], key: str) -> str:
    return f"{key} {100 * (new[key] / old[key] - 1):+.0f}%" if old[key] > 0 else f"{key} from 0"


def _sampled_rows(lines: list[EvalLine], ranks: TargetRanks) -> dict[str, dict[str, float]]:
    rows = {}
    for split in SPLITS:
        for domain in (FOOD, KITCHEN):
            selected = _select(lines, ranks.raw, split=split, domain=domain, variant="mixed")
            if len(selected):
                metrics = metrics_from_ranks(selected, SAMPLED_KS)
                rows[f"{split} {domain} (n={len(selected)})"] = {
                    key.replace("R@", "HR@").replace("N@", "NDCG@"): value for key, value in metrics.items()}
    return rows


def evaluate_food_kitchen(dataset: FoodKitchenDataset, config: CrossDomainEvalConfig) -> EvalReport:
    rng = np.random.default_rng(config.negative_seed)
    lines = [line for split, examples in (("valid", dataset.valid), ("test", dataset.test))
             for line in eval_lines(dataset, split, examples, config, rng)]
    pools = {FOOD: domain_items(dataset, FOOD), KITCHEN: domain_items(dataset, KITCHEN)}
    train = training_sequences(dataset, config.train_user_stride, config.kitchen_only_stride)
    n_items = dataset.n_food_items + dataset.n_kitchen_items
    trained = train_and_rank(train, [line.history for line in lines], [line.target for line in lines], n_items,
                             config.model, {DOMAIN_POOL: [pools[line.domain] for line in lines],
                                            SAMPLED_POOL: [line.negatives for line in lines]})
    overlapping = sum(line.overlapping for line in lines if line.variant == "mixed")
    mixed = sum(line.variant == "mixed" for line in lines)
    cold = sum(1 for line in lines if line.variant == "mixed" and not line.overlapping and not _in_domain(line, pools))
    report = EvalReport(
        "Food–Kitchen (LLMCDSR release): cross-domain next-item recommendation",
        f"One model trained on train_A + train_B + train_overlap ({len(train):,} sequences: every "
        f"{config.train_user_stride}. user of train_A / train_overlap, every "
        f"{config.train_user_stride * config.kitchen_only_stride}. Kitchen-only user of train_B) with "
        f"`{trained.config}` in {trained.train_seconds:.0f} s. "
        f"Evaluated on {mixed:,} valid/test lines (last item = target, its domain from its id), of which "
        f"{overlapping:,} have history in both domains.")
    report.add_table("per_domain", "Per-domain full ranking (target among all items of its domain)",
                     _per_domain_rows(lines, trained.ranks[DOMAIN_POOL]), [f"{m}@{k}" for m in "RN" for k in FULL_KS],
                     text="Raw = nothing removed; filtered = the user's history items removed before ranking.")
    lift_rows, lift_notes = _lift_rows(lines, trained.ranks[DOMAIN_POOL])
    report.add_table("cross_domain_lift", "Cross-domain lift for users with history in both domains", lift_rows,
                     [f"{m}@{k}" for m in "RN" for k in FULL_KS], lift_notes,
                     text=f"Same model, same targets, full ranking over the target's domain, raw. Users here have "
                          f"history in both domains; \"only\" keeps the target domain's part of it. ({cold} other "
                          f"lines have no history at all in the target's domain: they are in the per-domain table "
                          f"only.)")
    report.add_table("sampled_999", f"LLMCDSR protocol: target vs {config.n_negatives} sampled negatives of its domain",
                     _sampled_rows(lines, trained.ranks[SAMPLED_POOL]),
                     [f"{m}@{k}" for m in ("HR", "NDCG") for k in SAMPLED_KS],
                     text=f"Negatives uniform from the target's domain without the target (seed "
                          f"{config.negative_seed}); raw scores, as LLMCDSR's evaluator. The README found no "
                          f"published numbers for this split.")
    return report
