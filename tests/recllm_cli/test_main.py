import pytest

from recllm_cli.main import build_parser, main, pick_demo_user
from recllm.profile.sqlite_store import ProfileStore


def test_serve_defaults_come_from_the_server_config():
    args = build_parser().parse_args(["serve"])
    assert (args.grpc_port, args.http_port, args.metrics_port) == (8001, 8000, 8002)


def test_serve_runs_the_stub_watchdog_unless_told_not_to(tmp_path):
    from recllm_cli.main import server_config

    watched = server_config(build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path)]))
    assert watched.stub_watchdog is not None
    unwatched = server_config(build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path),
                                                         "--no-stub-watchdog"]))
    assert unwatched.stub_watchdog is None


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


def test_chat_without_a_server_says_how_to_start_one(tmp_path, capsys, monkeypatch):
    from recllm.serving.triton_server import free_port
    from recllm_proto.user_token import ensure_keyring

    ensure_keyring(tmp_path / "build.keyring.json")
    monkeypatch.setattr("sys.stdin", iter([]))
    assert main(["chat", "--user", "u1", "--artifact-dir", str(tmp_path / "build"),
                 "--url", f"127.0.0.1:{free_port()}"]) == 1
    assert "recllm serve" in capsys.readouterr().err


def test_chat_without_a_keyring_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", iter([]))
    assert main(["chat", "--user", "u1", "--artifact-dir", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "build.keyring.json") in err and "--keyring" in err


def test_generator_checkpoint_flag_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    args = build_parser().parse_args(["serve", "--artifact-dir", str(tmp_path), "--generator-checkpoint",
                                      str(tmp_path / "nothing-here")])
    assert args.generator_checkpoint == tmp_path / "nothing-here"
    assert main(["serve", "--artifact-dir", str(tmp_path), "--generator-checkpoint", str(tmp_path)]) != 0
    assert "not a checkpoint folder" in capsys.readouterr().err


# --- keys, keyring and TLS flags -------------------------------------------------------------------------------------

def test_keys_rotate_rotates_the_file_in_place_owner_only(tmp_path, capsys):
    from recllm_proto.user_token import KeyringFile, ensure_keyring, load_keyring

    path = tmp_path / "ring.json"
    before = ensure_keyring(path)
    old_token = before.sign("u1", ttl_s=60)
    watching = KeyringFile(path)                    # what a running server holds
    assert main(["keys", "rotate", "--keyring", str(path)]) == 0
    after = load_keyring(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [k.kid for k in after.token_keys] == [before.token_keys[-1].kid, after.token_keys[-1].kid]
    assert after.token_keys[-1].kid != before.token_keys[-1].kid and len(after.stage_keys) == 2
    assert after.verify(old_token).subject == "u1"                   # tokens in flight stay valid
    assert watching.current().verify(after.sign("u1")).subject == "u1"   # the server re-reads the file
    out = capsys.readouterr().out
    assert after.token_keys[-1].kid in out
    assert all(key.secret.hex() not in out for key in (*after.token_keys, *after.stage_keys))
    assert not [p.name for p in tmp_path.iterdir() if p.name != "ring.json"]   # no temporary file left behind

    # A second rotation with --keep 2 drops the first key: its tokens fail from now on.
    assert main(["keys", "rotate", "--keyring", str(path), "--keep", "2"]) == 0
    from recllm_proto.user_token import TokenError

    with pytest.raises(TokenError, match="unknown key id"):
        watching.current().verify(old_token)


def test_keys_rotate_defaults_to_the_keyring_beside_the_build_and_refuses_keep_below_two(tmp_path, capsys):
    from recllm.artifacts import ArtifactLayout

    build = tmp_path / "build"
    assert main(["keys", "rotate", "--artifact-dir", str(build)]) == 2            # no keyring yet: not created
    assert "recllm serve" in capsys.readouterr().err and not ArtifactLayout(build).keyring.exists()
    from recllm_proto.user_token import ensure_keyring

    ensure_keyring(ArtifactLayout(build).keyring)
    assert main(["keys", "rotate", "--artifact-dir", str(build), "--keep", "1"]) == 2
    assert "keep must be >= 2" in capsys.readouterr().err
    assert main(["keys", "rotate", "--artifact-dir", str(build), "--keep", "3"]) == 0


def test_serve_flags_set_keyring_and_tls_for_both_servers(tmp_path):
    from recllm.serving.tls import self_signed
    from recllm_cli.main import profile_service_config, server_config

    build = tmp_path / "build"
    args = build_parser().parse_args(["serve", "--artifact-dir", str(build), "--keyring", str(tmp_path / "k.json"),
                                      "--tls"])
    triton = server_config(args)
    profile = profile_service_config(args, triton)
    assert triton.keyring_path == profile.keyring_path == tmp_path / "k.json"
    assert triton.tls == profile.tls and triton.tls.cert == tmp_path / "build.tls" / "cert.pem"
    assert triton.tls.key.stat().st_mode & 0o777 == 0o600
    assert "-----BEGIN CERTIFICATE-----" in triton.tls.cert.read_text()

    plain = server_config(build_parser().parse_args(["serve", "--artifact-dir", str(build)]))
    assert plain.tls is None and plain.keyring_path == tmp_path / "build.keyring.json"

    own = self_signed(tmp_path / "own")
    given = server_config(build_parser().parse_args(["serve", "--artifact-dir", str(build), "--tls-cert",
                                                     str(own.cert), "--tls-key", str(own.key)]))
    assert (given.tls.cert, given.tls.key) == (own.cert, own.key)


def test_tls_cert_without_its_key_is_refused(tmp_path, capsys):
    (tmp_path / "c.pem").write_text("x")
    assert main(["serve", "--artifact-dir", str(tmp_path), "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "--tls-key" in capsys.readouterr().err
    assert main(["serve", "--artifact-dir", str(tmp_path), "--tls-cert", str(tmp_path / "none.pem"),
                 "--tls-key", str(tmp_path / "none.pem")]) == 2
    assert "no file" in capsys.readouterr().err


def test_chat_picks_up_the_served_self_signed_certificate(tmp_path):
    from recllm.serving.tls import self_signed, tls_dir_for
    from recllm_cli.main import chat_root_cert

    build = tmp_path / "build"
    parse = lambda *extra: build_parser().parse_args(["chat", "--user", "u1", "--artifact-dir", str(build), *extra])  # noqa: E731
    assert chat_root_cert(parse()) is None                       # nothing served with --tls: plaintext
    made = self_signed(tls_dir_for(build))
    assert chat_root_cert(parse()) == made.cert
    assert chat_root_cert(parse("--plaintext")) is None
    other = self_signed(tmp_path / "ca")
    assert chat_root_cert(parse("--root-cert", str(other.cert))) == other.cert
    with pytest.raises(FileNotFoundError):
        chat_root_cert(parse("--root-cert", str(tmp_path / "missing.pem")))


def test_chat_against_no_tls_server_names_what_it_tried(tmp_path, capsys, monkeypatch):
    from recllm.serving.tls import self_signed, tls_dir_for
    from recllm.serving.triton_server import free_port
    from recllm_proto.user_token import ensure_keyring

    build = tmp_path / "build"
    ensure_keyring(tmp_path / "build.keyring.json")
    self_signed(tls_dir_for(build))
    monkeypatch.setattr("sys.stdin", iter([]))
    assert main(["chat", "--user", "u1", "--artifact-dir", str(build), "--url", f"127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "tried TLS" in err and "--plaintext" in err


def test_a_turn_is_printed_in_its_own_language_and_without_an_empty_service(capsys):
    """Live: an explain turn printed «Rec-LLM ():», and English explanations were labelled «почему:»."""
    from types import SimpleNamespace

    from recllm_cli.main import print_turn

    item = SimpleNamespace(name="Oat milk 1 l", service="samokat", price=99.0, explanation="You bought oat milk")
    print_turn("u1", "oat milk", SimpleNamespace(service="samokat", reply="Take a look", items=[item],
                                                 first_token_s=0.1, total_s=0.2))
    print_turn("u1", "why?", SimpleNamespace(service="", reply="«Oat milk 1 l»: you bought it.", items=[],
                                             first_token_s=None, total_s=0.01))
    out = capsys.readouterr().out
    assert "Rec-LLM (samokat): Take a look" in out and "why: You bought oat milk" in out and "почему" not in out
    assert "Rec-LLM: «Oat milk 1 l»" in out and "Rec-LLM ()" not in out
