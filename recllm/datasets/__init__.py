"""Loaders of the public benchmark data sets (in ``../shared/data``) into one ``InteractionDataset`` form.

- ``amazon_beauty`` — Amazon Beauty, one service, leave-one-out (``load_amazon_beauty``, ``leave_one_out``);
- ``food_kitchen`` — LLMCDSR Food–Kitchen, two domains with shared users (``load_food_kitchen``);
- ``tafeng`` — Ta-Feng grocery baskets, next-basket task (``load_tafeng``, ``user_split``);
- ``interaction_dataset`` — the common dataclass, ``to_events`` into the event schema, ``placeholder_catalog``.
"""

from recllm.datasets.amazon_beauty import LeaveOneOutSplit, leave_one_out, load_amazon_beauty
from recllm.datasets.food_kitchen import FoodKitchenDataset, load_food_kitchen
from recllm.datasets.interaction_dataset import (
    PLACEHOLDER_PRICE,
    SHARED_DATA_DIR,
    InteractionDataset,
    NextItemExample,
    placeholder_catalog,
    to_events,
)
from recllm.datasets.tafeng import TaFengDataset, UserSplit, load_tafeng, user_split

__all__ = ["InteractionDataset", "NextItemExample", "to_events", "placeholder_catalog", "PLACEHOLDER_PRICE",
           "SHARED_DATA_DIR", "load_amazon_beauty", "leave_one_out", "LeaveOneOutSplit", "load_food_kitchen",
           "FoodKitchenDataset", "load_tafeng", "user_split", "TaFengDataset", "UserSplit"]
