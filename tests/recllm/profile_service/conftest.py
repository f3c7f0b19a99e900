"""Fixtures for the profile service: a minimal artifact folder (what the service reads) and a running server.

The folder holds the test ecosystem's catalog, random item vectors, the filled profile database and a session
database — everything the profile service opens, nothing it does not (no trained models), so each test gets a
fresh database in well under a second.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from builders.build_artifacts import fill_profile, store_fragments
from recllm.artifacts import ArtifactLayout
from recllm.rag.catalog_index import CatalogIndex
from recllm.dialogue.session_store import SessionStore
from recllm.profile_service.config import ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.profile.sqlite_store import ProfileStore
from recllm.profile.events import Event
from recllm_client.profile_client import ProfileClient


def write_profile_artifacts(root, ecosystem, item_vectors: np.ndarray) -> ArtifactLayout:
    layout = ArtifactLayout(root)
    layout.root.mkdir(parents=True, exist_ok=True)
    ecosystem.catalog.save_jsonl(layout.catalog)
    CatalogIndex(item_vectors, ecosystem.catalog).save(layout.catalog_index_dir)
    store = fill_profile(ProfileStore(layout.profile_db), ecosystem)
    store_fragments(ecosystem, store, item_vectors)
    store.connection().close()
    SessionStore(layout.sessions_db).connection().close()
    return layout


@pytest.fixture
def profile_artifacts(tmp_path, ecosystem, random_item_vectors) -> ArtifactLayout:
    return write_profile_artifacts(tmp_path / "artifacts", ecosystem, random_item_vectors)


@pytest.fixture
def profile_server(profile_artifacts):
    config = ProfileServiceConfig(artifact_dir=profile_artifacts.root, port=0, stop_grace_s=1.0)
    with ProfileServer(config) as server:
        yield server


@pytest.fixture
def profile_client(profile_server):
    with ProfileClient(profile_server.address, keyring=profile_server.keyring_path, timeout_s=30) as client:
        yield client


@pytest.fixture
def samokat_item(catalog):
    return next(item for item in catalog.in_service("samokat") if item.in_stock)


def purchase(user_id: str, item, basket_id: str, timestamp: int | None = None, **changes) -> Event:
    """A valid purchase event of ``item`` by ``user_id`` (fields overridable)."""
    fields = dict(user_id=user_id, service=item.service, item_id=item.item_id, kind="purchase",
                  timestamp=int(time.time()) - 60 if timestamp is None else timestamp, basket_id=basket_id,
                  price=float(item.price), quantity=1, region="moscow", device="ios")
    fields.update(changes)
    return Event(**fields)
