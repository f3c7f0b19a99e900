"""The loopback PostgreSQL helper: it finds the binaries, and missing binaries fail the tests unless skipping was
asked for (CI must never pass by silently skipping the PostgreSQL tests)."""

from __future__ import annotations

import pytest

from tests.postgres_server import SKIP_ENV, PostgresUnavailable, find_bin_dir, start_or_explain


def fake_bin(directory, names=("initdb", "postgres")):
    directory.mkdir(parents=True)
    for name in names:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


def test_bin_dir_from_the_environment_variable_first(tmp_path):
    chosen = fake_bin(tmp_path / "custom")
    fake_bin(tmp_path / "lib" / "15" / "bin")
    assert find_bin_dir({"RECLLM_POSTGRES_BIN": str(chosen), "PATH": ""}, lib_root=tmp_path / "lib") == chosen


def test_bin_dir_is_the_newest_version_under_the_library_root(tmp_path):
    for version in ("9", "15", "13"):
        fake_bin(tmp_path / "lib" / version / "bin")
    fake_bin(tmp_path / "lib" / "16" / "bin", names=("initdb",))  # incomplete: no server binary
    assert find_bin_dir({"PATH": ""}, lib_root=tmp_path / "lib") == tmp_path / "lib" / "15" / "bin"


def test_missing_binaries_name_the_fix(tmp_path):
    with pytest.raises(PostgresUnavailable, match=r"not found .*\.ci/ensure_postgres\.sh .*RECLLM_SKIP_POSTGRES=1"):
        find_bin_dir({"PATH": str(tmp_path)}, lib_root=tmp_path / "none")


def unavailable():
    raise PostgresUnavailable("no binaries here")


def test_missing_postgres_fails_the_tests_by_default():
    with pytest.raises(pytest.fail.Exception, match="no binaries here"):
        start_or_explain(unavailable, env={})
    with pytest.raises(pytest.fail.Exception):
        start_or_explain(unavailable, env={SKIP_ENV: "yes"})  # only the exact opt-in skips


def test_missing_postgres_skips_only_when_asked():
    with pytest.raises(pytest.skip.Exception, match="RECLLM_SKIP_POSTGRES=1: no binaries here"):
        start_or_explain(unavailable, env={SKIP_ENV: "1"})
