"""A present's interests → the catalog shelves that answer them."""

from __future__ import annotations

import pytest

from recllm.dialogue.gift_interests import (GIFT_INTERESTS, asks_for_a_present_only, interest_shelves, is_a_present,
                                            tells_what_they_like)
from recllm.synthetic.vocabulary import CATEGORY_SPECS

KITCHEN = ("home/kitchenware", "electronics/kitchen_appliances", "books/cookbooks")


@pytest.mark.parametrize("message, goal, shelves", [
    ("она любит готовить", "для мамы она любит готовить", KITCHEN),
    ("she likes cooking", "for my mom she likes cooking", KITCHEN),
    ("подарок маме, она любит готовить", "подарок маме, она любит готовить", KITCHEN),
    ("он любит бег", "подарок папе он любит бег", ("sport/running_shoes", "sport/running_apparel")),
    ("он любит читать", "подарок сыну 7 лет он любит читать", ("kids/books",)),  # a child's shelf
    ("что-то для дома", "подарок подруге что-то для дома", ("home/textiles", "home/kitchenware")),
    ("что приготовить на ужин", "что приготовить на ужин", ()),  # no present: cooking is dinner, not a pan
    ("хочу почитать что-нибудь", "хочу почитать что-нибудь", ()),
    ("подарок коллеге", "подарок коллеге", ()),                  # a present, no interest yet
])
def test_interest_shelves(message, goal, shelves):
    assert interest_shelves(message, goal) == shelves


def test_a_present_is_said_or_is_for_someone_else():
    assert is_a_present("что подарить?") and is_a_present("для мамы") and is_a_present("for my boss")
    assert not is_a_present("себе на ужин") and not is_a_present("на компанию, человек на 6")


def test_every_shelf_is_one_of_the_catalog_s_categories():
    known = {row[0] for row in CATEGORY_SPECS}
    for _, interest in GIFT_INTERESTS:
        assert set(interest.category_ids) | set(interest.child_category_ids) <= known, interest.name


@pytest.mark.parametrize("message, only", [
    ("что-нибудь на подарок", True), ("any gift ideas?", True), ("хочу подарить что-нибудь", True),
    ("подарок маме", False), ("подарок на 3000", False), ("подарок, она любит готовить", False),
    ("подарочный набор кофе", False), ("что-нибудь вкусное", False),
])
def test_a_present_and_nothing_about_it(message, only):
    assert asks_for_a_present_only(message) is only


def test_what_the_person_likes_is_told_only_about_a_present():
    assert tells_what_they_like("он любит кофе", "что-нибудь на подарок коллеге")
    assert tells_what_they_like("she's into yoga", "a gift for my sister")
    assert not tells_what_they_like("люблю кофе", "кофе на утро")       # the buyer's own taste, no present
    assert not tells_what_they_like("а подешевле?", "подарок маме")
