import pytest

from recllm.dialogue.household_chores import HOUSEHOLD_CHORES, chore_shelves
from recllm.synthetic.vocabulary import CATEGORY_SPECS


@pytest.mark.parametrize("message, shelves", [
    ("что-нибудь против плесени в ванной", ("household/cleaning",)),  # live: dark chocolate
    ("чем отмыть жир на плите?", ("household/cleaning",)),             # live: flatbread
    ("нужно отстирать пятна", ("household/cleaning",)),                # live: headphones
    ("чем помыть полы", ("household/cleaning",)), ("how do I get rid of limescale?", ("household/cleaning",)),
    ("закончилась туалетная бумага", ("household/paper",)),
    ("посоветуй что-нибудь к чаю", ("grocery/sweets",)), ("something for tea", ("grocery/sweets",)),  # lemonade
    ("чай", ()), ("зелёный чай с жасмином", ()),                                  # tea itself is a kind
    ("что приготовить на ужин?", ()), ("помыть и нарезать овощи для салата", ()), ("стиральная машина", ()),
])
def test_a_chore_points_at_the_shelves_that_do_it(message, shelves):
    assert chore_shelves(message) == shelves


def test_every_shelf_is_one_of_the_catalog_s_categories():
    known = {row[0] for row in CATEGORY_SPECS}
    assert all(set(shelves) <= known for _, shelves in HOUSEHOLD_CHORES)
