"""Field checks for the component config dataclasses, run from their ``__post_init__``.

Every message names the config class, the field and the bad value ("SASRecConfig.dropout must be in [0, 1), got
1.5"), so a wrong setting is found at load time, not as a crash in the middle of a build.
"""

from __future__ import annotations

import math
from typing import Iterable

_INTERVAL_BRACKETS = {"(": False, "[": True, ")": False, "]": True}


def _owner(config: object) -> str:
    return type(config).__name__


def require_positive_ints(config: object, names: Iterable[str]) -> None:
    """Each named field is an ``int`` ≥ 1 (bools are not ints here)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{_owner(config)}.{name} must be a positive int, got {value!r}")


def require_in_interval(config: object, name: str, interval: str) -> None:
    """The field lies in ``interval``, written as in the message: "(0, 1]", "[0, 1)", "[-1, 1]"."""
    low, high, low_closed, high_closed = _parse_interval(interval)
    value = getattr(config, name)
    try:
        inside = (low <= value if low_closed else low < value) and (value <= high if high_closed else value < high)
    except TypeError:
        inside = False
    if not inside or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{_owner(config)}.{name} must be in {interval}, got {value!r}")


def require_above(config: object, name: str, bound: float, inclusive: bool = False) -> None:
    """The field is > ``bound`` (≥ with ``inclusive``)."""
    value = getattr(config, name)
    try:
        ok = value >= bound if inclusive else value > bound
    except TypeError:
        ok = False
    if not ok or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{_owner(config)}.{name} must be {'>=' if inclusive else '>'} {bound:g}, got {value!r}")


def require_one_of(config: object, name: str, choices: Iterable) -> None:
    choices = tuple(choices)
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{_owner(config)}.{name} must be one of {choices}, got {value!r}")


def _parse_interval(interval: str) -> tuple[float, float, bool, bool]:
    text = interval.strip()
    if len(text) < 5 or text[0] not in "([" or text[-1] not in ")]" or "," not in text:
        raise ValueError(f"interval must look like '(0, 1]', got {interval!r}")
    low, high = (float(part) for part in text[1:-1].split(","))
    return low, high, _INTERVAL_BRACKETS[text[0]], _INTERVAL_BRACKETS[text[-1]]
