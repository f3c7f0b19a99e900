from recllm.catalog.asking_words import ASKING_WORDS, words_beside_asking


def test_what_is_left_is_what_the_message_says_of_the_goods():
    assert words_beside_asking("а пастилки есть?") == ["пастилки"]
    assert words_beside_asking("А влажный какой лучше взять?") == ["влажный"]
    assert words_beside_asking("do you have any plasters?") == ["plasters"]
    assert words_beside_asking("закончился стиральный порошок") == ["закончился", "стиральный", "порошок"]


def test_short_words_digits_and_yo_are_read_alike():
    assert words_beside_asking("а ещё до 300 рублей есть?") == []  # «ещё» as «еще», digits and 2-letter words go
    assert "еще" in ASKING_WORDS and "ещё" not in ASKING_WORDS
