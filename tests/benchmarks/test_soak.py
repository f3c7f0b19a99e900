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


def test_crash_traces_keep_what_faulthandler_wrote_and_nothing_of_the_server_s_own_lines(tmp_path):
    from benchmarks.soak import crash_traces

    log = tmp_path / "tritonserver.log"
    log.write_text("\n".join([
        'I1130 06:00:01.1 1 server.cc:1] "started"',
        "Fatal Python error: Segmentation fault",
        "",
        "Thread 0x00007f (most recent call first):",
        '  File "/repo/recllm/dialogue/chat_engine.py", line 10 in turn',
        'E1130 06:00:02.2 1 python_be.cc:1] "Stub process \'recllm_chat_0_0\' is not healthy."',
        "Fatal Python error: Aborted",
        '  File "/repo/x.py", line 1 in f',
        "Signal (2) received.",
        'I1130 06:00:03.3 1 server.cc:305] "Waiting for in-flight requests to complete."',
        "Fatal Python error: Segmentation fault",
        "  <no Python frame>",
    ]))
    traces = crash_traces(log)
    first, second = traces["serving"]
    assert first.splitlines()[0] == "Fatal Python error: Segmentation fault" and "chat_engine.py" in first
    assert "not healthy" not in first and second.endswith("line 1 in f")
    assert traces["shutdown"] == ["Fatal Python error: Segmentation fault\n  <no Python frame>"]
    assert crash_traces(tmp_path / "missing.log") == {"serving": [], "shutdown": []}
