"""benchmarks/bls_stream_release.py on the real tritonserver: the product's way of reading a decoupled BLS stream
survives a load under which the plain loop crashes its stub a few times a minute (about 2.5 crashes per 1,000
turns on this machine, benchmarks/results/bls_stream_release.md)."""

import pytest

from benchmarks import bls_stream_release as repro


@pytest.mark.integration
def test_streams_read_through_decoupled_bls_streams_never_crash_the_stub(tmp_path):
    output = tmp_path / "repro.md"
    [result] = repro.main(["--seconds", "15", "--concurrency", "8", "--modes", "1", "--output", str(output)])
    # enough turns that the plain loop would have crashed: about 2.5 crashes per 1,000 turns, so none in 1,500
    # turns has a probability of ~0.02 (a 15 s run here answers ~3,700)
    assert result.turns > 1500
    assert (result.stub_crashes, result.errors, result.wrong_counts) == (0, 0, 0)
    assert "| `DecoupledBlsStreams.responses`" in output.read_text()


def test_repository_configs_follow_the_run_config(tmp_path):
    repository = repro.write_repository(tmp_path / "repo", repro.ReproConfig(caller_instances=3, source_instances=1))
    assert "count: 3 kind: KIND_CPU" in (repository / "stream_caller" / "config.pbtxt").read_text()
    assert "count: 1 kind: KIND_CPU" in (repository / "stream_source" / "config.pbtxt").read_text()
    assert (repository / "stream_caller" / "1" / "model.py").exists()


@pytest.mark.parametrize("field", ["seconds", "concurrency", "responses_per_stream"])
def test_run_config_rejects_non_positive_values(field):
    with pytest.raises(ValueError, match=field):
        repro.ReproConfig(**{field: 0})


def test_unknown_mode_is_refused():
    with pytest.raises(SystemExit, match="--modes"):
        repro.main(["--modes", "2"])
