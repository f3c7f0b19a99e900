"""benchmarks.soak's memory summary, without a server."""

from benchmarks.soak import rss_summary

MB = 2**20


def test_rss_summary_splits_the_server_tree_by_model():
    # the reranker's stubs grow 10 MB a minute, the rest stays flat
    samples = [(60.0 * k, (1000 + 10 * k) * MB, 3, 100 * MB,
                {"tritonserver": 200 * MB, "reranker": (300 + 10 * k) * MB, "retriever": 500 * MB}) for k in range(7)]
    summary = rss_summary(samples)
    assert summary["triton_tree_mb"]["slope_mb_per_min"] == 10.0 and summary["profile_mb"]["slope_mb_per_min"] == 0.0
    by_model = summary["by_model_mb"]
    assert by_model["reranker"]["slope_mb_per_min"] == 10.0 and by_model["reranker"]["last"] == 360.0
    assert by_model["retriever"]["slope_mb_per_min"] == 0.0 and by_model["tritonserver"]["first"] == 200.0


def test_rss_summary_reads_samples_without_a_split():
    summary = rss_summary([(0.0, 10 * MB, 1, MB), (60.0, 12 * MB, 1, MB)])
    assert summary["by_model_mb"] == {} and summary["triton_tree_mb"]["slope_mb_per_min"] == 2.0
