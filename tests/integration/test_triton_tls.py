"""The bundled tritonserver 2.51 serves gRPC over TLS with the flags ``TritonServerConfig(tls=…)`` passes
(``--grpc-use-ssl=true --grpc-server-cert … --grpc-server-key …``), started on an empty model repository so the test
needs no build and takes about a second: a client trusting the self-signed certificate gets health and metadata,
a plaintext client and a client trusting another certificate are refused."""

from __future__ import annotations

import subprocess

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recllm.serving.tls import self_signed
from recllm.serving.triton_server import (
    TritonServer,
    TritonServerConfig,
    free_port,
    prepare_backend_dir,
    server_command,
    server_environment,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """tritonserver with our TLS flags on an empty repository (``TritonServer.start`` wants a built product)."""
    root = tmp_path_factory.mktemp("triton_tls")
    tls = self_signed(root / "tls")
    (root / "repository").mkdir()
    config = TritonServerConfig(artifact_dir=root / "build", model_repository=root / "repository",
                                grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                                runtime_dir=root / "runtime", keyring_path=root / "keyring.json", tls=tls,
                                startup_timeout_s=60)
    command = server_command(config, prepare_backend_dir(config.runtime_dir))
    assert "--grpc-use-ssl=true" in command and f"--grpc-server-key={tls.key.resolve()}" in command
    server = TritonServer(config, log_path=root / "tritonserver.log")
    server._log_file = open(server.log_path, "wb")  # noqa: SIM115 - closed by server.stop()
    server.process = subprocess.Popen(command, env=server_environment(config), stdout=server._log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_certificate_gets_health_and_metadata(tls_server, host):
    url = f"{host}:{tls_server.config.grpc_port}"
    with grpcclient.InferenceServerClient(url, ssl=True,
                                          root_certificates=str(tls_server.config.tls.cert)) as client:
        assert client.is_server_live(client_timeout=10)
        assert client.is_server_ready(client_timeout=10)
        assert client.get_server_metadata(client_timeout=10).version.startswith("2.")


def test_a_plaintext_client_is_refused(tls_server):
    with grpcclient.InferenceServerClient(tls_server.config.grpc_url) as client:
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            client.is_server_live(client_timeout=10)
    assert "Handshake failed" in tls_server.log_tail(200)


def test_a_client_trusting_another_certificate_is_refused(tls_server, tmp_path):
    stranger = self_signed(tmp_path / "other")
    with grpcclient.InferenceServerClient(tls_server.config.grpc_url, ssl=True,
                                          root_certificates=str(stranger.cert)) as client:
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            client.is_server_live(client_timeout=10)
