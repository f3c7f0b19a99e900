"""The post-generation consistency check and its counters."""

import pytest

from recllm.generator import ReplyCheckCounters, check_reply

FACTS = ["каждую неделю берёте овощи на Купере", "you buy coffee every week on Samokat"]


def test_clean_replies_pass():
    assert check_reply("Для ужина: Томаты и Огурцы. Учёл, что вы «каждую неделю берёте овощи на Купере».",
                       [1, 2], [1, 2, 3], FACTS, ["Томаты", "Огурцы"]).ok
    assert check_reply('I picked Beans because "you buy coffee every week on Samokat".', [5], [5], FACTS,
                       ["Beans"]).ok
    assert check_reply("Подходящих товаров больше не осталось. Поискать в другом сервисе?", [], [], FACTS).ok


def test_each_failure_reason():
    assert check_reply("Вот: X.", [9], [1, 2], FACTS, ["X"]).problems == ("unknown_item",)
    assert check_reply("Вот: X и X.", [1, 1], [1, 2], FACTS, ["X"]).problems == ("duplicate_item",)
    assert "uncited_fact" in check_reply("Учёл, что вы «любите торты».", [], [1], FACTS).problems
    assert "repeated_words" in check_reply("Для ужина ужина подойдут X.", [1], [1], FACTS, ["X"]).problems
    assert "repeated_words" in check_reply("на ужин на ужин: X.", [1], [1], FACTS, ["X"]).problems
    assert "dangling_conjunction" in check_reply("Для ужина: X и.", [1], [1], FACTS, ["X"]).problems
    assert "dangling_conjunction" in check_reply("For dinner: X and", [1], [1], FACTS, ["X"]).problems
    assert "empty" in check_reply("  ", [], [], FACTS).problems


def test_item_names_may_repeat_words():
    """A product name such as «Молоко Молоко» is not a repeated run of the reply's own words."""
    assert check_reply("Возьмите Молоко Молоко и Хлеб.", [1, 2], [1, 2], [], ["Молоко Молоко", "Хлеб"]).ok


def test_counters_and_listeners():
    counters, events = ReplyCheckCounters(), []
    counters.add_listener(lambda event, reason: events.append((event, reason)))
    counters.record(check_reply("ok X.", [1], [1], [], ["X"]))
    counters.record(check_reply("X и.", [9], [1], [], ["X"]))
    counters.record_regeneration()
    counters.record(check_reply("X и.", [1], [1], [], ["X"]), retry=True)
    snap = counters.snapshot()
    assert snap["checked"] == 3 and snap["failed"] == 1 and snap["regenerated"] == 1
    assert snap["failed_after_retry"] == 1
    assert snap["reasons"] == {"unknown_item": 1, "dangling_conjunction": 1}
    assert ("failed", "unknown_item") in events and ("regenerated", "") in events


def test_garbled_text_fails():
    assert "garbled" in check_reply("Для ужина: X и \ufffdовощи.", [1], [1], [], ["X"]).problems
    assert "garbled" in check_reply("sinnnnnning: X.", [1], [1], [], ["X"]).problems
    assert "garbled" in check_reply("Я помню, что вы «покупали X.", [1], [1], [], ["X"]).problems
    # live, greedy: the list left mid-way after «и » (the decoder now refuses it: test_spacing_rule)
    assert "garbled" in check_reply("Вот что я подобрал: X, Y и  макароны в Самокате Купере я подберу точнее.",
                                    [1, 2], [1, 2], [], ["X", "Y"]).problems


def test_what_the_served_replies_broke_on():
    """Seen from the default build's generator on refine turns with one item (each passed the check before)."""
    en, ru = dict(language="en"), dict(language="ru")
    assert "empty_list" in check_reply("Here is what I found: X and Без лактозы: .", [1], [1], [], ["X"]).problems
    assert "wrong_language" in check_reply("Here is what I found: X and Без лактозы.", [1], [1], [], ["X"],
                                           **en).problems
    assert "wrong_language" in check_reply("Вот: X. Tell me more.", [1], [1], [], ["X"], **ru).problems
    assert "repeated_words" in check_reply("Другие варианты: Другие варианты: X.", [1], [1], [], ["X"]).problems
    # seen live: a label's last word again as the next label
    assert "repeated_words" in check_reply("For your pet: X. Based on your history: history: Y.", [1, 2], [1, 2], [],
                                           ["X", "Y"]).problems
    assert check_reply('For your pet: X. Based on your history: "you buy coffee every week on Samokat".', [1], [1],
                       FACTS, ["X"]).ok
    assert "no_item" in check_reply("Other options: s.", [], [1], [], [], must_name_items=True).problems
    assert check_reply("Other options: s.", [], [1], [], []).ok           # an act that gives no list may name none
    # Latin inside item names and citations is no wrong language, nor Cyrillic in an English reply's item names
    assert check_reply('Вот: Сок Rich. Учёл, что вы "you buy coffee every week on Samokat".', [1], [1], FACTS,
                       ["Сок Rich"], **ru).ok
    assert check_reply("Here is what I found: Сок Rich and Хлеб.", [1, 2], [1, 2], [], ["Сок Rich", "Хлеб"], **en).ok
    # live, plasters on Kuper: a list whose last "item" is the opening again
    assert "broken_list" in check_reply("For your medicine cabinet: X, Y and For your.", [1, 2], [1, 2], [],
                                        ["X", "Y"], **en).problems
    assert "broken_list" in check_reply("Для аптечки: X и для.", [1], [1], [], ["X"], **ru).problems
    assert check_reply("Для аптечки: X, Y и Z. Учёл, что вы «берёте витамины».", [1, 2, 3], [1, 2, 3],
                       ["вы берёте витамины"], ["X", "Y", "Z"], **ru).ok
    # live, «хочу телефон»: an opening as the list's first element
    assert "broken_list" in check_reply("Вот что я подобрал: Как в прошлый раз, X и Y.", [1, 2], [1, 2], [],
                                        ["X", "Y"], **ru).problems
    assert "broken_list" in check_reply("Here is what I found: for dinner X.", [1], [1], [], ["X"], **en).problems
    # live, «хочу телефон»: a list's comma followed by words; an explanation's comma before «потому что» is fine
    assert "broken_list" in check_reply("Посмотрите X, Ничего подходящего не раскрываю.", [1], [1], [], ["X"],
                                        **ru).problems
    assert check_reply("Я выбрал X и Y, потому что вы «берёте витамины».", [1, 2], [1, 2], ["вы берёте витамины"],
                       ["X", "Y"], **ru).ok
    assert check_reply('X, since "you buy coffee every week on Samokat".', [1], [1], FACTS, ["X"], **en).ok
    # live, a new user: a citation's label with an item where the quote goes (a second list)
    assert "broken_list" in check_reply("For dinner: X and Y. Based on your history:Z.", [1, 2, 3], [1, 2, 3], [],
                                        ["X", "Y", "Z"], **en).problems
    # a colon whose sentence names no item (a clarifying question, a cited fact) may go on in words
    assert check_reply("Уточните: вам к чаю или на перекус? Пока несколько идей: X и Y.", [1, 2], [1, 2], [],
                       ["X", "Y"], **ru).ok
    assert check_reply('For your pet: X. Based on your history: "you buy coffee every week on Samokat".', [1], [1],
                       FACTS, ["X"], **en).ok


def guard_of(names=None, ranked=(1, 2), language="ru", fallback="PLAIN", list_act=True):
    from recllm.generator.reply_check import GuardedReply

    names = names or {1: "X", 2: "Y"}

    def check(text, items, final):
        return check_reply(text, items, ranked, [], [names[i] for i in items], language, final and list_act).ok

    return GuardedReply(check, lambda: fallback)


def test_a_guarded_reply_releases_only_pieces_that_pass():
    guard = guard_of()
    assert guard.feed("Вот: ", None) == ""                     # held until a release point
    assert guard.feed("X", 1) == "Вот: X"                      # an item's end: «Вот: X.» would pass
    assert guard.feed(" и ", None) == "" and guard.feed("Y", 2) == " и Y"
    assert guard.feed(".", None) == "."                        # a sentence's end
    assert guard.feed(" Tell me", None) == "" and guard.feed(" more.", None) == ""  # fails: nothing more is sent
    assert guard.finish() == "" and guard.withheld

    clean = guard_of()
    released = [clean.feed(delta, item) for delta, item in (("Вот: ", None), ("X", 1), (". Ещё", None))]
    assert released == ["", "Вот: X", "."]                     # up to the sentence end inside the delta
    assert clean.feed(" Y", None) == "" and clean.feed(" тоже.", None) == " Ещё Y тоже."
    assert clean.finish() == "" and not clean.withheld

    dangling = guard_of()
    assert dangling.feed("Вот: ", None) + dangling.feed("X", 1) == "Вот: X"
    assert dangling.feed(" и.", None) == ""                    # «Вот: X и.» fails
    assert dangling.finish() == "." and dangling.withheld      # the open sentence is closed: «Вот: X.»

    broken = guard_of()
    broken.feed("Вот: и.", None)
    assert broken.finish() == "PLAIN"                          # nothing passed: the plain reply instead


def test_a_guarded_reply_never_sends_an_unfinished_or_cut_sentence():
    """The review's cases: a tail cut by the token budget, a decimal point, an opening sentence before the list."""
    cut = guard_of()
    assert cut.feed("Вот: ", None) + cut.feed("X", 1) + cut.feed(". Если хотите, могу", None) == "Вот: X."
    assert cut.finish() == "" and cut.withheld                  # «Если хотите, могу» is never sent

    decimal = guard_of()
    assert decimal.feed("Вот: ", None) + decimal.feed("X", 1) == "Вот: X"
    assert decimal.feed(" до 1", None) == "" and decimal.feed(".", None) == ""  # «1.» may be «1.5»: held
    assert decimal.feed(" и.", None) == ""                     # the rest fails
    assert decimal.finish() == "."                             # «Вот: X.», never «Вот: X до 1.»

    opening = guard_of()
    assert opening.feed("Отличный выбор! Вот: ", None) == ""   # waits for the first item, not judged alone
    assert opening.feed("X", 1) == "Отличный выбор! Вот: X"
    assert opening.feed(".", None) == "." and opening.finish() == ""

    no_list = guard_of(list_act=False)
    assert no_list.feed("Не могу помочь с этим.", None) == ""  # a reply with no item: judged whole at the end
    assert no_list.finish() == "Не могу помочь с этим." and not no_list.withheld

    nothing_named = guard_of()
    nothing_named.feed("Другие варианты: s.", None)
    assert nothing_named.finish() == "PLAIN"                   # a list act that named nothing


def test_a_name_that_begins_another_is_replaced_whole():
    """«Чайник … 1,7 л» and «Чайник … 1,7 л стеклянный»: the longer name first, whatever the list order."""
    short, long = "Чайник электрический Bork 1,7 л", "Чайник электрический Bork 1,7 л стеклянный"
    known = frozenset({"вот", "и"})
    assert check_reply(f"Вот: {short} и {long}.", [1, 2], [1, 2], [], [short, long], known_words=known).ok
    assert check_reply(f"Вот: {long} и {short}.", [2, 1], [1, 2], [], [long, short], known_words=known).ok


def test_the_plain_reply_says_the_act_in_the_language():
    from recllm.generator.plain_reply import plain_reply

    assert plain_reply("ru", "refine", ["A", "B", "C"]) == "Вот что я подобрал: A, B и C."
    assert plain_reply("en", "recommend", ["A"]) == "Here is what I found: A."
    assert plain_reply("en", "nothing_left", [], "service") == \
        "Nothing fits this request. Shall I look in another service?"
    assert plain_reply("ru", "clarify", ["A"]).endswith("?")
    for language in ("ru", "en"):
        for act in ("recommend", "refine", "nothing_left", "clarify", "decline", "explain"):
            reply = plain_reply(language, act, ["Сок Rich"] if act in ("recommend", "refine") else [])
            assert check_reply(reply, [1] if act in ("recommend", "refine") else [], [1], [], ["Сок Rich"],
                               language, act in ("recommend", "refine")).ok, reply


def test_a_nothing_left_reply_must_make_the_offer_its_prompt_names_and_no_other():
    """Live: "tea" (nothing found, no budget said) got "I found nothing that fits. Can I look a little above your
    budget?"; the plain reply, the corpus's offers and nothing else pass for their own relaxation."""
    from builders.generator_corpus import NOTHING_LEFT, RELAX_OFFERS
    from recllm.generator.plain_reply import plain_reply
    from recllm.generator.reply_prompt import RELAXATIONS

    assert check_reply("I found nothing that fits. Can I look a little above your budget?", [], [], [],
                       offer="query").problems == ("wrong_offer",)
    assert check_reply("Ничего не нашлось. Попробуйте описать запрос иначе. Поднять бюджет?", [], [], [],
                       offer="query").problems == ("wrong_offer",)  # and another one
    assert check_reply("Ничего подходящего не нашлось.", [], [], [], offer="service").problems == ("wrong_offer",)
    for relaxation in RELAXATIONS:
        for language, index in (("ru", 0), ("en", 1)):
            corpus = [sentence + " " + RELAX_OFFERS[relaxation][index] for sentence in NOTHING_LEFT[index]]
            for text in (plain_reply(language, "nothing_left", [], relaxation), *corpus):
                for offer in RELAXATIONS:
                    assert check_reply(text, [], [], [], offer=offer).ok == (offer == relaxation), (text, offer)
    # a quoted fact is not the reply's offer
    fact = "каждую неделю берёте продукты в пределах бюджета"
    assert check_reply(f"Подходящих товаров не нашлось, а вы «{fact}». Попробуйте описать запрос иначе.", [], [],
                       [fact], offer="query").ok
    with pytest.raises(ValueError, match="offer must be one of"):
        check_reply("Ничего не нашлось.", [], [], [], offer="cheaper")


def test_a_word_the_generator_was_never_trained_to_write_fails():
    from recllm.generator.reply_check import own_words

    known = frozenset(own_words('Вот что я подобрал: <item_1> и <item_2>. Учёл, что вы «берёте кофе».'))
    assert known == {"вот", "что", "я", "подобрал", "и", "учёл", "вы"}   # no item, no quoted fact
    ok = check_reply("Вот что я подобрал: Сок Rich и Хлеб.", [1, 2], [1, 2], [], ["Сок Rich", "Хлеб"],
                     known_words=known)
    assert ok.ok                                                # item names' words are not the reply's own
    broken = check_reply("Вот что я подобуйд: Сок Rich.", [1], [1], [], ["Сок Rich"], known_words=known)
    assert broken.problems == ("unknown_word",)
    assert check_reply("Вот что я подобуйд: Сок Rich.", [1], [1], [], ["Сок Rich"]).ok  # no vocabulary: not checked


def test_an_empty_reply_is_replaced_and_counted_and_in_fact_is_no_citation():
    empty = guard_of()
    assert empty.finish() == "PLAIN" and empty.withheld            # counted as withheld
    known = frozenset({"here", "is", "in", "fact"})
    assert check_reply('Here is X. In fact "you buy coffee every week on Samokat".', [1], [1], FACTS, ["X"],
                       "en", known_words=known).ok                 # «fact» is the reply's word, not a placeholder


LOZENGES = ["Пастилки для горла Аквамарис 24 шт", "Пастилки для горла Терафлю 24 шт"]


@pytest.mark.parametrize("opening, query, wrong", [
    ("Для бега пригодятся", "что-нибудь от кашля для ребёнка", True),   # live: cough lozenges "for running"
    ("For running:", "anything for a sore throat?", True),
    ("Для домашней аптечки:", "что-нибудь от кашля для ребёнка", False),
    ("Вот что я подобрал:", "что-нибудь от кашля для ребёнка", False),  # a generic opening fits every request
    ("В подарок подойдут", "подарок сыну на 7 лет", False),            # a child's present is a present too
    ("На ужин можно взять", "что приготовить на ужин, чтобы было полезно?", False),
    ("Без сахара:", "хочу сладкого без сахара", False),                 # a refinement's own opening
])
def test_an_opening_about_another_request_fails(opening, query, wrong):
    text = f"{opening} {LOZENGES[0]} и {LOZENGES[1]}."
    check = check_reply(text, [1, 2], [1, 2], [], LOZENGES, "", True, None, query)
    assert ("wrong_opening" in check.problems) is wrong
    assert check_reply(text, [1, 2], [1, 2], [], LOZENGES).ok  # no query: not checked


def test_a_diet_the_request_did_not_ask_for_fails():
    """Live: «купи гречку в пределах 700р» got «Вот что я подобрал: Гречка …, но без лактозы: Гречка …»."""
    names = ["Гречка ядрица Barilla 2 кг", "Гречка ядрица Мистраль 2 кг"]
    text = f"Вот что я подобрал: {names[0]}, но без лактозы: {names[1]}."
    assert "unasked_diet" in check_reply(text, [1, 2], [1, 2], [], names, "", True, None,
                                         "купи гречку в пределах 700р").problems
    said = f"Без лактозы: {names[0]} и {names[1]}."
    for query in ("молоко без лактозы", "хочу milk без lactose", "как в прошлый раз, но безлактозное"):
        assert "unasked_diet" not in check_reply(said, [1, 2], [1, 2], [], names, "", True, None, query).problems
    lactose_free = ["Молоко безлактозное Valio 1 л", "Кефир безлактозный Valio 1 л"]  # an item's own name may say it
    assert check_reply(f"Вот что я подобрал: {lactose_free[0]} и {lactose_free[1]}.", [1, 2], [1, 2], [],
                       lactose_free, "", True, None, "молоко").ok


def test_known_words_in_an_order_no_training_reply_writes_fail():
    """Live with the corpus rules: «For your me what I found: X» — every word known, the pairs not; an item or a
    citation ends a run of words, so what stands on either side of one is no pair."""
    from recllm.generator.reply_check import own_word_pairs

    pairs = frozenset(own_word_pairs("For your pet: <item_1> and <item_2>. Here is what I found: <item_3>.")
                      | own_word_pairs('I kept in mind that "you buy coffee".'))
    assert "your pet" in pairs and "pet and" not in pairs and "that you" not in pairs
    names = ["Milk", "Tea"]
    assert check_reply("Here is what I found: Milk and Tea.", [1, 2], [1, 2], [], names, known_pairs=pairs).ok
    broken = check_reply("For your what I found: Milk and Tea.", [1, 2], [1, 2], [], names, known_pairs=pairs)
    assert broken.problems == ("unknown_word_pair",)
    cited = 'For your pet: Milk. I kept in mind that "you buy coffee".'
    assert check_reply(cited, [1], [1, 2], ["you buy coffee"], ["Milk"], known_pairs=pairs).ok
    assert check_reply("For your what I found: Milk.", [1], [1, 2], [], ["Milk"]).ok  # no pairs known: not checked
