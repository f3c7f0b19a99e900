import socket

import pytest

from recllm.artifacts import ArtifactsNotBuiltError
from recllm.serving.triton_server import (
    TritonServer,
    TritonServerConfig,
    TritonServerError,
    free_port,
    prepare_backend_dir,
    server_command,
)


def test_config_rejects_bad_and_clashing_ports():
    with pytest.raises(ValueError, match="grpc_port"):
        TritonServerConfig(grpc_port=0)
    with pytest.raises(ValueError, match="must differ"):
        TritonServerConfig(grpc_port=9000, http_port=9000, metrics_port=9001)


def test_unbuilt_artifacts_fail_with_a_clear_message(tmp_path):
    config = TritonServerConfig(artifact_dir=tmp_path / "nothing", grpc_port=free_port(), http_port=free_port(),
                                metrics_port=free_port())
    with pytest.raises(ArtifactsNotBuiltError, match="recllm build"):
        TritonServer(config).start()


def test_taken_port_fails_before_starting(test_artifacts, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        config = TritonServerConfig(artifact_dir=test_artifacts.root, grpc_port=taken, http_port=free_port(),
                                    metrics_port=free_port(), runtime_dir=tmp_path)
        with pytest.raises(TritonServerError, match=f"grpc port {taken} .* already in use"):
            TritonServer(config).start()


def test_backend_dir_has_the_stub_for_this_python(tmp_path):
    backends = prepare_backend_dir(tmp_path)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (backends / "python" / name).exists()
    assert prepare_backend_dir(tmp_path) == backends  # idempotent


def test_command_binds_loopback_and_all_three_ports(tmp_path):
    config = TritonServerConfig(grpc_port=7001, http_port=7000, metrics_port=7002)
    command = " ".join(server_command(config, tmp_path))
    for flag in ("--grpc-port=7001", "--http-port=7000", "--metrics-port=7002", "--grpc-address=127.0.0.1"):
        assert flag in command
