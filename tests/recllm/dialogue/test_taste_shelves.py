"""A taste names its shelves; a message without one, or saying it is not sweet, names none."""

import pytest

from recllm.dialogue.taste_shelves import taste_shelves


@pytest.mark.parametrize("message, shelves", [
    ("сладкое", ("grocery/sweets",)), ("хочу чего-нибудь сладенького", ("grocery/sweets",)),
    ("Sweet", ("grocery/sweets",)), ("something salty for tonight", ("grocery/salty_snacks",)),
    ("солёное, на компанию", ("grocery/salty_snacks",)), ("соленое", ("grocery/salty_snacks",)),
    ("и сладкое, и солёное", ("grocery/sweets", "grocery/salty_snacks")),
    ("несладкое", ()), ("для себя", ()), ("sweetheart", ()), ("хочу что-нибудь вкусное", ())])
def test_a_taste_names_its_shelves(message, shelves):
    assert taste_shelves(message) == shelves
