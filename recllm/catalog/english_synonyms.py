"""What English shoppers call goods that a catalog names otherwise: the request's word → the catalog's word.

``product_terms`` reads an English request against the items' English names ("running shoes", "potato chips").
People ask for "sneakers", "crisps", "nappies" or "earbuds", and British and American spellings differ
("yogurt" / "yoghurt"). Before a request's words are matched, multi-word names are replaced first
(``ENGLISH_PHRASE_SYNONYMS``, on the lower-cased text: "band-aid" must not read as "band" and "aid"), then each word,
in the singular, is mapped (``ENGLISH_WORD_SYNONYMS``). Only the request is rewritten; the target words are the
catalog's own words (a test holds every target to the default catalog's English names), so a target the catalog
does not have makes the request name nothing rather than something else.
"""

from __future__ import annotations

import re

# the lower-cased request's phrase → the words the catalog uses (matched on word boundaries, plural "s" allowed)
ENGLISH_PHRASE_SYNONYMS: dict[str, str] = {
    "band-aid": "plaster", "band aid": "plaster", "sticking plaster": "plaster",
    "slow cooker": "multicooker", "rice cooker": "multicooker", "pressure cooker": "multicooker",
    "coffee maker": "coffee machine", "espresso machine": "coffee machine",
    "cough drop": "lozenge", "throat drop": "lozenge", "cough sweet": "lozenge",
    "kitty litter": "cat litter", "dish soap": "dishwashing liquid", "washing-up liquid": "dishwashing liquid",
    "washing up liquid": "dishwashing liquid", "laundry detergent": "laundry gel", "washing powder": "laundry gel",
    "cell phone": "smartphone", "mobile phone": "smartphone", "bed sheet": "bed linen", "jump rope": "rope",
    "skipping rope": "rope", "wet wipe": "baby wipe", "toilet roll": "toilet paper", "kitchen roll": "paper towel",
    "sun cream": "sunscreen", "air fryer": "fryer", "moisturizer": "face cream", "moisturiser": "face cream",
    "hot dog": "sausage",
}

# a request's word, singular → the catalog's word, singular
ENGLISH_WORD_SYNONYMS: dict[str, str] = {
    "sneaker": "shoe", "trainer": "shoe", "crisp": "chip", "nappy": "diaper", "earphone": "headphone",
    "earbud": "headphone", "cellphone": "smartphone", "yogurt": "yoghurt",
    "courgette": "zucchini", "prawn": "shrimp", "mince": "beef", "soda": "cola", "oatmeal": "oat",
    "tee": "shirt", "tshirt": "shirt", "legging": "tight",
    "sunblock": "sunscreen", "skillet": "pan", "airfryer": "fryer", "tissue": "napkin", "serviette": "napkin",
    "veggie": "vegetable", "lego": "building", "bedding": "linen", "duvet": "blanket", "mandarin": "tangerine",
    "clementine": "tangerine", "sanitiser": "sanitizer", "dumbell": "dumbbell", "controller": "gamepad",
    "joystick": "gamepad", "windbreaker": "jacket",
}

_PHRASE_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(ENGLISH_PHRASE_SYNONYMS, key=len,
                                                                      reverse=True)) + r")s?\b")


# "phone" is the catalog's own word in "phone case": alone it means the smartphone
_PHONE_RE = re.compile(r"\bphones?\b(?!\s+(?:cases?|covers?|chargers?|holders?|stands?)\b)")


def with_phrase_synonyms(text: str) -> str:
    """The lower-cased ``text`` with each known multi-word name replaced by the catalog's ("a band-aid" → "a
    plaster"), and a "phone" that is no "phone case" or the like read as the smartphone."""
    text = _PHRASE_RE.sub(lambda m: ENGLISH_PHRASE_SYNONYMS[m.group(1)], text.lower())
    return _PHONE_RE.sub("smartphone", text)


def catalog_word(word: str) -> str:
    """A request's singular word as the catalog says it ("sneaker" → "shoe"; an unknown word unchanged)."""
    return ENGLISH_WORD_SYNONYMS.get(word, word)


__all__ = ["ENGLISH_PHRASE_SYNONYMS", "ENGLISH_WORD_SYNONYMS", "catalog_word", "with_phrase_synonyms"]
