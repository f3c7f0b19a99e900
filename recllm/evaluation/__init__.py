"""``recllm eval``: the quality protocols on the real data sets and the synthetic ecosystem."""
