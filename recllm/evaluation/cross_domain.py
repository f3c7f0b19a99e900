"""Food–Kitchen (LLMCDSR release): per-domain next-item metrics, the cross-domain lift, and the sampled protocol.

The two-phase next-item pipeline (``recllm.seqrec.next_item_pipeline.run_two_phase``) with every target ranked
among the items of its own domain: phase 1 trains the first stage (SASRec over ids + item transitions) and the SID
generator on the three training files (Food-only, overlapping users' mixed sequences, and by default every second
Kitchen-only user, for time: 36k items make full-softmax training costly on two cores), chooses the mixture weight
and fits the candidate reranker on the validation lines; phase 2 retrains on the training files plus the whole
validation lines and ranks the test lines. The reranker's cross-service features (share of the history in the
candidate's domain, latest interaction there, steps since) are what this data set exercises; item content is the
title (content encoder → content-profile features and RQ-KMeans Semantic IDs for the generator).
Each valid / test line is a mixed-domain history whose last item is the target; three measurements follow:

1. **Per-domain full ranking**: the target is ranked among all items of its own domain (8,661 food or 27,637
   kitchen items), raw and history-filtered, Recall/NDCG @5/10/20 per domain; test for every stage, validation for
   the first stage (the reranker is fitted there).
2. **Cross-domain lift** (test): for the users whose history holds both domains, the same ranking with the full
   mixed history vs with only the target domain's part of it (raw). The difference is what the other service adds.
3. **LLMCDSR's own protocol**: the target against 999 negatives drawn uniformly from its domain (excluding the
   target only, as LLMCDSR's ``Evaluator``; history items can be negatives), raw scores, HR/NDCG @1/5/10 per
   domain. The negatives are seeded, so runs are comparable.

Item ids are shifted by one (0 is the model's padding), as LLMCDSR's loader does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from recllm.datasets.food_kitchen import FOOD, KITCHEN, FoodKitchenDataset
from recllm.datasets.interaction_dataset import NextItemExample
from recllm.evaluation.next_item import TargetRanks
from recllm.evaluation.report_table import EvalReport, MetricRows
from recllm.seqrec.candidate_reranker import CandidateRerankerConfig, ItemSideInfo
from recllm.seqrec.full_ranking import metrics_from_ranks
from recllm.seqrec.hybrid_scorer import HybridConfig
from recllm.seqrec.next_item_pipeline import EvalRequests, NextItemPipelineConfig, TwoPhaseSplit, run_two_phase
from recllm.seqrec.sasrec import SASRecConfig
from recllm.sid.content_encoder import ContentEncoderConfig, ItemContent, encode_contents
from recllm.sid.generative_retrieval import GenerativeRetrieverConfig
from recllm.sid.item_sids import padded_item_table
from recllm.sid.residual_quantization import RQKMeansConfig, fit_rq_kmeans
from recllm.config.field_checks import require_above

logger = logging.getLogger(__name__)

FULL_KS = (5, 10, 20)
SAMPLED_KS = (1, 5, 10)
DOMAIN_POOL, SAMPLED_POOL = "domain", "sampled"
SPLITS = ("valid", "test")
# The protocol column: which training produced each row (the splits are separate lines, not leave-one-out).
SPLIT_PROTOCOLS = {"valid": "valid: phase 1, trained on the training files",
                   "test": "refit: phase 2, retrained on the training files + the validation lines"}


def split_protocols(rows: MetricRows) -> dict[str, str]:
    """Each row's protocol from the split its name starts with."""
    return {name: SPLIT_PROTOCOLS[name.split(" ", 1)[0]] for name in rows}


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
    reranker: CandidateRerankerConfig = field(default_factory=CandidateRerankerConfig)
    generative: GenerativeRetrieverConfig | None = field(default_factory=lambda: GenerativeRetrieverConfig(epochs=2))
    weight_grid: tuple[float, ...] = HybridConfig().weight_grid
    sid_codebook_size: int = 256

    def pipeline(self) -> NextItemPipelineConfig:
        return NextItemPipelineConfig(hybrid=HybridConfig(sasrec=self.model, weight_grid=self.weight_grid),
                                      reranker=self.reranker, generative=self.generative,
                                      rank_within_target_domain=True)

    def __post_init__(self) -> None:
        require_above(self, "sid_codebook_size", 2, inclusive=True)
        require_above(self, "n_negatives", 1, inclusive=True)
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
            return cls(SASRecConfig.from_name("test", epochs=5), train_user_stride=10, max_eval_lines=200,
                       reranker=CandidateRerankerConfig(num_candidates=20, epochs=10),
                       generative=GenerativeRetrieverConfig.from_name("test", epochs=1, batch_size=128),
                       weight_grid=(0.0, 0.3, 0.6))
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


def item_side_info(dataset: FoodKitchenDataset, config: CrossDomainEvalConfig) -> ItemSideInfo:
    """Model-id-indexed (dataset id + 1) title content vectors, RQ-KMeans SIDs and domains (0 food, 1 kitchen)."""
    n_items = dataset.n_food_items + dataset.n_kitchen_items
    contents = [ItemContent(item + 1, "", (), dataset.item_text.get(item, "")) for item in range(n_items)]
    vectors = encode_contents(contents, ContentEncoderConfig.from_name("amazon"))
    codebook = min(config.sid_codebook_size, n_items)
    sids = fit_rq_kmeans(vectors, RQKMeansConfig(codebook_size=codebook)).codes
    model_ids = np.arange(1, n_items + 1)
    domains = np.zeros(n_items + 1, dtype=np.int64)
    domains[dataset.n_food_items + 1:] = 1
    return ItemSideInfo(np.zeros((n_items + 1, 1), dtype=np.int64), content=padded_item_table(model_ids, vectors),
                        domains=domains, sids=padded_item_table(model_ids, sids))


def _requests(lines: list[EvalLine]) -> EvalRequests:
    return EvalRequests([list(line.history) for line in lines], [line.target for line in lines],
                        [line.negatives for line in lines])


def _target_ranks(arrays: dict[str, np.ndarray]) -> TargetRanks:
    return TargetRanks(arrays["raw"], arrays["filtered"])


STAGE_LABELS = {"sasrec": "SASRec (ids)", "hybrid": "first stage (SASRec + transitions)",
                "reranked": "full pipeline (reranked)"}


def _stage_rows(lines: list[EvalLine], arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    rows = {}
    for stage, ranks in arrays.items():
        for domain in (FOOD, KITCHEN):
            for variant in ("raw", "filtered"):
                selected = _select(lines, ranks[variant], domain=domain, variant="mixed")
                if len(selected):
                    rows[f"test {domain} {variant}: {STAGE_LABELS.get(stage, stage)}"] = metrics_from_ranks(
                        selected, FULL_KS)
    return rows


def evaluate_food_kitchen(dataset: FoodKitchenDataset, config: CrossDomainEvalConfig) -> EvalReport:
    rng = np.random.default_rng(config.negative_seed)
    valid_lines = [line for line in eval_lines(dataset, "valid", dataset.valid, config, rng) if line.variant == "mixed"]
    test_lines = eval_lines(dataset, "test", dataset.test, config, rng)
    pools = {FOOD: domain_items(dataset, FOOD), KITCHEN: domain_items(dataset, KITCHEN)}
    train = training_sequences(dataset, config.train_user_stride, config.kitchen_only_stride)
    n_items = dataset.n_food_items + dataset.n_kitchen_items
    pipeline = config.pipeline()
    pipeline.hybrid.sasrec = replace(pipeline.hybrid.sasrec, n_items=n_items)
    split = TwoPhaseSplit(train, _requests(valid_lines),
                          train + [list(line.history) + [line.target] for line in valid_lines], _requests(test_lines))
    result = run_two_phase(split, item_side_info(dataset, config), pipeline)
    final = "reranked" if "reranked" in result.test_ranks else "hybrid"
    valid_ranks, test_ranks = _target_ranks(result.valid_ranks["hybrid"]), _target_ranks(result.test_ranks[final])
    lines = valid_lines + test_lines
    final_ranks = TargetRanks(np.concatenate([valid_ranks.raw, test_ranks.raw]),
                              np.concatenate([valid_ranks.filtered, test_ranks.filtered]))
    sampled = TargetRanks(np.concatenate([result.valid_ranks["hybrid"]["pool"], result.test_ranks[final]["pool"]]),
                          np.zeros(0))
    overlapping = sum(line.overlapping for line in lines if line.variant == "mixed")
    mixed = sum(line.variant == "mixed" for line in lines)
    cold = sum(1 for line in test_lines if line.variant == "mixed" and not line.overlapping
               and not _in_domain(line, pools))
    timings = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items())
    report = EvalReport(
        "Food–Kitchen (LLMCDSR release): cross-domain next-item recommendation",
        f"Two-phase pipeline, each target ranked among the items of its domain. Phase 1 trains on train_A + "
        f"train_B + train_overlap ({len(train):,} sequences: every {config.train_user_stride}. user of train_A / "
        f"train_overlap, every {config.train_user_stride * config.kitchen_only_stride}. Kitchen-only user of "
        f"train_B), chooses the mixture weight ({result.transition_weight}) and fits the reranker on the "
        f"{len(valid_lines):,} validation lines; phase 2 retrains on the same files plus the validation lines and "
        f"ranks the test lines. SID generator: {result.generative_epochs} epochs per phase. Config: `{pipeline}`. "
        f"Time: {timings}. Evaluated on {mixed:,} valid/test lines (last item = target, its domain from its id), "
        f"of which {overlapping:,} have history in both domains.")
    per_domain = _per_domain_rows(lines, final_ranks)
    report.add_table("per_domain", "Per-domain full ranking (target among all items of its domain)",
                     per_domain, [f"{m}@{k}" for m in "RN" for k in FULL_KS], protocols=split_protocols(per_domain),
                     text=f"Test: {STAGE_LABELS[final]}; valid: first stage (the reranker is fitted on validation, "
                          f"and the mixture weight chosen there: optimistic). Raw = nothing removed; filtered = the "
                          f"user's history items removed before ranking.")
    stage_rows = _stage_rows(test_lines, result.test_ranks)
    report.add_table("per_domain_stages", "Test, stage by stage", stage_rows,
                     [f"{m}@{k}" for m in "RN" for k in FULL_KS], protocols=split_protocols(stage_rows),
                     text="Each stage of the same run on the test lines (ablation).")
    lift_rows, lift_notes = _lift_rows(test_lines, test_ranks)
    report.add_table("cross_domain_lift", "Cross-domain lift for users with history in both domains", lift_rows,
                     [f"{m}@{k}" for m in "RN" for k in FULL_KS], lift_notes, protocols=split_protocols(lift_rows),
                     text=f"Test lines, {STAGE_LABELS[final]}, full ranking over the target's domain, raw. Users here "
                          f"have history in both domains; \"only\" keeps the target domain's part of it. ({cold} "
                          f"other test lines have no history at all in the target's domain: they are in the "
                          f"per-domain table only.)")
    sampled_rows = _sampled_rows(lines, sampled)
    report.add_table("sampled_999", f"LLMCDSR protocol: target vs {config.n_negatives} sampled negatives of its domain",
                     sampled_rows, [f"{m}@{k}" for m in ("HR", "NDCG") for k in SAMPLED_KS],
                     protocols=split_protocols(sampled_rows),
                     text=f"Negatives uniform from the target's domain without the target (seed "
                          f"{config.negative_seed}); raw scores, as LLMCDSR's evaluator; test: {STAGE_LABELS[final]}, "
                          f"valid: first stage. The README found no published numbers for this split.")
    return report
