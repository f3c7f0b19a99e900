import pytest

from recllm.artifacts import ArtifactLayout, ArtifactsNotBuiltError, fingerprint_inputs


def test_missing_build_names_the_folder_and_the_command(tmp_path):
    with pytest.raises(ArtifactsNotBuiltError, match=f"{tmp_path}.*recllm build"):
        ArtifactLayout(tmp_path).require_built()


def test_incomplete_build_lists_what_is_missing(tmp_path):
    layout = ArtifactLayout(tmp_path)
    layout.write_manifest("abc", "test")
    with pytest.raises(ArtifactsNotBuiltError, match="catalog.jsonl"):
        layout.require_built()
    assert not layout.is_built()


def test_is_built_checks_the_fingerprint(test_artifacts):
    fingerprint = test_artifacts.read_manifest()["fingerprint"]
    assert test_artifacts.is_built(fingerprint)
    assert not test_artifacts.is_built("something-else")


def test_fingerprint_changes_with_file_contents(tmp_path):
    source = tmp_path / "stage.py"
    source.write_text("a = 1\n")
    before = fingerprint_inputs("default", [source])
    assert fingerprint_inputs("default", [source]) == before
    source.write_text("a = 2\n")
    assert fingerprint_inputs("default", [source]) != before
    assert fingerprint_inputs("test", [source]) != fingerprint_inputs("default", [source])
