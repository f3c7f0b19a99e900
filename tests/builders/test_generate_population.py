"""The population CLI: writes every file, its defaults come from PopulationConfig, bad values name the field."""

from __future__ import annotations

import json
import sqlite3

from builders.generate_population import config_from_args, main, parse_args
from recllm.synthetic.scale import CATALOG_FILE, HELD_OUT_FILE, MANIFEST_FILE, PROFILE_DB, PopulationConfig


def test_writes_catalog_profile_held_out_and_manifest(tmp_path, capsys):
    out = tmp_path / "population"
    code = main(["--users", "50", "--items", "800", "--output", str(out), "--seed", "3", "--chunk-users", "16",
                 "--no-progress"])
    assert code == 0
    for name in (CATALOG_FILE, PROFILE_DB, HELD_OUT_FILE, MANIFEST_FILE):
        assert (out / name).exists(), name
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["config"]["n_users"] == 50 and manifest["config"]["seed"] == 3
    assert manifest["summary"]["catalog_items"] == 800
    with sqlite3.connect(out / PROFILE_DB) as conn:
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 50
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == manifest["summary"]["history_events"] > 0
    assert "50 users" in capsys.readouterr().out


def test_defaults_come_from_the_config(tmp_path):
    config = config_from_args(parse_args(["--output", str(tmp_path)]))
    assert config == PopulationConfig()


def test_bad_value_exits_naming_the_field(tmp_path, capsys):
    assert main(["--users", "0", "--output", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "PopulationConfig.n_users" in capsys.readouterr().err


def test_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    assert main(["--users", "5", "--items", "800", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "old.txt").read_text() == "keep me"
