import pytest

from recllm.dialogue.service_questions import SERVICE_REPLIES, service_reply, service_topic


@pytest.mark.parametrize("message, topic", [
    ("а сколько стоит доставка?", "delivery"), ("доставка платная?", "delivery"), ("когда привезут?", "delivery"),
    ("how much is delivery?", "delivery"), ("what's the delivery fee", "delivery"), ("есть доставка ночью?", "delivery"),
    ("можно поменять слот доставки?", "delivery_change"), ("переведи доставку на завтра", "delivery_change"),
    ("поменять адрес доставки можно?", "delivery_change"), ("can I change my delivery slot?", "delivery_change"),
    ("где мой заказ?", "order"), ("хочу отменить заказ", "order"), ("where is my order?", "order"),
    ("можно оплатить картой?", "payment"), ("how can I pay?", "payment"),
    ("когда привезут мой заказ?", "order"), ("можно доставить к 18:00?", "delivery"),
    ("добавь в корзину первое", "cart"), ("оформи заказ", "cart"), ("add it to my cart", "cart"),
    ("закажи как в прошлый раз, но без лактозы", None), ("повтори последний заказ", None),  # the last basket
    ("как вернуть товар?", "return"), ("I want a refund", "return"), ("есть промокод?", "promo"),
    # a request for goods, whatever it says of the service
    ("что можно заказать с бесплатной доставкой?", None), ("посоветуй что-нибудь, доставка бесплатная?", None),
    ("anything with free delivery?", None), ("молоко без лактозы", None), ("подешевле", None),
])
def test_service_topic(message, topic):
    assert service_topic(message) == topic


def test_every_topic_has_a_reply_in_each_language_and_offers_to_go_on():
    topics = {"delivery", "delivery_change", "order", "payment", "return", "cart", "promo"}
    for language, replies in SERVICE_REPLIES.items():
        assert set(replies) == topics, language
        assert service_reply("delivery", language, has_goal=True) != service_reply("delivery", language, False)
    assert service_reply("promo", "de", has_goal=False) == service_reply("promo", "en", has_goal=False)
