"""SASRec: config validation, causality, and learning a planted next-item pattern with the "test" preset."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recllm.seqrec.full_ranking import full_ranking_metrics
from recllm.seqrec.sasrec import SASRec, SASRecConfig, score_histories, train_sasrec


def test_presets_and_overrides():
    assert SASRecConfig.from_name("default").hidden == 64
    assert SASRecConfig.from_name("default").max_len == 50
    assert SASRecConfig.from_name("test", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="preset 'huge'"):
        SASRecConfig.from_name("huge")


@pytest.mark.parametrize("field, value", [("hidden", 0), ("n_layers", -1), ("dropout", 1.0), ("lr", 0.0),
                                          ("max_len", 2.5), ("weight_decay", -0.1)])
def test_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"SASRecConfig\.{field}.*{value}"):
        SASRecConfig(**{field: value})


def test_hidden_must_divide_by_heads():
    with pytest.raises(ValueError, match="n_heads=3"):
        SASRecConfig(hidden=64, n_heads=3)


def test_output_at_t_ignores_later_items():
    torch.manual_seed(0)
    model = SASRec(SASRecConfig.from_name("test")).eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = items.clone()
    changed[0, 5:] = torch.tensor([1, 19, 2])
    with torch.no_grad():
        a, b = model(items), model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    model = SASRec(SASRecConfig.from_name("test")).eval()
    with torch.no_grad():
        short = model(torch.tensor([[3, 4, 5]]))
        padded = model(torch.tensor([[0, 0, 3, 4, 5]]))
    assert torch.allclose(short, padded[:, 2:], atol=1e-5)


def test_learns_successor_pattern():
    torch.set_num_threads(2)
    config = SASRecConfig.from_name("test")
    rng = random.Random(0)
    sequences = []
    for _ in range(300):   # item i is always followed by i + 1
        start, length = rng.randint(1, 12), rng.randint(3, 8)
        sequences.append(list(range(start, start + length)))
    model = train_sasrec(sequences, config)
    histories = [list(range(s, s + n)) for s in range(1, 12) for n in (1, 3, 5) if s + n <= config.n_items]
    targets = [h[-1] + 1 for h in histories]
    metrics = full_ranking_metrics(score_histories(model, histories), targets, ks=(1,))
    assert metrics["R@1"] > 0.8   # chance is 1/20


def test_rejects_item_ids_beyond_n_items():
    with pytest.raises(ValueError, match="n_items=20"):
        train_sasrec([[1, 2, 25]], SASRecConfig.from_name("test"))


def grouped_sequences(rng: random.Random, count: int) -> list[list[int]]:
    """Sequences that stay inside one group: items 1..9 or 11..19 (items 10 and 20 never occur)."""
    sequences = []
    for _ in range(count):
        low = rng.choice((1, 11))
        sequences.append([rng.randint(low, low + 8) for _ in range(rng.randint(3, 8))])
    return sequences


def test_content_features_place_unseen_items_in_their_group():
    torch.set_num_threads(2)
    config = SASRecConfig.from_name("test", feature_init_std=0.1)
    features = np.zeros((config.n_items + 1, 1), dtype=np.int64)
    features[1:11, 0], features[11:21, 0] = 1, 2           # group feature: 1..10 -> 1, 11..20 -> 2
    model = train_sasrec(grouped_sequences(random.Random(0), 400), config, features)
    with torch.no_grad():   # items 10 and 20 arrive after training: no ID embedding, only their content features
        model.items.ids.weight[[10, 20]] = 0.0
    rng = random.Random(1)
    first = [[rng.randint(1, 9) for _ in range(4)] for _ in range(20)]
    second = [[rng.randint(11, 19) for _ in range(4)] for _ in range(20)]
    scores_first, scores_second = score_histories(model, first), score_histories(model, second)
    # Only its group feature can rank new item 10 above new item 20 for first-group histories, and vice versa.
    assert (scores_first[:, 10] > scores_first[:, 20]).mean() > 0.9
    assert (scores_second[:, 20] > scores_second[:, 10]).mean() > 0.9


def test_item_features_must_cover_every_item():
    config = SASRecConfig.from_name("test")
    with pytest.raises(ValueError, match=r"n_items \+ 1 = 21"):
        train_sasrec([[1, 2, 3]], config, np.zeros((5, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=">= 0"):
        train_sasrec([[1, 2, 3]], config, np.full((21, 2), -1, dtype=np.int64))
