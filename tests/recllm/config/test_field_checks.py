"""Config field checks: messages name the class, the field and the value."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from recllm.config.field_checks import require_above, require_in_interval, require_one_of, require_positive_ints


@dataclass
class ToyConfig:
    layers: object = 2
    dropout: object = 0.1
    lr: object = 1e-3
    kind: object = "a"


def test_valid_values_pass():
    config = ToyConfig()
    require_positive_ints(config, ("layers",))
    require_in_interval(config, "dropout", "[0, 1)")
    require_above(config, "lr", 0)
    require_one_of(config, "kind", ("a", "b"))


@pytest.mark.parametrize("value", [0, -3, 1.5, "2", True, None])
def test_positive_int_rejects(value):
    with pytest.raises(ValueError, match=rf"ToyConfig\.layers must be a positive int, got {value!r}"):
        require_positive_ints(ToyConfig(layers=value), ("layers",))


@pytest.mark.parametrize(("interval", "value", "ok"), [
    ("[0, 1)", 0.0, True), ("[0, 1)", 1.0, False), ("(0, 1]", 0.0, False), ("(0, 1]", 1.0, True),
    ("[-1, 1]", -1.0, True), ("[-1, 1]", 1.01, False), ("[0, 1)", float("nan"), False), ("[0, 1)", "x", False),
])
def test_interval_bounds(interval, value, ok):
    config = ToyConfig(dropout=value)
    if ok:
        require_in_interval(config, "dropout", interval)
    else:
        with pytest.raises(ValueError, match=r"ToyConfig\.dropout must be in " + interval.replace("[", r"\[")
                           .replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
            require_in_interval(config, "dropout", interval)


def test_above_and_one_of_messages():
    with pytest.raises(ValueError, match=r"ToyConfig\.lr must be > 0, got 0"):
        require_above(ToyConfig(lr=0), "lr", 0)
    with pytest.raises(ValueError, match=r"ToyConfig\.lr must be >= 0, got -1"):
        require_above(ToyConfig(lr=-1), "lr", 0, inclusive=True)
    with pytest.raises(ValueError, match=r"ToyConfig\.kind must be one of \('a', 'b'\), got 'c'"):
        require_one_of(ToyConfig(kind="c"), "kind", ("a", "b"))


def test_a_malformed_interval_is_a_programming_error():
    with pytest.raises(ValueError, match="interval must look like"):
        require_in_interval(ToyConfig(), "dropout", "0..1")
