"""The per-user fragment index: nearest fragments first, at most k, only the fragments it was given."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.profile.records import ProfileFragment
from recllm.rag.fragment_index import UserFragmentIndex


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def fragment(user_id: str, key: str, weight: float, vector, sensitive: bool = False) -> ProfileFragment:
    service, category_id = key.split(":")
    return ProfileFragment(user_id, key, service, category_id, f"берёте {category_id}", f"you buy {category_id}",
                           sensitive, weight, unit(vector))


def test_fragment_index_returns_the_closest_fragment_first():
    fragments = [fragment("u1", "kuper:grocery/vegetables", 1.0, [1, 0, 0]),
                 fragment("u1", "samokat:grocery/coffee", 1.0, [0, 1, 0]),
                 fragment("u1", "kuper:grocery/fish", 1.0, [0.6, 0, 0.8])]
    index = UserFragmentIndex(fragments)
    results = index.search(unit([0.1, 0.05, 1.0]), 3)
    assert [f.fragment_key for f, _ in results] == ["kuper:grocery/fish", "kuper:grocery/vegetables",
                                                    "samokat:grocery/coffee"]
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores[0], float(fragments[2].vector @ unit([0.1, 0.05, 1.0])), rtol=1e-5)


@pytest.mark.parametrize("k, expected", [(0, 0), (1, 1), (2, 2), (50, 3)])
def test_fragment_index_returns_at_most_k_of_the_given_fragments(k, expected):
    rng = np.random.default_rng(0)
    fragments = [fragment("u1", f"kuper:c{i}", 1.0, rng.standard_normal(8)) for i in range(3)]
    results = UserFragmentIndex(fragments).search(unit(rng.standard_normal(8)), k)
    assert len(results) == expected
    assert all(any(f is given for given in fragments) for f, _ in results)


def test_empty_fragment_index_returns_nothing():
    assert UserFragmentIndex([]).search(unit([1, 0]), 5) == []
