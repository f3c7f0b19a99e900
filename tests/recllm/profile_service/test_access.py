"""Who may call the profile service: tokens in gRPC metadata (own user, admin, service), clear status codes, and a
real TLS round trip with a self-signed certificate."""

from __future__ import annotations

import grpc
import pytest

from recllm.profile_service.config import ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.serving.tls import self_signed
from recllm_client.profile_client import ProfileClient, ProfileClientError
from recllm_proto.user_token import Keyring, load_keyring

from .conftest import purchase

OWNER, OTHER = "acc-owner", "acc-other"


@pytest.fixture
def keys(profile_server) -> Keyring:
    return load_keyring(profile_server.keyring_path)


@pytest.fixture
def bare_client(profile_server):
    """No keyring: every credential is the one a test passes."""
    with ProfileClient(profile_server.address, timeout_s=30) as client:
        yield client


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ProfileClientError) as caught:
        call()
    return caught.value.code, str(caught.value)


def test_no_or_bad_token_is_unauthenticated(bare_client, keys, samokat_item):
    for call in (lambda: bare_client.get_profile(OWNER), lambda: bare_client.forget(OWNER),
                 lambda: list(bare_client.ingest([purchase(OWNER, samokat_item, "b1")]))):
        code, message = code_of(call)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "no credential" in message
    expired = keys.sign(OWNER, ttl_s=1, now=1_000_000)
    forged = Keyring.generate().sign(OWNER)
    for token, reason in ((expired, "expired"), (forged, "unknown key id"), ("garbage", "malformed")):
        code, message = code_of(lambda: bare_client.get_profile(OWNER, token=token))
        assert code == grpc.StatusCode.UNAUTHENTICATED and reason in message
        assert OWNER not in message and token not in message


def test_a_user_reads_and_forgets_only_their_own_profile(bare_client, keys, samokat_item):
    assert list(bare_client.ingest([purchase(OWNER, samokat_item, "own-1")], token=keys.sign(OWNER)))[0].accepted
    assert bare_client.get_profile(OWNER, token=keys.sign(OWNER)).events.total == 1
    for call in (lambda: bare_client.get_profile(OWNER, token=keys.sign(OTHER)),
                 lambda: bare_client.forget(OWNER, token=keys.sign(OTHER))):
        code, message = code_of(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "another user's" in message and OTHER not in message
    code, _ = code_of(lambda: bare_client.get_profile(OWNER, token=keys.sign("ingest", scope="service")))
    assert code == grpc.StatusCode.PERMISSION_DENIED  # a service token ingests; it does not read profiles
    assert bare_client.get_profile(OWNER, token=keys.sign("ops", scope="admin")).events.total == 1
    assert bare_client.forget(OWNER, token=keys.sign(OWNER))["events"] == 1


def test_a_user_token_ingests_only_that_users_events(bare_client, keys, samokat_item):
    events = [purchase(OWNER, samokat_item, "mine"), purchase(OTHER, samokat_item, "theirs")]
    acks = list(bare_client.ingest(events, token=keys.sign(OWNER)))
    assert [a.accepted for a in acks] == [True, False]
    assert acks[1].field == "user_id" and "does not cover" in acks[1].error and OTHER not in acks[1].error
    service = list(bare_client.ingest([purchase(OTHER, samokat_item, "by-service")],
                                      token=keys.sign("ingest", scope="service")))
    assert service[0].accepted
    assert bare_client.get_profile(OTHER, token=keys.sign(OTHER)).events.total == 1


def test_tls_round_trip_with_a_self_signed_certificate(profile_artifacts, samokat_item, tmp_path):
    tls = self_signed(tmp_path / "tls")
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=0, stop_grace_s=1.0, tls=tls)
    with ProfileServer(config) as server:
        address = f"localhost:{server.port}"
        with ProfileClient(address, timeout_s=30, keyring=server.keyring_path, root_cert=tls.cert) as client:
            assert list(client.ingest([purchase("tls-user", samokat_item, "tls-1")]))[0].accepted
            assert client.get_profile("tls-user").events.total == 1
        with ProfileClient(address, timeout_s=5, keyring=server.keyring_path) as plaintext:
            code, _ = code_of(lambda: plaintext.get_profile("tls-user"))
            assert code == grpc.StatusCode.UNAVAILABLE  # a plaintext client cannot talk to the TLS port
        untrusted = self_signed(tmp_path / "other")
        with ProfileClient(address, timeout_s=5, keyring=server.keyring_path, root_cert=untrusted.cert) as wrong:
            code, _ = code_of(lambda: wrong.get_profile("tls-user"))
            assert code == grpc.StatusCode.UNAVAILABLE  # a certificate the client does not trust
