"""Sequential next-item recommenders (SASRec family) and the full-ranking evaluation protocol of the papers."""

from recllm.seqrec.full_ranking import filter_history, full_ranking_metrics, metrics_from_ranks, target_ranks
from recllm.seqrec.sasrec import SASRec, SASRecConfig, score_histories, train_sasrec

__all__ = ["SASRec", "SASRecConfig", "filter_history", "full_ranking_metrics", "metrics_from_ranks",
           "score_histories", "target_ranks", "train_sasrec"]
