"""The leave-one-out next-item pipeline: hybrid first stage, candidate reranker, tuned on validation only.

1. Validation phase: fit the ``HybridScorer`` (SASRec with content features + item transitions) on the training
   split (all but each user's last two items); choose the mixture weight on the validation targets; build candidate
   lists for the validation users and fit the ``CandidateReranker`` on them.
2. Test phase: refit the first stage, same hyper-parameters and chosen weight, on training + validation items (all
   but the last item: the usual "retrain with validation data" step), rank the test targets with it and rerank its
   candidates with the reranker fitted in phase 1.

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
from recllm.seqrec.candidate_reranker import (CandidateLists, CandidateReranker, CandidateRerankerConfig, ItemContext,
                                              build_candidate_lists)
from recllm.seqrec.full_ranking import filter_history, metrics_from_ranks, target_ranks
from recllm.seqrec.hybrid_scorer import HybridConfig, HybridScorer, mix

logger = logging.getLogger(__name__)

SCORE_CHUNK = 1024
STAGES = ("sasrec", "hybrid", "reranked")


@dataclass
class NextItemPipelineConfig:
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    reranker: CandidateRerankerConfig = field(default_factory=CandidateRerankerConfig)
    use_reranker: bool = True


@dataclass
class StageRanks:
    raw: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in STAGES})
    filtered: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, stage: str, scores: np.ndarray, histories: Sequence[Sequence[int]], targets: Sequence[int]) -> None:
        self.raw[stage].append(target_ranks(scores, targets))
        self.filtered[stage].append(target_ranks(filter_history(scores, histories), targets))

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{stage: {"raw": metrics, "filtered": metrics}}`` for the stages that were scored."""
        return {stage: {"raw": metrics_from_ranks(np.concatenate(self.raw[stage])),
                        "filtered": metrics_from_ranks(np.concatenate(self.filtered[stage]))}
                for stage in STAGES if self.raw[stage]}


@dataclass
class PipelineResult:
    valid: dict[str, dict[str, dict[str, float]]]
    test: dict[str, dict[str, dict[str, float]]]
    transition_weight: float
    weight_search: dict[float, float]   # validation filtered N@10 per mixture weight
    seconds: dict[str, float]


def _lists(scorer: HybridScorer, histories: Sequence[Sequence[int]], context: ItemContext,
           config: NextItemPipelineConfig) -> tuple[np.ndarray, CandidateLists]:
    sasrec_scores, transitions = scorer.parts(histories)
    mixture = mix(sasrec_scores, transitions, scorer.config.transition_weight)
    lists = build_candidate_lists(sasrec_scores, transitions, mixture, histories, context,
                                  config.reranker.num_candidates)
    return sasrec_scores, lists


def _phase_scores(scorer: HybridScorer, histories, targets, context, config, reranker=None,
                  keep_lists: bool = False) -> tuple[StageRanks, list[CandidateLists]]:
    ranks, kept = StageRanks(), []
    for offset in range(0, len(histories), SCORE_CHUNK):
        chunk_h, chunk_t = histories[offset:offset + SCORE_CHUNK], targets[offset:offset + SCORE_CHUNK]
        sasrec_scores, lists = _lists(scorer, chunk_h, context, config)
        ranks.add("sasrec", sasrec_scores, chunk_h, chunk_t)
        ranks.add("hybrid", lists.first_stage, chunk_h, chunk_t)
        if reranker is not None:
            ranks.add("reranked", reranker.rerank(lists), chunk_h, chunk_t)
        if keep_lists:
            kept.append(lists.for_training())
    return ranks, kept


def run_leave_one_out(split: LeaveOneOutSplit, attributes: np.ndarray, config: NextItemPipelineConfig,
                      item_features: np.ndarray | None = None) -> PipelineResult:
    """Both phases on one split; ``attributes`` [n_items + 1, F] feed the reranker, ``item_features`` SASRec."""
    seconds = {}
    train = list(split.train.values())
    valid_h, valid_t = [list(e.history) for e in split.valid], [e.target for e in split.valid]
    test_h, test_t = [list(e.history) for e in split.test], [e.target for e in split.test]

    start = time.perf_counter()
    scorer = HybridScorer.fit(train, replace(config.hybrid), item_features)   # a copy: tuning sets its weight
    seconds["fit_train_split"] = time.perf_counter() - start
    weight_search = scorer.tune_weight(valid_h, valid_t)
    logger.info("mixture weight %.2f (validation N@10 by weight: %s)", scorer.config.transition_weight,
                {w: round(v, 4) for w, v in weight_search.items()})
    valid_ranks, valid_lists = _phase_scores(scorer, valid_h, valid_t, ItemContext.from_training(train, attributes),
                                             config, keep_lists=config.use_reranker)
    reranker = None
    if config.use_reranker:
        start = time.perf_counter()
        chunks = [np.asarray(valid_t[o:o + SCORE_CHUNK]) for o in range(0, len(valid_t), SCORE_CHUNK)]
        reranker = CandidateReranker.fit(valid_lists, chunks, config.reranker)
        seconds["fit_reranker"] = time.perf_counter() - start
    del valid_lists

    full = [list(e.history) + [e.target] for e in split.valid]   # all but the last item of every user
    tuned = replace(config.hybrid, transition_weight=scorer.config.transition_weight)
    start = time.perf_counter()
    test_scorer = HybridScorer.fit(full, tuned, item_features)
    seconds["fit_train_plus_valid"] = time.perf_counter() - start
    test_ranks, _ = _phase_scores(test_scorer, test_h, test_t, ItemContext.from_training(full, attributes), config,
                                  reranker)
    return PipelineResult(valid_ranks.metrics(), test_ranks.metrics(), scorer.config.transition_weight, weight_search,
                          seconds)
