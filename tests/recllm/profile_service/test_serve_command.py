"""``recllm serve`` options for the profile service (the command's own tests live in tests/recllm/test_cli.py)."""

from __future__ import annotations

import socket

from recllm_cli.main import build_parser, main
from recllm.profile_service.config import ProfileServiceConfig


def test_serve_profile_defaults_come_from_the_service_config():
    args = build_parser().parse_args(["serve"])
    defaults = ProfileServiceConfig()
    assert (args.profile_port, args.profile_ttl_cleanup_interval_s) == (defaults.port, defaults.ttl_cleanup_interval_s)


def test_profile_port_equal_to_a_triton_port_is_refused(capsys, tmp_path):
    assert main(["serve", "--artifact-dir", str(tmp_path), "--profile-port", "8001"]) == 2
    assert "--profile-port 8001 is also --grpc-port" in capsys.readouterr().err


def test_a_taken_profile_port_fails_before_triton_starts(capsys, profile_artifacts):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["serve", "--artifact-dir", str(profile_artifacts.root), "--profile-port", str(port)]) == 2
    assert f"profile service port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
