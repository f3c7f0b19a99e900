"""The leave-one-out next-item pipeline: hybrid first stage, candidate reranker, tuned on validation only.

1. Validation phase: fit the ``HybridScorer`` (SASRec with content features + item transitions) on the training
   split (all but each user's last two items); choose the mixture weight on the validation targets; build candidate
   lists for the validation users and fit the ``CandidateReranker`` on them.
2. Test phase: refit the first stage, same hyper-parameters and chosen weight, on training + validation items (all
   but the last item: the usual "retrain with validation data" step), rank the test targets with it and rerank its
   candidates with the reranker fitted in phase 1.

``run_two_phase`` is the general form (any phase-1 / phase-2 training sequences and requests, optional candidate
pools and ranking within each target's domain, as the cross-domain protocol needs); ``run_leave_one_out`` feeds it
the papers' split. The SID generator (``recllm.sid.generative_retrieval``) is trained in each phase beside the first
stage when the items have Semantic IDs; its log-probability of each candidate's SID is one of the reranker's features.

Nothing in phase 1 sees a test target; nothing is tuned in phase 2. Validation metrics of the first stage are
reported for reference (the weight was chosen on them, so they are optimistic); the reranker has no validation
number of its own because validation is its training set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from recllm.datasets.amazon_beauty import LeaveOneOutSplit
from recllm.seqrec.candidate_reranker import (FEATURE_GROUPS, GENERATIVE_FEATURE, CandidateLists, CandidateReranker,
                                              CandidateRerankerConfig, ItemContext, ItemSideInfo,
                                              build_candidate_lists, feature_names)
from recllm.seqrec.full_ranking import filter_history, metrics_from_ranks, target_ranks
from recllm.seqrec.hybrid_scorer import HybridConfig, HybridScorer, mix, same_domain_mask
from recllm.sid.generative_retrieval import (GenerativeRetriever, GenerativeRetrieverConfig, generative_scores,
                                             train_generative_retriever)

logger = logging.getLogger(__name__)

SCORE_CHUNK = 1024
STAGES = ("sasrec", "hybrid", "reranked")
ABLATION_PREFIX = "reranked without "


def default_generative() -> GenerativeRetrieverConfig:
    """The SID generator whose score the reranker reads: a few epochs, fixed (not a time budget: deterministic)."""
    return GenerativeRetrieverConfig(epochs=4)


@dataclass
class NextItemPipelineConfig:
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    reranker: CandidateRerankerConfig = field(default_factory=CandidateRerankerConfig)
    use_reranker: bool = True
    # Trained per phase when the items have SIDs; None: no generative score.
    generative: GenerativeRetrieverConfig | None = field(default_factory=default_generative)
    # Feature groups (``candidate_reranker.FEATURE_GROUPS``) to leave out, one extra reranker each, scored on test.
    ablations: tuple[str, ...] = ()
    # Rank each target among the items of its own domain (``ItemSideInfo.domains``), as cross-domain protocols do.
    rank_within_target_domain: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ablations) - set(FEATURE_GROUPS))
        if unknown:
            raise ValueError(f"NextItemPipelineConfig.ablations: unknown groups {unknown}; "
                             f"expected some of {sorted(FEATURE_GROUPS)}")


@dataclass
class EvalRequests:
    """Next-item requests: ``targets[u]`` follows ``histories[u]``; ``pools[u]`` (optional) is a candidate pool the
    target is also ranked in (e.g. the 999 sampled negatives of the LLMCDSR protocol)."""

    histories: list[list[int]]
    targets: list[int]
    pools: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if len(self.histories) != len(self.targets) or (self.pools is not None and len(self.pools) != len(self.targets)):
            raise ValueError(f"EvalRequests: {len(self.histories)} histories, {len(self.targets)} targets, "
                             f"{None if self.pools is None else len(self.pools)} pools; expected equal counts")

    def chunk(self, offset: int, size: int) -> "EvalRequests":
        end = offset + size
        return EvalRequests(self.histories[offset:end], self.targets[offset:end],
                            None if self.pools is None else self.pools[offset:end])


@dataclass
class TwoPhaseSplit:
    """Phase 1 trains on ``train`` and tunes / fits the reranker on ``valid``; phase 2 retrains on
    ``train_plus_valid`` (the same users' data with the validation targets added) and ranks ``test``."""

    train: list[list[int]]
    valid: EvalRequests
    train_plus_valid: list[list[int]]
    test: EvalRequests

    @classmethod
    def from_leave_one_out(cls, split: LeaveOneOutSplit) -> "TwoPhaseSplit":
        valid = EvalRequests([list(e.history) for e in split.valid], [e.target for e in split.valid])
        test = EvalRequests([list(e.history) for e in split.test], [e.target for e in split.test])
        full = [list(e.history) + [e.target] for e in split.valid]   # all but the last item of every user
        return cls(list(split.train.values()), valid, full, test)


@dataclass
class StageRanks:
    """0-based target ranks per stage: over all (allowed) items, raw and history-filtered, and in the pools."""

    raw: dict[str, list[np.ndarray]] = field(default_factory=dict)
    filtered: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pool: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, stage: str, scores: np.ndarray, requests: EvalRequests) -> None:
        self.raw.setdefault(stage, []).append(target_ranks(scores, requests.targets))
        self.filtered.setdefault(stage, []).append(
            target_ranks(filter_history(scores, requests.histories), requests.targets))
        if requests.pools is not None:
            self.pool.setdefault(stage, []).append(pool_ranks(scores, requests.targets, requests.pools))

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """``{stage: {"raw": ranks, "filtered": ranks[, "pool": ranks]}}``, rows in request order."""
        out = {}
        for stage in self.raw:
            out[stage] = {"raw": np.concatenate(self.raw[stage]), "filtered": np.concatenate(self.filtered[stage])}
            if stage in self.pool:
                out[stage]["pool"] = np.concatenate(self.pool[stage])
        return out

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{stage: {"raw": metrics, "filtered": metrics}}`` for the stages that were scored, in scoring order."""
        return {stage: {"raw": metrics_from_ranks(np.concatenate(self.raw[stage])),
                        "filtered": metrics_from_ranks(np.concatenate(self.filtered[stage]))}
                for stage in self.raw}


def pool_ranks(scores: np.ndarray, targets: Sequence[int], pools: Sequence[np.ndarray]) -> np.ndarray:
    """Rank of each target among its own pool (the target never competes with itself; ties count against it)."""
    ranks = np.empty(len(targets), dtype=np.int64)
    for row, (target, pool) in enumerate(zip(targets, pools)):
        pool = np.asarray(pool)
        ranks[row] = int(((scores[row, pool] >= scores[row, target]) & (pool != target)).sum())
    return ranks


@dataclass
class PipelineResult:
    valid: dict[str, dict[str, dict[str, float]]]
    test: dict[str, dict[str, dict[str, float]]]   # also "reranked without <group>" for each ablation
    transition_weight: float
    weight_search: dict[float, float]   # validation filtered N@10 per mixture weight
    seconds: dict[str, float]
    generative_epochs: int = 0          # epochs of the SID generator (0: not used)
    test_ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)    # StageRanks.arrays() of test
    valid_ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # ... of validation (first stage)


@dataclass
class PhaseModels:
    """The models of one phase: first stage, optional SID generator, and what the reranker knows of the items."""

    scorer: HybridScorer
    generative: GenerativeRetriever | None
    context: ItemContext
    config: NextItemPipelineConfig

    def lists(self, histories: Sequence[Sequence[int]], targets: Sequence[int]) -> tuple[np.ndarray, CandidateLists]:
        """SASRec logits and the candidate lists; restricted to each target's domain when the config says so."""
        allowed = None
        if self.config.rank_within_target_domain:
            allowed = same_domain_mask(self.context.domains, targets)
        sasrec_scores, transitions = self.scorer.parts(histories, allowed)
        mixture = mix(sasrec_scores, transitions, self.scorer.config.transition_weight, allowed)
        lists = build_candidate_lists(sasrec_scores, transitions, mixture, histories, self.context,
                                      self.config.reranker.num_candidates)
        if self.generative is not None:
            lists = lists.with_columns(generative_scores(self.generative, histories, lists.items))
        return sasrec_scores, lists


def _column_indices(groups: Sequence[str], names: Sequence[str]) -> list[int]:
    wanted = {feature for group in groups for feature in FEATURE_GROUPS[group]}
    return [index for index, name in enumerate(names) if name in wanted]


def _phase_scores(models: PhaseModels, requests: EvalRequests,
                  rerankers: dict[str, tuple[CandidateReranker, list]] | None = None,
                  keep_lists: bool = False) -> tuple[StageRanks, list[CandidateLists]]:
    """Ranks of every stage for the requests; ``rerankers``: stage name -> (reranker, feature columns it lacks)."""
    ranks, kept = StageRanks(), []
    for offset in range(0, len(requests.targets), SCORE_CHUNK):
        chunk = requests.chunk(offset, SCORE_CHUNK)
        sasrec_scores, lists = models.lists(chunk.histories, chunk.targets)
        ranks.add("sasrec", sasrec_scores, chunk)
        ranks.add("hybrid", lists.first_stage, chunk)
        for stage, (reranker, dropped) in (rerankers or {}).items():
            ranks.add(stage, reranker.rerank(lists.without(dropped) if dropped else lists), chunk)
        if keep_lists:
            kept.append(lists.for_training())
    return ranks, kept


def _fit_phase(sequences: Sequence[Sequence[int]], hybrid: HybridConfig, side: ItemSideInfo,
               sasrec_features: np.ndarray | None, config: NextItemPipelineConfig, seconds: dict[str, float],
               phase: str) -> PhaseModels:
    start = time.perf_counter()
    scorer = HybridScorer.fit(sequences, hybrid, sasrec_features)
    seconds[f"fit_first_stage_{phase}"] = time.perf_counter() - start
    generative = None
    if config.generative is not None and side.sids is not None:
        start = time.perf_counter()
        generative = train_generative_retriever(sequences, side.sids, config.generative)
        seconds[f"fit_generative_{phase}"] = time.perf_counter() - start
    return PhaseModels(scorer, generative, ItemContext.from_training(sequences, side), config)


def _fit_rerankers(lists: list[CandidateLists], targets: Sequence[int], config: NextItemPipelineConfig,
                   names: Sequence[str]) -> dict[str, tuple[CandidateReranker, list[int]]]:
    """The reranker on every feature, and one per ablated feature group with that group's columns zeroed."""
    chunks = [np.asarray(targets[o:o + SCORE_CHUNK]) for o in range(0, len(targets), SCORE_CHUNK)]
    rerankers = {"reranked": (CandidateReranker.fit(lists, chunks, config.reranker), [])}
    for group in config.ablations:
        dropped = _column_indices([group], names)
        if not dropped:
            logger.info("ablation %r skipped: none of its features is present", group)
            continue
        rerankers[ABLATION_PREFIX + group] = (
            CandidateReranker.fit([chunk.without(dropped) for chunk in lists], chunks, config.reranker), dropped)
    return rerankers


def run_leave_one_out(split: LeaveOneOutSplit, side: ItemSideInfo | np.ndarray, config: NextItemPipelineConfig,
                      item_features: np.ndarray | None = None) -> PipelineResult:
    """Both phases on the papers' leave-one-out split (``run_two_phase``)."""
    return run_two_phase(TwoPhaseSplit.from_leave_one_out(split), side, config, item_features)


def run_two_phase(split: TwoPhaseSplit, side: ItemSideInfo | np.ndarray, config: NextItemPipelineConfig,
                  item_features: np.ndarray | None = None) -> PipelineResult:
    """Both phases. ``side``: attributes (reranker matches), content vectors, domains and SIDs (the generative
    score) of the items; ``item_features`` feed SASRec (None: ID embeddings only)."""
    side = side if isinstance(side, ItemSideInfo) else ItemSideInfo(np.asarray(side))
    if config.rank_within_target_domain and side.domains is None:
        raise ValueError("run_two_phase: rank_within_target_domain needs ItemSideInfo.domains")
    seconds: dict[str, float] = {}
    phase1 = _fit_phase(split.train, replace(config.hybrid), side, item_features, config, seconds, "train")
    weight_search = phase1.scorer.tune_weight(   # on a copy of the config: sets its weight
        split.valid.histories, split.valid.targets,
        item_domains=side.domains if config.rank_within_target_domain else None)
    weight = phase1.scorer.config.transition_weight
    logger.info("mixture weight %.2f (validation N@10 by weight: %s)", weight,
                {w: round(v, 4) for w, v in weight_search.items()})
    valid_ranks, valid_lists = _phase_scores(phase1, split.valid, keep_lists=config.use_reranker)
    rerankers = None
    if config.use_reranker:
        start = time.perf_counter()
        names = feature_names(appended=(GENERATIVE_FEATURE,) if phase1.generative is not None else ())
        rerankers = _fit_rerankers(valid_lists, split.valid.targets, config, names)
        seconds["fit_reranker"] = time.perf_counter() - start
    del valid_lists
    generative_epochs = phase1.generative.epochs_trained if phase1.generative is not None else 0
    del phase1

    tuned = replace(config.hybrid, transition_weight=weight)
    phase2 = _fit_phase(split.train_plus_valid, tuned, side, item_features, config, seconds, "train_plus_valid")
    test_ranks, _ = _phase_scores(phase2, split.test, rerankers)
    return PipelineResult(valid_ranks.metrics(), test_ranks.metrics(), weight, weight_search, seconds,
                          generative_epochs, test_ranks.arrays(), valid_ranks.arrays())
