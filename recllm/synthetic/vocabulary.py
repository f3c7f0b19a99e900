"""Word lists for the synthetic ecosystem: the category tree, brands and product templates per leaf category.

Pure data, no logic. ``synthetic.assortment`` turns these into three service catalogs; ``synthetic.intents`` relies
on the tags set here (e.g. an item is a healthy-dinner candidate because its leaf carries ``healthy`` + ``dinner``).
Product names follow the Russian retail pattern «<product> <brand> <variant>» («Молоко Простоквашино 2,5% 930 мл»).
Brands are real-sounding trade names only: no personal names anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from recllm.catalog.product_catalog import TOY_AGE_BANDS as CATALOG_TOY_AGE_BANDS

# (category_id, name_ru, name_en, sensitive). name_ru is plural/indeclinable so it reads as an accusative object:
# «вы каждую неделю берёте овощи».
CATEGORY_SPECS: tuple[tuple[str, str, str, bool], ...] = (
    ("grocery", "продукты", "groceries", False),
    ("grocery/vegetables", "овощи", "vegetables", False),
    ("grocery/fruit", "фрукты", "fruit", False),
    ("grocery/dairy", "молочные продукты", "dairy products", False),
    ("grocery/lactose_free", "безлактозные молочные продукты", "lactose-free dairy", False),
    ("grocery/meat", "мясные продукты", "meat and poultry", False),
    ("grocery/fish", "рыбные продукты", "fish and seafood", False),
    ("grocery/grains", "крупы и макароны", "grains and pasta", False),
    ("grocery/bakery", "хлебобулочные изделия", "bread and bakery", False),
    ("grocery/breakfast", "каши и мюсли", "cereals and granola", False),
    ("grocery/sweets", "сладости", "sweets", False),
    ("grocery/salty_snacks", "солёные снеки", "salty snacks", False),
    ("grocery/healthy_snacks", "полезные перекусы", "healthy snacks", False),
    ("grocery/drinks", "напитки", "drinks", False),
    ("grocery/coffee", "кофе", "coffee", False),
    ("grocery/ready_food", "готовые блюда", "ready meals", False),
    ("grocery/baby_food", "детское питание", "baby food", False),
    ("household", "хозяйственные товары", "household goods", False),
    ("household/cleaning", "средства для уборки", "cleaning supplies", False),
    ("household/paper", "бумажные товары", "paper goods", False),
    ("pet", "товары для животных", "pet supplies", False),
    ("pet/cat_food", "корма для кошек", "cat food", False),
    ("pet/dog_food", "корма для собак", "dog food", False),
    ("pet/accessories", "аксессуары для питомцев", "pet accessories", False),
    ("pharmacy", "аптечные товары", "pharmacy goods", True),
    ("pharmacy/vitamins", "витамины и БАДы", "vitamins and supplements", True),
    ("pharmacy/cold_remedies", "средства от простуды", "cold remedies", True),
    ("pharmacy/first_aid", "средства первой помощи", "first aid", True),
    ("electronics", "гаджеты", "electronics", False),
    ("electronics/headphones", "наушники", "headphones", False),
    ("electronics/smartphones", "смартфоны", "smartphones", False),
    ("electronics/gaming", "игровые аксессуары", "gaming gear", False),
    ("electronics/kitchen_appliances", "кухонные приборы", "kitchen appliances", False),
    ("home", "товары для дома", "home goods", False),
    ("home/kitchenware", "предметы для кухни", "kitchenware", False),
    ("home/textiles", "домашний текстиль", "home textiles", False),
    ("kids", "детские товары", "kids' goods", False),
    ("kids/toys", "игрушки", "toys", False),
    ("kids/toys/toddler", "игрушки для малышей", "toys for toddlers (0-2)", False),
    ("kids/toys/preschool", "игрушки для дошкольников", "toys for preschoolers (3-6)", False),
    ("kids/toys/school", "игрушки для школьников", "toys for schoolchildren (7-12)", False),
    ("kids/diapers", "подгузники", "diapers", False),
    ("kids/books", "детские книги", "children's books", False),
    ("sport", "спортивные товары", "sports goods", False),
    ("sport/running_shoes", "беговые кроссовки", "running shoes", False),
    ("sport/running_apparel", "вещи для бега", "running apparel", False),
    ("sport/fitness", "товары для фитнеса", "fitness equipment", False),
    ("sport/nutrition", "спортивное питание", "sports nutrition", False),
    ("beauty", "косметические средства", "beauty products", False),
    ("beauty/skincare", "средства по уходу за кожей", "skincare", False),
    ("beauty/haircare", "средства для волос", "haircare", False),
    ("books", "книги", "books", False),
    ("books/fiction", "художественные книги", "fiction books", False),
    ("books/cookbooks", "кулинарные книги", "cookbooks", False),
)

# Toy leaves by the child's age: the catalog's (``product_catalog.TOY_AGE_BANDS``).
TOY_AGE_BANDS = CATALOG_TOY_AGE_BANDS


@dataclass(frozen=True)
class ProductTemplate:
    """One product line: every brand of the leaf may sell it in every variant (variants go from small to large)."""

    product: str
    variants: tuple[str, ...]
    price_range: tuple[float, float]
    tags: frozenset[str] = frozenset()
    brands: tuple[str, ...] = ()   # when set, only these brands of the leaf make this product


@dataclass(frozen=True)
class LeafAssortment:
    """What a leaf category sells: tags every item gets, the brands, the product lines."""

    category_id: str
    tags: frozenset[str]
    brands: tuple[str, ...]
    templates: tuple[ProductTemplate, ...]


def _split(names: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in names.split("|")) if names else ()


def _t(product: str, variants: str, low: float, high: float, tags: str = "", brands: str = "") -> ProductTemplate:
    return ProductTemplate(product, _split(variants), (low, high), frozenset(tags.split()), _split(brands))


def _leaf(category_id: str, tags: str, brands: str, *templates: ProductTemplate) -> LeafAssortment:
    return LeafAssortment(category_id, frozenset(tags.split()), _split(brands), templates)


_CONFECTIONERS = "Красный Октябрь|Рот Фронт|Коровка из Кореновки|Победа вкуса"
_APPAREL = "Demix|Kalenji|Nike|Under Armour"

LEAF_ASSORTMENTS: tuple[LeafAssortment, ...] = (
    _leaf("grocery/vegetables", "vegetables healthy dinner vegan", "Выращено у нас|Зелёная линия|Эко-ферма|Свежий урожай",
          _t("Томаты черри", "250 г|500 г", 120, 220), _t("Огурцы среднеплодные", "450 г|900 г", 90, 160),
          _t("Картофель мытый", "1 кг|2,5 кг", 60, 110), _t("Морковь мытая", "1 кг|2 кг", 50, 90),
          _t("Брокколи", "400 г|800 г", 140, 230), _t("Перец сладкий красный", "300 г|600 г", 130, 240),
          _t("Кабачки", "500 г|1 кг", 70, 130), _t("Шпинат свежий", "100 г|200 г", 110, 190),
          _t("Салат айсберг", "1 шт|2 шт", 90, 150), _t("Лук репчатый", "1 кг|3 кг", 40, 80)),
    _leaf("grocery/fruit", "fruit healthy vegan", "Выращено у нас|Зелёная линия|Сады Придонья|Свежий урожай",
          _t("Яблоки Гала", "1 кг|2 кг", 110, 190, "snack"), _t("Бананы", "1 кг|2 кг", 90, 150, "breakfast snack"),
          _t("Груши Конференция", "1 кг|2 кг", 160, 260), _t("Мандарины", "1 кг|2 кг", 130, 230, "snack"),
          _t("Авокадо Хасс", "2 шт|4 шт", 160, 280, "breakfast"), _t("Голубика", "125 г|250 г", 190, 340, "breakfast"),
          _t("Апельсины", "1 кг|2 кг", 120, 200)),
    _leaf("grocery/dairy", "dairy breakfast", "Простоквашино|Домик в деревне|Село Зелёное|Экомилк|Valio|Parmalat",
          _t("Молоко", "2,5% 930 мл|3,2% 1,4 л", 80, 120, "coffee"), _t("Кефир", "1% 900 мл|2,5% 1,5 л", 80, 120),
          _t("Йогурт питьевой", "клубника 270 г|натуральный 900 г", 60, 110, "kids"),
          _t("Творог", "5% 350 г|9% 600 г", 110, 190, "protein"), _t("Сыр Российский", "200 г|400 г", 190, 320),
          _t("Сметана", "15% 300 г|20% 540 г", 80, 140), _t("Ряженка", "4% 450 г|4% 950 г", 70, 120)),
    _leaf("grocery/lactose_free", "dairy lactose_free healthy breakfast", "Valio|Простоквашино|Parmalat|Экомилк",
          _t("Молоко безлактозное", "1,5% 1 л|3,2% 1,5 л", 110, 160, "coffee"),
          _t("Кефир безлактозный", "1% 900 мл|2,5% 1,5 л", 100, 150),
          _t("Йогурт безлактозный", "клубника 270 г|натуральный 900 г", 80, 140),
          _t("Творог безлактозный", "5% 300 г|5% 600 г", 150, 240, "protein"),
          _t("Сыр безлактозный", "200 г|400 г", 250, 420), _t("Сметана безлактозная", "15% 300 г|20% 500 г", 110, 170)),
    _leaf("grocery/meat", "protein dinner", "Петелинка|Черкизово|Мираторг|Индилайт",
          _t("Филе куриной грудки", "500 г|1 кг", 280, 420, "healthy"), _t("Филе индейки", "500 г|1 кг", 350, 520, "healthy"),
          _t("Фарш говяжий", "400 г|800 г", 290, 450), _t("Котлеты домашние", "360 г|720 г", 230, 360),
          _t("Сосиски молочные", "330 г|660 г", 190, 300, "kids")),
    _leaf("grocery/fish", "protein dinner healthy", "Русское море|Меридиан|Fish House|Балтийский берег",
          _t("Филе лосося", "250 г|500 г", 550, 900), _t("Филе трески", "400 г|800 г", 390, 620),
          _t("Креветки очищенные", "250 г|500 г", 450, 780), _t("Филе минтая", "400 г|800 г", 240, 380)),
    _leaf("grocery/grains", "dinner", "Мистраль|Увелка|Barilla|Макфа|Националь",
          _t("Гречка ядрица", "800 г|2 кг", 90, 160, "healthy vegan"), _t("Булгур", "500 г|1 кг", 110, 190, "healthy vegan"),
          _t("Рис басмати", "500 г|1 кг", 150, 260, "vegan"), _t("Спагетти", "450 г|1 кг", 80, 150, "vegan"),
          _t("Киноа белая", "350 г|700 г", 220, 380, "healthy vegan protein")),
    _leaf("grocery/bakery", "breakfast", "Хлебный дом|Коломенский|Fazer|Пекарня у дома",
          _t("Хлеб цельнозерновой", "300 г|600 г", 60, 110, "healthy"), _t("Батон нарезной", "400 г|800 г", 45, 80),
          _t("Круассаны", "4 шт|8 шт", 120, 220, "sweet"), _t("Лаваш армянский", "200 г|400 г", 50, 90, "dinner")),
    _leaf("grocery/breakfast", "breakfast", "Fitness|Bionova|Nordic|Овсяная поляна",
          _t("Овсяные хлопья", "500 г|1 кг", 80, 150, "healthy vegan"), _t("Гранола с орехами", "300 г|600 г", 190, 340, "healthy"),
          _t("Мюсли фруктовые", "375 г|750 г", 170, 290, "healthy"), _t("Хлопья кукурузные", "330 г|660 г", 140, 240, "sweet kids")),
    _leaf("grocery/sweets", "sweet snack", "Красный Октябрь|Рот Фронт|Коровка из Кореновки|Ritter Sport|Milka|Победа вкуса",
          _t("Шоколад молочный", "90 г|200 г", 90, 190, "gift"), _t("Конфеты шоколадные", "200 г|450 г", 220, 480, "gift party"),
          _t("Мармелад жевательный", "150 г|300 г", 80, 160, "kids party", _CONFECTIONERS),
          _t("Вафли", "200 г|400 г", 70, 140, brands=_CONFECTIONERS),
          _t("Зефир ванильный", "250 г|500 г", 110, 200, brands=_CONFECTIONERS), _t("Шоколад горький без сахара", "90 г|180 г", 130, 240, "sugar_free healthy")),
    _leaf("grocery/salty_snacks", "salty snack party", "Lay's|Московский картофель|Хрусteam|Pringles|Kirieshki",
          _t("Чипсы картофельные", "сметана и лук 140 г|паприка 240 г", 110, 230), _t("Сухарики ржаные", "60 г|120 г", 40, 90),
          _t("Попкорн солёный", "100 г|200 г", 70, 140), _t("Крекеры с сыром", "180 г|360 г", 80, 160)),
    _leaf("grocery/healthy_snacks", "healthy snack", "Bite|Fitness Bar|Snaq Fabriq|Ореховый король",
          _t("Батончик протеиновый", "50 г|3 шт по 50 г", 90, 250, "protein sport sugar_free"),
          _t("Батончик фруктово-ореховый", "30 г|5 шт по 30 г", 60, 280, "vegan"),
          _t("Миндаль жареный", "100 г|250 г", 180, 420, "protein vegan"),
          _t("Хлебцы цельнозерновые", "100 г|200 г", 70, 140, "vegan breakfast"),
          _t("Чипсы яблочные", "30 г|80 г", 80, 180, "vegan sugar_free fruit")),
    _leaf("grocery/drinks", "drink", "Добрый|Святой источник|Rich|Чудо|Фрутмотив",
          _t("Вода минеральная", "0,5 л|1,5 л", 40, 90, "healthy alcohol_free"),
          _t("Сок апельсиновый", "1 л|2 л", 120, 230, "breakfast fruit"), _t("Лимонад", "0,5 л|1,5 л", 70, 150, "sweet party alcohol_free"),
          _t("Морс клюквенный", "1 л|2 л", 110, 200, "alcohol_free"), _t("Пиво безалкогольное", "0,45 л|4 шт по 0,45 л", 90, 360, "alcohol_free party"),
          _t("Кола без сахара", "0,5 л|1,5 л", 80, 160, "sugar_free party alcohol_free")),
    _leaf("grocery/coffee", "coffee drink breakfast", "Jacobs|Lavazza|Жокей|Чёрная карта|Coffee Like",
          _t("Кофе в зёрнах", "250 г|1 кг", 390, 1600), _t("Кофе молотый", "250 г|500 г", 320, 700),
          _t("Кофе растворимый", "95 г|190 г", 280, 560), _t("Капсулы кофейные", "10 шт|30 шт", 350, 950),
          _t("Кофе холодный латте", "250 мл|4 шт по 250 мл", 120, 420, "dairy sweet")),
    _leaf("grocery/ready_food", "dinner", "Кухня на районе|Шеф Маркет|Готовим дома|Обед за 15 минут",
          _t("Салат цезарь с курицей", "200 г|350 г", 220, 380, "protein"), _t("Боул с киноа и овощами", "300 г|450 г", 290, 430, "healthy vegetables vegan"),
          _t("Суп-пюре тыквенный", "300 г|500 г", 190, 310, "healthy vegetables"), _t("Паста болоньезе", "300 г|450 г", 250, 380),
          _t("Сырники", "250 г|500 г", 180, 320, "breakfast sweet"), _t("Пицца пепперони", "400 г|800 г", 350, 690, "party")),
    _leaf("grocery/baby_food", "baby kids", "ФрутоНяня|Агуша|Gerber|Бабушкино лукошко|Малышам",
          _t("Пюре овощное детское", "80 г|6 шт по 80 г", 45, 300, "vegetables"), _t("Пюре фруктовое детское", "90 г|6 шт по 90 г", 45, 320, "fruit"),
          _t("Каша молочная детская", "200 г|400 г", 150, 320, "breakfast"), _t("Сок детский яблочный", "200 мл|6 шт по 200 мл", 35, 230, "drink")),
    _leaf("household/cleaning", "household", "Fairy|Synergetic|Domestos|Ariel|Мистер Пропер",
          _t("Средство для мытья посуды", "500 мл|1 л", 150, 290), _t("Гель для стирки", "1 л|3 л", 390, 990),
          _t("Средство для пола", "750 мл|1,5 л", 190, 350), _t("Таблетки для посудомоечной машины", "30 шт|90 шт", 490, 1490)),
    _leaf("household/paper", "household", "Zewa|Papia|Kleenex|Мягкий знак",
          _t("Туалетная бумага", "4 рулона|12 рулонов", 150, 520), _t("Бумажные полотенца", "2 рулона|4 рулона", 120, 290),
          _t("Салфетки бумажные", "100 шт|300 шт", 60, 170)),
    _leaf("pet/cat_food", "pet", "Whiskas|Purina One|Royal Canin|Felix|Мнямс",
          _t("Корм сухой для кошек", "400 г|1,5 кг", 250, 1200), _t("Корм влажный для кошек", "75 г|12 шт по 75 г", 40, 520),
          _t("Лакомство для кошек", "60 г|120 г", 90, 190)),
    _leaf("pet/dog_food", "pet", "Pedigree|Purina Pro Plan|Royal Canin|Chappi|Мнямс",
          _t("Корм сухой для собак", "2 кг|10 кг", 690, 3900), _t("Корм влажный для собак", "100 г|12 шт по 100 г", 50, 620),
          _t("Лакомство для собак", "100 г|250 г", 120, 290)),
    _leaf("pet/accessories", "pet home", "Triol|Ferplast|Trixie|Petshop Basic",
          _t("Наполнитель для кошачьего туалета", "5 л|10 л", 290, 690, "household"), _t("Миска керамическая", "S|L", 290, 690),
          _t("Игрушка для собак", "мячик|канат", 190, 490), _t("Лежанка для питомца", "S|M", 990, 2900)),
    _leaf("pharmacy/vitamins", "health", "Компливит|Эвалар|Solgar|Supradyn",
          _t("Витамин D3", "60 капсул|120 капсул", 290, 1200), _t("Омега-3", "60 капсул|120 капсул", 490, 1900),
          _t("Мультивитамины", "30 таблеток|60 таблеток", 390, 1300)),
    _leaf("pharmacy/cold_remedies", "health", "Терафлю|Стрепсилс|Аквамарис|Називин",
          _t("Порошок от простуды", "5 пакетиков|10 пакетиков", 290, 650), _t("Пастилки для горла", "16 шт|24 шт", 250, 420),
          _t("Спрей назальный", "10 мл|30 мл", 180, 450)),
    _leaf("pharmacy/first_aid", "health", "Cosmoplast|Hartmann|Leiko|Веропласт",
          _t("Пластырь бактерицидный", "20 шт|40 шт", 90, 250), _t("Бинт стерильный", "5 м|7 м", 40, 90),
          _t("Антисептик для рук", "50 мл|250 мл", 70, 250)),
    _leaf("electronics/headphones", "electronics gift", "JBL|Sony|Xiaomi|Huawei|Soundcore",
          _t("Наушники беспроводные", "вкладыши|с шумоподавлением", 2490, 12990), _t("Наушники спортивные", "с заушинами|влагозащищённые", 1990, 6990, "sport running"),
          _t("Наушники полноразмерные", "накладные|мониторные", 4990, 19990)),
    _leaf("electronics/smartphones", "electronics gift", "Xiaomi|Samsung|realme|Tecno|HONOR",
          _t("Смартфон", "8/128 ГБ|8/256 ГБ|12/512 ГБ", 11990, 64990), _t("Чехол для смартфона", "силиконовый|книжка", 390, 1290),
          _t("Зарядное устройство", "20 Вт|65 Вт", 690, 2490)),
    _leaf("electronics/gaming", "electronics gaming gift", "Sony|Logitech|HyperX|Defender|ARDOR GAMING",
          _t("Геймпад", "беспроводной|проводной", 2990, 7990), _t("Игровая мышь", "беспроводная|проводная", 990, 4990),
          _t("Игровая гарнитура", "стерео|7.1 беспроводная", 2490, 9990), _t("Игровая клавиатура", "механическая|мембранная", 2990, 8990)),
    _leaf("electronics/kitchen_appliances", "electronics home", "Redmond|Polaris|Philips|Bork|Kitfort",
          _t("Кофемашина капсульная", "Mini|Pro", 5990, 19990, "coffee gift"), _t("Блендер погружной", "600 Вт|1000 Вт", 1990, 6990, "healthy"),
          _t("Мультиварка", "4 л|5 л", 3990, 9990, "dinner"), _t("Чайник электрический", "1,7 л|1,7 л стеклянный", 1490, 4990, "gift"),
          _t("Аэрогриль", "3,5 л|5,5 л", 4990, 12990, "healthy dinner")),
    _leaf("home/kitchenware", "home", "Tefal|Attribute|Fissman|Luminarc",
          _t("Сковорода антипригарная", "24 см|28 см", 1290, 3990, "dinner"), _t("Набор кастрюль", "3 предмета|6 предметов", 2990, 8990, "gift"),
          _t("Контейнеры для еды", "3 шт|6 шт", 490, 1290, "healthy"), _t("Набор ножей", "3 предмета|5 предметов", 1490, 4990, "gift")),
    _leaf("home/textiles", "home", "Togas|Cleanelly|Аскона|Сонный дом",
          _t("Комплект постельного белья", "1,5-спальный|евро", 1990, 6990, "gift"), _t("Плед флисовый", "130х170|150х200", 790, 2490, "gift"),
          _t("Полотенце махровое", "50х90|70х140", 390, 1290), _t("Подушка анатомическая", "40х60|50х70", 1290, 3990)),
    _leaf("kids/toys/toddler", "kids gift", "Fisher-Price|Happy Baby|Жирафики|Полесье",
          _t("Сортер развивающий", "с формами|с кубиками", 690, 1990), _t("Погремушка", "мягкая|на ручку", 290, 790),
          _t("Развивающий коврик", "с дугами|музыкальный", 2490, 5990), _t("Каталка-толокар", "классика|с ручкой", 1990, 4990)),
    _leaf("kids/toys/preschool", "kids gift", "LEGO DUPLO|Hasbro|Мосигра|Magformers|Play-Doh",
          _t("Конструктор", "Зоопарк|Поезд|Ферма", 1490, 5990, brands="LEGO DUPLO|Мосигра|Hasbro"), _t("Набор для лепки", "10 баночек|20 баночек", 590, 1990, brands="Play-Doh"),
          _t("Магнитный конструктор", "30 деталей|62 детали", 1990, 6990, brands="Magformers|Мосигра"), _t("Настольная игра детская", "Мемо|Лото", 490, 1490, brands="Мосигра|Hasbro")),
    _leaf("kids/toys/school", "kids gift", "LEGO|Hasbro|Мосигра|Эврики|Робокот",
          _t("Конструктор Technic", "Гоночная машина|Вертолёт|Экскаватор", 2990, 12990, brands="LEGO"), _t("Набор юного химика", "базовый|большой", 1490, 3990, "books", brands="Эврики"),
          _t("Радиоуправляемая машина", "внедорожник|дрифт", 1990, 6990), _t("Настольная игра", "Имаджинариум|Каркассон|Монополия", 1490, 3990, "party"),
          _t("Робот программируемый", "стартовый|продвинутый", 4990, 14990, "electronics", brands="Робокот|LEGO")),
    _leaf("kids/diapers", "baby kids household", "Pampers|Huggies|Merries|Libero|YokoSun",
          _t("Подгузники", "размер 2 (3-6 кг) 66 шт|размер 3 (6-10 кг) 86 шт|размер 4 (9-14 кг) 76 шт", 990, 2490),
          _t("Трусики-подгузники", "размер 4 (9-14 кг) 52 шт|размер 5 (12-17 кг) 48 шт", 1090, 2290),
          _t("Влажные салфетки детские", "64 шт|3 уп по 64 шт", 150, 450)),
    _leaf("kids/books", "books kids gift", "Росмэн|Эксмо детство|Clever|Махаон",
          _t("Книга сказок", "с иллюстрациями|подарочное издание", 390, 1490), _t("Энциклопедия для детей", "Космос|Динозавры|Тело человека", 590, 1690),
          _t("Книга с наклейками", "Животные|Транспорт", 190, 490)),
    _leaf("sport/running_shoes", "sport running", "Demix|ASICS|Nike|Kalenji|Saucony",
          _t("Кроссовки беговые", "Pulse|Tempo|Glide|Run Support|Flow", 2990, 14990),
          _t("Кроссовки для трейлраннинга", "Trail Pro|Mountain Grip", 4990, 15990)),
    _leaf("sport/running_apparel", "sport running", "Demix|Kalenji|Nike|Under Armour|Garmin",
          _t("Футболка беговая", "мужская|женская", 790, 2990, brands=_APPAREL),
          _t("Тайтсы беговые", "мужские|женские", 1290, 3990, brands=_APPAREL),
          _t("Ветровка беговая", "мужская|женская", 2490, 6990, brands=_APPAREL),
          _t("Носки беговые", "2 пары|5 пар", 390, 1290, brands=_APPAREL),
          _t("Пояс для бега", "с карманом|с флягой", 590, 1990, brands=_APPAREL),
          _t("Часы спортивные", "Forerunner 55|Forerunner 265", 17990, 44990, "electronics gift", brands="Garmin")),
    _leaf("sport/fitness", "sport", "Demix|Torneo|Starfit|Bradex",
          _t("Коврик для йоги", "4 мм|6 мм", 690, 2490, "healthy"), _t("Гантели виниловые", "2х2 кг|2х5 кг", 990, 2990),
          _t("Фитнес-резинки", "набор 3 шт|набор 5 шт", 390, 1190), _t("Скакалка скоростная", "стальной трос|с подсчётом", 290, 990)),
    _leaf("sport/nutrition", "sport protein healthy", "Optimum Nutrition|BombBar|Geneticlab|Maxler",
          _t("Протеин сывороточный", "900 г|2,3 кг", 1990, 5990), _t("Изотоник", "0,5 л|порошок 500 г", 120, 1290, "drink running"),
          _t("Гель энергетический", "60 мл|набор 6 шт", 190, 990, "running")),
    _leaf("beauty/skincare", "beauty", "La Roche-Posay|Natura Siberica|Librederm|CeraVe|Чистая линия",
          _t("Крем увлажняющий для лица", "50 мл|100 мл", 490, 2490, "gift"), _t("Солнцезащитный крем SPF 50", "50 мл|100 мл", 690, 2190, "sport"),
          _t("Гель для умывания", "150 мл|400 мл", 390, 1490)),
    _leaf("beauty/haircare", "beauty", "L'Oreal Paris|Natura Siberica|Pantene|Faberlic",
          _t("Шампунь", "250 мл|500 мл", 290, 890), _t("Бальзам для волос", "200 мл|400 мл", 290, 890),
          _t("Маска для волос", "200 мл|300 мл", 390, 1290, "gift")),
    _leaf("books/fiction", "books gift", "Азбука|АСТ|Эксмо|Альпина Паблишер",
          _t("Роман", "в твёрдой обложке|в мягкой обложке", 390, 990), _t("Детектив", "в твёрдой обложке|в мягкой обложке", 350, 890),
          _t("Фантастика", "в твёрдой обложке|подарочное издание", 490, 1590)),
    _leaf("books/cookbooks", "books gift home", "Эксмо|Альпина Паблишер|АСТ",
          _t("Книга рецептов", "Полезные ужины|Быстрые завтраки|Выпечка", 690, 1790, "healthy dinner")),
)
