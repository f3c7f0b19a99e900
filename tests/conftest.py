"""Shared fixtures: one tiny artifact build per test session, and a real tritonserver on free ports."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEST_BUILD_OVERRIDES = {"generator": {"train_steps": 120}}


@pytest.fixture(scope="session")
def test_build_config(tmp_path_factory):
    from builders.build_artifacts import BuildConfig

    root = tmp_path_factory.mktemp("artifacts")
    return BuildConfig(preset="test", output_dir=root, progress=False, overrides=TEST_BUILD_OVERRIDES)


@pytest.fixture(scope="session")
def test_artifacts(test_build_config):
    """Artifacts built from the "test" preset (tiny catalog, few users, small models) into a temp folder."""
    from builders.build_artifacts import build

    return build(test_build_config)


@pytest.fixture(scope="session")
def triton_server(test_artifacts, tmp_path_factory):
    """A real tritonserver serving the model repository on the test artifacts."""
    from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port

    config = TritonServerConfig(
        artifact_dir=test_artifacts.root,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        runtime_dir=tmp_path_factory.mktemp("triton_runtime"),
    )
    with TritonServer(config) as server:
        yield server
