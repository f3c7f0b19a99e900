"""Questions about the service rather than the goods: delivery price and time, order status, payment, returns,
the cart and checkout, promo codes.

The assistant sees the catalog and the user's profile, not the services' delivery tariffs, payment methods or
orders in flight, so it must not make them up; live, «а сколько стоит доставка?» got a bread list (moderation lets
«доставка» through as a shopping word, and the list was the nearest items). Such a question gets an honest answer
of where to find it (the service's app shows it at checkout) and an offer to go on with the goods; the goal on screen
stays as it was. A question that also asks for goods («что привезут за 15 минут?», "anything with free delivery?")
is a request for goods and is not matched here.
"""

from __future__ import annotations

import re

# (topic, pattern): what a question about the service asks
SERVICE_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (topic, re.compile(pattern, re.IGNORECASE)) for topic, pattern in (
    ("order", r"(?:где|когда\s+\w+)\s+(?:мой|наш)\s+заказ|(?:мо[йего]+|наш\w*)\s+заказ\w*\s+(?:ещё\s+|еще\s+)?не\s+|"
              r"статус\w*\s+заказ\w*|отменить\s+заказ|отмен\w*\s+(?:мой\s+)?заказ\w*|"
              r"(?:where\s+is|track)\s+my\s+order|order\s+status|cancel\s+my\s+order"),
    ("delivery", r"(?:сколько\s+стоит|стоимость|цена|платн\w*|бесплатн\w*)\s+(?:ли\s+)?доставк\w*|доставк\w*\s+"
                 r"(?:платн\w*|бесплатн\w*|сколько\s+стоит)|когда\s+(?:при(?:везут|едет|дет)|доставят)|"
                 r"как\s+(?:быстро|долго)\s+(?:доставят|привезут|везут)|"
                 r"сколько\s+(?:ждать|ехать)\s+(?:доставк\w*|курьер\w*)|"
                 r"(?:how\s+much|what)\s+(?:is|does|'s)\s+(?:the\s+)?delivery(?:\s+(?:cost|fee|charge))?|"
                 r"delivery\s+(?:fee|cost|charge|price|time)s?|is\s+delivery\s+free|"
                 r"how\s+(?:long|fast|soon)\s+(?:is|does|will)\s+(?:the\s+)?(?:delivery|it\s+take|it\s+arrive)|"
                 r"доставк\w*\s+ночью|ночн\w*\s+доставк\w*|доставля\w*\s+(?:ли\s+)?ночью|night\s+delivery|"
                 r"deliver\w*\s+at\s+night|(?:можно\s+)?(?:доставить|доставьте|привезти|привезите)\s+(?:к|до|в|через)\s+\d|"
                 r"(?:can\s+you\s+)?deliver\s+(?:it\s+)?(?:by|at|before)\s+\d"),
    ("delivery_change", r"(?:поменять|изменить|перенести|перевести|переведи|перенеси|сменить|смени|поменяй)\s+"
                        r"(?:мне\s+)?(?:слот\w*\s+|время\s+|дату\s+|адрес\s+)?доставк\w*|слот\w*\s+доставк\w*|"
                        r"(?:change|move|reschedule)\s+(?:my\s+|the\s+)?(?:delivery|slot)|delivery\s+(?:slot|address)"),
    ("payment", r"как\s+(?:можно\s+)?оплатить|(?:можно|могу)\s+(?:ли\s+)?(?:оплатить|расплатиться)|способ\w*\s+оплат\w*|"
                r"оплат\w*\s+(?:картой|наличн\w*)|how\s+(?:can|do)\s+i\s+pay|pay\s+(?:by|with)\s+(?:card|cash)|"
                r"payment\s+methods?"),
    ("return", r"как\s+(?:сделать\s+)?(?:вернуть|возврат)|оформить\s+возврат|вернуть\s+(?:деньги|товар|заказ)|"
               r"how\s+(?:do|can)\s+i\s+return|refund"),
    ("cart", r"(?:добав\w*|полож\w*|кинь|закин\w*)\s+(?:\w+\s+)?в\s+корзин\w*|(?:убер\w*|удал\w*)\s+(?:\w+\s+)?из\s+"
             r"корзин\w*|оформ\w*\s+(?:мой\s+)?заказ|сделай\s+заказ|"
             r"закажи\s+(?:это|его|её|их|перв\w+|втор\w+|трет\w+)\b|"
             r"add\s+(?:it|this|them|the\s+\w+)?\s*to\s+(?:my\s+|the\s+)?(?:cart|basket)|place\s+(?:the\s+|my\s+)?order|"
             r"\bcheck\s*out\b|remove\s+\w+\s+from\s+(?:my\s+|the\s+)?(?:cart|basket)"),
    ("promo", r"промокод\w*|promo\s*codes?|coupon\w*|купон\w*"),
))
# a question that also asks for goods is a request for them
_ASKS_FOR_GOODS = re.compile(r"посовет\w*|подбер\w*|порекоменд\w*|покажи\w*|"
                             r"что\s+(?:взять|купить|заказать|есть|можно)|какие\s+товар\w*|\brecommend|\bsuggest|"
                             r"\bshow\s+me|\bwhat\s+(?:can|should)\s+i\s+(?:get|buy)|"
                             r"\bany(?:thing)?\s+(?:with|for)\b|\bideas?\b|"
                             # «закажи как в прошлый раз» asks for the last basket
                             r"как\s+в\s+прошлый|повтор\w*|\blike\s+last\s+time|\bsame\s+as\s+(?:last|before)|"
                             r"\breorder", re.IGNORECASE)

SERVICE_REPLIES = {
    "ru": {"delivery": "Стоимость и время доставки я не вижу: их показывает приложение сервиса при оформлении заказа, "
                       "по вашему адресу.",
           "delivery_change": "Слот, время и адрес доставки меняются в приложении, в карточке заказа; отсюда я этого "
                              "сделать не могу.",
           "order": "Заказы и их статус я не вижу: они в разделе «Заказы» приложения, там же заказ можно отменить.",
           "payment": "Способы оплаты показывает приложение сервиса при оформлении заказа; я их не вижу.",
           "return": "Возврат оформляется в приложении сервиса, в карточке заказа; я этого сделать не могу.",
           "cart": "Положить товар в корзину или оформить заказ отсюда я не могу: откройте его в приложении сервиса — "
                   "там корзина и оформление.",
           "promo": "Промокоды и скидки я не вижу: их можно ввести при оформлении заказа в приложении."},
    "en": {"delivery": "I can't see delivery prices or times: the service's app shows them at checkout, for your "
                       "address.",
           "delivery_change": "The delivery slot, time and address are changed in the app, on the order's page; I can't "
                              "do that from here.",
           "order": "I can't see your orders or their status: they are under Orders in the app, where an order can "
                    "also be cancelled.",
           "payment": "The app shows the payment methods at checkout; I can't see them.",
           "return": "Returns are made in the app, on the order's page; I can't do that from here.",
           "cart": "I can't put items in your cart or place the order from here: open the item in the service's app, "
                   "where the cart and checkout are.",
           "promo": "I can't see promo codes or discounts: they are entered at checkout in the app."},
}
_GOING_ON = {"ru": " А товары подберу — что ищете?", "en": " I can help with the goods, though: what are you after?"}
_GOING_ON_WITH_LIST = {"ru": " Продолжим с подбором?", "en": " Shall we go on with the picks?"}


def service_topic(message: str) -> str | None:
    """The service topic the message asks about (``SERVICE_TOPICS``), None when it asks none or asks for goods too."""
    if _ASKS_FOR_GOODS.search(message):
        return None
    return next((topic for topic, pattern in SERVICE_TOPICS if pattern.search(message)), None)


def service_reply(topic: str, language: str, has_goal: bool) -> str:
    """Where the answer is (the app), and an offer to go on with the goods (the goal's list, if there is one)."""
    language = language if language in SERVICE_REPLIES else "en"
    return SERVICE_REPLIES[language][topic] + (_GOING_ON_WITH_LIST if has_goal else _GOING_ON)[language]


__all__ = ["SERVICE_REPLIES", "SERVICE_TOPICS", "service_reply", "service_topic"]
