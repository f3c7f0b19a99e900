"""A seeded slice of the fuzz benchmark (benchmarks/fuzz.py) through the live tritonserver and profile service:
every malformed request is answered with an error, nothing hangs or crashes, and every model's good request answers
as before after each batch."""

from __future__ import annotations

import pytest

from benchmarks.fuzz import PROFILE_RPCS, TRITON_MODELS, Fuzzer, forget_probe
from recllm.catalog.product_catalog import Catalog
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile_service.config import IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm_proto.user_token import load_keyring

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def profile_server(test_artifacts):
    config = ProfileServiceConfig(artifact_dir=test_artifacts.root, port=0, stop_grace_s=1.0,
                                  ingest=IngestPolicy(refresh_mode="sync"))
    with ProfileServer(config) as server:
        yield server


def test_a_seeded_fuzz_slice_gets_only_errors_and_leaves_every_answer_unchanged(triton_server, profile_server,
                                                                                   test_artifacts):
    store = ProfileStore(test_artifacts.profile_db, read_only=True)
    users = store.user_ids()
    catalog = Catalog.load_jsonl(test_artifacts.catalog)
    item = next(i for i in catalog.in_service("samokat") if i.in_stock and not catalog.is_sensitive(i))
    fuzzer = Fuzzer(triton_server, profile_server.address, profile_server, triton_server.config.keyring_path,
                    users[0], users[1], item.item_id, store.latest_timestamp() - 86_400, seed=12)
    try:
        reference = fuzzer.record_reference()
        report = fuzzer.run(300, batch_size=100, log=lambda line: None)
    finally:
        fuzzer.close()
        forget_probe(profile_server.address, load_keyring(triton_server.config.keyring_path))

    malformed = report.malformed
    assert malformed.requests >= 300
    assert malformed.successes == 0, report.findings
    assert malformed.timeouts == 0, report.findings
    assert malformed.errors == malformed.requests
    assert report.crashes == [] and report.good_mismatches == []
    assert report.good_checks == report.batches >= 3
    # the slice reached every Triton model and every profile RPC, and the good answers were real answers
    assert set(TRITON_MODELS) <= set(report.by_target)
    assert {f"profile.{rpc}" for rpc in PROFILE_RPCS} <= set(report.by_target)
    assert reference["recllm"]["item_ids"] and reference["recllm"]["reply"][0].strip()
    assert reference["recllm_chat"]["item_ids"] and reference["recllm_chat"]["text_delta"][0].strip()
    assert reference["profile"]["IngestEvents"] == [(True, "")]
