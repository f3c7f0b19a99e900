"""kill -9 of the profile service mid-stream loses no acknowledged event (a real child process, a real SIGKILL)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from recllm_proto.user_token import ensure_keyring
from recllm_client.profile_client import ProfileClient, ProfileClientError

from .conftest import purchase

ACKS_BEFORE_KILL = 400


def start_service(layout) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "recllm.profile_service.server", "--artifact-dir", str(layout.root), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = child.stdout.readline()
    if "listening on" not in line:
        child.kill()
        pytest.fail(f"profile service did not start: {line}{child.stderr.read()}")
    return child, line.rsplit(" ", 1)[1].strip()


def endless_purchases(item, user_ids: list[str]):
    sequence = 0
    while True:
        user_id = user_ids[sequence % len(user_ids)]
        yield purchase(user_id, item, f"crash-{sequence}")
        sequence += 1


def test_kill_9_mid_stream_loses_no_acknowledged_event(profile_artifacts, samokat_item):
    child, address = start_service(profile_artifacts)
    acked: list[str] = []
    rejected: list[str] = []
    try:
        with ProfileClient(address, keyring=ensure_keyring(profile_artifacts.keyring), timeout_s=60) as client:
            client.wait_ready()
            try:
                for ack in client.ingest(endless_purchases(samokat_item, ["crash-a", "crash-b", "crash-c"])):
                    (acked if ack.accepted else rejected).append(f"crash-{ack.sequence}")
                    if len(acked) == ACKS_BEFORE_KILL:
                        os.kill(child.pid, signal.SIGKILL)  # events behind this one are still in flight
            except ProfileClientError:
                pass  # the stream dies with the server
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert rejected == [] and len(acked) >= ACKS_BEFORE_KILL

    conn = sqlite3.connect(profile_artifacts.profile_db)  # recovers from the WAL the dead writer left
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {row[0] for row in conn.execute("SELECT basket_id FROM events WHERE basket_id LIKE 'crash-%'")}
    conn.close()
    missing = [basket for basket in acked if basket not in stored]
    assert missing == [], f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"


def test_the_service_restarts_on_the_same_file_after_a_kill(profile_artifacts, samokat_item):
    child, address = start_service(profile_artifacts)
    with ProfileClient(address, keyring=ensure_keyring(profile_artifacts.keyring)) as client:
        client.wait_ready()
        assert [a.accepted for a in client.ingest([purchase("crash-d", samokat_item, "before")])] == [True]
    child.send_signal(signal.SIGKILL)
    child.wait()
    child, address = start_service(profile_artifacts)
    try:
        with ProfileClient(address, keyring=ensure_keyring(profile_artifacts.keyring)) as client:
            client.wait_ready()
            assert [a.accepted for a in client.ingest([purchase("crash-d", samokat_item, "after")])] == [True]
            assert client.get_profile("crash-d").events.total == 2
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
