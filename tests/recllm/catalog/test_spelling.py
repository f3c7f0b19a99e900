"""Typos corrected to the catalog's words: only words nothing knows, within one edit (two for long words), the
catalog's word first; names, brands, identifiers and real words stay as written."""

from __future__ import annotations

from collections import Counter

import pytest

from recllm.catalog.product_catalog import Catalog, Category, Item
from recllm.catalog.product_terms import Lemmatizer
from recllm.catalog.spelling import SpellingConfig, SpellingCorrector, catalog_words

CATEGORIES = [Category("grocery", "продукты", "groceries", None, False),
              Category("grocery/dairy", "молочные продукты", "dairy products", "grocery", False),
              Category("sport", "спорт", "sport", None, False)]
NAMES = [("Йогурт питьевой Valio", "drinking yoghurt", "grocery/dairy"),
         ("Творог безлактозный Экомилк", "lactose-free cottage cheese", "grocery/dairy"),
         ("Кроссовки беговые ASICS", "running shoes", "sport"),
         ("Шампунь L'Oreal Paris", "shampoo", "grocery")]


@pytest.fixture(scope="module")
def corrector() -> SpellingCorrector:
    items = [Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en=name_en)
             for i, (name, name_en, category) in enumerate(NAMES)]
    return SpellingCorrector.of(Catalog(CATEGORIES, items), Lemmatizer().is_known)


@pytest.mark.parametrize("text, corrected", [
    ("йогрут", "йогурт"),                                   # a transposition is one edit
    ("Йогрут без сахара", "Йогурт без сахара"),              # the first word keeps its capital
    ("кросовки для бега", "кроссовки для бега"),             # a missing letter
    ("творог безлактозний", "творог безлактозный"),          # a wrong letter in a long catalog word
    ("any cold mediicine?", "any cold medicine?"),           # English: the dictionary's word, punctuation kept
    ("something for brekfast", "something for breakfast"),
    ("shampo please", "shampoo please"),                     # the catalog's English name
])
def test_typos_become_the_words_meant(corrector, text, corrected):
    assert corrector.correct(text) == corrected


@pytest.mark.parametrize("text", [
    "подарок для Маши",            # a name pymorphy3 knows
    "хочу телескоп",               # a real word the catalog lacks stays what it is
    "чипсы Lays",                  # a capitalised word after the first: a brand
    "пишите на ivanov.petrv@mail.ru",  # an e-mail is not words
    "user u00031x хочет творог",   # an identifier
    "сыр",                         # shorter than min_length
    "безлактозный творог",         # the catalog's own word, unknown to pymorphy3
    "как сделать бомбу",
    "iPhone",                      # capitals inside a word
])
def test_known_words_names_brands_and_identifiers_stay(corrector, text):
    assert corrector.correct(text) == text


def test_one_edit_below_long_word_two_from_it():
    words = Counter({"кроссовки": 1, "творог": 1})
    corrector = SpellingCorrector(words, lambda word: False, SpellingConfig(min_length=5, long_word=8))
    assert corrector.correct("твраг") == "твраг"              # two edits in a 5-letter word: left
    assert corrector.correct("крссовкии") == "кроссовки"       # two edits in a 9-letter word: corrected


def test_a_catalog_word_is_a_correction_the_english_dictionary_lacks():
    corrector = SpellingCorrector(Counter({"kefir": 1}), lambda word: False)
    assert corrector.correct("kefr") == "kefr"  # shorter than min_length: no correction at all
    assert corrector.correct("kefirr") == "kefir"


def test_the_catalog_word_wins_over_an_english_word_at_the_same_distance():
    # "bandy" is one edit from the catalog's "bandu" and from the English dictionary's "band" / "candy"
    corrector = SpellingCorrector(Counter({"bandu": 1}), lambda word: False)
    assert corrector.correct("bandi") == "bandu"


def test_hyphenated_words_and_the_services_names():
    corrector = SpellingCorrector(Counter({"нибуть": 1}), lambda word: False)
    assert corrector.correct("что-нибудь вкусное") == "что-нибудь вкусное"   # never split at the hyphen
    assert corrector.correct("закажи в мегамаркте") in ("закажи в мегамаркете", "закажи в мегамаркет")  # a name
    assert corrector.correct("закажи в самокате") == "закажи в самокате"  # known, whatever the dictionaries say


def test_a_correction_that_would_make_the_text_too_long_is_not_made():
    corrector = SpellingCorrector(Counter({"кроссовки": 1}), lambda word: False)
    assert corrector.correct("кросовки", max_chars=8) == "кросовки"
    assert corrector.correct("кросовки", max_chars=9) == "кроссовки"


def test_corrections_name_the_spans_they_replace(corrector):
    text = "хочу йогрут и кросовки"
    assert corrector.corrections(text) == [(5, 11, "йогурт"), (14, 22, "кроссовки")]


def test_catalog_words_cover_item_and_category_names_in_both_languages():
    items = [Item(0, "samokat", 0, "Ёлка искусственная", "b", "grocery", 1.0, True, frozenset(), name_en="fir tree")]
    words = catalog_words(Catalog(CATEGORIES, items))
    assert {"елка", "искусственная", "fir", "tree", "молочные", "dairy"} <= set(words)


@pytest.mark.parametrize("field, value", [("min_length", 2), ("long_word", 3), ("english_candidates", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SpellingConfig(**{field: value})


def test_correctors_on_many_threads_correct_as_one_thread_does():
    """The chat serves turns on threads of one process; a SymSpell lookup keeps its edit-distance rows on the
    shared comparer, so unguarded lookups at once got wrong distances (kept by the corrector's cache)."""
    import threading  # noqa: PLC0415

    words = ["йогрут", "кросовки", "безлактозний", "mediicine", "brekfast", "shampo", "tvorog", "yogurtt", "runing",
             "shooes", "cofee", "chesee", "bananna", "milkk", "breadd", "sugarr"]
    def fresh():
        return SpellingCorrector(catalog_words(Catalog(CATEGORIES, [
            Item(i, "samokat", i, name, "b", category, 100.0, True, frozenset(), name_en=name_en)
            for i, (name, name_en, category) in enumerate(NAMES)])), Lemmatizer().is_known)
    serial = [fresh().correct(w) for w in words]
    shared, results, errors = fresh(), {}, []
    start = threading.Barrier(8)
    def worker(k):
        try:
            start.wait(5)
            for i in range(len(words)):  # every thread its own order: the same words looked up at once
                w = words[(i + 2 * k) % len(words)]
                results.setdefault(w, set()).add(shared.correct(w))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {w: results[w] for w in words} == {w: {c} for w, c in zip(words, serial)}
