"""The bundled tritonserver 2.51 serves gRPC over TLS with the flags ``TritonServerConfig(tls=…)`` passes
(``--grpc-use-ssl=true --grpc-server-cert … --grpc-server-key …``), started on an empty model repository so the test
needs no build and takes about a second: a client trusting the self-signed certificate gets health and metadata,
a plaintext client and a client trusting another certificate are refused.

The last test serves the product itself over TLS (the session's test build, the ``recllm`` ensemble and its four
models, explicit model control) beside the profile service on the same certificate, as ``recllm serve --tls`` runs
them: an event ingested over TLS with a service token and a recommendation over TLS with a signed user token."""

from __future__ import annotations

import subprocess

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recllm.catalog.product_catalog import Catalog
from recllm.explanation.causal_explanations import cold_start_explanation
from recllm.profile.events import Event
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.serving.tls import self_signed
from recllm.serving.triton_server import (
    TritonServer,
    TritonServerConfig,
    free_port,
    prepare_backend_dir,
    server_command,
    server_environment,
)
from recllm_client import RecLLMClient, RecLLMClientError
from recllm_client.profile_client import ProfileClient

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
                                startup_timeout_s=60, stub_watchdog=None)  # an empty repository: no stub to watch
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


TLS_USER = "zz-tls-it"


@pytest.fixture(scope="module")
def tls_product(test_artifacts, tmp_path_factory):
    """The product over TLS: tritonserver (the ``recllm`` ensemble) and the profile service, one certificate."""
    root = tmp_path_factory.mktemp("triton_tls_product")
    tls = self_signed(root / "tls")
    config = TritonServerConfig(artifact_dir=test_artifacts.root, grpc_port=free_port(), http_port=free_port(),
                                metrics_port=free_port(), runtime_dir=root / "runtime", tls=tls,
                                load_models=("recllm",))
    profile = ProfileServiceConfig(artifact_dir=test_artifacts.root, port=0, stop_grace_s=1.0, tls=tls,
                                   keyring_path=config.keyring_path, ingest=IngestPolicy(refresh_mode="sync"))
    with ProfileServer(profile) as profile_server, TritonServer(config) as server:
        yield server, profile_server


def test_a_recommendation_and_an_ingested_event_over_tls_with_signed_tokens(tls_product, test_artifacts):
    server, profile_server = tls_product
    cert, keyring = server.config.tls.cert, server.config.keyring_path
    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    item = next(i for i in catalog.in_service("samokat") if i.in_stock and not catalog.is_sensitive(i))
    now_ts = ProfileStore(test_artifacts.profile_db, read_only=True).latest_timestamp()
    event = Event(TLS_USER, "samokat", item.item_id, "purchase", now_ts, "tls-it-basket", float(item.price), 1,
                  "moscow", "android", event_id="tls-it-1")
    with ProfileClient(profile_server.address, timeout_s=60, keyring=keyring, root_cert=cert) as profile_client, \
            RecLLMClient(server.config.grpc_url, timeout_s=120, keyring=keyring, root_cert=cert) as client:
        try:
            acks = list(profile_client.ingest([event]))
            assert [a.accepted for a in acks] == [True], [a.error for a in acks]
            assert client.is_ready()
            reply = client.recommend(TLS_USER, item.name, top_k=5, service="samokat")
            assert reply.items and reply.reply
            bought = [i for i in reply.items if i.item_id == item.item_id]
            assert bought and bought[0].explanation != cold_start_explanation("samokat", "ru"), reply.items
            assert profile_client.get_profile(TLS_USER).events.total == 1
        finally:
            assert profile_client.forget(TLS_USER)["events"] == 1
    with RecLLMClient(server.config.grpc_url, timeout_s=30, keyring=keyring) as plaintext:  # no root certificate
        with pytest.raises(RecLLMClientError):
            plaintext.recommend(TLS_USER, item.name, top_k=5, service="samokat")
