"""The ingest-growth benchmark on the test build: every event of the stream is acknowledged and stored once, the
rows follow the users' growing logs, and both variants reach the side-by-side table."""

from __future__ import annotations

import shutil
from collections import Counter

from benchmarks.ingest_growth import event_stream, main, run_variant
from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.profile.storage import open_profile_storage
from recllm.rag.catalog_index import CatalogIndex


def test_the_stream_spreads_the_events_evenly_over_the_users(test_artifacts):
    catalog = Catalog.load_jsonl(ArtifactLayout(test_artifacts.root).catalog)
    batches = event_stream(catalog, ["a", "b", "c"], 40, 16, 1_790_000_000, seed=0)
    events = [e for batch in batches for e in batch]
    assert Counter(e.user_id for e in events) == {"a": 40, "b": 40, "c": 40}
    assert all(len(b) == 16 for b in batches[:-1]) and len({e.event_id for e in events}) == 120
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_a_variant_stores_every_event_and_reports_the_growing_logs(test_artifacts, tmp_path):
    layout = ArtifactLayout(test_artifacts.root)
    catalog = Catalog.load_jsonl(layout.catalog)
    vectors = CatalogIndex.load(layout.catalog_index_dir, catalog).item_vectors
    profile = tmp_path / "profile.sqlite"
    shutil.copy(layout.profile_db, profile)
    users = ["u_g1", "u_g2"]
    batches = event_stream(catalog, users, 100, 20, 1_790_000_000, seed=1)
    result = run_variant(profile, catalog, vectors, batches, max_events=50, users=users)
    store = open_profile_storage(profile)
    assert [len(store.events_of(u)) for u in users] == [100, 100]
    assert [r["mean_log"] for r in result["rows"]] == sorted(r["mean_log"] for r in result["rows"])
    assert result["rows"][-1]["mean_log"] == 100 and result["refreshes"] >= 1 and result["refresh_ms"] > 0
    # bounded to 50 events: the derived histograms hold the newest 50 of the 100
    assert sum(sum(h) for _, h, _ in store.temporal_histograms_of("u_g1")) == 50


def test_the_report_holds_both_variants_side_by_side(test_artifacts, tmp_path):
    out = tmp_path / "growth.md"
    assert main(["--artifact-dir", str(test_artifacts.root), "--users", "2", "--events-per-user", "60",
                 "--batch", "10", "--output", str(out)]) == 0
    text = out.read_text()
    assert "## bounded (5,000 newest)" in text and "## whole log" in text and "## Side by side" in text
    assert text.count("| bounded (5,000 newest) |") == 1 and "Command: `python -m benchmarks.ingest_growth" in text
