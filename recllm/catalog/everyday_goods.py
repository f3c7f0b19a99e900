"""Russian nouns for everyday goods, whatever a given catalog sells.

Two readers: moderation (``recllm.safety.moderation``: a word near them in navec space makes a message a shopping
one) and the named kinds (``recllm.catalog.product_terms``: a request for one the catalog has no item of — «покажи
чай» where nothing is tea — asks for what is not there, and gets nothing rather than the user's usual bread).
"""

EVERYDAY_GOODS_RU = tuple("""
молоко кефир йогурт творог сыр масло хлеб колбаса сосиски пельмени сок вода лимонад чай кофе шоколад конфеты печенье
торт мороженое майонез кетчуп гречка рис макароны мука сахар соль чипсы орехи корм пюре каша подгузники шампунь крем
гель мыло порошок мясо фарш курица рыба консервы кроссовки наушники смартфон книга игрушка конструктор овощи фрукты
яблоки бананы варенье мед салфетки полотенце сковорода кастрюля чайник пылесос утюг лампа батарейки ноутбук
телевизор планшет холодильник микроволновка карандаши фломастеры краски альбом тетрадь пластилин мелки кисточка
раскраска жвачка сироп мазь бинт градусник термометр вино шампанское водка коньяк
телескоп бинокль велосипед палатка спальник рюкзак чемодан зонт диван кресло шкаф кровать матрас ковёр штора люстра
принтер фотоаппарат гитара синтезатор дрон коляска автокресло удочка лыжи коньки сноуборд скейтборд
""".split())
# (not «самокат»: it is a service's name, «закажи в самокате»)

# English everyday goods, singular, as a catalog would name them: a request's own word is first rewritten to the
# catalog's ("sneakers" → "shoe", "crisps" → "chip": ``english_synonyms``), so only words with no such rewrite belong
# here (a catalog that sold them under another name would otherwise be read as not selling them).
EVERYDAY_GOODS_EN = tuple("""
tea egg butter honey jam flour sugar salt ketchup mayonnaise cake cookie biscuit noodle wine battery soap toothpaste
lamp laptop television tv fridge microwave pencil crayon marker notebook paint paintbrush sketchbook gum syrup
ointment bandage thermometer telescope binocular bicycle bike tent backpack suitcase umbrella sofa couch armchair
wardrobe mattress carpet rug curtain chandelier printer camera guitar piano drone stroller ski skate skateboard
""".split())
