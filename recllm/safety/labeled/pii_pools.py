"""Slot fillers, templates and hand-written hard negatives for ``pii.jsonl`` (see make_labeled_sets.py).

Every pool has a train half and a test half; a text in the test split only ever gets test fillers.
Slots ending in ``_neg`` look like personal data but are not (a non-Luhn digit run, a barcode, a date, a price…).
"""

from __future__ import annotations

import random

# (nominative, genitive, dative) — first names; the last few are outside the filter's first-name lexicon on purpose.
RU_FIRST = {
    "train": [("Иван", "Ивана", "Ивану"), ("Анна", "Анны", "Анне"), ("Сергей", "Сергея", "Сергею"),
              ("Ольга", "Ольги", "Ольге"), ("Дмитрий", "Дмитрия", "Дмитрию"), ("Мария", "Марии", "Марии"),
              ("Алексей", "Алексея", "Алексею"), ("Екатерина", "Екатерины", "Екатерине"),
              ("Маша", "Маши", "Маше"), ("Петя", "Пети", "Пете"), ("Захар", "Захара", "Захару"),
              ("Рената", "Ренаты", "Ренате")],
    "test": [("Никита", "Никиты", "Никите"), ("Татьяна", "Татьяны", "Татьяне"), ("Андрей", "Андрея", "Андрею"),
             ("Светлана", "Светланы", "Светлане"), ("Павел", "Павла", "Павлу"), ("Юлия", "Юлии", "Юлии"),
             ("Михаил", "Михаила", "Михаилу"), ("Наталья", "Натальи", "Наталье"), ("Даша", "Даши", "Даше"),
             ("Коля", "Коли", "Коле"), ("Эмиль", "Эмиля", "Эмилю"), ("Айгуль", "Айгуль", "Айгуль")],
}
# (nominative, genitive, dative) for a man and for a woman
RU_SURNAME = {
    "train": [(("Петров", "Петрова", "Петрову"), ("Петрова", "Петровой", "Петровой")),
              (("Смирнов", "Смирнова", "Смирнову"), ("Смирнова", "Смирновой", "Смирновой")),
              (("Кузнецов", "Кузнецова", "Кузнецову"), ("Кузнецова", "Кузнецовой", "Кузнецовой")),
              (("Ильин", "Ильина", "Ильину"), ("Ильина", "Ильиной", "Ильиной")),
              (("Шевченко", "Шевченко", "Шевченко"), ("Шевченко", "Шевченко", "Шевченко"))],
    "test": [(("Соколов", "Соколова", "Соколову"), ("Соколова", "Соколовой", "Соколовой")),
             (("Васильев", "Васильева", "Васильеву"), ("Васильева", "Васильевой", "Васильевой")),
             (("Фомин", "Фомина", "Фомину"), ("Фомина", "Фоминой", "Фоминой")),
             (("Карапетян", "Карапетян", "Карапетяну"), ("Карапетян", "Карапетян", "Карапетян")),
             (("Бондарчук", "Бондарчука", "Бондарчуку"), ("Бондарчук", "Бондарчук", "Бондарчук"))],
}
FEMALE = {"Анна", "Ольга", "Мария", "Екатерина", "Маша", "Рената", "Татьяна", "Светлана", "Юлия", "Наталья",
          "Даша", "Айгуль"}
RU_PATRONYMIC = {
    "train": [(("Сергеевич", "Сергеевича", "Сергеевичу"), ("Сергеевна", "Сергеевны", "Сергеевне")),
              (("Александрович", "Александровича", "Александровичу"),
               ("Александровна", "Александровны", "Александровне"))],
    "test": [(("Игоревич", "Игоревича", "Игоревичу"), ("Игоревна", "Игоревны", "Игоревне")),
             (("Николаевич", "Николаевича", "Николаевичу"), ("Николаевна", "Николаевны", "Николаевне"))],
}
EN_FIRST = {"train": ["John", "Emily", "Michael", "Sarah", "David", "Olivia", "James", "Laura"],
            "test": ["Robert", "Jessica", "Thomas", "Emma", "Daniel", "Rachel", "Peter", "Alice"]}
EN_SURNAME = {"train": ["Smith", "Brown", "Taylor", "Wilson", "Clark"],
              "test": ["Johnson", "Miller", "Davis", "Walker", "Harris"]}
RU_STREET = {
    "train": ["Ленина", "Тверская", "Пушкина", "Садовая", "Мира", "Гагарина", "Лесная", "8 Марта"],
    "test": ["Советская", "Профсоюзная", "Кирова", "Чехова", "Октябрьская", "Школьная", "Новая", "1-я Парковая"],
}
RU_AVENUE = {"train": ["Ленинский", "Кутузовский", "Невский"], "test": ["Мичуринский", "Вернадского", "Московский"]}
RU_CITY = {"train": ["Москва", "Казань", "Самара"], "test": ["Санкт-Петербург", "Екатеринбург", "Новосибирск"]}
EN_STREET = {"train": ["Baker", "Oxford", "Elm", "Maple", "High"], "test": ["Abbey", "Park", "Church", "Oak", "Kings"]}
EN_STREET_TYPE = {"train": ["Street", "Road", "Avenue", "Lane"], "test": ["St", "Rd", "Drive", "Ave"]}
EMAIL_DOMAIN = {"train": ["mail.ru", "yandex.ru", "gmail.com", "inbox.ru"],
                "test": ["bk.ru", "ya.ru", "outlook.com", "company.org"]}
LATIN_LOGIN = {"train": ["ivan", "anna.k", "serg_1985", "olga-p", "dmitry.ivanov"],
               "test": ["nikita", "t.sokolova", "pavel_77", "yulia-m", "m.fomin"]}

PRODUCTS = {
    "train": ["Молоко Простоквашино 2,5% 930 мл", "Кефир Домик в деревне 1% 900 мл", "Сыр Ламбер 50% 230 г",
              "Кроссовки Nike Air Zoom Pegasus", "Шоколад Бабаевский 100 г", "Конфеты Коровка из Кореновки 200 г",
              "Колбаса Дымов 500 г", "Творог Савушкин продукт 5% 350 г", "Хлеб Коломенский 300 г",
              "Мармелад Рот Фронт 150 г", "Чипсы Lay's сметана и лук 140 г", "Кофе Jacobs Monarch 95 г",
              "Гречка Мистраль 800 г", "Чай Майский 100 пакетиков", "Пельмени Сибирская коллекция 700 г"],
    "test": ["Молоко Valio безлактозное 1,5% 1 л", "Йогурт Агуша клубника 90 г", "Сыр Российский 200 г",
             "Кроссовки Adidas Ultraboost 22", "Шоколад Алёнка 90 г", "Конфеты Красный Октябрь 250 г",
             "Квас Очаковский 1,5 л", "Пряники Махеевъ 350 г", "Смартфон Samsung Galaxy A55 8/256 ГБ",
             "Пюре ФрутоНяня яблоко 90 г", "Лакомство для кошек Мнямс 60 г", "Кофе Жокей молотый 250 г",
             "Сосиски Черкизово молочные 330 г", "Майонез Слобода 67% 400 мл", "Наушники Sony WH-1000XM5"],
}
PRICES = {"train": ["до 500 рублей", "под 1 500 ₽", "за 99,90 руб", "не дороже 2000 р", "около 300 рублей"],
          "test": ["до 700 ₽", "дешевле 1 000 рублей", "за 149,99 руб", "в пределах 5000 р", "примерно 250 руб"]}
DATES = {"train": ["12.05.2025", "2025-03-08", "15 мая", "к 18:30", "с 10:00 до 12:00"],
         "test": ["01.09.2025", "2025-12-31", "31 декабря", "к 9:45", "с 19:00 до 21:00"]}


def _luhn_complete(prefix_and_body: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for position, char in enumerate(reversed(prefix_and_body)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return prefix_and_body + str((10 - total % 10) % 10)


def _luhn_ok(digits: str) -> bool:
    return _luhn_complete(digits[:-1]) == digits


class Pools:
    """Fillers for one split; ``value(slot)`` returns (text, kind or None)."""

    def __init__(self, rng: random.Random, split: str) -> None:
        self.rng, self.split = rng, split

    def pick(self, pools: dict[str, list]):
        return self.rng.choice(pools[self.split])

    def digits(self, count: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(count))

    def value(self, slot: str) -> tuple[str, str | None]:
        return getattr(self, "slot_" + slot)()

    # --- phones
    def slot_phone(self):
        operator, rest = "9" + self.digits(2), self.digits(7)
        a, b, c = rest[:3], rest[3:5], rest[5:]
        formats = {"train": [f"+7 ({operator}) {a}-{b}-{c}", f"8-{operator}-{a}-{b}-{c}", f"8{operator}{rest}",
                             f"+7 {operator} {a} {b} {c}", f"8 (495) {a}-{b}-{c}"],
                   "test": [f"+7{operator}{rest}", f"8 {operator} {a}-{b}-{c}", f"+7-{operator}-{a}-{b}{c}",
                            f"+7({operator}){a}{b}{c}", f"{operator} {a}-{b}-{c}"]}
        return self.pick(formats), "phone"

    def slot_phone_intl(self):
        formats = {"train": [f"+44 20 {self.digits(4)} {self.digits(4)}", f"+1 (415) 555-{self.digits(4)}",
                             f"+49 30 {self.digits(7)}"],
                   "test": [f"+375 29 {self.digits(3)}-{self.digits(2)}-{self.digits(2)}",
                            f"+998 90 {self.digits(3)} {self.digits(2)} {self.digits(2)}",
                            f"+1 212 555 {self.digits(4)}"]}
        return self.pick(formats), "phone"

    # --- email
    def slot_email(self):
        login = self.pick(LATIN_LOGIN) + self.rng.choice(["", "", str(self.rng.randint(1, 99))])
        return f"{login}@{self.pick(EMAIL_DOMAIN)}", "email"

    # --- cards
    def _card_digits(self) -> str:
        prefix = self.rng.choice(["2200", "2202", "4276", "4111", "5469", "5536"])
        return _luhn_complete(prefix + self.digits(11))

    def slot_card(self):
        digits = self._card_digits()
        groups = " ".join(digits[i:i + 4] for i in range(0, 16, 4))
        formats = {"train": [groups, digits, groups.replace(" ", "-")],
                   "test": [groups, digits, groups.replace(" ", "-")]}
        return self.pick(formats), "card"

    def slot_card_neg(self):
        """16 digits grouped like a card, failing Luhn: an order number, not a card."""
        digits = self._card_digits()
        digits = digits[:-1] + str((int(digits[-1]) + self.rng.randint(1, 9)) % 10)
        assert not _luhn_ok(digits)
        return " ".join(digits[i:i + 4] for i in range(0, 16, 4)), None

    def slot_barcode_neg(self):
        return "460" + self.digits(10), None

    # --- government ids
    def slot_passport(self):
        series, number = self.digits(4), self.digits(6)
        return self.rng.choice([f"{series[:2]} {series[2:]} {number}", f"{series} {number}", f"{series}{number}"]), \
            "passport"

    def slot_passport_spaced(self):
        series, number = self.digits(4), self.digits(6)
        return f"{series[:2]} {series[2:]} {number}", "passport"

    def slot_snils(self):
        d = self.digits(11)
        return self.rng.choice([f"{d[:3]}-{d[3:6]}-{d[6:9]} {d[9:]}", f"{d[:3]}-{d[3:6]}-{d[6:9]}-{d[9:]}"]), "snils"

    def slot_inn(self):
        return self.digits(self.rng.choice([10, 12])), "inn"

    # --- addresses
    def slot_address_ru(self):
        street, house, flat = self.pick(RU_STREET), self.rng.randint(1, 140), self.rng.randint(1, 300)
        kind = self.rng.choice(["ул.", "улица", "ул"])
        formats = {"train": [f"{kind} {street}, д. {house}, кв. {flat}", f"{kind} {street} {house}",
                             f"г. {self.pick(RU_CITY)}, {kind} {street}, дом {house}",
                             f"{kind} {street}, д.{house} кв.{flat}"],
                   "test": [f"{kind} {street}, {house}, кв {flat}", f"{kind} {street}, дом {house}, квартира {flat}",
                            f"г. {self.pick(RU_CITY)}, {kind} {street} {house}к2",
                            f"{kind} {street} д {house}, подъезд 2, этаж 5"]}
        return self.pick(formats), "address"

    def slot_address_avenue(self):
        name, house = self.pick(RU_AVENUE), self.rng.randint(1, 140)
        return self.rng.choice([f"{name} пр-т, {house}", f"{name} проспект, д. {house}", f"пр-т {name}, {house}"]), \
            "address"

    def slot_address_house(self):
        house, flat = self.rng.randint(1, 140), self.rng.randint(1, 300)
        return self.rng.choice([f"дом {house}, кв. {flat}", f"д. {house} кв {flat}",
                                f"д.{house}, корп. 2, кв. {flat}"]), \
            "address"

    def slot_address_en(self):
        number, street, kind = self.rng.randint(1, 400), self.pick(EN_STREET), self.pick(EN_STREET_TYPE)
        flat = self.rng.randint(1, 40)
        return self.rng.choice([f"{number} {street} {kind}", f"{number} {street} {kind}, Apt {flat}",
                                f"Flat {flat}, {number} {street} {kind}"]), "address"

    # --- names
    def _ru_person(self):
        first = self.pick(RU_FIRST)
        male_surname, female_surname = self.pick(RU_SURNAME)
        male_patr, female_patr = self.pick(RU_PATRONYMIC)
        female = first[0] in FEMALE
        return first, (female_surname if female else male_surname), (female_patr if female else male_patr)

    def slot_name_nom(self):
        return self.pick(RU_FIRST)[0], "name"

    def slot_name_gen(self):
        return self.pick(RU_FIRST)[1], "name"

    def slot_name_dat(self):
        return self.pick(RU_FIRST)[2], "name"

    def slot_full_nom(self):
        first, surname, _ = self._ru_person()
        return self.rng.choice([f"{first[0]} {surname[0]}", f"{surname[0]} {first[0]}"]), "name"

    def slot_full_dat(self):
        first, surname, _ = self._ru_person()
        return f"{first[2]} {surname[2]}", "name"

    def slot_fio_nom(self):
        first, surname, patronymic = self._ru_person()
        return self.rng.choice([f"{surname[0]} {first[0]} {patronymic[0]}", f"{first[0]} {patronymic[0]}"]), "name"

    def slot_fio_dat(self):
        first, _, patronymic = self._ru_person()
        return f"{first[2]} {patronymic[2]}", "name"

    def slot_surname_dat(self):
        return self._ru_person()[1][2], "name"

    def slot_en_name(self):
        return self.pick(EN_FIRST), "name"

    def slot_en_full(self):
        return f"{self.pick(EN_FIRST)} {self.pick(EN_SURNAME)}", "name"

    # --- product text (never PII)
    def slot_product(self):
        return self.pick(PRODUCTS), None

    def slot_price(self):
        return self.pick(PRICES), None

    def slot_date(self):
        return self.pick(DATES), None

    def slot_sku(self):
        return str(self.rng.randint(1000, 99_999_999)), None

    def slot_qty(self):
        return self.rng.choice(["2 шт", "6 шт по 80 г", "1 кг", "2,5 кг", "3 упаковки", "4 x 0,5 л"]), None


# (source, template, copies). Templates are split train/test as wholes (see make_labeled_sets.stable_split).
TEMPLATES: tuple[tuple[str, str, int], ...] = (
    ("phone", "Мой телефон {phone}, звоните после 18", 6),
    ("phone", "позвоните по номеру {phone} когда курьер будет у подъезда", 6),
    ("phone", "тел. {phone}", 5),
    ("phone", "Курьер, наберите {phone} — домофон не работает", 6),
    ("phone", "если что мой номер {phone} или {phone}", 4),
    ("phone", "{product} — закажите и напишите в вотсап {phone}", 4),
    ("phone", "my phone is {phone_intl}, call me when you arrive", 5),
    ("phone", "Call {phone_intl} for delivery questions", 4),
    ("phone", "номер для связи:{phone}", 5),
    ("phone", "please text me at {phone}", 4),
    ("email", "Пришлите чек на {email}", 6),
    ("email", "моя почта {email}, отправьте туда список покупок", 6),
    ("email", "send the receipt to {email} please", 5),
    ("email", "email: {email}; доставка {date}", 5),
    ("email", "пишите на {email} или звоните {phone}", 5),
    ("email", "Contact me: {email}", 4),
    ("card", "Оплатите картой {card}", 6),
    ("card", "номер карты {card} срок 12/27", 6),
    ("card", "my card number is {card}", 5),
    ("card", "спишите с карты {card}, а бонусы на {email}", 4),
    ("card", "Card: {card}, order {product}", 5),
    ("card", "вот карта: {card} и ещё {product} {price}", 4),
    ("passport", "паспорт {passport}", 6),
    ("passport", "Мои паспортные данные: {passport_spaced}, выдан ОВД", 6),
    ("passport", "серия и номер {passport_spaced}", 5),
    ("passport", "passport {passport}, please verify", 4),
    ("passport", "Паспорт РФ {passport_spaced}", 5),
    ("passport", "вот мой паспорт {passport}, оформите доставку алкоголя", 4),
    ("passport", "документ: {passport_spaced}", 4),
    ("snils", "СНИЛС {snils}", 6),
    ("snils", "мой снилс: {snils}", 5),
    ("snils", "для налогового вычета: {snils}", 5),
    ("inn", "ИНН {inn}", 6),
    ("inn", "инн: {inn}, нужен счёт для юрлица", 5),
    ("inn", "My company INN {inn}", 4),
    ("address", "Доставьте на {address_ru}", 8),
    ("address", "адрес: {address_ru}, позвонить за час", 6),
    ("address", "привезите {product} на {address_ru}", 6),
    ("address", "Живу на {address_avenue}", 5),
    ("address", "можно к {address_avenue}? {product}", 4),
    ("address", "оставьте у двери, {address_house}", 5),
    ("address", "я на {address_ru} {date}", 4),
    ("address", "Deliver to {address_en}", 6),
    ("address", "I live at {address_en}, leave it at the door", 5),
    ("address", "address: {address_en}; {date}", 4),
    ("name", "Меня зовут {name_nom}", 6),
    ("name", "Получатель: {full_nom}", 6),
    ("name", "Передайте заказ {full_dat}, она встретит", 5),
    ("name", "подарок для {name_gen} на день рождения {price}", 6),
    ("name", "Это для {name_gen}, ей 7 лет", 5),
    ("name", "Закажи как в прошлый раз, {name_nom} просил {product}", 5),
    ("name", "Позвоните {fio_dat} по поводу заказа", 5),
    ("name", "Доставка на имя {fio_nom}", 5),
    ("name", "Курьер, отдайте пакет {surname_dat}", 4),
    ("name", "{name_nom} любит {product}", 5),
    ("name", "My name is {en_full}", 5),
    ("name", "Please deliver to {en_full}, {address_en}", 5),
    ("name", "gift for {en_name}, she likes chocolate", 5),
    ("name", "Hi, I'm {en_name} and I need snacks {price}", 4),
    ("mixed", "{full_nom}, {phone}, {address_ru}", 6),
    ("mixed", "Получатель {full_nom}, тел {phone}, почта {email}", 5),
    ("mixed", "{en_full}, {phone_intl}, {email}", 4),
    ("mixed", "оплата {card}, доставка на {address_ru}, звонить {phone}", 5),
    ("product", "{product} {qty} {price}", 10),
    ("product", "хочу {product}, доставка {date}", 8),
    ("product", "артикул {sku}: {product}", 8),
    ("product", "заказ №{sku} от {date}: {product}", 6),
    ("product", "номер заказа {card_neg}, там был {product}", 6),
    ("product", "штрихкод {barcode_neg} — это {product}?", 5),
    ("product", "{product} или {product} {price}?", 8),
    ("product", "in stock: {product}, {qty}", 5),
)

HARD_NEGATIVES: tuple[str, ...] = (
    "под 500 рублей", "1 кг", "2,5%", "Молоко Простоквашино 2,5% 930 мл", "Кроссовки Nike Air", "Сыр Ламбер",
    "что приготовить на ужин, чтобы было полезно?", "подешевле", "не то", "хочу что-нибудь вкусное",
    "нужен подарок сыну на 7 лет", "healthy snacks for the office under 500 rubles",
    "закажи как в прошлый раз, но без лактозы", "есть что-то от давления?", "без сахара", "cheaper",
    "something else", "Хлебный дом 300 г", "Домик в деревне 3,2% 1,4 л", "Пекарня у дома круассаны 4 шт",
    "Сонный дом подушка 50х70", "Подгузники Pampers размер 4 (9-14 кг) 76 шт", "Плед флисовый 150х200",
    "Смартфон Xiaomi 12/512 ГБ", "Часы спортивные Garmin Forerunner 265", "Кофе Чёрная карта 250 г",
    "Чипсы Московский картофель 140 г", "Вода Святой источник 1,5 л", "Шоколад Ritter Sport 100 г",
    "Корм Royal Canin 2 кг", "Набор кастрюль Tefal 6 предметов", "LEGO Technic 42151",
    "Книга рецептов «Полезные ужины»", "Мультиварка Redmond 5 л 860 Вт", "Зарядное устройство 65 Вт",
    "доставка 12.05.2025 с 10:00 до 12:00", "в 2024 году брали 3 раза", "скидка 15% до 31.12",
    "2 x 0,5 л за 159,90 руб", "итого 12 345 ₽", "заказ 4815162342", "чек на 3 459,00 руб", "артикул 100234567",
    "Кроссовки Under Armour HOVR", "Гантели 2х5 кг", "Пластырь бактерицидный 20 шт",
    "Витамин D3 120 капсул", "Омега-3 60 капсул", "Мармелад Победа вкуса 150 г", "Квас Очаковский",
    "Конфеты Красный Октябрь «Мишка косолапый»", "Шоколад Бабаевский горький", "Колбаса Папа может 400 г",
    "Пряники Махеевъ", "Вафли Коровка из Кореновки", "Сыр Российский 45%", "Майонез Слобода",
    "Кефир Савушкин продукт", "Сок Добрый 1 л", "Сок Rich апельсин", "Чай Greenfield 100 пак.",
    "Масло Олейна 1 л", "Чай Принцесса Нури", "Геймпад Sony DualSense", "Ноутбук Apple MacBook Air 13",
    "Наушники JBL Tune 520BT", "Дрель Bosch 750 Вт", "Гель для стирки Ariel 3 л", "Fairy 1 л",
    "Набор юного химика Эврики", "Конструктор LEGO DUPLO «Ферма»", "Игрушка Fisher-Price",
    "Рис басмати 1 кг", "Тыквенный суп-пюре 300 г", "Сковорода 28 см", "Комплект постельного белья евро",
    "Pizza Pepperoni 400 g", "Whole milk 1 l", "Greek yogurt 2% 500 g", "Running shoes size 42",
    "Order #58213 arrives at 18:30", "Price: 1 299 RUB", "Baker's yeast 11 g", "Oxford dictionary",
    "Park Avenue perfume 100 ml", "Kings Cross souvenir mug", "Victoria sponge cake", "Jack Daniel's glass",
    "Apple iPhone 15 128 GB", "Samsung Galaxy Watch 6", "Peter Rabbit book", "Main Street Pizza Co.",
    "Мишка Тедди плюшевый 30 см", "Торт Прага 500 г", "Салат Цезарь с курицей", "Пельмени Цезарь",
    "Бефстроганов с пюре", "Печенье Юбилейное", "Печенье Любятово",
    "Вино безалкогольное 0,75 л", "Сосиски «Молочные» ГОСТ", "Пюре Бабушкино лукошко", "Торт Наполеон",
    "Оливье 300 г", "Котлеты по-киевски", "Карбонара 350 г", "Мандарины Абхазия 1 кг",
    "Батончик протеиновый BombBar 60 г", "Молоко Вкуснотеево 3,2%", "Улитка с корицей", "Хот-дог Мираторг",
    "Креветки Русское море 500 г", "Ряженка 4% 450 г", "Кофе Lavazza 1 кг", "Капучино с собой",
    "доставьте побыстрее", "оставьте у двери", "позвоните перед приездом", "код домофона не нужен",
    "привезите завтра утром", "положите в пакет отдельно", "сдачи не надо", "на 4 человек",
    "Ленинградский рассольник", "Московская колбаса", "Тульский пряник", "Кавказский сыр", "Адыгейский сыр 300 г",
)

# Fresh hold-out, written after the filter was last changed and never used to change it; always in the test split.
# «[[kind:text]]» marks a gold span.
FRESH_HOLDOUT: tuple[str, ...] = (
    "Здравствуйте, я [[name:Григорий Олегович]], мой номер [[phone:+7 (921) 404-18-77]]",
    "доставка: [[address:пр-т Мира, д. 101, кв. 7]], домофон 7К",
    "Напишите мне на [[email:grisha.fedorov@rambler.ru]] когда будет скидка на кофе",
    "Оплачу картой [[card:5536 9137 6000 4511]] при получении",
    "номер заказа 5536 9137 6000 4514, сыр не привезли",
    "Карта 2200 7001 2345 6789 не проходит?",
    "курьер звони [[phone:8 999 765 43 21]] я у второго подъезда",
    "Мой СНИЛС [[snils:156-734-908 22]] для льготы",
    "ИНН организации [[inn:7812014560]], выставите счёт",
    "паспорт [[passport:40 11 563218]] для получения посылки",
    "Передайте пакет [[name:Валентине Петровне]], она на ресепшене",
    "Это для моей дочки [[name:Алисы]], ей нравятся единороги",
    "Please call [[name:Mrs. Harris]] at [[phone:+44 7700 900123]]",
    "Ship it to [[address:48 Queen Street, Apt 12]]",
    "My email is [[email:j.doe+shop@example.co.uk]]",
    "получатель [[name:Тимур Ахмедов]], [[address:ул. Гоголя, 15]]",
    "[[name:Ксюша]] просила Творог Простоквашино 5% 350 г",
    "Йогурт Epica 130 г, 6 шт по 89,90 руб",
    "Молоко Парное 3,4-4,5% 1 л, срок до 10.06.2025",
    "Торт Медовик 750 г и свечи «9»",
    "Кроссовки Puma Velocity Nitro 3, размер 44,5",
    "Ноутбук ASUS Vivobook 15 16/512 ГБ за 54 990 ₽",
    "Зубная паста Splat 100 мл, 3 шт",
    "промокод SUMMER2025 на 15%",
    "номер отслеживания RU123456789CN",
    "позвоните в 9:30, код 4521#",
    "Колбаса Останкино Докторская 400 г",
    "Печенье Юбилейное и Сок Фруктовый сад 1,93 л",
    "Шоколад Бабаевский Элитный 75%",
    "Вода Архыз 5 л, 2 бутылки",
)
