"""Privacy filter: every PII kind on concrete text, Luhn, product-text hard negatives, placeholders, sensitive domains,
and recall/precision on the labeled test split (the figures benchmarks/safety_filters.py reports)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.safety.privacy_filter import (
    PII_KINDS,
    PiiSpan,
    PrivacyFilterConfig,
    find_pii,
    luhn_valid,
    mentions_sensitive_domain,
    redact,
)

LABELED = Path(__file__).resolve().parents[3] / "recllm" / "safety" / "labeled"


def kinds_and_texts(text: str, config: PrivacyFilterConfig = PrivacyFilterConfig()) -> list[tuple[str, str]]:
    return [(span.kind, text[span.start:span.end]) for span in find_pii(text, config)]


# ------------------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, field", [
    ({"kinds": ("phone", "fax")}, "kinds"),
    ({"kinds": ()}, "kinds"),
    ({"placeholder_style": "fr"}, "placeholder_style"),
    ({"allow_words": {"Простоквашино"}}, "allow_words"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PrivacyFilterConfig(**kwargs)


# ---------------------------------------------------------------------------------------------------- each kind

@pytest.mark.parametrize("text, expected", [
    ("Мой телефон +7 (916) 123-45-67", [("phone", "+7 (916) 123-45-67")]),
    ("звони 8-916-123-45-67 или 89161234567", [("phone", "8-916-123-45-67"), ("phone", "89161234567")]),
    ("тел.+79031112233", [("phone", "+79031112233")]),
    ("наберите 916 123-45-67", [("phone", "916 123-45-67")]),
    ("офис 8 (495) 123-45-67", [("phone", "8 (495) 123-45-67")]),
    ("call +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ("call +1 (415) 555-0132 please", [("phone", "+1 (415) 555-0132")]),
    ("тел 8-916-123-45-67 2 шт", [("phone", "8-916-123-45-67")]),        # a neighbouring number is not swallowed
    ("заказ 2 8-916-123-45-67", [("phone", "8-916-123-45-67")]),
])
def test_phones(text, expected):
    assert kinds_and_texts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("пишите ivan.petrov@mail.ru", [("email", "ivan.petrov@mail.ru")]),
    ("send to j.doe+shop@example.co.uk.", [("email", "j.doe+shop@example.co.uk")]),
])
def test_emails(text, expected):
    assert kinds_and_texts(text) == expected


def test_luhn_checksum():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("5536913760004511")
    assert luhn_valid("378282246310005")          # Amex test number, 15 digits
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("1234567890123456")
    assert not luhn_valid("4111 1111 1111 1111")   # digits only


@pytest.mark.parametrize("text, expected", [
    ("карта 4111 1111 1111 1111", [("card", "4111 1111 1111 1111")]),
    ("card 5500-0000-0000-0004 exp 12/27", [("card", "5500-0000-0000-0004")]),
    ("оплата 5536913760004511", [("card", "5536913760004511")]),
    ("amex 3782 822463 10005", [("card", "3782 822463 10005")]),
    ("номер карты 4111 1111 1111 1111 12/27", [("card", "4111 1111 1111 1111")]),
])
def test_cards_that_pass_luhn(text, expected):
    assert kinds_and_texts(text) == expected


@pytest.mark.parametrize("text", [
    "номер заказа 5536 9137 6000 4514",   # a card's shape, fails Luhn
    "номер 1234 5678 9012 3456",
    "штрихкод 4607001234567",              # EAN-13 barcode
    "чек 4111111111111112",
])
def test_digit_runs_failing_luhn_are_not_cards(text):
    assert [kind for kind, _ in kinds_and_texts(text)] == []


@pytest.mark.parametrize("text, expected", [
    ("паспорт 45 06 123456", [("passport", "45 06 123456")]),
    ("паспорт 4506 123456", [("passport", "4506 123456")]),
    ("серия и номер 92 08 130831", [("passport", "92 08 130831")]),
    ("СНИЛС 123-456-789 01", [("snils", "123-456-789 01")]),
    ("СНИЛС 712-988-184 99", [("snils", "712-988-184 99")]),   # starts with 7 but is not a phone
    ("снилс: 12345678901", [("snils", "12345678901")]),
    ("ИНН 7707083893", [("inn", "7707083893")]),
    ("ИНН организации 7812014560", [("inn", "7812014560")]),
    ("мой инн: 500100732259", [("inn", "500100732259")]),
])
def test_government_ids(text, expected):
    assert kinds_and_texts(text) == expected


def test_unlabelled_ten_digits_are_not_an_inn():
    assert kinds_and_texts("заказ 4815162342") == []


@pytest.mark.parametrize("text, expected", [
    ("ул. Ленина, д. 5, кв. 12", "ул. Ленина, д. 5, кв. 12"),
    ("г. Москва, улица Тверская, дом 7", "г. Москва, улица Тверская, дом 7"),
    ("Доставьте на улица 8 Марта, дом 56", "улица 8 Марта, дом 56"),
    ("Ленинский пр-т, 12к2, кв 5", "Ленинский пр-т, 12к2, кв 5"),
    ("пр-т Мира, д. 101, кв. 7", "пр-т Мира, д. 101, кв. 7"),
    ("оставьте у двери, дом 5 кв 12", "дом 5 кв 12"),
    ("ул Гагарина д 14, подъезд 2, этаж 5", "ул Гагарина д 14, подъезд 2, этаж 5"),
    ("I live at 12 Baker Street, Apt 4B", "12 Baker Street, Apt 4B"),
    ("Ship it to 48 Queen Street, Apt 12", "48 Queen Street, Apt 12"),
])
def test_addresses(text, expected):
    assert kinds_and_texts(text) == [("address", expected)]


@pytest.mark.parametrize("text, expected", [
    ("Меня зовут Иван Петров", ["Иван Петров"]),
    ("подарок для Маши", ["Маши"]),
    ("Доставьте Ольге Николаевне", ["Ольге Николаевне"]),
    ("Вера Павловна позвонит", ["Вера Павловна"]),
    ("Получатель: Рената Ильина", ["Рената Ильина"]),          # first name unknown to the lexicon: NER + surname
    ("Курьер, отдайте пакет Бондарчуку", ["Бондарчуку"]),       # surname alone, by NER
    ("меня зовут иван", ["иван"]),                               # lower case after a cue
    ("Hi, I'm John Smith", ["John Smith"]),
    ("my name is anna", ["anna"]),
    ("Please call Mrs. Harris", ["Harris"]),
])
def test_names(text, expected):
    assert [fragment for kind, fragment in kinds_and_texts(text) if kind == "name"] == expected


# ------------------------------------------------------------------------------------------------ hard negatives

PRODUCT_TEXT = [
    "под 500 рублей", "1 кг", "2,5%", "Молоко Простоквашино 2,5% 930 мл", "Кроссовки Nike Air", "Сыр Ламбер",
    "Сыр Российский 200 г", "Мармелад жевательный Коровка из Кореновки 150 г", "Хлебный дом 300 г", "Дом 2",
    "Шоколад Бабаевский", "Колбаса Дымов 500 г", "Творог Савушкин продукт 5% 350 г", "Мультивитамины Компливит",
    "Роман Азбука в мягкой обложке", "Чай Майский", "Подгузники размер 3 (6-10 кг) 86 шт", "Плед флисовый 130х170",
    "Смартфон 8/256 ГБ", "Часы спортивные Garmin Forerunner 265", "Кофе Чёрная карта 250 г",
    "доставка 12.05.2024 в 18:30", "2025-03-08", "артикул 123456", "item 100234567", "заказ №4815162342",
    "итого 12 345 ₽", "2 x 0,5 л за 159,90 руб", "скидка 15% до 31.12", "Улитка с корицей",
    "healthy snacks for the office under 500 rubles", "Order #58213 arrives at 18:30", "Price: 1 299 RUB",
]


@pytest.mark.parametrize("text", PRODUCT_TEXT)
def test_product_text_is_not_pii(text):
    assert find_pii(text) == []


def _catalog_product_names() -> tuple[list[str], frozenset[str]]:
    for module in ("recllm.synthetic.vocabulary", "recllm.synthetic_vocabulary"):
        try:
            vocabulary = importlib.import_module(module)
            break
        except ImportError:
            continue
    else:
        pytest.skip("synthetic vocabulary module not found")
    names, brands = [], set()
    for leaf in vocabulary.LEAF_ASSORTMENTS:
        brands |= set(leaf.brands)
        for template in leaf.templates:
            for brand in template.brands or leaf.brands:
                names += [f"{template.product} {brand} {variant}" for variant in template.variants]
    return names, frozenset(brands)


def test_catalog_product_names_are_not_pii():
    names, brands = _catalog_product_names()
    flagged = [name for name in names if find_pii(name)]
    # without the brand list a few person-like brands («Альпина Паблишер») slip through; with it, none
    assert len(flagged) <= 0.005 * len(names), flagged
    config = PrivacyFilterConfig(allow_words=brands)
    assert [name for name in names if find_pii(name, config)] == []


def test_allow_words_stop_brand_names_that_look_like_names():
    text = "Конфеты Маша и Медведь"
    assert kinds_and_texts(text) == [("name", "Маша")]
    assert find_pii(text, PrivacyFilterConfig(allow_words=frozenset({"Маша и Медведь"}))) == []


# -------------------------------------------------------------------------------------------------- redaction

def test_redact_replaces_every_span_with_a_russian_placeholder():
    text = "Иван Петров, +7 916 123-45-67, ivan@mail.ru, ул. Ленина, д. 5, кв. 12, карта 4111 1111 1111 1111"
    result = redact(text)
    assert result.text == "[имя], [телефон], [email], [адрес], карта [номер карты]"
    assert [span.kind for span in result.spans] == ["name", "phone", "email", "address", "card"]


def test_redact_english_and_neutral_placeholders():
    text = "My name is John Smith, call +44 20 7946 0958"
    assert redact(text).text == "My name is [name], call [phone]"
    neutral = redact(text, PrivacyFilterConfig(placeholder_style="neutral"))
    assert neutral.text == "My name is [NAME], call [PHONE]"
    assert redact("паспорт 45 06 123456", PrivacyFilterConfig(placeholder_style="en")).text == "паспорт [passport]"


def test_kinds_subset_only_finds_those_kinds():
    text = "Иван, +7 916 123-45-67, ivan@mail.ru"
    assert [span.kind for span in find_pii(text, PrivacyFilterConfig(kinds=("email",)))] == ["email"]
    assert [span.kind for span in find_pii(text, PrivacyFilterConfig(use_ner=False))] == ["name", "phone", "email"]


def test_find_pii_is_deterministic():
    text = "Получатель Анна Сергеевна Смирнова, тел 8-903-111-22-33, ул. Садовая, 3"
    assert find_pii(text) == find_pii(text)
    assert redact(text) == redact(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 -+()АаБбИиВвнПпул.,дкмгКМ@ab")), max_size=60))
def test_spans_are_sorted_disjoint_and_inside_the_text(text):
    spans = find_pii(text)
    assert all(0 <= span.start < span.end <= len(text) and span.kind in PII_KINDS for span in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    redacted = redact(text)
    assert redacted.spans == tuple(spans)


# ------------------------------------------------------------------------------------------- sensitive domains

@pytest.mark.parametrize("text, expected", [
    ("есть что-то от давления?", {"health"}),
    ("нужны витамины для иммунитета", {"health"}),
    ("need something for a sore throat", {"health"}),
    ("Пластырь бактерицидный 20 шт", {"health"}),
    ("тест на беременность", {"intimate"}),
    ("купи пива", {"alcohol_tobacco"}),
    ("Пиво безалкогольное 0,45 л", set()),
    ("хочу виноград", set()),
    ("что приготовить на ужин, чтобы было полезно?", set()),
    ("healthy snacks for the office under 500 rubles", set()),
    ("рецепт борща", set()),
    ("Большой торт", set()),
])
def test_mentions_sensitive_domain(text, expected):
    assert mentions_sensitive_domain(text) == expected


# ------------------------------------------------------------------------------------------- labeled test split

def _rows(split: str) -> list[dict]:
    with (LABELED / "pii.jsonl").open(encoding="utf-8") as handle:
        return [row for row in map(json.loads, handle) if row["split"] == split]


def test_labeled_set_is_large_and_varied_enough():
    rows = _rows("train") + _rows("test")
    assert len(rows) >= 300
    assert {row["lang"] for row in rows} == {"ru", "en"}
    assert sum(not row["spans"] for row in rows) >= 100           # hard negatives
    test_kinds = {span["kind"] for row in _rows("test") for span in row["spans"]}
    assert test_kinds == set(PII_KINDS)


def test_recall_and_precision_on_the_test_split():
    from benchmarks.safety_filters import pii_metrics

    metrics = pii_metrics(_rows("test"))
    assert metrics["recall"] >= 0.99, metrics["errors"]
    assert metrics["precision"] >= 0.95, metrics["errors"]
    assert metrics["false_alarm_texts"] == 0, metrics["errors"]
    for kind, row in metrics["per_kind"].items():
        assert row["recall"] is not None and row["recall"] >= 0.95, (kind, row)


def test_piispan_is_a_plain_value():
    assert PiiSpan("phone", 0, 3) == PiiSpan("phone", 0, 3)
