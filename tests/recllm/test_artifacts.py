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


def test_a_build_served_from_another_profile_store_needs_no_profile_file(tmp_path):
    layout = ArtifactLayout(tmp_path)
    layout.write_manifest("abc", "test")
    for path in layout.required_paths():
        if path != layout.profile_db:
            path.mkdir(parents=True) if not path.suffix else path.write_text("")
    with pytest.raises(ArtifactsNotBuiltError, match="profile.sqlite"):
        layout.require_built()
    layout.require_built(needs_profile_file=False)  # recllm serve --profile-url: the store is elsewhere


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


def test_import_closure_follows_absolute_and_relative_imports(tmp_path):
    from recllm.artifacts import import_closure

    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (tmp_path / "pkg" / "sub" / "leaf.py").write_text("from ..util import y\nx = 1\n")
    (tmp_path / "pkg" / "util.py").write_text("import json\ny = 2\n")
    (tmp_path / "pkg" / "entry.py").write_text("import pkg.sub\n")
    (tmp_path / "pkg" / "unrelated.py").write_text("z = 3\n")
    names = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path, "pkg.entry", ("pkg",))}
    assert names == {"pkg/__init__.py", "pkg/entry.py", "pkg/sub/__init__.py", "pkg/sub/leaf.py", "pkg/util.py"}


def test_builder_fingerprint_ignores_serving_only_modules():
    from pathlib import Path

    from recllm.artifacts import import_closure

    root = Path(__file__).resolve().parents[2]
    names = {p.relative_to(root).as_posix() for p in import_closure(root, "builders.build_artifacts", ("recllm", "builders"))}
    assert "recllm/rag/reranker.py" in names and "recllm/generator/training.py" in names
    assert "recllm_cli/main.py" not in names and "recllm/serving/triton_server.py" not in names


def _finished_build(folder, marker: str):
    from recllm.artifacts import MANIFEST_NAME  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.txt").write_text(marker)
    (folder / MANIFEST_NAME).write_text("{}")
    return folder


def test_swap_in_keeps_the_replaced_build_and_open_files(tmp_path):
    from recllm.artifacts import staging_dir, swap_in  # noqa: PLC0415

    root = _finished_build(tmp_path / "default", "old")
    held = (root / "data.txt").open()                     # a running server's open file
    staging = _finished_build(staging_dir(root), "new")
    assert staging.parent == root.parent                  # same file system: the swap is a rename
    replaced = swap_in(staging, root)
    assert (root / "data.txt").read_text() == "new" and not staging.exists()
    assert replaced == tmp_path / "default.previous" and (replaced / "data.txt").read_text() == "old"
    assert held.read() == "old"
    held.close()
    swap_in(_finished_build(staging_dir(root), "newer"), root)   # the build before the previous one goes
    assert (root / "data.txt").read_text() == "newer" and (replaced / "data.txt").read_text() == "new"


def test_swap_in_refuses_an_unfinished_build(tmp_path):
    from recllm.artifacts import staging_dir, swap_in  # noqa: PLC0415

    root = _finished_build(tmp_path / "default", "old")
    staging = staging_dir(root)
    (staging / "data.txt").write_text("half")
    with pytest.raises(ArtifactsNotBuiltError, match="no finished build"):
        swap_in(staging, root)
    assert (root / "data.txt").read_text() == "old"


def test_staging_left_by_a_killed_build_is_removed_and_a_live_one_kept(tmp_path):
    import subprocess  # noqa: PLC0415

    from recllm.artifacts import staging_dir  # noqa: PLC0415

    root = tmp_path / "default"
    finished = subprocess.Popen(["true"])
    finished.wait()
    abandoned = tmp_path / f".default.building-{finished.pid}-x"
    abandoned.mkdir()
    live = staging_dir(root)                                 # this process: alive
    assert not abandoned.exists() and live.is_dir()
    again = staging_dir(root)
    assert live.is_dir() and again.is_dir()
