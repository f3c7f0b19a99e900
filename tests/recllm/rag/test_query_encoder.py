"""Query encoder: tokenization, stable hashing, config validation, unit-norm encoding, persistence and training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.rag.query_encoder import (
    QueryEncoder,
    QueryEncoderConfig,
    stable_bucket,
    tokenize,
    train_query_encoder,
)

# Three topics: a few item texts (as item_search_text builds them) and paraphrased requests for each. The held-out
# requests reuse the training requests' words ("арабика", "щенок", "марафон") but hardly any word of the item text,
# so only a trained encoder can map them to the right item.
ITEM_TEXTS = {
    "coffee": "Кофе в зёрнах Жокей Эспрессо 1 кг Жокей продукты groceries кофе coffee breakfast coffee",
    "dog": "Корм для собак Pedigree с говядиной 2 кг Pedigree зоотовары pet products корм для собак dog food pet",
    "run": "Кроссовки беговые Demix Pulse Demix спорт sport беговая обувь running shoes running sport",
}
TRAIN_QUERIES = {
    "coffee": ["хочу взбодриться с утра", "нужна арабика для турки", "закончился эспрессо",
               "что выпить утром чтобы проснуться", "I need espresso beans", "something to wake me up in the morning",
               "латте дома", "бодрящий напиток"],
    "dog": ["чем кормить щенка", "мой пёс голоден", "еда для питомца", "нужно накормить собаку", "food for my puppy",
            "my dog is hungry", "лакомство для овчарки", "корм для лабрадора"],
    "run": ["готовлюсь к марафону", "обувь для пробежек", "начинаю бегать по утрам", "что надеть на пробежку",
            "gear for a marathon", "I started jogging", "тренировки на стадионе", "кроссовки для бега"],
}
HELD_OUT_QUERIES = {
    "coffee": ["арабика чтобы взбодриться", "хочу эспрессо утром", "espresso to wake up"],
    "dog": ["щенок голоден", "накормить пса", "my puppy food"],
    "run": ["пробежки и марафон", "бегать на стадионе", "jogging for a marathon"],
}
TOPICS = list(ITEM_TEXTS)


@pytest.fixture(scope="module")
def untrained() -> QueryEncoder:
    """A randomly initialised encoder with the test preset (loads navec once, ~1 s)."""
    torch.manual_seed(0)
    return QueryEncoder(QueryEncoderConfig.from_name("test"))


@pytest.fixture(scope="module")
def trained(single_thread) -> QueryEncoder:
    pairs = [(query, ITEM_TEXTS[topic]) for topic, queries in TRAIN_QUERIES.items() for query in queries]
    config = dataclasses.replace(QueryEncoderConfig.from_name("test"), train_epochs=40)
    with single_thread():
        return train_query_encoder(pairs, config, progress=False)


def held_out_accuracy(encoder: QueryEncoder) -> float:
    """Fraction of held-out requests whose nearest item is their topic's item."""
    item_vectors = encoder.encode([ITEM_TEXTS[t] for t in TOPICS])  # [3, D]
    hits = total = 0
    for topic, queries in HELD_OUT_QUERIES.items():
        best = (encoder.encode(queries) @ item_vectors.T).argmax(axis=1)  # [Q]
        hits += sum(TOPICS[b] == topic for b in best)
        total += len(queries)
    return hits / total


# --- tokenize / stable_bucket --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, tokens", [
    ("Молоко Ёжик 3,2% — Milk!", ["молоко", "ежик", "3", "2", "milk"]),
    ("  ", []),
    ("Кофе-машина DeLonghi", ["кофе", "машина", "delonghi"]),
    ("¿Qué? ЁЁ", ["qu", "ее"]),  # letters outside a-z/а-я split words; ё folds to е
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_stable_bucket_is_pinned_across_processes():
    # crc32 values: the builder and the server are different processes, and a salted hash() would differ.
    assert stable_bucket("w:молоко", 4096) == 2162
    assert stable_bucket("c:<мо", 4096) == 3379
    assert stable_bucket("w:coffee", 1 << 15) == 13804


@settings(max_examples=100, deadline=None)
@given(token=st.text(max_size=30), buckets=st.integers(1, 1 << 20))
def test_stable_bucket_is_in_range_and_repeatable(token, buckets):
    bucket = stable_bucket(token, buckets)
    assert 0 <= bucket < buckets
    assert stable_bucket(token, buckets) == bucket


# --- config --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("dim", 0), ("dim", -3), ("dim", 1.5), ("hash_buckets", 0), ("char_ngram", 0), ("max_words", -1),
    ("train_epochs", 0), ("batch_size", "128"),
])
def test_config_rejects_non_positive_ints_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"QueryEncoderConfig\.{field} must be a positive int, got {value!r}"):
        QueryEncoderConfig(**{field: value})


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_config_rejects_temperature_outside_unit_interval(value):
    with pytest.raises(ValueError, match=rf"QueryEncoderConfig\.temperature must be in \(0, 1\], got {value!r}"):
        QueryEncoderConfig(temperature=value)


@pytest.mark.parametrize("value", [0.0, -1e-3])
def test_config_rejects_non_positive_learning_rate(value):
    with pytest.raises(ValueError, match="QueryEncoderConfig.learning_rate must be > 0"):
        QueryEncoderConfig(learning_rate=value)


def test_from_name_presets():
    assert QueryEncoderConfig.from_name("default") == QueryEncoderConfig()
    test = QueryEncoderConfig.from_name("test")
    assert (test.dim, test.hash_buckets) == (32, 1 << 12)
    test.dim = 999  # a preset handed out must not change the next one
    assert QueryEncoderConfig.from_name("test").dim == 32
    expected = r"unknown QueryEncoderConfig preset 'huge'; expected one of \['default', 'test'\]"
    with pytest.raises(ValueError, match=expected):
        QueryEncoderConfig.from_name("huge")


# --- encode --------------------------------------------------------------------------------------------------------

def test_encode_gives_unit_rows_of_the_configured_dim(untrained):
    texts = ["хочу полезный ужин", "gaming headset", "", "!!!", "ёжик " * 200]
    vectors = untrained.encode(texts)
    assert vectors.shape == (len(texts), 32) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_empty_batch(untrained):
    assert untrained.encode([]).shape == (0, 32)


def test_encode_is_deterministic_and_batch_independent(untrained):
    texts = ["нужен кофе домой", "I need pet food", "подарок коллеге"]
    batch = untrained.encode(texts)
    np.testing.assert_array_equal(untrained.encode(texts), batch)
    for row, text in enumerate(texts):
        np.testing.assert_allclose(untrained.encode([text])[0], batch[row], atol=1e-6)


def test_encode_reads_at_most_max_words(untrained):
    words = [f"слово{i}" for i in range(100)]
    np.testing.assert_allclose(untrained.encode([" ".join(words)]), untrained.encode([" ".join(words[:64])]), atol=1e-6)
    assert not np.allclose(untrained.encode([" ".join(words[:63])]), untrained.encode([" ".join(words[:64])]))


def test_encode_is_case_and_yo_insensitive(untrained):
    np.testing.assert_allclose(untrained.encode(["ЁЖИК Молоко"]), untrained.encode(["ежик молоко"]), atol=1e-6)


def test_save_load_round_trip_gives_identical_vectors(untrained, tmp_path):
    untrained.save(tmp_path / "encoder")
    loaded = QueryEncoder.load(tmp_path / "encoder")
    assert loaded.config == untrained.config
    texts = ["что приготовить на ужин?", "running shoes under 5000 rubles"]
    np.testing.assert_array_equal(loaded.encode(texts), untrained.encode(texts))


# --- training ------------------------------------------------------------------------------------------------------

def test_training_needs_two_pairs():
    with pytest.raises(ValueError, match="train_query_encoder needs at least 2 pairs, got 1"):
        train_query_encoder([("кофе", "Кофе Жокей")], QueryEncoderConfig.from_name("test"), progress=False)


def test_trained_encoder_ranks_the_right_item_first_for_held_out_paraphrases(trained, untrained):
    trained_accuracy, untrained_accuracy = held_out_accuracy(trained), held_out_accuracy(untrained)
    assert trained_accuracy >= 8 / 9
    assert trained_accuracy > untrained_accuracy


def test_trained_encoder_output_is_still_unit_norm(trained):
    vectors = trained.encode(HELD_OUT_QUERIES["dog"] + [ITEM_TEXTS["dog"]])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_training_is_reproducible_for_a_seed(trained, single_thread):
    pairs = [(query, ITEM_TEXTS[topic]) for topic, queries in TRAIN_QUERIES.items() for query in queries]
    config = dataclasses.replace(QueryEncoderConfig.from_name("test"), train_epochs=40)
    with single_thread():
        again = train_query_encoder(pairs, config, progress=False)
    texts = HELD_OUT_QUERIES["coffee"]
    np.testing.assert_allclose(again.encode(texts), trained.encode(texts), atol=1e-5)
