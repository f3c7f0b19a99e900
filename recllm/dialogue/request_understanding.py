"""Request understanding: one user message (Russian or English) → intent, domain, target services and slots.

The first step of the dialogue manager. The chat engine asks ``understand(text, context)`` what the user wants
before retrieval: whether to recommend at all (or ask a clarifying question, refuse, answer a follow-up), in which
domain and service, and under which constraints (budget, diet, delivery speed, recipient and the child's age band,
and for follow-ups how the next list must change).

Two parts, one feature collector for training and serving:
* **slots by rules** — regexes over morphology-tolerant stems («без лактоз», «сыну на 7 лет», «до 2к»), because a
  budget or "without sugar" must be read exactly, never guessed;
* **a trained classifier** for intent, domain and target services — one linear layer with three heads (softmax over
  intents, softmax over domains, a sigmoid per service) over the mean navec vector (Russian words), hashed word,
  word-bigram and character n-grams (English, brands, typos, slang) and the rule cues (a budget was stated, a
  refinement word was used…). Full-batch Adam in numpy from zero weights: deterministic, a few seconds of training.
  A recommendation whose service head abstains gets its domain's usual services (counted on the training data);
  a service the user names always wins.

``RequestUnderstander.fit`` trains on the train split of ``labeled/requests.jsonl``; ``save``/``load`` store it as
npz + json so serving loads a trained one; the module-level ``understand`` trains the default one lazily, once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from recllm.rag.rec_request import REQUIRED_TAG_PATTERNS, detect_language, parse_age_band, parse_recipient
from recllm.rag.rec_request import parse_budget as text_budget

log = logging.getLogger(__name__)

LANGUAGES = ("ru", "en")
DOMAINS = ("food", "goods", "kids", "health", "pet", "beauty", "electronics", "home", "sport", "other")
INTENTS = ("recommend", "refine", "compare", "explain", "feedback", "clarify_needed", "off_topic", "unsafe",
           "personal_data")
SERVICES = ("samokat", "megamarket", "kuper")
SAFETY_INTENTS = frozenset({"off_topic", "unsafe", "personal_data"})
# Which slots a message of an intent may carry: "почему это полезно?" asks for an explanation, not a healthy filter.
SLOT_INTENTS = frozenset({"recommend", "refine", "feedback", "clarify_needed"})
DIET_INTENTS = frozenset({"recommend", "refine", "clarify_needed"})
LABELED_PATH = Path(__file__).resolve().parent / "labeled" / "requests.jsonl"
NAVEC_FILE = "navec_news_v1_1B_250K_300d_100q.tar"
NAVEC_DIM = 300
WORD = re.compile(r"[0-9a-zа-яё]+")


@dataclass(frozen=True)
class RequestUnderstanding:
    """What one message asks for. Empty tuples / None mean "not stated"."""

    language: str
    domain: str
    intent: str
    target_services: tuple[str, ...] = ()
    budget_rub: int | None = None
    diet: tuple[str, ...] = ()
    delivery_speed: str | None = None  # "fast" | "slot"
    recipient: str | None = None
    age_band: str | None = None  # "0-2" | "3-5" | "6-8" | "9-12" | "13-17" | "18+"
    refinement: tuple[str, ...] = ()
    repeat_last_order: bool = False
    intent_confidence: float = 1.0
    domain_confidence: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RequestUnderstandingConfig:
    hash_buckets: int = 1 << 13
    char_ngram_min: int = 2
    char_ngram_max: int = 4
    word_bigrams: bool = True
    use_navec: bool = True
    use_rule_cues: bool = True
    epochs: int = 300
    learning_rate: float = 0.05
    l2_hashed: float = 1e-3  # the n-gram weights: strong L2 keeps them from memorising product words
    l2_dense: float = 1e-4  # navec, domain prototypes, rule cues
    service_threshold: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hash_buckets", "char_ngram_min", "char_ngram_max", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RequestUnderstandingConfig.{name} must be a positive int, got {value!r}")
        if self.char_ngram_min > self.char_ngram_max:
            raise ValueError(f"RequestUnderstandingConfig.char_ngram_min must be <= char_ngram_max, got "
                             f"{self.char_ngram_min!r} > {self.char_ngram_max!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"RequestUnderstandingConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        for name in ("l2_hashed", "l2_dense"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RequestUnderstandingConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.service_threshold < 1:
            raise ValueError(f"RequestUnderstandingConfig.service_threshold must be in (0, 1), "
                             f"got {self.service_threshold!r}")

    @classmethod
    def from_name(cls, name: str) -> "RequestUnderstandingConfig":
        presets = {"default": cls(), "no_navec": cls(use_navec=False), "no_cues": cls(use_rule_cues=False)}
        if name not in presets:
            raise ValueError(f"unknown RequestUnderstandingConfig preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]


# ---------------------------------------------------------------- slots by rules

DIET_PATTERNS = {
    # (mixed-language «без lactose», "no сахара" too)
    "lactose_free": re.compile(r"без\s*(?:лакто|lactose)|безлакто|lactose[\s-]*free|(?:no|without)\s+(?:lactose|лакто)|"
                               r"dairy[\s-]*free", re.IGNORECASE),
    "sugar_free": re.compile(r"без\s*(?:сахар|sugar)|несладк|sugar[\s-]*free|(?:no|without)\s+(?:sugar|сахар)|"
                             r"диабетик|diabet", re.IGNORECASE),
    "gluten_free": re.compile(r"без\s*(?:глютен|gluten)|безглютен|gluten[\s-]*free|(?:no|without)\s+(?:gluten|глютен)",
                              re.IGNORECASE),
    "vegan": re.compile(r"веган|vegan|растительн", re.IGNORECASE),
    "vegetarian": REQUIRED_TAG_PATTERNS["vegetarian"],  # the catalog's derived mark: the retriever's own reading
    "healthy": re.compile(r"полезн|здоров(?!о\b)|\bпп\b|\bпп-|правильн\w*\s+питан|healthy|healthier|диетич|\bзож",
                          re.IGNORECASE),
}
# "без X" / "X-free" in a follow-up: how the next list must change.
WITHOUT_PATTERNS = {
    "without_lactose": DIET_PATTERNS["lactose_free"],
    "without_sugar": DIET_PATTERNS["sugar_free"],
    "without_gluten": DIET_PATTERNS["gluten_free"],
    "without_meat": re.compile(r"без\s+мяса|no\s+meat|meat[\s-]*free|without\s+meat", re.IGNORECASE),
    "without_nuts": re.compile(r"без\s+орех|nut[\s-]*free|no\s+nuts|without\s+nuts", re.IGNORECASE),
}
REFINEMENT_PATTERNS = {
    "cheaper": re.compile(r"подешевл|дешевл|бюджетн|попроще\s+по\s+цене|эконом|дорог(?:о\b|оват)|cheaper|"
                          r"less\s+expensive|too\s+expensive|pricey", re.IGNORECASE),
    "pricier": re.compile(r"подорож|\bдороже\b(?!\s*\d)|получше|качественн|pricier|more\s+expensive|better\s+quality|"
                          r"premium", re.IGNORECASE),
    "more": re.compile(r"(?:^|[\s,!.])ещ[её](?!\s+дешевл)|\bmore\b(?!\s+expensive)", re.IGNORECASE),
    "other": re.compile(r"\bдруг(?:ое|ие|ую|ой|их)\b|не\s+то\b|не\s+подход|не\s+нрав|не\s+понрав|\bмимо\b|уже\s+брал|"
                        r"гадость|не\s+очень|something\s+else|anything\s+else|\bother\b|not\s+(?:what|this|that)|"
                        r"don'?t\s+like|\bmeh\b|\bnope\b", re.IGNORECASE),
    "bigger": re.compile(r"побольше|больш\w*\s+упаков|bigger|larger", re.IGNORECASE),
    "smaller": re.compile(r"поменьше|меньше|smaller", re.IGNORECASE),
    "healthier": re.compile(r"полезнее|здоровее|healthier", re.IGNORECASE),
    "faster": re.compile(r"побыстрее|быстрее|faster|quicker", re.IGNORECASE),
}
SPEED_PATTERNS = (
    ("fast", re.compile(r"быстр|срочн|\bщас\b|прямо\s+сейчас|за\s+\d+\s*мин|в\s+течени[ие]\s+(?:часа|получаса)|"
                        r"немедленно|asap|quick|right\s+now|urgent|in\s+\d+\s*min|\bfast", re.IGNORECASE)),
    ("slot", re.compile(r"на\s+(?:субботу|воскресенье|понедельник|вторник|среду|четверг|пятницу|выходные)|"
                        r"к\s+(?:выходным|субботе|воскресенью|понедельнику|вторнику|среде|четвергу|пятнице)|\bзавтра\b|послезавтра|\bслот|\bк\s+\d{1,2}(?::\d\d)?\s*(?:утра|вечера|час)|"
                        r"\d{1,2}:\d\d|на\s+вечер\s+(?:пятницы|субботы|воскресенья)|tomorrow|"
                        r"for\s+(?:saturday|sunday|monday|friday)|weekend|\bslot", re.IGNORECASE)),
)
SERVICE_PATTERNS = {
    "samokat": re.compile(r"самокат|samokat", re.IGNORECASE),
    "megamarket": re.compile(r"мегамаркет|megamarket|mega\s*market|\bмм\b", re.IGNORECASE),
    "kuper": re.compile(r"купер|kuper|сбермаркет|sbermarket", re.IGNORECASE),
}
REPEAT_ORDER = re.compile(r"как\s+в\s+прошлый\s+раз|повтори\w*\s+(?:мой\s+)?(?:прошл|последн)|прошл\w+\s+заказ|"
                          r"как\s+обычно|same\s+as\s+(?:last|before)|reorder|repeat\s+(?:my\s+)?(?:last\s+)?order|"
                          r"as\s+usual", re.IGNORECASE)


def normalize(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


def tokenize(text: str) -> list[str]:
    return WORD.findall(normalize(text))


def parse_budget(text: str) -> int | None:
    """The budget slot: ``rec_request.parse_budget`` (the one parser), in whole rubles."""
    value = text_budget(text)
    return None if value is None else int(round(value))


def parse_diet(text: str) -> tuple[str, ...]:
    return tuple(tag for tag, pattern in DIET_PATTERNS.items() if pattern.search(text))


def parse_delivery_speed(text: str) -> str | None:
    return next((speed for speed, pattern in SPEED_PATTERNS if pattern.search(text)), None)


def mentioned_services(text: str) -> tuple[str, ...]:
    return tuple(service for service in SERVICES if SERVICE_PATTERNS[service].search(text))


def parse_refinement(text: str, budget: int | None) -> tuple[str, ...]:
    found = {name for name, pattern in REFINEMENT_PATTERNS.items() if pattern.search(text)}
    found |= {name for name, pattern in WITHOUT_PATTERNS.items() if pattern.search(text)}
    if budget is not None:
        found.add("cheaper")
    return tuple(sorted(found))


@dataclass(frozen=True)
class Slots:
    """Everything the rules read from one message, before the intent decides which slots apply."""

    language: str
    budget_rub: int | None
    diet: tuple[str, ...]
    delivery_speed: str | None
    recipient: str | None
    age_band: str | None
    refinement: tuple[str, ...]
    services: tuple[str, ...]
    repeat_last_order: bool


def parse_slots(text: str) -> Slots:
    budget, diet = parse_budget(text), parse_diet(text)
    recipient = parse_recipient(text)
    return Slots(detect_language(text), budget, diet, parse_delivery_speed(text), recipient,
                 parse_age_band(text, recipient), parse_refinement(text, budget), mentioned_services(text),
                 bool(REPEAT_ORDER.search(text)))


# Keyword lists: the rules-only baseline's intent and domain, and (as matches) features of the trained model.
KEYWORD_INTENTS = (
    ("unsafe", r"игнорир|ignore|disregard|забудь\s+вс|промпт|prompt|\bdan\b|бомб|bomb|наркот|drug|отрав|poison|"
               r"взлом|hack|украсть|обмануть|без\s+рецепта|водк|сигарет|beer|снотворн|\bsystem\b|developer\s+mode|"
               r"режим\s+разработчика|всех\s+(?:пользовател|клиент)"),
    ("personal_data", r"адрес|address|телефон|phone|номер\s+(?:моей\s+)?карт|\bcard\b|карт[уыа]\s+\d|пароль|password|"
                      r"паспорт|мои\s+данные|my\s+(?:personal\s+)?data|обо\s+мне|about\s+me|сосед|neighbou?r|"
                      r"пользовател|another\s+user|чей"),
    ("compare", r"сравни|compare|разниц|difference|отличаю|лучше|better|\bили\b|\bor\b"),
    ("explain", r"почему|why|зачем|объясни|explain|с\s+чего|откуда|на\s+основе"),
    ("refine", r"подешевл|дешевле|cheaper|ещ[её]|\bmore\b|другое|другие|something\s+else|other|побольше|поменьше|"
               r"bigger|^\W*(?:а\s+)?без\s|^\W*without"),
    ("feedback", r"не\s+то|не\s+нрав|не\s+подход|спасибо|thanks|супер|класс|отлично|perfect|love|great|мимо|"
                 r"дорого|expensive"),
    ("off_topic", r"погод|weather|анекдот|joke|стих|poem|курс\s+доллар|матч|game|как\s+дела|how\s+are\s+you|"
                  r"кто\s+ты|who\s+are\s+you|фильм|сериал|movie|домашк|homework|переведи|translate"),
    ("clarify_needed", r"^\W*(?:\w+\W+){0,3}(?:что-нибудь|что-то|чего-нибудь|something|anything)\W*$|^\W*что\s+купить|"
                       r"есть\s+идеи|any\s+ideas|удиви|surprise|помоги\s+выбрать"),
)
KEYWORD_DOMAINS = (
    ("electronics", r"наушн|смартфон|телефон|геймпад|мыш|зарядк|ноут|кофемашин|блендер|аэрогрил|гаджет|техник|"
                    r"headphone|phone|charger|mouse|tech|laptop"),
    ("kids", r"подгузник|детск|конструктор|игрушк|лего|lego|diaper|toy|сыну|дочк|ребён|ребен|kid"),
    ("pet", r"корм|кош|кот|собак|пёс|пса|щен|наполнител|лоток|cat|dog|pet"),
    ("health", r"витамин|простуд|горл|пластыр|омег|антисептик|аптек|аптечк|спрей\s+для\s+носа|лекарств|медикамент|"
               r"давлени|гипертон|кашл|насморк|аллерги|изжог|головн\w*\s+бол|от\s+боли|градусник|тонометр|"
               r"vitamin|medicine|throat|pharmacy|blood\s+pressure|cough|allerg|headache|painkiller"),
    ("beauty", r"крем|шампун|маск|косметик|умыван|cream|shampoo|beauty"),
    ("sport", r"кроссовк|кроссы|бег|йог|гантел|протеин|скакалк|спорт|running|yoga|sport"),
    ("home", r"сковород|кастрюл|постельн|плед|подушк|посуд|контейнер|pan|linen|bed"),
    ("goods", r"туалетн|бумаг|посудомо|стирк|батарейк|средство|книг|детектив|подар|рожден|юбиле|paper|soap|book|gift|"
              r"present|birthday|anniversar"),
    ("food", r"молок|кефир|творог|йогурт|сыр|овощ|фрукт|банан|хлеб|завтрак|ужин|обед|чипс|шоколад|кофе|сок|вод[уа]|"
             r"еду|еда|пицц|курин|рыб|гречк|макарон|мороже|печень|овсян|перекус|снек|хавчик|сладк|мяс|лимонад|"
             r"батончик|вкусн|торт|пирог|milk|vegetable|snack|breakfast|coffee|dinner|ice\s+cream|chocolate|fruit|yogurt|"
             r"food|cake"),
)
KEYWORD_INTENT_REGEXES = tuple((name, re.compile(pattern)) for name, pattern in KEYWORD_INTENTS)
KEYWORD_DOMAIN_REGEXES = tuple((name, re.compile(pattern)) for name, pattern in KEYWORD_DOMAINS)
KEYWORD_DOMAIN_SERVICES = {"food": ("samokat", "kuper"), "goods": ("samokat", "kuper"), "health": ("kuper",),
                           "pet": ("megamarket", "kuper"), "kids": ("megamarket",), "other": ()}


# ---------------------------------------------------------------- features

@lru_cache(maxsize=1)
def load_navec():
    """navec word vectors (250K Russian words, 300-d) from the data shipped inside the natasha wheel."""
    import natasha  # noqa: PLC0415 - heavy, only where features are built
    from navec import Navec  # noqa: PLC0415

    path = Path(natasha.__file__).parent / "data" / "emb" / NAVEC_FILE
    if not path.exists():
        raise FileNotFoundError(f"navec vectors not found at {path}: is natasha==1.6.0 installed?")
    return Navec.load(str(path))


def stable_bucket(token: str, buckets: int) -> int:
    # crc32 is the same in every process (Python's hash() is salted), so a saved model keeps its meaning.
    return zlib.crc32(token.encode("utf-8")) % buckets


RULE_CUES = ("budget", "diet", "speed_fast", "speed_slot", "recipient", "age", "refinement", "service_mentioned",
             "repeat", "question", "digits_4plus", "follow_up_start", "ordinal_reference", "pronoun_reference",
             "words_1", "words_2", "words_3_4", "words_5_8", "words_9plus", "latin_majority", "no_content_words")
# Words that say "I want something" without saying what: a message made only of these is a vague wish.
VAGUE_WORDS = frozenset(normalize("""
    хочу хочется хотелось бы мне меня я ты вы у вас есть что чего нибудь нить то чё че какой какое какую какие
    посоветуй посоветуйте порекомендуй порекомендуйте подскажи подскажите подбери предложи придумай покажи дай
    давай купить взять заказать закажи купи найди ищу нужно нужен нужна надо можно а ну и или но же ли слушай
    привет эм хм так такого такое там тут еще ещё помоги помогите выбрать сегодня сейчас плиз пожалуйста идеи идею
    идей интересного интересное хорошее хорошего новенькое новенького необычное приятное прикольное вкусное
    вкусного вкусненькое вкусненького классное удиви порадовать побаловать себя
    i m im me my you your we want would like need some something anything what which should could can do does have
    get buy order recommend suggest show give find any good nice fun cool interesting special tasty today now please
    so hey hi hmm ok well a an the to for is it idea ideas surprise bored
""").split())
# What a bare follow-up («ещё», «что-нибудь другое», «подешевле», "something else") says besides its refinement:
# the state acts on those refinements (shown items excluded, the budget lowered), so their words add nothing to
# retrieval's query, and appended to the goal they only dilute it ("healthy snacks ... more something else" drifted
# to cola and chips).
STRUCTURAL_REFINEMENTS = ("more", "other", "cheaper")
FOLLOW_UP_FILLER = frozenset(normalize("""
    вариант варианты вариантов вариантик позиции позиций товары товаров штук штуки что-то чего-то что-нибудь
    option options ones one things stuff items else
    ок окей ладно хорошо тогда пусть будет давайте максимум
""").split())


def follow_up_content(message: str) -> str:
    """The words of ``message`` left after its structural refinements and vague or filler words; "" for a bare
    follow-up."""
    text = message
    for name in STRUCTURAL_REFINEMENTS:
        text = REFINEMENT_PATTERNS[name].sub(" ", text)
    # a pattern may match a stem («подешевл»): the letter it leaves behind is no word
    return " ".join(w for w in tokenize(text) if len(w) > 1 and w not in VAGUE_WORDS and w not in FOLLOW_UP_FILLER)


FOLLOW_UP_START = re.compile(r"^\W*(?:а|ну|и|но|только|без|хм|давай|without|and|but|also|maybe|ok|hmm)\b")
ORDINAL_REFERENCE = re.compile(r"перв|втор|трет|последн|\bfirst\b|\bsecond\b|\bthird\b|\b[1-5]\b(?![\s\d]*(?:\d|р|руб|₽|"
                               r"лет|год|к\b|тыс|шт|мин|rub|year))")
PRONOUN_REFERENCE = re.compile(r"\bэт(?:о|и|у|от|ой|им|их)\b|\bих\b|\bних\b|\bthis\b|\bthese\b|\bthose\b|\bit\b|"
                               r"\bthem\b")


def refers_to_the_list(message: str) -> bool:
    """The message points at a shown item by its place or a pronoun («а второй?», «а это?», "the first one")."""
    lowered = message.lower()
    return bool(ORDINAL_REFERENCE.search(lowered) or PRONOUN_REFERENCE.search(lowered))


# Words that name each domain, like a category tree's labels: a message word close to one of them in navec space
# points to the domain even when the product itself never occurs in the labeled data ("сковородку" → home).
DOMAIN_SEEDS = {
    "food": "еда продукты молоко овощи фрукты хлеб сыр мясо ужин завтрак перекус сладости напиток закуска",
    "goods": "хозтовары уборка стирка бумага средство моющее книга батарейка",
    "kids": "ребёнок дети игрушка детский малыш конструктор подгузник школьник",
    "health": "лекарство аптека витамины простуда здоровье таблетка болезнь лечение",
    "pet": "кошка собака корм питомец животное кот щенок",
    "beauty": "косметика крем шампунь кожа волосы макияж уход",
    "electronics": "телефон наушники техника гаджет компьютер зарядка электроника ноутбук",
    "home": "посуда кастрюля сковорода мебель постельное кухня интерьер подушка",
    "sport": "спорт бег фитнес тренировка кроссовки йога тренажёр",
}
PROTOTYPE_DOMAINS = tuple(DOMAIN_SEEDS)


def rule_cues(text: str, slots: Slots) -> np.ndarray:
    lowered = normalize(text)
    n_words = len(tokenize(text))
    values = {
        "budget": slots.budget_rub is not None, "diet": bool(slots.diet), "speed_fast": slots.delivery_speed == "fast",
        "speed_slot": slots.delivery_speed == "slot", "recipient": slots.recipient is not None,
        "age": slots.age_band is not None, "refinement": bool(slots.refinement),
        "service_mentioned": bool(slots.services), "repeat": slots.repeat_last_order, "question": "?" in text,
        "digits_4plus": bool(re.search(r"\d{4}", text.replace(" ", ""))),
        "follow_up_start": bool(FOLLOW_UP_START.search(lowered)),
        "ordinal_reference": bool(ORDINAL_REFERENCE.search(lowered)),
        "pronoun_reference": bool(PRONOUN_REFERENCE.search(lowered)),
        "words_1": n_words <= 1, "words_2": n_words == 2, "words_3_4": 3 <= n_words <= 4,
        "words_5_8": 5 <= n_words <= 8, "words_9plus": n_words >= 9, "latin_majority": slots.language == "en",
        "no_content_words": n_words > 0 and all(w in VAGUE_WORDS for w in tokenize(text)),
    }
    keyword_intents = [float(bool(regex.search(lowered))) for _, regex in KEYWORD_INTENT_REGEXES]
    keyword_domains = [float(bool(regex.search(lowered))) for _, regex in KEYWORD_DOMAIN_REGEXES]
    return np.array([float(values[name]) for name in RULE_CUES] + keyword_intents + keyword_domains,
                    dtype=np.float32)


@dataclass(frozen=True)
class FeatureRow:
    """One message's features: sparse hashed n-grams (ids, L2-normalised counts) and a dense part
    [navec mean (unit) | domain prototype similarities | rule cues]."""

    hashed_ids: np.ndarray  # [k] int64
    hashed_values: np.ndarray  # [k] float32
    dense: np.ndarray  # [dense_dim] float32


class RequestFeaturizer:
    """Text → ``FeatureRow``. The same featurizer builds training and serving rows, so the two cannot drift."""

    def __init__(self, config: RequestUnderstandingConfig):
        self.config = config
        self.navec = load_navec() if config.use_navec else None
        self.seed_vectors, self.seed_domain = self._seed_matrix() if self.navec is not None else (None, None)
        self.dense_dim = (NAVEC_DIM + len(PROTOTYPE_DOMAINS) if config.use_navec else 0) + \
            (len(RULE_CUES) + len(KEYWORD_INTENTS) + len(KEYWORD_DOMAINS) if config.use_rule_cues else 0)

    def _seed_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        vectors, domains = [], []
        for index, domain in enumerate(PROTOTYPE_DOMAINS):
            for word in normalize(DOMAIN_SEEDS[domain]).split():
                if word in self.navec:
                    vectors.append(self.navec[word])
                    domains.append(index)
        matrix = np.stack(vectors).astype(np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True), np.array(domains)  # [S, 300], [S]

    def hashed_tokens(self, words: list[str]) -> list[str]:
        tokens = ["w:" + w for w in words]
        if self.config.word_bigrams:
            tokens += [f"b:{a}_{b}" for a, b in zip(["<s>"] + words, words + ["</s>"])]
        for w in words:
            padded = f"<{w}>"
            for n in range(self.config.char_ngram_min, self.config.char_ngram_max + 1):
                tokens += ["c:" + padded[i: i + n] for i in range(len(padded) - n + 1)]
        return tokens

    def navec_part(self, words: list[str]) -> np.ndarray:
        """[300 + 9]: unit mean vector, then per domain the best cosine of any word to the domain's seeds."""
        vectors = np.array([self.navec[w] for w in words if w in self.navec], dtype=np.float32).reshape(-1, NAVEC_DIM)
        if not len(vectors):
            return np.zeros(NAVEC_DIM + len(PROTOTYPE_DOMAINS), dtype=np.float32)
        mean = vectors.mean(axis=0)
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        sims = unit @ self.seed_vectors.T  # [words, seeds]
        best = np.full(len(PROTOTYPE_DOMAINS), -1.0, dtype=np.float32)
        np.maximum.at(best, self.seed_domain, sims.max(axis=0))
        return np.concatenate([mean / max(float(np.linalg.norm(mean)), 1e-6), np.clip(best, 0, 1)])

    def row(self, text: str, slots: Slots) -> FeatureRow:
        words = tokenize(text)
        buckets = self.config.hash_buckets
        ids, counts = np.unique([stable_bucket(t, buckets) for t in self.hashed_tokens(words)] or [0],
                                return_counts=True)
        values = counts.astype(np.float32)
        parts = []
        if self.navec is not None:
            parts.append(self.navec_part(words))
        if self.config.use_rule_cues:
            parts.append(rule_cues(text, slots))
        dense = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return FeatureRow(ids.astype(np.int64), values / np.sqrt((values ** 2).sum()), dense)


# ---------------------------------------------------------------- the classifier

HEADS = (("intent", INTENTS), ("domain", DOMAINS))  # softmax heads; then one sigmoid per service


def head_slices() -> dict[str, slice]:
    out, start = {}, 0
    for name, labels in HEADS:
        out[name] = slice(start, start + len(labels))
        start += len(labels)
    out["services"] = slice(start, start + len(SERVICES))
    return out


N_OUTPUTS = head_slices()["services"].stop


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def label_targets(records: Sequence[dict]) -> np.ndarray:
    """[N, 9 + 10 + 3] one-hot intent | one-hot domain | multi-hot services."""
    slices = head_slices()
    target = np.zeros((len(records), N_OUTPUTS), dtype=np.float32)
    for row, rec in enumerate(records):
        target[row, slices["intent"].start + INTENTS.index(rec["intent"])] = 1
        target[row, slices["domain"].start + DOMAINS.index(rec["domain"])] = 1
        for service in rec["target_services"]:
            target[row, slices["services"].start + SERVICES.index(service)] = 1
    return target


@dataclass
class LinearHeads:
    """logits[j] = sum_k hashed_values[k] * hashed_weight[hashed_ids[k], j] + dense @ dense_weight[:, j] + bias[j]"""

    hashed_weight: np.ndarray  # [buckets, 22]
    dense_weight: np.ndarray  # [dense_dim, 22]
    bias: np.ndarray  # [22]

    def logits(self, row: FeatureRow) -> np.ndarray:
        return row.hashed_values @ self.hashed_weight[row.hashed_ids] + row.dense @ self.dense_weight + self.bias


class SparseBatch:
    """A batch of rows in CSR form for full-batch training."""

    def __init__(self, rows: Sequence[FeatureRow]):
        lengths = np.array([len(r.hashed_ids) for r in rows])
        self.indptr = np.concatenate([[0], np.cumsum(lengths)])  # [N + 1]
        self.row_of = np.repeat(np.arange(len(rows)), lengths)  # [nnz]
        self.ids = np.concatenate([r.hashed_ids for r in rows])  # [nnz]
        self.values = np.concatenate([r.hashed_values for r in rows])[:, None]  # [nnz, 1]
        self.dense = np.stack([r.dense for r in rows])  # [N, dense_dim]
        order = np.argsort(self.ids, kind="stable")
        self.by_id = order
        self.unique_ids, self.id_starts = np.unique(self.ids[order], return_index=True)

    def matmul(self, heads: LinearHeads) -> np.ndarray:
        """[N, 22] logits of every row."""
        hashed = np.add.reduceat(self.values * heads.hashed_weight[self.ids], self.indptr[:-1], axis=0)
        return hashed + self.dense @ heads.dense_weight + heads.bias

    def grad_hashed(self, grad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """X_hashed.T @ grad as a dense [buckets, 22] array."""
        contrib = (self.values * grad[self.row_of])[self.by_id]  # [nnz, 22], sorted by bucket id
        out = np.zeros(shape, dtype=np.float32)
        out[self.unique_ids] = np.add.reduceat(contrib, self.id_starts, axis=0)
        return out


def fit_linear_heads(batch: SparseBatch, target: np.ndarray, config: RequestUnderstandingConfig) -> LinearHeads:
    """Full-batch Adam on softmax CE (intent, domain) + per-service BCE + L2; zero init, so deterministic."""
    n = len(target)
    slices = head_slices()
    heads = LinearHeads(np.zeros((config.hash_buckets, N_OUTPUTS), np.float32),
                        np.zeros((batch.dense.shape[1], N_OUTPUTS), np.float32), np.zeros(N_OUTPUTS, np.float32))
    params = ("hashed_weight", "dense_weight", "bias")
    moments = {name: (np.zeros_like(getattr(heads, name)), np.zeros_like(getattr(heads, name))) for name in params}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, config.epochs + 1):
        logits = batch.matmul(heads)  # [N, 22]
        grad = np.empty_like(logits)
        for name in ("intent", "domain"):
            grad[:, slices[name]] = softmax(logits[:, slices[name]]) - target[:, slices[name]]
        grad[:, slices["services"]] = sigmoid(logits[:, slices["services"]]) - target[:, slices["services"]]
        grad /= n
        grads = {"hashed_weight": batch.grad_hashed(grad, heads.hashed_weight.shape) + config.l2_hashed * heads.hashed_weight,
                 "dense_weight": batch.dense.T @ grad + config.l2_dense * heads.dense_weight,
                 "bias": grad.sum(axis=0)}
        for name in params:
            m, v = moments[name]
            m *= beta1
            m += (1 - beta1) * grads[name]
            v *= beta2
            v += (1 - beta2) * grads[name] ** 2
            step_size = config.learning_rate * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
            getattr(heads, name)[...] -= step_size * m / (np.sqrt(v) + eps)
    return heads


# ---------------------------------------------------------------- the understander


def load_labeled(split: str | Iterable[str] | None = None, path: Path = LABELED_PATH) -> list[dict]:
    """Records of ``requests.jsonl``; ``split`` = "train" | "valid" | "test" or several, None = all."""
    wanted = {split} if isinstance(split, str) else (set(split) if split is not None else None)
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if wanted is None or r["split"] in wanted]


def narrowed_by_speed(services: tuple[str, ...], speed: str | None) -> tuple[str, ...]:
    """Groceries wanted fast come from Samokat (15-minute delivery), by a delivery slot from Kuper: the labels' rule
    (``labeled.make_requests.services_for``), applied after the service head so no training draw can lose it."""
    if set(services) == {"samokat", "kuper"} and speed:
        return ("samokat",) if speed == "fast" else ("kuper",)
    return services


def apply_intent(intent: str, domain: str, services: tuple[str, ...], slots: Slots, intent_p: float,
                 domain_p: float) -> RequestUnderstanding:
    """Combine the heads with the rule slots; which slots apply depends on the intent."""
    if intent in SAFETY_INTENTS:
        return RequestUnderstanding(slots.language, "other", intent, intent_confidence=intent_p,
                                    domain_confidence=domain_p)
    keep = intent in SLOT_INTENTS
    refinement = slots.refinement if intent in ("refine", "feedback") or slots.repeat_last_order else ()
    return RequestUnderstanding(
        language=slots.language, domain=domain, intent=intent,
        target_services=slots.services or narrowed_by_speed(services, slots.delivery_speed if keep else None),
        budget_rub=slots.budget_rub if keep else None,
        diet=slots.diet if intent in DIET_INTENTS else (),
        delivery_speed=slots.delivery_speed if keep else None,
        recipient=slots.recipient if keep else None,
        age_band=slots.age_band if keep else None,
        refinement=refinement,
        repeat_last_order=slots.repeat_last_order and intent == "recommend",
        intent_confidence=intent_p, domain_confidence=domain_p,
    )


def with_context(current: RequestUnderstanding, context: RequestUnderstanding | None,
                 domain_services: dict[str, tuple[str, ...]] | None = None) -> RequestUnderstanding:
    """Read a message as a turn of the conversation that ``context`` (the previous turn's understanding) began.

    * A follow-up («подешевле», «без сахара», «почему это?») is about the previous request: it inherits the domain,
      services, recipient and age; diets accumulate; a newly stated budget replaces the old one.
    * An answer to a clarifying question («сладкое», «для себя») completes the vague wish: anything it adds (a
      domain, recipient, diet, budget, speed) makes it a recommendation in the merged domain; adding nothing
      («не знаю») keeps asking."""
    if context is None or current.intent in SAFETY_INTENTS:
        return current
    if context.intent == "clarify_needed" and current.intent in ("recommend", "clarify_needed", "refine", "feedback"):
        domain = current.domain if current.domain != "other" else context.domain
        merged = inherit(current, context, domain)
        adds = current.domain != "other" or any((current.recipient, current.diet, current.budget_rub,
                                                 current.delivery_speed))
        intent = "recommend" if adds and domain != "other" or current.intent == "recommend" else "clarify_needed"
        services = merged.target_services or (domain_services or {}).get(domain, ())
        return replace(merged, intent=intent, refinement=(),
                       target_services=services if intent == "recommend" else merged.target_services)
    if current.intent not in ("refine", "feedback", "compare", "explain"):
        return current
    return inherit(current, context, current.domain if current.domain != "other" else context.domain)


def inherit(current: RequestUnderstanding, context: RequestUnderstanding, domain: str) -> RequestUnderstanding:
    return replace(
        current,
        domain=domain,
        target_services=current.target_services or context.target_services,
        budget_rub=current.budget_rub if current.budget_rub is not None else context.budget_rub,
        diet=tuple(sorted(set(current.diet) | set(context.diet))),
        delivery_speed=current.delivery_speed or context.delivery_speed,
        recipient=current.recipient or context.recipient,
        age_band=current.age_band or context.age_band,
    )


def usual_services(records: Sequence[dict]) -> dict[str, tuple[str, ...]]:
    """Per domain, the most frequent service set of plain recommendations (no service named, no urgency)."""
    counts: dict[str, Counter] = {}
    for rec in records:
        if rec["intent"] == "recommend" and rec["target_services"] and not rec["delivery_speed"]:
            if not mentioned_services(rec["text"]):
                counts.setdefault(rec["domain"], Counter())[tuple(rec["target_services"])] += 1
    return {domain: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for domain, c in sorted(counts.items())}


class RequestUnderstander:
    """Trained heads + rule slots. ``understand`` never raises on text: empty text asks for clarification."""

    def __init__(self, config: RequestUnderstandingConfig, heads: LinearHeads | None = None,
                 domain_services: dict[str, tuple[str, ...]] | None = None):
        self.config = config
        self.featurizer = RequestFeaturizer(config)
        self.heads = heads
        # A recommendation whose service head stays below threshold falls back to its domain's usual services.
        self.domain_services = domain_services or {}

    @classmethod
    def fit(cls, records: Sequence[dict], config: RequestUnderstandingConfig | None = None) -> "RequestUnderstander":
        config = config or RequestUnderstandingConfig()
        if not records:
            raise ValueError("RequestUnderstander.fit needs at least one labeled record, got 0")
        model = cls(config)
        batch = SparseBatch([model.featurizer.row(r["text"], parse_slots(r["text"])) for r in records])
        model.heads = fit_linear_heads(batch, label_targets(records), config)
        model.domain_services = usual_services(records)
        log.info("request understander trained on %d messages (%d hashed non-zeros, %d dense features)",
                 len(records), len(batch.ids), batch.dense.shape[1])
        return model

    def understand(self, text: str, context: RequestUnderstanding | None = None) -> RequestUnderstanding:
        if self.heads is None:
            raise RuntimeError("RequestUnderstander is not trained: call fit() or load()")
        if not isinstance(text, str) or not text.strip():
            return RequestUnderstanding("ru", "other", "clarify_needed")
        slots = parse_slots(text)
        logits = self.heads.logits(self.featurizer.row(text, slots))  # [22]
        slices = head_slices()
        intent_p, domain_p = softmax(logits[slices["intent"]]), softmax(logits[slices["domain"]])
        service_p = sigmoid(logits[slices["services"]])
        intent, domain = INTENTS[int(intent_p.argmax())], DOMAINS[int(domain_p.argmax())]
        if intent == "recommend" and domain == "other" and not slots.repeat_last_order:
            # A recommendation is always of something: "other" is the follow-ups' and refusals' domain.
            domain = DOMAINS[int(np.argmax(np.where(np.array(DOMAINS) == "other", -1.0, domain_p)))]
        services = tuple(s for s, p in zip(SERVICES, service_p) if p >= self.config.service_threshold)
        if not services and intent == "recommend" and not slots.repeat_last_order:  # a reorder: the profile says
            services = self.domain_services.get(domain, ())
        current = apply_intent(intent, domain, services, slots, float(intent_p.max()), float(domain_p.max()))
        return with_context(current, context, self.domain_services)

    def save(self, directory: Path) -> None:
        """``request_understanding.npz`` (weights) + ``request_understanding.json`` (config, label orders)."""
        if self.heads is None:
            raise RuntimeError("RequestUnderstander is not trained: nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "request_understanding.npz", **asdict(self.heads))
        meta = {"config": asdict(self.config), "domain_services": self.domain_services, "intents": INTENTS,
                "domains": DOMAINS, "services": SERVICES,
                "rule_cues": RULE_CUES, "prototype_domains": PROTOTYPE_DOMAINS}
        (directory / "request_understanding.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "RequestUnderstander":
        directory = Path(directory)
        meta = json.loads((directory / "request_understanding.json").read_text())
        for key, expected in (("intents", INTENTS), ("domains", DOMAINS), ("services", SERVICES),
                              ("rule_cues", RULE_CUES), ("prototype_domains", PROTOTYPE_DOMAINS)):
            if tuple(meta.get(key, ())) != expected:
                raise ValueError(f"{directory}: saved {key} {meta.get(key)!r} differ from this code's {list(expected)!r}")
        config = RequestUnderstandingConfig(**meta["config"])
        with np.load(directory / "request_understanding.npz") as arrays:
            heads = LinearHeads(**{name: arrays[name] for name in ("hashed_weight", "dense_weight", "bias")})
        if heads.hashed_weight.shape[0] != config.hash_buckets:
            raise ValueError(f"{directory}: hashed_weight has {heads.hashed_weight.shape[0]} rows, "
                             f"config.hash_buckets is {config.hash_buckets}")
        domain_services = {domain: tuple(services) for domain, services in meta["domain_services"].items()}
        return cls(config, heads, domain_services)


_default: RequestUnderstander | None = None
_default_lock = threading.Lock()


def default_understander() -> RequestUnderstander:
    """The default-config understander trained on the train split, built once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RequestUnderstander.fit(load_labeled("train"))
        return _default


def understand(text: str, context: RequestUnderstanding | None = None) -> RequestUnderstanding:
    return default_understander().understand(text, context)


# ---------------------------------------------------------------- rules-only baseline

def keyword_understanding(text: str) -> RequestUnderstanding:
    """The rules-only baseline: first matching keyword list for intent and domain, services from the domain (and
    urgency / slot), the same rule slots as the trained model. For the benchmark; not used in serving."""
    lowered = normalize(text)
    slots = parse_slots(text)
    intent = next((name for name, regex in KEYWORD_INTENT_REGEXES if regex.search(lowered)), "recommend")
    domain = next((name for name, regex in KEYWORD_DOMAIN_REGEXES if regex.search(lowered)), "other")
    services = KEYWORD_DOMAIN_SERVICES.get(domain, ("megamarket",))
    if intent not in ("recommend", "clarify_needed") and domain == "other":
        services = ()
    return apply_intent(intent, domain, services, slots, 1.0, 1.0)


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the labeled split(s) and save, for serving: ``python -m recllm.dialogue.request_understanding
    --output artifacts/request_understanding``."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="Train the request understander and save it (npz + json).")
    parser.add_argument("--output", type=Path, required=True, help="directory to write")
    parser.add_argument("--preset", default="default", help="RequestUnderstandingConfig preset")
    parser.add_argument("--splits", nargs="+", default=["train"], choices=["train", "valid", "test"],
                        help="labeled splits to train on (train only keeps valid/test honest)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = RequestUnderstander.fit(load_labeled(args.splits), RequestUnderstandingConfig.from_name(args.preset))
    model.save(args.output)
    log.info("saved to %s", args.output)


if __name__ == "__main__":
    main()
