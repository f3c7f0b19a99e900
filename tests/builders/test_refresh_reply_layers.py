"""The periodic refresh of heavy users' reply adapters, on a copy of the session's test build."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from builders.refresh_reply_layers import REFRESH_FILE, refresh_reply_adapters, users_with_new_purchases
from builders.train_reply_layers import HEAVY_USERS_FILE, read_heavy_users
from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.profile.events import Event
from recllm.profile.refresh import refresh_user_profile
from recllm.profile.sqlite_store import ProfileStore
from recllm.rag.catalog_index import CatalogIndex
from recllm.user_layers.adapter_store import load_adapter, read_adapter_info


@pytest.fixture
def build(test_artifacts, tmp_path):
    layout = ArtifactLayout(tmp_path / "build")
    shutil.copytree(test_artifacts.root, layout.root)
    return layout


def buy(layout: ArtifactLayout, user_id: str, n: int) -> int:
    """``n`` new purchases of ``user_id`` a day after the profile's newest event, stored and refreshed as the
    profile service does; returns the newest one's timestamp."""
    store = ProfileStore(layout.profile_db)
    catalog = Catalog.load_jsonl(layout.catalog)
    last = store.events_of(user_id, kind="purchase")[-1]
    now = int(store.latest_timestamp()) + 86_400
    items = [item for item in catalog.items if item.service == last.service and item.in_stock][:n]
    store.add_events([Event(user_id, item.service, item.item_id, "purchase", now + k, f"b-{now}", item.price, 1,
                            last.region, last.device, f"refresh-test-{k}") for k, item in enumerate(items)])
    refresh_user_profile(store, catalog, CatalogIndex.load(layout.catalog_index_dir, catalog).item_vectors, user_id,
                         now + n)
    return now + n - 1


def test_only_heavy_users_with_newer_purchases_are_stale():
    purchases = {"u1": [SimpleNamespace(timestamp=t) for t in (10, 20)], "u2": [SimpleNamespace(timestamp=15)],
                 "u3": []}
    profile = SimpleNamespace(events_of=lambda user_id, kind=None: purchases[user_id])
    records = {user_id: {"last_event_ts": 15} for user_id in purchases}
    assert list(users_with_new_purchases(records, profile)) == ["u1"]


def test_a_heavy_user_who_bought_since_gets_a_retrained_adapter_and_nobody_else(build):
    before = read_heavy_users(build.user_layers_dir)
    assert before, "the test build chose no heavy users"
    user = sorted(before)[0]
    newest = buy(build, user, 4)

    report = refresh_reply_adapters(build.root)
    assert list(report["refreshed"]) == [user] and report["heavy_users"] == len(before)
    refreshed = report["refreshed"][user]
    assert refreshed["train_replies"] > 0 and refreshed["events"] == before[user]["num_events"] + 4
    after = read_heavy_users(build.user_layers_dir)
    assert after[user]["last_event_ts"] == newest and after[user]["num_events"] == refreshed["events"]
    assert after[user]["trained_at"] == newest and after[user]["promoted"] == refreshed["served"]
    assert {u: r for u, r in after.items() if u != user} == {u: r for u, r in before.items() if u != user}
    # served only when it beat the segment mixture on the user's validation requests
    own, mixture = refreshed["valid_nll"]["own adapter"], refreshed["valid_nll"]["MoE gate"]
    if own != mixture:  # (rounded to 4 places in the report; the decision used the exact values)
        assert refreshed["served"] == (own < mixture)
    folder = build.user_layers_dir / "adapters" / f"user-{user}"
    assert folder.is_dir() == refreshed["served"]
    if refreshed["served"]:
        adapter = load_adapter(folder)
        assert int(adapter.metadata["last_event_ts"]) == newest and read_adapter_info(folder).trained_at == newest
    assert json.loads((build.user_layers_dir / REFRESH_FILE).read_text())["refreshed"] == report["refreshed"]

    again = refresh_reply_adapters(build.root)  # nothing new since: nothing retrained
    assert again["refreshed"] == {} and read_heavy_users(build.user_layers_dir) == after


def test_the_command_reports_and_an_older_build_is_told_to_rebuild(build, capsys):
    from recllm_cli.main import main

    user = sorted(read_heavy_users(build.user_layers_dir))[-1]
    buy(build, user, 2)
    assert main(["refresh-adapters", "--artifact-dir", str(build.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"1 of {len(read_heavy_users(build.user_layers_dir))} heavy users had new purchases")
    (build.user_layers_dir / HEAVY_USERS_FILE).unlink()
    assert main(["refresh-adapters", "--artifact-dir", str(build.root)]) == 2
    assert "recllm build --force" in capsys.readouterr().err
