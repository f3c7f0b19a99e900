"""The post-generation consistency check and its counters."""

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
