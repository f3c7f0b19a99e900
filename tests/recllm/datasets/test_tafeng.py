"""Ta-Feng loader: the README's counts with the [-1] markers dropped, the seeded 72/8/20 user split, and basket
events (one timestamp and basket id per basket) that pass the schema.

Tests on the real files skip when ``../shared/data/tafeng_nbr`` is absent; the tiny-file tests always run.
"""

from __future__ import annotations

import json

import pytest

from recllm.datasets import tafeng
from recllm.datasets.interaction_dataset import DAY, placeholder_catalog, to_events
from recllm.datasets.tafeng import SERVICE_BY_DOMAIN, load_tafeng, user_split
from recllm.profile.event_schema import validate_batch

DATA_DIR = tafeng.DEFAULT_DATA_DIR
START_TS = 1_600_000_000


@pytest.fixture(scope="module")
def tafeng_data():
    if not DATA_DIR.is_dir():
        pytest.skip(f"Ta-Feng data not found at {DATA_DIR}")
    return load_tafeng()


def test_counts_match_the_readme(tafeng_data):
    history_baskets = [basket for baskets in tafeng_data.history.values() for basket in baskets]
    assert len(tafeng_data.history) == len(tafeng_data.future) == 13_858
    assert len(history_baskets) == 77_369
    assert sum(map(len, history_baskets)) == 480_611
    assert sum(map(len, tafeng_data.future.values())) == 91_322
    assert len(tafeng_data.item_domain) == 11_997
    assert (min(tafeng_data.item_domain), max(tafeng_data.item_domain)) == (0, 11_996)
    assert tafeng_data.item_text == {}
    assert not any(-1 in basket for basket in history_baskets)


def test_sequences_flatten_history_then_future(tafeng_data):
    user = "1"
    baskets = tafeng_data.steps_of(user)
    assert baskets[-1] == tafeng_data.future[user] == [1144, 3374, 40, 44]
    assert tafeng_data.sequences[user] == [item for basket in baskets for item in basket]
    assert baskets[0] == [0, 1, 2]


def test_user_split_is_72_8_20_and_seeded(tafeng_data):
    split = user_split(tafeng_data, seed=0)
    assert (len(split.train), len(split.valid), len(split.test)) == (9_977, 1_109, 2_772)
    assert set(split.train) | set(split.valid) | set(split.test) == set(tafeng_data.history)
    assert len(set(split.train) | set(split.valid) | set(split.test)) == 13_858
    assert user_split(tafeng_data, seed=0) == split
    assert user_split(tafeng_data, seed=1).test != split.test


def test_events_are_baskets_and_pass_the_schema(tafeng_data):
    users = list(tafeng_data.history)[::300]            # ~2,000 events
    events = to_events(tafeng_data, SERVICE_BY_DOMAIN, START_TS, users=users)
    assert 1_000 < len(events) < 3_500
    catalog = placeholder_catalog(tafeng_data, SERVICE_BY_DOMAIN)
    longest = max(len(baskets) for baskets in tafeng_data.history.values()) + 1
    assert validate_batch(events, catalog, now_ts=START_TS + longest * DAY) == events
    assert {event.service for event in events} == {"kuper"}
    user_events = [event for event in events if event.user_id == f"tafeng-{users[0]}"]
    baskets = tafeng_data.steps_of(users[0])
    assert len({event.basket_id for event in user_events}) == len(baskets)
    last = [event for event in user_events if event.timestamp == START_TS + (len(baskets) - 1) * DAY]
    assert [event.item_id for event in last] == tafeng_data.future[users[0]]


def test_tiny_files_drop_markers(tmp_path):
    (tmp_path / "tafeng_history.json").write_text(json.dumps({"7": [[-1], [3, 1], [2], [-1]]}))
    (tmp_path / "tafeng_future.json").write_text(json.dumps({"7": [[-1], [1, 0], [-1]]}))
    data = load_tafeng(tmp_path)
    assert data.history == {"7": [[3, 1], [2]]} and data.future == {"7": [1, 0]}
    assert data.sequences == {"7": [3, 1, 2, 1, 0]}
    assert data.item_domain == {0: "grocery", 1: "grocery", 2: "grocery", 3: "grocery"}


def test_malformed_markers_are_rejected(tmp_path):
    (tmp_path / "tafeng_history.json").write_text(json.dumps({"7": [[3, 1], [2]]}))
    (tmp_path / "tafeng_future.json").write_text(json.dumps({"7": [[-1], [1], [-1]]}))
    with pytest.raises(ValueError, match="user 7"):
        load_tafeng(tmp_path)
