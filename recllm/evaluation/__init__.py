"""``recllm eval``: the quality protocols on the real data sets and the synthetic ecosystem.

- ``next_item`` — ``train_and_rank``, the one call into the sequential model: train once, rank every target among
  all items and among candidate pools, raw and history-filtered;
- ``leave_one_out`` — Amazon Beauty / any S3-Rec-format folder: leave-one-out full ranking beside the README's
  published numbers (``published``);
- ``cross_domain`` — Food–Kitchen: per-domain metrics, the cross-domain lift, LLMCDSR's 999-negative protocol;
- ``next_basket`` + ``basket_baselines`` — Ta-Feng next-basket Recall/NDCG against popularity, personal
  frequency and TIFU-KNN (tuned on the validation users);
- ``synthetic_pipeline`` — the seed's Recall@10 > 0.4 on the held-out request of the synthetic build;
- ``report_table`` — the markdown report every protocol returns; ``cli_eval`` — the ``recllm eval`` arguments.
"""
