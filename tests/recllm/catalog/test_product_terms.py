"""The kinds a request names: kind words (lemmas of nouns) from the catalog's names, the spans that name nothing,
alternatives, the most specific items of each kind."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.catalog.product_catalog import Catalog, Category, Item
from recllm.catalog.product_terms import (NEGATED, PURPOSE, WANTED, Lemmatizer, ProductTerms, english_phrases,
                                          english_singular, kind_word, request_words)

CATEGORIES = [
    Category("grocery", "продукты", "groceries", None, False),
    Category("grocery/dairy", "молочные продукты", "dairy products", "grocery", False),
    Category("grocery/coffee", "кофе", "coffee", "grocery", False),
    Category("household", "хозяйственные товары", "household goods", None, False),
    Category("kids", "детские товары", "kids' goods", None, False),
    Category("kids/toys", "игрушки", "toys", "kids", False),
    Category("pet", "товары для животных", "pet supplies", None, False),
    Category("electronics", "гаджеты", "electronics", None, False),
]
NAMES = [("Молоко Простоквашино 2,5% 930 мл", "grocery/dairy"), ("Молоко безлактозное Valio 1 л", "grocery/dairy"),
         ("Кефир Valio 1%", "grocery/dairy"), ("Йогурт питьевой Valio", "grocery/dairy"),
         ("Кофе в зёрнах Lavazza 1 кг", "grocery/coffee"), ("Капсулы кофейные Lavazza 10 шт", "grocery/coffee"),
         ("Средство для мытья посуды Fairy", "household"), ("Игрушка для кошки мышка", "pet"),
         ("Конструктор LEGO Duplo", "kids/toys"), ("Игровая мышь Logitech", "electronics"),
         ("Наушники Sony WH", "electronics"), ("Хлеб Бородинский", "grocery"),
         ("Корм сухой для кошек Whiskas", "pet"), ("Корм сухой для собак Pedigree", "pet"),
         ("Мороженое пломбир", "grocery")]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset()) for i, (name, category)
             in enumerate(NAMES)]
    return Catalog(CATEGORIES, items)


@pytest.fixture(scope="module")
def terms(catalog) -> ProductTerms:
    return ProductTerms.of(catalog)


def names(catalog, found) -> set[str]:
    return {catalog.get(int(i)).name.split()[0] for i in found.item_ids}


def test_a_kind_word_is_the_first_word_of_a_name_when_a_noun():
    lemmatizer = Lemmatizer()
    assert kind_word("Молоко безлактозное 1 л", lemmatizer) == "молоко"
    assert kind_word("Мороженое пломбир", lemmatizer) == "мороженое"  # a noun that looks like an adjective
    assert kind_word("Игровая мышь Logitech", lemmatizer) == "мышь"   # the noun after the adjective
    assert kind_word("Зарядное устройство", lemmatizer) == "устройство"
    assert kind_word("Logitech G305", lemmatizer) is None
    assert kind_word("Ок", lemmatizer) is None  # too short to be a kind


@pytest.mark.parametrize("text, kinds", [
    ("молоко", {"Молоко"}),
    ("хочу молока, срочно", {"Молоко"}),                 # another case form, same stem
    ("Кефир или молоко?", {"Кефир", "Молоко"}),           # both alternatives are kinds
    ("кофе до 700 рублей", {"Кофе", "Капсулы"}),           # «кофе» is also the coffee category's one-word name
    ("хлеб для бутербродов и молоко", {"Хлеб", "Молоко"}),  # a purpose ends at «и»
    ("йогурт, без молока и кефира", {"Йогурт"}),           # a negation goes on past «и»
    ("игрушку для кота", {"Игрушка"}),                        # the cat's toy: «кота» is «кошка» in item names
    ("корм для кошек или собак", {"Корм"}),                 # «или» inside a purpose: no alternative kind
    ("обычное молоко или безлактозное", {"Молоко"}),        # an alternative the names have: a modifier
    ("мороженое", {"Мороженое"}),
])
def test_the_kinds_a_request_names(catalog, terms, text, kinds):
    assert names(catalog, terms.named(text)) == kinds


@pytest.mark.parametrize("text", [
    "что приготовить на ужин?",          # no kind word at all
    "подарок для любителя кофе",        # a purpose: what the gift is for
    "что-нибудь к кофе",
    "без молока, пожалуйста",           # a negation
    "доставка за час",
    "нужен геймпад или наушники",       # an alternative the catalog has no kind word for
    "хочу обновить игровой сетап",      # «игровая» is an adjective: no kind
    "нужен геймпад или гарнитура",      # neither is a kind of this catalog («мышь» is)
    "milk please",                      # no item name or category phrase in English says milk
    "a gift for a coworker who loves coffee",  # an English purpose names no kind either
    "no coffee today",                  # negated
    "something sweet",                  # no category here; and "sweet" after "something" is an adjective
])
def test_requests_that_name_no_kind(terms, text):
    assert terms.named(text) is None


def test_request_words_mark_the_spans_that_name_nothing():
    assert request_words("молоко без сахара и соли, хлеб для тостов и сыр") == [
        ("молоко", WANTED), ("сахара", NEGATED), ("и", NEGATED), ("соли", NEGATED), ("хлеб", WANTED),
        ("тостов", PURPOSE), ("сыр", WANTED)]
    assert request_words("без молока для кофе") == [("молока", NEGATED), ("кофе", NEGATED)]


def test_of_the_kind_the_items_sharing_the_most_other_words_are_named(catalog, terms):
    assert [catalog.get(int(i)).name for i in terms.named("кофе в зёрнах").item_ids] == ["Кофе в зёрнах Lavazza 1 кг"]
    assert names(catalog, terms.named("молоко безлактозное")) == {"Молоко"}
    assert len(terms.named("молоко безлактозное").item_ids) == 1
    assert len(terms.named("молоко, без лактозы").item_ids) == 2      # a negated word narrows nothing
    assert len(terms.named("молоко на завтрак").item_ids) == 2        # no name shares «завтрак»: the whole kind
    assert [catalog.get(int(i)).name for i in terms.named("игрушку для кошки").item_ids] == \
        ["Игрушка для кошки мышка"]                                   # a purpose word narrows the kind
    for form in ("корм для кошек", "корм для кошки", "кошачий корм для кошки"):  # any case form: lemmas
        assert [catalog.get(int(i)).name for i in terms.named(form).item_ids] == ["Корм сухой для кошек Whiskas"]
    # each kind is narrowed on its own: the brand narrows the milk, the kefir stays
    both = {catalog.get(int(i)).name for i in terms.named("кефир или молоко Простоквашино").item_ids}
    assert both == {"Кефир Valio 1%", "Молоко Простоквашино 2,5% 930 мл"}


def test_only_the_allowed_items_are_named_and_a_kind_with_none_names_nothing(catalog, terms):
    allowed = np.ones(len(catalog), dtype=bool)
    allowed[[i.item_id for i in catalog.items if i.name.startswith("Кофе")]] = False
    assert names(catalog, terms.named("кофе", allowed)) == {"Капсулы"}
    allowed[[i.item_id for i in catalog.items if i.name.startswith("Капсулы")]] = False
    assert terms.named("кофе", allowed) is None
    assert names(catalog, terms.named("кофе или молоко", allowed)) == {"Молоко"}


@pytest.mark.parametrize("text, kinds", [
    ("good coffee for home", {"Кофе", "Капсулы"}),               # the coffee category, whatever the item names
    ("what about cat food?", None),                               # no "cat food" category in this catalog
    ("dairy products please", {"Молоко", "Кефир", "Йогурт"}),      # a two-word phrase, in the singular
    ("toys for a 3 year old", {"Конструктор"}),                    # every toy under «игрушки»
    ("pet supplies and coffee", {"Игрушка", "Корм", "Кофе", "Капсулы"}),
    ("coffee, not dairy products", {"Кофе", "Капсулы"}),           # a negated phrase names nothing
    ("молоко and coffee", {"Молоко", "Кофе", "Капсулы"}),          # mixed languages: both
])
def test_english_requests_name_the_categories_english_names(catalog, terms, text, kinds):
    found = terms.named(text)
    assert (None if found is None else names(catalog, found)) == kinds


def test_english_phrases_and_singulars():
    assert english_phrases("meat and poultry") == [("meat",), ("poultry",)]
    assert english_phrases("toys for toddlers (0-2)") == [("toy", "toddler")]
    assert english_phrases("children's books") == [("children's", "book")]
    assert [english_singular(w) for w in ("berries", "boxes", "toys", "glass", "bus", "tea", "potatoes", "knives",
                                          "cookies", "kids'")] == \
        ["berry", "box", "toy", "glass", "bus", "tea", "potato", "knife", "cookie", "kid"]


def test_a_longer_english_phrase_wins_over_the_one_inside_it():
    categories = CATEGORIES + [Category("kids/toys/toddler", "игрушки для малышей", "toys for toddlers (0-2)",
                                        "kids/toys", False)]
    items = [Item(0, "samokat", 0, "Погремушка", "b", "kids/toys/toddler", 100.0, True, frozenset()),
             Item(1, "samokat", 1, "Конструктор LEGO", "b", "kids/toys", 100.0, True, frozenset())]
    terms = ProductTerms.of(Catalog(categories, items))
    assert terms.named("toys for toddlers").item_ids.tolist() == [0]
    assert terms.named("toys for the kids").item_ids.tolist() == [0, 1]


def test_english_item_names_name_their_items_by_the_head_noun():
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en)
             for i, (name, category, name_en) in enumerate([
                 ("Молоко Valio", "grocery/dairy", "milk"),
                 ("Молоко безлактозное Valio", "grocery/dairy", "lactose-free milk"),
                 ("Шоколад молочный", "grocery", "milk chocolate"),
                 ("Кофе в зёрнах Lavazza", "grocery/coffee", "coffee beans"),
                 ("Кофе молотый Lavazza", "grocery/coffee", "ground coffee"),
                 ("Бананы", "grocery", "bananas"),
                 ("Лакомство для кошек", "pet", "cat treats"),
                 ("Корм сухой для собак", "pet", "dry dog food"),
                 ("Корм сухой для кошек", "pet", "dry cat food")])]
    catalog = Catalog(CATEGORIES, items)
    terms = ProductTerms.of(catalog)

    def named(text):
        found = terms.named(text)
        return None if found is None else sorted(catalog.get(int(i)).name_en for i in found.item_ids)

    assert named("do you have bananas?") == ["bananas"]
    assert named("milk please") == ["lactose-free milk", "milk"]          # the head noun: not the chocolate
    assert named("lactose-free milk") == ["lactose-free milk"]            # the other words narrow the kind
    assert named("I need coffee beans") == ["coffee beans"]               # of the coffee category, the beans
    assert named("coffee") == ["coffee beans", "ground coffee"]
    assert named("milk or bananas") == ["bananas", "lactose-free milk", "milk"]
    assert named("milk or kombucha") is None      # an alternative no English name has: no restriction
    # an item named for a recipient only when the request names the recipient ("pet" names cats and dogs)
    assert named("sugar-free treats") is None
    assert named("treats for my cat") == ["cat treats"]
    assert named("food for my cat") == ["dry cat food"]                  # a purpose names the recipient
    assert named("pet food") == ["dry cat food", "dry dog food"]


def test_wanted_everyday_goods_the_catalog_lacks_name_nothing_to_get(catalog, terms):
    assert "чай" in terms.missing_goods and "молоко" not in terms.missing_goods
    assert "мороженое" not in terms.missing_goods       # «Мороженое пломбир» is in this catalog
    found = terms.named("покажи чай")
    assert found.terms == ("чай",) and found.item_ids.size == 0
    assert terms.named("что-нибудь к чаю") is None     # a purpose wants no tea
    assert terms.named("без чая, пожалуйста") is None
    assert names(catalog, terms.named("молоко и чай")) == {"Молоко"}  # a kind it has: that kind
    english = terms.named("show me some tea")                    # English everyday goods too
    assert english.terms == ("tea",) and english.item_ids.size == 0
    assert terms.named("something sweet for tea") is None        # a purpose
    # live: «а вино есть?» got croissants and «а сироп есть?» chocolate (the nearest items to an unknown word)
    for wanted in ("а вино есть?", "а сироп есть?", "any cough syrup?"):
        assert terms.named(wanted).item_ids.size == 0, wanted
    assert "coffee" not in terms.missing_goods                   # the English category name «coffee» sells it
    for text in ("а краски есть?", "фломастеры ребёнку", "crayons for my son"):  # art supplies: sweets came
        assert terms.named(text).item_ids.size == 0, text
    # live: «хочу телескоп» got gaming headsets, "a tent for camping" was refused (durable goods the catalog lacks)
    for text in ("хочу телескоп", "нужен рюкзак для школы", "a tent for camping", "any telescopes?"):
        assert terms.named(text).item_ids.size == 0, text
    assert terms.named("закажи в самокате молоко").terms == ("молоко",)  # the service's name is no good


def test_a_possessive_phrase_is_matched_as_the_category_names_it():
    """The review's case: "children's books" was split into «children», «s» and matched only "books"."""
    categories = CATEGORIES + [Category("kids/books", "детские книги", "children's books", "kids", False),
                               Category("books", "книги", "books", None, False)]
    items = [Item(0, "samokat", 0, "Книга сказок", "b", "kids/books", 100.0, True, frozenset(), "fairy tale book"),
             Item(1, "samokat", 1, "Роман", "b", "books", 100.0, True, frozenset(), "novel")]
    terms = ProductTerms.of(Catalog(categories, items))
    assert terms.named("children's books please").item_ids.tolist() == [0]
    assert terms.named("books").item_ids.tolist() == [0, 1]  # the category and the item whose head noun is "book"


@pytest.fixture(scope="module")
def english_catalog() -> Catalog:
    categories = CATEGORIES + [Category("sport", "спорт", "sports goods", None, False),
                               Category("grocery/salty_snacks", "солёные снеки", "salty snacks", "grocery", False),
                               Category("grocery/healthy_snacks", "полезные снеки", "healthy snacks", "grocery",
                                        False)]
    rows = [("Кроссовки беговые", "sport", "running shoes"), ("Фитнес-резинки", "sport", "resistance bands"),
            ("Пластырь бактерицидный", "household", "antibacterial plasters"),
            ("Филе куриной грудки", "grocery", "chicken breast fillet"), ("Филе лосося", "grocery", "salmon fillet"),
            ("Салат цезарь с курицей", "grocery", "chicken caesar salad"),
            ("Кола без сахара", "grocery", "sugar-free cola"), ("Сметана", "grocery/dairy", "sour cream"),
            ("Крем для лица", "household", "moisturizing face cream"),
            ("Кофемашина капсульная", "electronics", "capsule coffee machine"),
            ("Кофе в зёрнах", "grocery/coffee", "coffee beans"),
            ("Чипсы картофельные", "grocery/salty_snacks", "potato chips"),
            ("Миндаль жареный", "grocery/healthy_snacks", "roasted almonds"),
            ("Набор ножей", "household", "knife set"), ("Солнцезащитный крем SPF 50", "household", "sunscreen spf 50"),
            ("Сосиски молочные", "grocery", "sausages"), ("Лакомство для собак", "grocery", "dog treats")]
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en)
             for i, (name, category, name_en) in enumerate(rows)]
    return Catalog(categories, items)


@pytest.mark.parametrize("text, expected", [
    ("I need sneakers", ["running shoes"]),           # the shopper's word → the catalog's ("shoes" stays "shoe")
    ("any trainers?", ["running shoes"]),
    ("a pack of band-aids", ["antibacterial plasters"]),  # a phrase whole: not "band" → resistance bands
    ("crisps please", ["potato chips"]),
    ("coffee maker", ["capsule coffee machine"]),     # the head phrase, not every coffee
    ("face cream", ["moisturizing face cream"]),      # not the sour cream
    ("moisturizer", ["moisturizing face cream"]),
    ("chicken for dinner", ["chicken breast fillet", "chicken caesar salad"]),  # a word that heads no name
    ("salmon", ["salmon fillet"]),
    ("knives", ["knife set"]),
    ("sunscreen", ["sunscreen spf 50"]),
    ("snacks", ["potato chips", "roasted almonds"]),  # a category's last word: both snack categories
    ("sugar", None),                                  # the X of "X-free" names nothing: no sugar-free cola
    ("sour", None),                                   # a describing word names nothing by itself
    ("some fresh chicken", ["chicken breast fillet", "chicken caesar salad"]),
    ("hot dogs for the party", ["sausages"]),        # not the dog treats
    ("treats for my dog", ["dog treats"]),
    ("household goods", ["antibacterial plasters", "knife set", "moisturizing face cream", "sunscreen spf 50"]),
])
def test_english_shoppers_words_and_item_name_words_name_items(english_catalog, text, expected):
    terms = ProductTerms.of(english_catalog)
    found = terms.named(text)
    assert (None if found is None or not found.item_ids.size
            else sorted(english_catalog.get(int(i)).name_en for i in found.item_ids)) == expected


def test_a_describing_word_beside_a_good_nobody_sells_names_nothing_else():
    """Review: "red wine" named the red bell pepper and "instant noodles" the instant coffee (the describing word
    as a kind); a wanted good the catalog lacks now keeps the request for it, and describing words name nothing."""
    rows = [("Перец сладкий красный", "grocery", "red bell pepper"), ("Кофе растворимый", "grocery/coffee",
                                                                      "instant coffee"),
            ("Филе куриной грудки", "grocery", "chicken breast fillet")]
    catalog = Catalog(CATEGORIES, [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en)
                                   for i, (name, category, name_en) in enumerate(rows)])
    terms = ProductTerms.of(catalog)
    for text, good in (("red wine", "wine"), ("instant noodles", "noodle"), ("chicken eggs", "egg")):
        found = terms.named(text)
        assert found.terms == (good,) and found.item_ids.size == 0
    assert terms.named("something red") is None and terms.named("instant") is None
    assert terms.named("chicken").item_ids.tolist() == [2]


def test_every_synonym_target_is_a_word_of_the_default_catalog():
    """A target the catalog lacks would make the request name nothing: each one is held to the default catalog's
    English item and category names."""
    from recllm.catalog.english_synonyms import ENGLISH_PHRASE_SYNONYMS, ENGLISH_WORD_SYNONYMS
    from recllm.catalog.product_terms import english_name_words
    from recllm.synthetic.vocabulary import CATEGORY_SPECS, ENGLISH_PRODUCT_NAMES

    words = {w for name in [*ENGLISH_PRODUCT_NAMES.values(), *(spec[2] for spec in CATEGORY_SPECS)]
             for w in english_name_words(name)}
    targets = set(ENGLISH_WORD_SYNONYMS.values()) | {w for t in ENGLISH_PHRASE_SYNONYMS.values()
                                                     for w in english_name_words(t)}
    assert targets - words == set()
    assert set(ENGLISH_WORD_SYNONYMS) & words == set()  # a catalog word is never rewritten away


def test_phone_alone_is_the_smartphone_but_a_phone_case_stays_one():
    from recllm.catalog.english_synonyms import with_phrase_synonyms

    assert with_phrase_synonyms("A new phone, please") == "a new smartphone, please"
    assert with_phrase_synonyms("a mobile phone") == "a smartphone"
    assert with_phrase_synonyms("a phone case and a phone charger") == "a phone case and a phone charger"


def test_a_russian_category_name_of_two_words_or_more_names_its_category():
    """«спортивное питание» named nothing and got baby food; «товары для животных» got the user's usual items. A
    category's whole name names it (all its words said); a one-word name («игрушки» aside, a kind word too) or one
    that says what its items are good for («полезные перекусы»: fruit is one too) stays an intent."""
    categories = CATEGORIES + [Category("sport", "спортивные товары", "sports goods", None, False),
                               Category("sport/nutrition", "спортивное питание", "sports nutrition", "sport", False),
                               Category("grocery/healthy_snacks", "полезные перекусы", "healthy snacks", "grocery",
                                        False)]
    rows = [("Протеин сывороточный", "sport/nutrition"), ("Изотоник порошок", "sport/nutrition"),
            ("Батончик протеиновый", "grocery/healthy_snacks"), ("Корм сухой для кошек", "pet"),
            ("Игрушка для кошки мышка", "pet"), ("Молоко Домик", "grocery/dairy")]
    catalog = Catalog(categories, [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset())
                                   for i, (name, category) in enumerate(rows)])
    terms = ProductTerms.of(catalog)
    assert names(catalog, terms.named("есть спортивное питание?")) == {"Протеин", "Изотоник"}
    assert names(catalog, terms.named("товары для животных")) == {"Корм", "Игрушка"}
    assert names(catalog, terms.named("молочные продукты на завтрак")) == {"Молоко"}
    assert terms.named("полезные перекусы в офис") is None      # an intent: fruit answers it too
    assert terms.named("что-нибудь спортивное") is None          # not every word of a name
    assert terms.named("без молочных продуктов") is None         # negated
    assert terms.named("спортивная обувь и питание") is None     # the name's words apart (review)
    # a kind word inside a whole name is that category («средства по уходу за кожей»: not the «Средство …» cleaners)
    skincare = Catalog([Category("beauty", "косметика", "beauty", None, False),
                        Category("beauty/skincare", "средства по уходу за кожей", "skincare", "beauty", False),
                        Category("household", "хозтовары", "household goods", None, False)],
                       [Item(0, "samokat", 0, "Гель для умывания", "b", "beauty/skincare", 100.0, True, frozenset()),
                        Item(1, "samokat", 1, "Средство для мытья посуды", "b", "household", 100.0, True, frozenset())])
    assert names(skincare, ProductTerms.of(skincare).named("средства по уходу за кожей")) == {"Гель"}
    both = ProductTerms.of(skincare).named("средства по уходу за кожей и средство для мытья посуды")
    assert names(skincare, both) == {"Гель", "Средство"}                 # the other «средство» still names its kind
    groceries = Catalog([Category("grocery", "продукты", "groceries", None, False),
                         Category("grocery/grains", "крупы и макароны", "grains and pasta", "grocery", False)],
                        [Item(0, "samokat", 0, "Гречка ядрица", "b", "grocery/grains", 100.0, True, frozenset())])
    assert ProductTerms.of(groceries).russian_phrases == {}             # «и» lists kinds: no phrase (review)


def test_an_animal_named_as_people_say_it_narrows_to_its_goods(catalog, terms):
    """«корм» after «а что-нибудь для кота?» got dog food first: the names say «для кошек», the request «кота»."""
    for text, wanted in (("корм для кота", "кошек"), ("корм для щенка", "собак")):
        found = terms.named(text)
        assert {catalog.get(int(i)).name for i in found.item_ids} == {n for n, _ in NAMES if n.startswith("Корм")
                                                                        and wanted in n}, text


def test_a_product_s_shelf_names_the_product_and_a_general_shelf_names_everything_on_it():
    """Live: «бюджетный смартфон» listed cases and chargers before phones: they share the «смартфоны» shelf. Where the
    shelf's word heads a good share of its items it names those and the items that carry it (not «для смартфона»);
    where it heads few («игрушки», «книги») it is everything on the shelf."""
    categories = [Category("electronics", "гаджеты", "electronics", None, False),
                  Category("electronics/smartphones", "смартфоны", "smartphones", "electronics", False),
                  Category("kids", "детские товары", "kids' goods", None, False),
                  Category("kids/diapers", "подгузники", "diapers", "kids", False),
                  Category("books", "книги", "books", None, False)]
    rows = [("Смартфон HONOR 8/256 ГБ", "electronics/smartphones"), ("Смартфон Tecno 12/512 ГБ", "electronics/smartphones"),
            ("Чехол для смартфона HONOR", "electronics/smartphones"),
            ("Зарядное устройство realme 20 Вт", "electronics/smartphones"),
            ("Подгузники Pampers 4", "kids/diapers"), ("Трусики-подгузники Huggies 5", "kids/diapers"),
            ("Влажные салфетки детские Libero", "kids/diapers"),
            ("Книга Гарри Поттер", "books"), ("Роман Война и мир", "books"), ("Детектив Убийство в Восточном экспрессе", "books"),
            ("Фантастика Дюна", "books")]
    catalog = Catalog(categories, [Item(i, "megamarket", i, name, "b", category, 100.0, True, frozenset())
                                   for i, (name, category) in enumerate(rows)])
    terms = ProductTerms.of(catalog)
    assert names(catalog, terms.named("бюджетный смартфон")) == {"Смартфон"}
    assert names(catalog, terms.named("подгузники для малыша")) == {"Подгузники", "Трусики-подгузники"}
    assert names(catalog, terms.named("хорошие книги")) == {"Книга", "Роман", "Детектив", "Фантастика"}
    assert names(catalog, terms.named("чехол для смартфона")) == {"Чехол"}
    # carrying the word: its lemma or an adjective made from it, never another noun that starts with it
    drinks = Catalog([Category("grocery", "продукты", "groceries", None, False),
                      Category("grocery/tea", "чай", "tea", "grocery", False)],
                     [Item(i, "samokat", i, name, "b", "grocery/tea", 100.0, True, frozenset())
                      for i, name in enumerate(["Чай чёрный", "Чай зелёный", "Пакетики чайные", "Чайник заварочный"])])
    assert names(drinks, ProductTerms.of(drinks).named("хочу чай")) == {"Чай", "Пакетики"}


def test_an_english_product_shelf_names_the_product_too():
    """Live: "I need a phone" listed chargers and a case first (the "smartphones" shelf's English name)."""
    categories = [Category("electronics", "гаджеты", "electronics", None, False),
                  Category("electronics/smartphones", "смартфоны", "smartphones", "electronics", False),
                  Category("kids", "детские товары", "kids' goods", None, False),
                  Category("kids/toys", "игрушки", "toys", "kids", False)]
    rows = [("Смартфон HONOR", "smartphone", "electronics/smartphones"),
            ("Смартфон Tecno", "smartphone", "electronics/smartphones"),
            ("Чехол для смартфона HONOR", "phone case", "electronics/smartphones"),
            ("Зарядное устройство realme", "charger", "electronics/smartphones"),
            ("Конструктор LEGO", "building set", "kids/toys"), ("Погремушка", "rattle", "kids/toys")]
    catalog = Catalog(categories, [Item(i, "megamarket", i, name, "b", category, 100.0, True, frozenset(), name_en)
                                   for i, (name, name_en, category) in enumerate(rows)])
    terms = ProductTerms.of(catalog)
    assert names(catalog, terms.named("I need a phone")) == {"Смартфон"}
    assert names(catalog, terms.named("toys for my son")) == {"Конструктор", "Погремушка"}
    assert names(catalog, terms.named("a phone case")) == {"Чехол"}
