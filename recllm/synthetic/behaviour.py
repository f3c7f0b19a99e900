"""Synthetic users and their purchase histories across the three services.

Latent traits drive behaviour in every service at once (a runner buys running gear on megamarket and vegetables on
kuper / samokat), users stick to one or two brands per category and re-buy favourite items, samokat orders follow a
personal time-of-day pattern (breakfast mornings, evening dinners, late-night snacks), kuper orders are weekly weekend
baskets, megamarket orders are rare. Hours are Moscow local time (UTC+3) for every region, for simplicity.
Each user has its own random stream, so one user's history does not depend on another's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from recllm.catalog.product_catalog import Catalog, Item
from recllm.profile.events import CHAT_DEVICE, DEVICES, FEEDBACK_STYLE_KINDS, Event
from recllm.synthetic.records import UserProfileSeed
from recllm.synthetic.vocabulary import TOY_AGE_BANDS

DAY = 86_400
LOCAL_UTC_OFFSET = 3 * 3600

TRAIT_PROBABILITIES: dict[str, float] = {
    "runner": 0.2, "healthy_eater": 0.25, "parent": 0.3, "sweet_tooth": 0.25, "lactose_intolerant": 0.15,
    "pet_owner": 0.25, "coffee_lover": 0.3, "budget": 0.25, "gamer": 0.15, "cook": 0.2, "reader": 0.15,
}
REGIONS: dict[str, float] = {"moscow": 0.45, "spb": 0.2, "kazan": 0.07, "ekaterinburg": 0.07, "novosibirsk": 0.06,
                             "nizhny_novgorod": 0.05, "krasnodar": 0.05, "samara": 0.05}
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")

# Consumables are re-bought; durable goods (shoes, toys, phones) are not.
CONSUMABLE_PREFIXES = ("grocery/", "household/", "pet/cat_food", "pet/dog_food", "kids/diapers", "pharmacy/")

SAMOKAT_SLOTS: dict[str, tuple[tuple[int, int], dict[str, float]]] = {
    # slot: ((first hour, last hour), category multipliers; unlisted categories get "*")
    "morning": ((7, 10), {"grocery/breakfast": 3, "grocery/coffee": 3, "grocery/dairy": 2, "grocery/lactose_free": 2,
                          "grocery/bakery": 2, "grocery/fruit": 1.5, "*": 0.4}),
    "lunch": ((12, 15), {"grocery/ready_food": 3, "grocery/healthy_snacks": 2, "grocery/drinks": 1.5, "*": 0.7}),
    "evening": ((18, 21), {"grocery/ready_food": 2, "grocery/vegetables": 1.5, "grocery/meat": 1.5, "grocery/fish": 1.5,
                           "grocery/grains": 1.5, "grocery/sweets": 1.3, "grocery/salty_snacks": 1.3, "*": 1.0}),
    "late_night": ((22, 25), {"grocery/sweets": 3, "grocery/salty_snacks": 3, "grocery/drinks": 2,
                              "grocery/ready_food": 1.5, "*": 0.3}),
}


@dataclass
class UserState:
    """Mutable per-user generation state: loyalties and favourites accumulate as the history is simulated."""

    profile: UserProfileSeed
    rng: random.Random
    device: str
    services: tuple[str, ...]
    brand_loyalty: dict[str, tuple[str, ...]] = field(default_factory=dict)      # category -> brands
    favourites: dict[tuple[str, str], list[Item]] = field(default_factory=dict)  # (service, category) -> items

    def has(self, trait: str) -> bool:
        return trait in self.profile.traits


class ShelfIndex:
    """Items by (service, category) and brands by category, precomputed once per catalog."""

    def __init__(self, catalog: Catalog):
        self.shelves: dict[tuple[str, str], list[Item]] = {}
        brand_prices: dict[str, dict[str, list[float]]] = {}
        for item in catalog.items:
            self.shelves.setdefault((item.service, item.category_id), []).append(item)
            brand_prices.setdefault(item.category_id, {}).setdefault(item.brand, []).append(item.price)
        # brands of a category from cheapest to priciest (mean price), ties by name for determinism
        self.brands_by_price = {
            category: sorted(prices, key=lambda brand: (sum(prices[brand]) / len(prices[brand]), brand))
            for category, prices in brand_prices.items()
        }

    def shelf(self, service: str, category_id: str) -> list[Item]:
        return self.shelves.get((service, category_id), [])


def _weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    keys = [key for key in sorted(weights) if weights[key] > 0]
    return rng.choices(keys, weights=[weights[key] for key in keys])[0]


def make_user(index: int, seed: int) -> UserProfileSeed:
    rng = random.Random(f"{seed}:profile:{index}")
    traits = {trait for trait, probability in sorted(TRAIT_PROBABILITIES.items()) if rng.random() < probability}
    if not traits:
        traits.add(rng.choice(sorted(TRAIT_PROBABILITIES)))
    kid_age = None
    if "parent" in traits:
        kid_age = rng.randint(0, 12)
        traits.add(rng.choice(("has_son", "has_daughter")))
    if "pet_owner" in traits:
        traits.add(rng.choice(("cat_owner", "dog_owner")))
    if "parent" in traits:
        age_band = rng.choices(AGE_BANDS, weights=(0.05, 0.45, 0.4, 0.1, 0.0))[0]
    elif "gamer" in traits:
        age_band = rng.choices(AGE_BANDS, weights=(0.5, 0.35, 0.1, 0.05, 0.0))[0]
    else:
        age_band = rng.choices(AGE_BANDS, weights=(0.2, 0.3, 0.25, 0.15, 0.1))[0]
    region = _weighted_choice(rng, REGIONS)
    return UserProfileSeed(f"u{index:06d}", age_band, region, frozenset(traits), kid_age)


def _active_services(profile: UserProfileSeed, rng: random.Random) -> tuple[str, ...]:
    traits = profile.traits
    uses_samokat = rng.random() < 0.85
    uses_kuper = rng.random() < (0.85 if traits & {"parent", "cook", "runner", "healthy_eater"} else 0.6)
    if not (uses_samokat or uses_kuper):
        uses_samokat = True
    uses_megamarket = bool(traits & {"runner", "parent", "gamer", "pet_owner"}) or rng.random() < 0.7
    return tuple(service for service, used in (("samokat", uses_samokat), ("megamarket", uses_megamarket),
                                               ("kuper", uses_kuper)) if used)


def grocery_weights(state: UserState) -> dict[str, float]:
    """Category weights of this user's grocery baskets (samokat and kuper), shaped by traits."""
    weights = {"grocery/vegetables": 1, "grocery/fruit": 1, "grocery/dairy": 1.5, "grocery/lactose_free": 0.05,
               "grocery/meat": 0.8, "grocery/fish": 0.3, "grocery/grains": 0.6, "grocery/bakery": 1,
               "grocery/breakfast": 0.5, "grocery/sweets": 0.6, "grocery/salty_snacks": 0.5,
               "grocery/healthy_snacks": 0.3, "grocery/drinks": 1, "grocery/coffee": 0.4, "grocery/ready_food": 0.8,
               "household/cleaning": 0.25, "household/paper": 0.25, "pharmacy/vitamins": 0.03}
    multipliers = {
        "runner": {"grocery/vegetables": 3, "grocery/fruit": 2, "grocery/fish": 3, "grocery/healthy_snacks": 5,
                   "grocery/grains": 1.5, "grocery/sweets": 0.3, "grocery/salty_snacks": 0.3, "grocery/ready_food": 0.6},
        "healthy_eater": {"grocery/vegetables": 3, "grocery/fruit": 2, "grocery/fish": 3, "grocery/healthy_snacks": 4,
                          "grocery/sweets": 0.3, "grocery/salty_snacks": 0.3, "grocery/ready_food": 0.6},
        "cook": {"grocery/vegetables": 1.5, "grocery/meat": 2, "grocery/grains": 2, "grocery/ready_food": 0.3},
        "sweet_tooth": {"grocery/sweets": 5, "grocery/bakery": 1.5},
        "coffee_lover": {"grocery/coffee": 8, "grocery/dairy": 1.3},
        "gamer": {"grocery/salty_snacks": 2.5, "grocery/drinks": 1.5},
    }
    for trait, factors in sorted(multipliers.items()):
        if state.has(trait):
            for category, factor in factors.items():
                weights[category] *= factor
    if state.has("lactose_intolerant"):  # mostly lactose-free already, with a few old habits left
        weights["grocery/lactose_free"] = weights["grocery/dairy"] * 1.2
        weights["grocery/dairy"] *= 0.3
    if state.has("cat_owner"):
        weights["pet/cat_food"] = 0.8
    if state.has("dog_owner"):
        weights["pet/dog_food"] = 0.8
    if state.profile.kid_age is not None and state.profile.kid_age <= 2:
        weights["grocery/baby_food"] = 1.5
    if state.profile.kid_age is not None and state.profile.kid_age <= 3:
        weights["kids/diapers"] = 0.8
    return weights


def megamarket_weights(state: UserState) -> dict[str, float]:
    weights = {"electronics/headphones": 0.5, "electronics/smartphones": 0.2, "electronics/kitchen_appliances": 0.4,
               "home/kitchenware": 0.5, "home/textiles": 0.4, "beauty/skincare": 0.5, "beauty/haircare": 0.5,
               "books/fiction": 0.3, "books/cookbooks": 0.1, "sport/fitness": 0.2}
    additions = {
        "runner": {"sport/running_shoes": 3, "sport/running_apparel": 3, "sport/nutrition": 1.5, "sport/fitness": 1},
        "healthy_eater": {"sport/fitness": 1, "sport/nutrition": 0.5},
        "gamer": {"electronics/gaming": 4, "electronics/headphones": 1},
        "reader": {"books/fiction": 3},
        "cook": {"books/cookbooks": 1, "home/kitchenware": 1.5, "electronics/kitchen_appliances": 1},
        "coffee_lover": {"electronics/kitchen_appliances": 0.5},
        "cat_owner": {"pet/cat_food": 2, "pet/accessories": 1},
        "dog_owner": {"pet/dog_food": 2, "pet/accessories": 1},
    }
    for trait, extra in sorted(additions.items()):
        if state.has(trait):
            for category, weight in extra.items():
                weights[category] = weights.get(category, 0) + weight
    kid_age = state.profile.kid_age
    if kid_age is not None:
        band = next(category for category, (low, high) in TOY_AGE_BANDS.items() if low <= kid_age <= high)
        weights[band] = 4
        weights["kids/books"] = 1.5 if kid_age >= 2 else 0.3
        if kid_age <= 3:
            weights["kids/diapers"] = 2
        if kid_age <= 2:
            weights["grocery/baby_food"] = 1
    return weights


def _loyal_brands(state: UserState, shelves: ShelfIndex, category_id: str) -> tuple[str, ...]:
    if category_id not in state.brand_loyalty:
        brands = shelves.brands_by_price[category_id]
        count = min(len(brands), state.rng.choice((1, 2)))
        if state.has("budget"):  # budget shoppers settle on the cheapest brands
            chosen = brands[: max(count, 2)][:count]
        else:
            chosen = state.rng.sample(brands, count)
        state.brand_loyalty[category_id] = tuple(chosen)
    return state.brand_loyalty[category_id]


def pick_item(state: UserState, shelves: ShelfIndex, service: str, category_id: str) -> Item | None:
    """An item of the category: a favourite again, else mostly a loyal brand, cheap ones for budget shoppers."""
    shelf = shelves.shelf(service, category_id)
    if not shelf:
        return None
    rng = state.rng
    favourites = state.favourites.setdefault((service, category_id), [])
    if favourites and category_id.startswith(CONSUMABLE_PREFIXES) and rng.random() < 0.6:
        return rng.choice(favourites)
    loyal = _loyal_brands(state, shelves, category_id)
    candidates = [item for item in shelf if item.brand in loyal] if rng.random() < 0.85 else shelf
    candidates = candidates or shelf
    if state.has("budget"):
        item = rng.choices(candidates, weights=[1.0 / item.price ** 2 for item in candidates])[0]
    else:
        item = rng.choice(candidates)
    if len(favourites) < 3:
        favourites.append(item)
    return item


@dataclass(frozen=True)
class Order:
    service: str
    timestamp: int
    lines: tuple[tuple[Item, int], ...]   # (item, quantity)


def _weekday(start_day: int, day: int) -> int:
    """0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday)."""
    return (start_day // DAY + day + 3) % 7


def _local_time(start_day: int, day: int, hour: float) -> int:
    return start_day + day * DAY + int(hour * 3600) - LOCAL_UTC_OFFSET


def _basket(state: UserState, shelves: ShelfIndex, service: str, weights: dict[str, float], size: int,
            max_quantity: int) -> list[tuple[Item, int]]:
    lines: dict[int, tuple[Item, int]] = {}
    sold = sorted(category for category, weight in weights.items() if weight > 0 and shelves.shelf(service, category))
    for category in state.rng.choices(sold, weights=[weights[category] for category in sold], k=size):
        item = pick_item(state, shelves, service, category)
        if item is not None and item.item_id not in lines:
            lines[item.item_id] = (item, state.rng.randint(1, max_quantity))
    return list(lines.values())


def samokat_orders(state: UserState, shelves: ShelfIndex, start_day: int, days: int) -> list[Order]:
    rng = state.rng
    slot_weights = {slot: rng.uniform(0.2, 1.0) for slot in SAMOKAT_SLOTS}
    if state.has("coffee_lover"):
        slot_weights["morning"] += 1.5
    if state.has("sweet_tooth") or state.has("gamer"):
        slot_weights["late_night"] += 1.2
    mean_gap = rng.uniform(1.5, 4.0) * (0.7 if state.has("coffee_lover") else 1.0)
    base = grocery_weights(state)
    orders, day = [], rng.uniform(0, mean_gap)
    while day < days:
        weekend_eve = _weekday(start_day, int(day)) in (4, 5)   # Friday and Saturday nights
        late_night = slot_weights["late_night"] * (2 if weekend_eve else 1)
        slot = _weighted_choice(rng, {**slot_weights, "late_night": late_night})
        (first_hour, last_hour), factors = SAMOKAT_SLOTS[slot]
        weights = {category: weight * factors.get(category, factors["*"]) for category, weight in base.items()}
        size = rng.randint(1, 5)
        lines = _basket(state, shelves, "samokat", weights, size, max_quantity=2)
        if lines:
            orders.append(Order("samokat", _local_time(start_day, int(day), rng.uniform(first_hour, last_hour + 0.99)),
                                tuple(lines)))
        day += rng.expovariate(1.0 / mean_gap)
    return orders


def kuper_orders(state: UserState, shelves: ShelfIndex, start_day: int, days: int) -> list[Order]:
    """Weekly weekend baskets with the user's staple vegetables in every one of them."""
    rng = state.rng
    saturday = (5 - _weekday(start_day, 0)) % 7
    weights = grocery_weights(state)
    weekly_vegetables = state.has("runner") or state.has("healthy_eater") or state.has("cook") or rng.random() < 0.5
    orders = []
    for day in range(saturday + rng.choice((0, 1)), days, 7):
        if rng.random() < 0.12:
            continue  # a skipped week
        lines = _basket(state, shelves, "kuper", weights, rng.randint(6, 14), max_quantity=3)
        if weekly_vegetables:
            present = {item.item_id for item, _ in lines}
            for _ in range(2):
                item = pick_item(state, shelves, "kuper", "grocery/vegetables")
                if item is not None and item.item_id not in present:
                    lines.append((item, rng.randint(1, 3)))
                    present.add(item.item_id)
        orders.append(Order("kuper", _local_time(start_day, day, rng.uniform(9, 20)), tuple(lines)))
    return orders


def megamarket_orders(state: UserState, shelves: ShelfIndex, start_day: int, days: int) -> list[Order]:
    rng = state.rng
    focused = state.profile.traits & {"runner", "parent", "gamer", "pet_owner", "reader"}
    mean_gap = 12.0 if focused else 20.0
    weights = megamarket_weights(state)
    orders, day = [], rng.uniform(0, min(days, 10))
    while day < days:
        lines = _basket(state, shelves, "megamarket", weights, rng.choice((1, 1, 2)), max_quantity=1)
        if lines:
            orders.append(Order("megamarket", _local_time(start_day, int(day), rng.uniform(10, 23.9)), tuple(lines)))
        day += rng.expovariate(1.0 / mean_gap)
    return orders


class _EventWriter:
    def __init__(self, state: UserState, shelves: ShelfIndex, end: int):
        self.state, self.shelves, self.end = state, shelves, end
        self.events: list[Event] = []

    def emit(self, service: str, item: Item, kind: str, timestamp: int, basket_id: str | None, quantity: int = 1,
             device: str | None = None) -> None:
        if timestamp < self.end:
            profile = self.state.profile
            self.events.append(Event(profile.user_id, service, item.item_id, kind, timestamp, basket_id, item.price,
                                     quantity, profile.region, device or self.state.device))

    def order(self, order: Order, basket_id: str) -> None:
        rng, t = self.state.rng, order.timestamp
        device = "web" if order.service == "megamarket" and rng.random() < 0.3 else self.state.device
        if rng.random() < 0.25:
            self.emit(order.service, order.lines[0][0], "search", t - rng.randint(600, 1200), None, device=device)
        for item, quantity in order.lines:
            self.emit(order.service, item, "view", t - rng.randint(60, 590), None, device=device)
            self.emit(order.service, item, "add_to_cart", t - rng.randint(5, 59), basket_id, quantity, device)
            self.emit(order.service, item, "purchase", t, basket_id, quantity, device)
            self.after_purchase(order.service, item, quantity, t, basket_id)
        self.browse(order, device)

    def browse(self, order: Order, device: str) -> None:
        """Views of items looked at but not bought, from the same shelves."""
        rng = self.state.rng
        for _ in range(rng.randint(0, 2)):
            item = rng.choice(order.lines)[0]
            other = rng.choice(self.shelves.shelf(order.service, item.category_id))
            self.emit(order.service, other, "view", order.timestamp - rng.randint(600, 1800), None, device=device)

    def after_purchase(self, service: str, item: Item, quantity: int, t: int, basket_id: str) -> None:
        rng = self.state.rng
        if rng.random() < 0.06:
            stars = rng.choices((1, 2, 3, 4, 5), weights=(0.03, 0.05, 0.12, 0.35, 0.45))[0]
            self.emit(service, item, "rating", t + rng.randint(DAY, 3 * DAY), basket_id, stars)
        if rng.random() < (0.04 if service == "megamarket" else 0.005):
            self.emit(service, item, "return", t + rng.randint(2 * DAY, 10 * DAY), basket_id, quantity)


# Past conversations: the share of users who once told the assistant how they like explanations («объясняй
# подробнее» / «покороче», written as ``feedback_style_*`` events like the chat engine writes them), and how often
# that was "detailed". Drawn from a random stream of its own, so every other event of the history stays the same.
STYLE_REQUEST_SHARE = 0.35
DETAILED_SHARE = 0.55
STYLE_REGION = "unknown"  # the chat knows no region (recllm.profile.feedback.FEEDBACK_REGION)


def style_reaction(profile: UserProfileSeed, purchases: list[Event], seed: int, end: int) -> list[Event]:
    """At most one ``feedback_style_*`` event, an hour after one of the user's purchases (the item shown then),
    before ``end``."""
    rng = random.Random(f"{seed}:chat-style:{profile.user_id}")
    if not purchases or rng.random() >= STYLE_REQUEST_SHARE:
        return []
    style = "detailed" if rng.random() < DETAILED_SHARE else "short"
    bought = rng.choice(purchases)
    event = Event(profile.user_id, bought.service, bought.item_id, FEEDBACK_STYLE_KINDS[style],
                  bought.timestamp + 3600, None, bought.price, 1, STYLE_REGION, CHAT_DEVICE)
    return [event] if event.timestamp < end else []


def simulate_history(profile: UserProfileSeed, catalog_shelves: ShelfIndex, seed: int, start_timestamp: int,
                     history_days: int) -> list[Event]:
    """All events of one user in [start_timestamp, start_timestamp + history_days days), unsorted."""
    rng = random.Random(f"{seed}:history:{profile.user_id}")
    device = rng.choices(DEVICES, weights=(0.4, 0.45, 0.15))[0]
    state = UserState(profile, rng, device, _active_services(profile, rng))
    start_day = start_timestamp - start_timestamp % DAY + DAY   # first full local day after the start
    builders = {"samokat": samokat_orders, "kuper": kuper_orders, "megamarket": megamarket_orders}
    orders = [order for service in state.services
              for order in builders[service](state, catalog_shelves, start_day, history_days - 1)]
    orders.sort(key=lambda order: (order.timestamp, order.service))
    writer = _EventWriter(state, catalog_shelves, start_timestamp + history_days * DAY)
    for number, order in enumerate(orders):
        writer.order(order, f"{profile.user_id}-{order.service}-{number:04d}")
    return [event for event in writer.events if event.timestamp >= start_timestamp]
