"""Words that ask for goods without saying anything of them: «а пастилки есть?», «а влажный какой взять?»,
"do you have any plasters?". What is left of a message without them is what it says of the goods."""

from __future__ import annotations

import re

ASKING_WORDS = frozenset("""есть ли нет нужен нужна нужно нужны надо хочу покажи покажите дай дайте можно ещё еще
тоже какие какой какая какое каких какую ваши вас тебя мне нам бы где найти купи купить закажи заказать возьми взять
брать посоветуй посоветуешь посоветуйте лучше рублей руб рубля до за завтра сегодня утром вечером срочно быстро
any have you got the some need want show please also more buy order get can where find""".replace("ё", "е").split())


def words_beside_asking(text: str) -> list[str]:
    """The words of ``text`` (three letters or more, lower-case, ё as е) that are not ``ASKING_WORDS``:
    «а пастилки есть?» → [«пастилки»]."""
    return [w for w in re.findall(r"[^\W\d_]{3,}", text.lower().replace("ё", "е")) if w not in ASKING_WORDS]
