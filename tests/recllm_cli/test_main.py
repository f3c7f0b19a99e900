import pytest

from recllm_cli.main import build_parser, main, pick_demo_user
from recllm.profile.sqlite_store import ProfileStore


def test_serve_defaults_come_from_the_server_config():
    args = build_parser().parse_args(["serve"])
    assert (args.grpc_port, args.http_port, args.metrics_port) == (8001, 8000, 8002)


def test_chat_requires_a_user():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat"])


def test_demo_user_has_the_widest_cross_service_history(test_artifacts):
    user = pick_demo_user(test_artifacts.root)
    store = ProfileStore(test_artifacts.profile_db, read_only=True)
    services = {u: {e.service for e in store.events_of(u, kind="purchase")} for u in store.user_ids()}
    assert len(services[user]) == max(len(s) for s in services.values())


def test_serve_on_unbuilt_artifacts_exits_with_a_clear_message(tmp_path, capsys):
    assert main(["serve", "--artifact-dir", str(tmp_path / "none")]) == 2
    assert "recllm build" in capsys.readouterr().err


def test_chat_without_a_server_says_how_to_start_one(capsys, monkeypatch):
    from recllm.serving.triton_server import free_port

    monkeypatch.setattr("sys.stdin", iter([]))
    assert main(["chat", "--user", "u1", "--url", f"127.0.0.1:{free_port()}"]) == 1
    assert "recllm serve" in capsys.readouterr().err


def test_generator_checkpoint_flag_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    args = build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path), "--generator-checkpoint",
                                      str(tmp_path / "nothing-here")])
    assert args.generator_checkpoint == tmp_path / "nothing-here"
    assert main(["serve", "--artifact-dir", str(tmp_path), "--generator-checkpoint", str(tmp_path)]) != 0
    assert "not a checkpoint folder" in capsys.readouterr().err
