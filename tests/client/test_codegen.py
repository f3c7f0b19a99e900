"""The committed generated modules are exactly what protoc makes of profile.proto today."""

from __future__ import annotations

from recllm_proto import codegen


def test_committed_generated_code_matches_the_proto():
    fresh = codegen.generated_sources()
    assert sorted(fresh) == sorted(codegen.GENERATED_NAMES)
    for name, text in fresh.items():
        committed = (codegen.PACKAGE_DIR / name).read_text()
        assert committed == text, (f"{name} drifted from profile.proto: run "
                                   "`python -m recllm_proto.codegen` and commit the result")


def test_drift_is_detected(tmp_path, monkeypatch):
    """An edited .proto generates different code than the committed copy (so the test above can fail)."""
    edited = tmp_path / "recllm_proto" / "profile.proto"
    edited.parent.mkdir(parents=True)
    edited.write_text(codegen.PROTO.read_text().replace("uint32 recent_events = 2;", "uint64 recent_events = 2;"))
    monkeypatch.setattr(codegen, "SOURCE_ROOT", tmp_path)
    monkeypatch.setattr(codegen, "PROTO", edited)
    fresh = codegen.generated_sources()
    assert fresh["profile_pb2.py"] != (codegen.PACKAGE_DIR / "profile_pb2.py").read_text()
