"""Pure parts of the perf_analyzer benchmark: input-data JSON, CSV parsing, config validation (no server)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # ``benchmarks`` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.perf_analyzer_run import (  # noqa: E402
    PerfAnalyzerConfig,
    RunPaths,
    build_input_data,
    first_response_percentiles,
    parse_concurrency_range,
    parse_perf_csv,
    perf_analyzer_command,
    redacted_token,
    signer,
    token_ttl_s,
    with_first_response,
    write_private_json,
)
from recllm_proto.user_token import Keyring, TokenError  # noqa: E402

EVAL_ROWS = [
    {"user_id": "u000000", "service": "megamarket", "text": "что купить для пробежек, до 5000 рублей",
     "intent": "running_gear", "relevant_item_ids": [105, 110]},
    {"user_id": "u000001", "service": "samokat", "text": "посоветуй что-нибудь лёгкое на ужин"},
    {"user_id": "u000002", "service": "", "text": "healthy office snacks"},
]

# Real perf_analyzer 2.41 ``-f`` output (rows are not sorted by concurrency; latencies in µs).
ENSEMBLE_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
4,3.88678,9,740784,2,171,297614,3901,8,993254,1285677,1321446,1484463
1,5.6429,9,0,3,163,174841,5029,8,183901,242013,251957,260926
"""

STREAMING_CSV = """\
Concurrency,Inferences/Second,Response Throughput,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,\
p95 latency,p99 latency
1,6.07947,205.873,0,0,94,49,161129,4,0,173411,204361,210653,217933
4,6.75302,212.581,0,0,421438,54,148641,13,0,585547,707447,732288,766319
"""


def test_ensemble_input_data_has_every_input_as_a_one_element_list():
    keys = Keyring.generate()
    data = build_input_data(EVAL_ROWS, "recllm", top_k=5, sign=signer(keys, 600))
    assert len(data["data"]) == 3
    first = data["data"][0]
    assert set(first) == {"user_token", "query", "top_k", "service"}       # no user id field at all
    assert first["query"] == ["что купить для пробежек, до 5000 рублей"]
    assert (first["top_k"], first["service"]) == ([5], ["megamarket"])
    assert data["data"][2]["service"] == [""]
    assert all("session_id" not in entry for entry in data["data"])


def test_run_tokens_verify_as_each_rows_user_for_the_whole_run():
    keys = Keyring.generate()
    config = PerfAnalyzerConfig(run_timeout_s=300)
    data = build_input_data(EVAL_ROWS, "recllm_rank", top_k=5, sign=signer(keys, token_ttl_s(config)))
    tokens = [entry["user_token"][0] for entry in data["data"]]
    later = time.time() + 2 * config.run_timeout_s      # first attempt and a retry both ran their full time
    assert [keys.verify(token, now=later).subject for token in tokens] == ["u000000", "u000001", "u000002"]
    with pytest.raises(TokenError, match="expired"):
        keys.verify(tokens[0], now=time.time() + token_ttl_s(config) + 1)
    with pytest.raises(TokenError):                       # another keyring (another server) refuses them
        Keyring.generate().verify(tokens[0])


def test_committed_copy_holds_placeholders_not_tokens():
    keys = Keyring.generate()
    redacted = build_input_data(EVAL_ROWS, "recllm", top_k=5)
    live = build_input_data(EVAL_ROWS, "recllm", top_k=5, sign=signer(keys, 600))
    assert [e["user_token"] for e in redacted["data"]] == [[redacted_token(r["user_id"])] for r in EVAL_ROWS]
    for entry in redacted["data"]:
        with pytest.raises(TokenError, match="malformed"):
            keys.verify(entry["user_token"][0])
    # Everything but the token is the same request.
    strip = [{k: v for k, v in e.items() if k != "user_token"} for e in live["data"]]
    assert strip == [{k: v for k, v in e.items() if k != "user_token"} for e in redacted["data"]]


def test_live_input_file_is_owner_only(tmp_path):
    target = tmp_path / "recllm_input.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private_json({"data": [{"user_token": ["t"]}]}, target)
    assert target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text()) == {"data": [{"user_token": ["t"]}]}


def test_token_signer_rejects_a_non_positive_ttl():
    with pytest.raises(ValueError, match="ttl_s"):
        signer(Keyring.generate(), 0)


def test_chat_input_data_gets_one_session_per_row():
    data = build_input_data(EVAL_ROWS, "recllm_chat", top_k=3, session_prefix="pa42")
    sessions = [entry["session_id"] for entry in data["data"]]
    assert sessions == [["pa42-0000"], ["pa42-0001"], ["pa42-0002"]]
    assert set(data["data"][1]) == {"session_id", "user_token", "query", "top_k", "service"}
    assert data["data"][1]["top_k"] == [3]


def test_parse_ensemble_csv_sorts_by_concurrency_and_converts_to_ms():
    rows = parse_perf_csv(ENSEMBLE_CSV)
    assert [r.concurrency for r in rows] == [1, 4]
    first = rows[0]
    assert first.throughput == pytest.approx(5.6429)
    assert (first.p50_ms, first.p90_ms, first.p95_ms, first.p99_ms) == pytest.approx(
        (183.901, 242.013, 251.957, 260.926))
    assert first.server_compute_ms == pytest.approx(174.841)
    assert first.response_throughput is None


def test_parse_streaming_csv_reads_response_throughput():
    rows = parse_perf_csv(STREAMING_CSV)
    assert rows[1].concurrency == 4
    assert rows[1].response_throughput == pytest.approx(212.581)
    assert rows[1].server_queue_ms == pytest.approx(421.438)


def test_parse_csv_without_latency_columns_fails_clearly():
    with pytest.raises(ValueError, match="p99 latency"):
        parse_perf_csv("Concurrency,Inferences/Second,p50 latency,p90 latency,p95 latency\n1,2,3,4,5\n")


def test_first_response_percentiles_from_profile_export():
    export = {"experiments": [{
        "experiment": {"mode": "concurrency", "value": 1},
        "requests": [{"timestamp": 0, "response_timestamps": [10_000_000, 50_000_000]},
                     {"timestamp": 100, "response_timestamps": [20_000_100]},
                     {"timestamp": 200, "response_timestamps": []}],
    }]}
    first = first_response_percentiles(export)
    assert set(first) == {1}
    assert first[1][0] == pytest.approx(15.0)
    rows = with_first_response(parse_perf_csv(STREAMING_CSV), first)
    assert rows[0].first_response_p50_ms == pytest.approx(15.0)
    assert rows[1].first_response_p50_ms is None


def test_streaming_command_uses_stream_and_profile_export(tmp_path):
    config = PerfAnalyzerConfig(concurrency_range="1:2", measurement_interval_ms=1500)
    paths = RunPaths.under(tmp_path, "recllm_chat")
    command = perf_analyzer_command(Path("/x/perf_analyzer"), "recllm_chat", "127.0.0.1:9001", paths, config)
    assert command[:7] == ["/x/perf_analyzer", "-m", "recllm_chat", "-u", "127.0.0.1:9001", "-i", "grpc"]
    assert "--streaming" in command and str(paths.export_json) in command
    assert command[command.index("--measurement-interval") + 1] == "1500"
    ensemble = perf_analyzer_command(Path("/x/pa"), "recllm", "h:1", RunPaths.under(tmp_path, "recllm"), config)
    assert "--streaming" not in ensemble


def test_concurrency_range_forms():
    assert parse_concurrency_range("1:4:3") == (1, 4, 3)
    assert parse_concurrency_range("2") == (2, 2, 1)
    assert PerfAnalyzerConfig(concurrency_range="1:4:3").concurrencies == (1, 4)


@pytest.mark.parametrize("overrides, field_name", [
    ({"concurrency_range": "4:1"}, "concurrency_range"),
    ({"concurrency_range": "a:b"}, "concurrency_range"),
    ({"concurrency_range": "0:2"}, "concurrency_range"),
    ({"models": ("recllm", "nope")}, "models"),
    ({"models": ()}, "models"),
    ({"measurement_interval_ms": 0}, "measurement_interval_ms"),
    ({"stability_percentage": -1}, "stability_percentage"),
    ({"max_trials": 0}, "max_trials"),
    ({"top_k": 51}, "top_k"),
    ({"max_rows": 0}, "max_rows"),
    ({"run_timeout_s": 0}, "run_timeout_s"),
])
def test_config_validation_names_the_field(overrides, field_name):
    with pytest.raises(ValueError, match=f"PerfAnalyzerConfig.{field_name}"):
        PerfAnalyzerConfig(**overrides)


def test_measure_model_feeds_live_tokens_to_perf_analyzer_and_keeps_only_placeholders(tmp_path):
    """A stand-in perf_analyzer binary records the input file it was given (and its mode) and writes a CSV."""
    from benchmarks.perf_analyzer_run import measure_model
    from benchmarks.perf_analyzer_tool import PerfAnalyzerTool

    seen = tmp_path / "seen.json"
    fake = tmp_path / "perf_analyzer"
    fake.write_text(f"""#!{sys.executable}
import json, os, shutil, sys
args = sys.argv[1:]
data = args[args.index("--input-data") + 1]
shutil.copyfile(data, {str(seen)!r})
open({str(seen)!r} + ".mode", "w").write(oct(os.stat(data).st_mode & 0o777))
open(args[args.index("-f") + 1], "w").write({ENSEMBLE_CSV!r})
""")
    fake.chmod(0o755)
    keys = Keyring.generate()
    config = PerfAnalyzerConfig(work_dir=tmp_path / "work", results_dir=tmp_path / "results", run_timeout_s=60)
    tool = PerfAnalyzerTool(fake, tmp_path, tmp_path)
    report = measure_model("recllm", tool, "127.0.0.1:1", EVAL_ROWS, config, "pa1", keys)
    assert report.outcome.ok and [row.concurrency for row in report.rows] == [1, 4]
    given = json.loads(seen.read_text())["data"]
    assert [keys.verify(e["user_token"][0]).subject for e in given] == ["u000000", "u000001", "u000002"]
    assert Path(str(seen) + ".mode").read_text() == "0o600"
    paths = RunPaths.under(config.work_dir, "recllm")
    assert not paths.input_json.exists()                  # the live tokens are gone after the run
    kept = paths.requests_json.read_text(encoding="utf-8")
    assert all(e["user_token"][0] not in kept for e in given)
    assert redacted_token("u000001") in kept
