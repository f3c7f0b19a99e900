"""A present's interests → the catalog shelves that answer them."""

from __future__ import annotations

import pytest

from recllm.dialogue.gift_interests import (GIFT_INTERESTS, asks_for_a_present_only, interest_shelves, is_a_present,
                                            tells_what_they_like)
from recllm.synthetic.vocabulary import CATEGORY_SPECS

KITCHEN = ("home/kitchenware", "electronics/kitchen_appliances", "books/cookbooks")


@pytest.mark.parametrize("message, goal, shelves", [
    ("она любит готовить", "подарок для мамы она любит готовить", KITCHEN),
    ("she likes cooking", "a gift for my mom she likes cooking", KITCHEN),
    ("подарок маме, она любит готовить", "подарок маме, она любит готовить", KITCHEN),
    ("он любит бег", "подарок папе он любит бег", ("sport/running_shoes", "sport/running_apparel")),
    ("он любит читать", "подарок сыну 7 лет он любит читать", ("kids/books",)),  # a child's shelf
    ("что-то для дома", "подарок подруге что-то для дома", ("home/textiles", "home/kitchenware")),
    ("что приготовить на ужин", "что приготовить на ужин", ()),  # no present: cooking is dinner, not a pan
    ("хочу почитать что-нибудь", "хочу почитать что-нибудь", ()),
    ("подарок коллеге", "подарок коллеге", ()),                  # a present, no interest yet
    # (review) negated, or words that only look like an interest
    ("она не любит готовить", "подарок маме", ()), ("только не книги", "подарок маме", ()),
    ("she loves cookies", "a gift for mom", ()), ("for my sweetheart", "a gift for my sweetheart", ()),
    ("he runs a company", "a gift for my dad", ()),
    ("что-нибудь вкусное", "ужин для мужа что-нибудь вкусное", ()),  # a dinner for someone is no present
    ("что приготовить на ужин?", "подарок для мамы что приготовить на ужин?", ()),  # «приготовить»: a meal
    ("she doesn’t like cooking", "a gift for my mom", ()),          # a typographic apostrophe
])
def test_interest_shelves(message, goal, shelves):
    assert interest_shelves(message, goal) == shelves


def test_a_present_is_said():
    assert is_a_present("что подарить?") and is_a_present("подарок для мамы") and is_a_present("a gift for my boss")
    assert not is_a_present("ужин для мужа") and not is_a_present("подгузники для сына")


def test_every_shelf_is_one_of_the_catalog_s_categories():
    known = {row[0] for row in CATEGORY_SPECS}
    for _, interest in GIFT_INTERESTS:
        assert set(interest.category_ids) | set(interest.child_category_ids) <= known, interest.name


@pytest.mark.parametrize("message, only", [
    ("что-нибудь на подарок", True), ("any gift ideas?", True), ("хочу подарить что-нибудь", True),
    ("подарок маме", True), ("подарок моей бабушке на юбилей", True), ("a gift for my son", True),  # whom only
    ("I need a gift for my boss, around 3000 rubles", True), ("подарок маме до 5000", True),  # and a budget
    ("подарок сыну на 7 лет", False),  # a child's age: toys for it
    ("подарок себе", False), ("подарок на компанию", False),  # the buyer, guests: no present's recipient
    ("подарок на 3000", False), ("подарок, она любит готовить", False),
    ("подарочный набор кофе", False), ("что-нибудь вкусное", False),
])
def test_a_present_and_nothing_about_it(message, only):
    assert asks_for_a_present_only(message) is only


def test_what_the_person_likes_is_told_only_about_a_present():
    assert tells_what_they_like("он любит кофе", "что-нибудь на подарок коллеге")
    assert tells_what_they_like("she's into yoga", "a gift for my sister")
    assert not tells_what_they_like("люблю кофе", "кофе на утро")       # the buyer's own taste, no present
    assert not tells_what_they_like("а подешевле?", "подарок маме")
    for text in ("не нравится, давай сыр", "I love it", "put it into a box", "мне нравится",  # (review)
                 "а ты сам любишь готовить?", "кто лучший футболист мира?"):
        assert not tells_what_they_like(text, "подарок маме"), text
    assert tells_what_they_like("she’s into yoga", "a gift for my sister")
