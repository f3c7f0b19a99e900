"""Russian nouns for everyday goods, whatever a given catalog sells.

Two readers: moderation (``recllm.safety.moderation``: a word near them in navec space makes a message a shopping
one) and the named kinds (``recllm.catalog.product_terms``: a request for one the catalog has no item of — «покажи
чай» where nothing is tea — asks for what is not there, and gets nothing rather than the user's usual bread).
"""

EVERYDAY_GOODS_RU = tuple("""
молоко кефир йогурт творог сыр масло хлеб колбаса сосиски пельмени сок вода лимонад чай кофе шоколад конфеты печенье
торт мороженое майонез кетчуп гречка рис макароны мука сахар соль чипсы орехи корм пюре каша подгузники шампунь крем
гель мыло порошок мясо фарш курица рыба консервы кроссовки наушники смартфон книга игрушка конструктор овощи фрукты
яблоки бананы варенье мед салфетки полотенце сковорода кастрюля чайник пылесос утюг лампа батарейки
""".split())

# English everyday goods, singular, only words with no common synonym a catalog might use instead ("sneakers" for
# running shoes, "crisps" for chips are left out: a catalog that sells those under another name would be read as
# not selling them).
EVERYDAY_GOODS_EN = tuple("""
tea egg butter honey jam flour sugar salt ketchup mayonnaise cake cookie wine battery soap toothpaste lamp
""".split())
