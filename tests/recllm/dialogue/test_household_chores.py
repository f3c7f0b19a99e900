import pytest

from recllm.dialogue.household_chores import HOUSEHOLD_CHORES, chore_name_stems, chore_shelves
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
    assert all(set(shelves) <= known for _, shelves, _ in HOUSEHOLD_CHORES)


@pytest.mark.parametrize("message, stems", [
    ("чем помыть полы", ("для пола",)),            # live: laundry gel first
    ("how do I wash the floor?", ("для пола",)),
    ("нужно отстирать пятна", ("для стирки",)), ("закончился стиральный порошок", ("для стирки",)),
    ("помыть посуду нечем", ("посуд",)),
    ("чем отмыть жир на плите?", ()),              # the whole cleaning shelf
    ("помыть полы и постирать", ()),               # two chores: both kinds are asked for
    ("закончилась туалетная бумага", ()), ("что-нибудь к чаю", ()), ("полка для обуви", ()),
])
def test_a_chore_says_which_goods_on_the_shelf_do_it(message, stems):
    assert chore_name_stems(message) == stems
