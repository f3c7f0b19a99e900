"""The common form of the public benchmark data sets, and their mapping into the behaviour-event schema.

Each loader (``amazon_beauty``, ``food_kitchen``, ``tafeng``) reads its files from ``../shared/data/<name>`` (never
copied into the repo) and returns an ``InteractionDataset``, possibly a subclass carrying that data set's own
evaluation split. ``to_events`` turns any of them into ``Event`` records that pass ``recllm.profile.event_schema``, so the
real data can be replayed through the same profile store as the synthetic ecosystem; ``placeholder_catalog`` gives
those events a catalog to be validated against until the data sets are mapped onto real service catalogs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from recllm.catalog.product_catalog import SERVICES, Catalog, Category, Item
from recllm.profile.events import Event

logger = logging.getLogger(__name__)

SHARED_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAY = 86_400
# The benchmarks have order but no clock, no prices, no places and no devices: these stand in for them.
PLACEHOLDER_PRICE = 1.0
PLACEHOLDER_REGION = "unknown"
PLACEHOLDER_DEVICE = "web"
EVENT_KIND = "purchase"


def default_data_dir(name: str) -> Path:
    """``<repo>/../shared/data/<name>``: where CI and the dev machines keep the benchmark files."""
    return SHARED_DATA_DIR / name


def require_file(data_dir: str | Path, file_name: str) -> Path:
    """``data_dir / file_name``, or FileNotFoundError naming the path and the data set's README."""
    path = Path(data_dir) / file_name
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist; see {Path(data_dir) / 'README.md'} "
                                "(the data sets live in ../shared/data beside the repo)")
    return path


@dataclass
class NextItemExample:
    """One evaluation line: predict ``target`` (of ``target_domain``) from ``history``, oldest first."""

    user_id: str
    history: tuple[int, ...]
    target: int
    target_domain: str


@dataclass
class InteractionDataset:
    """User sequences of one benchmark with whatever item text and domains it has.

    ``sequences`` hold every interaction of the data set in time order, evaluation targets included: train only on
    the data set's split (``amazon_beauty.leave_one_out``, ``FoodKitchenDataset.train_*``, ``tafeng.user_split``).
    """

    name: str                         # short, lower-case: the prefix of the users' ids in ``to_events``
    sequences: dict[str, list[int]]   # user -> item ids, oldest first
    item_text: dict[int, str]         # empty when the data set has no text (Ta-Feng)
    item_domain: dict[int, str]       # every item id of the data set -> its domain ("beauty", "food", ...)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or not self.name.islower():
            raise ValueError(f"InteractionDataset.name must be lower-case letters, digits and '_', got {self.name!r}")
        unknown = next((item for seq in self.sequences.values() for item in seq if item not in self.item_domain), None)
        if unknown is not None:
            raise ValueError(f"InteractionDataset {self.name!r}: field 'sequences' holds item {unknown} "
                             "that has no entry in 'item_domain'")

    @property
    def domains(self) -> list[str]:
        return sorted(set(self.item_domain.values()))

    def n_interactions(self) -> int:
        return sum(len(sequence) for sequence in self.sequences.values())

    def steps_of(self, user: str) -> list[list[int]]:
        """The user's interactions grouped into time steps; one item per step unless the data set has baskets."""
        return [[item] for item in self.sequences[user]]


def _service_of(dataset: InteractionDataset, service: str | Mapping[str, str]) -> dict[str, str]:
    by_domain = {domain: service for domain in dataset.domains} if isinstance(service, str) else dict(service)
    missing = sorted(set(dataset.domains) - set(by_domain))
    if missing:
        raise ValueError(f"to_events: no service given for domain(s) {missing} of {dataset.name!r}")
    bad = sorted(value for value in by_domain.values() if value not in SERVICES)
    if bad:
        raise ValueError(f"to_events: unknown service(s) {bad}; expected one of {', '.join(SERVICES)}")
    return by_domain


def to_events(dataset: InteractionDataset, service: str | Mapping[str, str], start_ts: int,
              users: Iterable[str] | None = None) -> list[Event]:
    """Every interaction as a "purchase" event of user ``"<dataset.name>-<user>"``, grouped by user, oldest first.

    ``users`` limits the output to those users of ``dataset.sequences`` (all by default; KeyError for others).

    ``service`` is one service for all items or a mapping domain -> service. The data sets only have order, so
    step k of every user happens at ``start_ts + k`` days; one step is one basket (``"<user_id>-<k>"``). Prices,
    regions and devices are unknown: every event gets the placeholder price ``PLACEHOLDER_PRICE`` = 1.0 (the schema
    rejects 0), quantity 1, region ``"unknown"`` and device ``"web"``. The prefix keeps these users apart from the
    synthetic ones (``u000123``).
    """
    services = _service_of(dataset, service)
    events = []
    for user in dataset.sequences if users is None else users:
        user_id = f"{dataset.name}-{user}"
        for step, basket in enumerate(dataset.steps_of(user)):
            timestamp, basket_id = start_ts + step * DAY, f"{user_id}-{step}"
            events.extend(Event(user_id, services[dataset.item_domain[item]], item, EVENT_KIND, timestamp, basket_id,
                                PLACEHOLDER_PRICE, 1, PLACEHOLDER_REGION, PLACEHOLDER_DEVICE) for item in basket)
    logger.info("mapped %s into %d events", dataset.name, len(events))
    return events


def placeholder_catalog(dataset: InteractionDataset, service: str | Mapping[str, str]) -> Catalog:
    """A catalog whose item ids are the data set's ids (0..max id), each sold in its domain's service.

    Ids the data set does not use (Beauty starts at 1) become out-of-stock "unused id" items of the first domain.
    Names are the item text where there is one; prices are the placeholder price.
    """
    services = _service_of(dataset, service)
    categories = [Category(f"{dataset.name}/{domain}", domain, domain, None, False) for domain in dataset.domains]
    first_domain = dataset.domains[0]
    items = []
    for item_id in range(max(dataset.item_domain) + 1):
        used = item_id in dataset.item_domain
        domain = dataset.item_domain[item_id] if used else first_domain
        name = dataset.item_text.get(item_id) or f"{dataset.name} {'item' if used else 'unused id'} {item_id}"
        items.append(Item(item_id, services[domain], item_id, name, "", f"{dataset.name}/{domain}", PLACEHOLDER_PRICE,
                          used, frozenset()))
    return Catalog(categories, items)
