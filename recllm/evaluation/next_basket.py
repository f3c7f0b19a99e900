"""Ta-Feng next-basket recommendation: the Reality-Check protocol, metrics, baselines and our sequential model.

Users are split 72 / 8 / 20 % (``recllm.datasets.tafeng.user_split``); for each validation / test user every
method predicts a ranked list from the history baskets and is scored against the whole future basket ``T``
(distinct items), averaged over users:

- ``Recall@K = |top-K ∩ T| / |T|``;
- ``NDCG@K = sum_{i < K, top[i] in T} 1/log2(i + 2) / sum_{i < min(|T|, K)} 1/log2(i + 2)`` (binary relevance);
- ``PHR@K`` = share of users with at least one hit;
- the repeat / explore breakdown: recall over the target items the user had bought before (``Rrep``) and over
  the new ones (``Rexpl``), each averaged over the users that have such items.

Baselines (``basket_baselines``): G-TopFreq, P-TopFreq, G-P-TopFreq and TIFU-KNN, whose hyper-parameters are
chosen on the validation users only (neighbour pool = the training users' histories). Our model is the SASRec of
``next_item.train_and_rank`` over the baskets flattened into one item sequence (trained on the training users'
history + future), ranking all items after the flattened history; each target item's rank among all items gives
exactly the metrics above (an item is in the top-K iff its rank is < K).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recllm.datasets.tafeng import TaFengDataset, user_split
from recllm.evaluation.basket_baselines import (
    GlobalPopularity,
    TifuKnn,
    TifuKnnConfig,
    nearest_neighbours,
    personal_frequency,
    personal_then_global,
    top_items,
    user_vectors,
)
from recllm.evaluation.next_item import ALL_ITEMS, train_and_rank
from recllm.evaluation.report_table import EvalReport
from recllm.seqrec.sasrec import SASRecConfig
from recllm.config.field_checks import require_above

logger = logging.getLogger(__name__)

NOT_RANKED = 1 << 30   # rank of a target item missing from a predicted list


@dataclass(frozen=True)
class TifuGrid:
    """The validation grid of TIFU-KNN (all combinations are tried)."""

    group_count: tuple[int, ...] = (3, 7, 11)
    within_decay: tuple[float, ...] = (0.6, 0.9, 1.0)
    group_decay: tuple[float, ...] = (0.6, 0.8, 1.0)
    n_neighbors: tuple[int, ...] = (100, 300, 900)
    alpha: tuple[float, ...] = (0.5, 0.7, 0.9, 1.0)

    def __post_init__(self) -> None:
        for name in ("group_count", "within_decay", "group_decay", "n_neighbors", "alpha"):
            if not getattr(self, name):
                raise ValueError(f"TifuGrid.{name} must hold at least one value")
        for values in itertools.product(self.group_count, self.within_decay, self.group_decay, self.n_neighbors,
                                        self.alpha):
            TifuKnnConfig(*values)   # validates every combination

    def size(self) -> int:
        return (len(self.group_count) * len(self.within_decay) * len(self.group_decay) * len(self.n_neighbors)
                * len(self.alpha))


def default_basket_model() -> SASRecConfig:
    return SASRecConfig.from_name("default", epochs=5)


@dataclass
class NextBasketEvalConfig:
    ks: tuple[int, ...] = (10, 20)
    split_seed: int = 0
    grid: TifuGrid = field(default_factory=TifuGrid)
    tune_metric: str = "R@10"
    model: SASRecConfig | None = field(default_factory=default_basket_model)   # None: no SASRec row
    user_stride: int = 1   # keep every n-th user of each split (quick runs)

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"NextBasketEvalConfig.ks must be positive cut-offs, got {self.ks!r}")
        if self.tune_metric not in {f"{m}@{k}" for m in ("R", "N", "PHR") for k in self.ks}:
            raise ValueError(f"NextBasketEvalConfig.tune_metric must be R@k, N@k or PHR@k for k in {self.ks}, "
                             f"got {self.tune_metric!r}")
        require_above(self, "user_stride", 1, inclusive=True)

    @classmethod
    def from_name(cls, name: str) -> "NextBasketEvalConfig":
        if name == "default":
            return cls()
        if name == "quick":
            return cls(grid=TifuGrid((3, 7), (0.9,), (0.7,), (50, 300), (0.7, 1.0)),
                       model=SASRecConfig.from_name("test", epochs=3), user_stride=10)
        raise ValueError(f"NextBasketEvalConfig preset {name!r} unknown; expected 'default' or 'quick'")


@dataclass
class BasketTargets:
    """The distinct future-basket items of each evaluated user, and which of them the user had bought before."""

    users: list[str]
    histories: list[list[list[int]]]
    items: list[np.ndarray]
    repeat: list[np.ndarray]

    @classmethod
    def of(cls, dataset: TaFengDataset, users: Sequence[str]) -> "BasketTargets":
        histories = [dataset.history[user] for user in users]
        items, repeat = [], []
        for user, history in zip(users, histories):
            seen = {item for basket in history for item in basket}
            target = np.array(sorted(set(dataset.future[user])), dtype=np.int64)
            items.append(target)
            repeat.append(np.array([item in seen for item in target.tolist()], dtype=bool))
        return cls(list(users), histories, items, repeat)


def list_ranks(predicted: Sequence[int], targets: np.ndarray) -> np.ndarray:
    """Position of each target item in the predicted list, ``NOT_RANKED`` when absent."""
    position = {item: index for index, item in enumerate(predicted)}
    return np.array([position.get(int(item), NOT_RANKED) for item in targets], dtype=np.int64)


def _mean_over(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def basket_metrics(ranks: Sequence[np.ndarray], repeat: Sequence[np.ndarray], ks: Sequence[int]) -> dict[str, float]:
    """R@k, N@k, PHR@k, Rrep@k, Rexpl@k averaged over users from each target item's 0-based rank (see module)."""
    if not ranks or len(ranks) != len(repeat):
        raise ValueError(f"basket_metrics: {len(ranks)} rank arrays for {len(repeat)} repeat masks")
    metrics = {}
    for k in ks:
        recall, ndcg, phr, rep, expl = [], [], [], [], []
        for user_ranks, user_repeat in zip(ranks, repeat):
            hit = user_ranks < k
            recall.append(hit.mean())
            gains = 1.0 / np.log2(np.arange(min(len(user_ranks), k)) + 2.0)
            ndcg.append((1.0 / np.log2(user_ranks[hit] + 2.0)).sum() / gains.sum())
            phr.append(float(hit.any()))
            if user_repeat.any():
                rep.append(hit[user_repeat].mean())
            if (~user_repeat).any():
                expl.append(hit[~user_repeat].mean())
        metrics.update({f"R@{k}": _mean_over(recall), f"N@{k}": _mean_over(ndcg), f"PHR@{k}": _mean_over(phr),
                        f"Rrep@{k}": _mean_over(rep), f"Rexpl@{k}": _mean_over(expl)})
    return metrics


def score_lists(predictions: Sequence[Sequence[int]], targets: BasketTargets, ks: Sequence[int]) -> dict[str, float]:
    ranks = [list_ranks(predicted, items) for predicted, items in zip(predictions, targets.items)]
    return basket_metrics(ranks, targets.repeat, ks)


@dataclass
class TifuTuning:
    best: TifuKnnConfig
    best_valid: dict[str, float]
    tried: int
    seconds: float


def tune_tifu_knn(pool: Sequence, valid: BasketTargets, n_items: int, grid: TifuGrid, metric: str,
                  ks: Sequence[int]) -> TifuTuning:
    """Every grid combination scored on the validation users; the best by ``metric`` (first on ties)."""
    start, best, best_metrics, tried = time.perf_counter(), None, None, 0
    for group_count, within, across in itertools.product(grid.group_count, grid.within_decay, grid.group_decay):
        model = TifuKnn(pool, n_items, TifuKnnConfig(group_count, within, across, max(grid.n_neighbors), 1.0))
        queries = user_vectors(valid.histories, n_items, group_count, within, across).to_dense()   # [Q, I]
        neighbours = nearest_neighbours(queries, model.pool, max(grid.n_neighbors))                  # [Q, k_max]
        for n_neighbors, alpha in itertools.product(grid.n_neighbors, grid.alpha):
            scores = model.mix(queries, neighbours[:, :n_neighbors], alpha)
            metrics = score_lists(top_items(scores, max(ks)), valid, ks)
            tried += 1
            if best_metrics is None or metrics[metric] > best_metrics[metric]:
                best, best_metrics = TifuKnnConfig(group_count, within, across, n_neighbors, alpha), metrics
        logger.info("TIFU-KNN grid: m=%d rb=%.2f rg=%.2f done; best so far %s %.4f (%s)", group_count, within,
                    across, metric, best_metrics[metric], best)
    return TifuTuning(best, best_metrics, tried, time.perf_counter() - start)


def flattened(baskets: Sequence[Sequence[int]]) -> list[int]:
    """Model ids (product id + 1) of every item of every basket, oldest basket first."""
    return [item + 1 for basket in baskets for item in basket]


def sasrec_metrics(dataset: TaFengDataset, train_users: Sequence[str], groups: dict[str, BasketTargets],
                   config: SASRecConfig, ks: Sequence[int]) -> tuple[dict[str, dict[str, float]], str]:
    """Train once on the training users' flattened baskets, rank every target item of every group."""
    train = [flattened(dataset.steps_of(user)) for user in train_users]
    histories, targets, owners = [], [], []
    for name, group in groups.items():
        for index, (history, items) in enumerate(zip(group.histories, group.items)):
            flat = flattened(history)
            histories.extend([flat] * len(items))
            targets.extend(int(item) + 1 for item in items)
            owners.extend([(name, index)] * len(items))
    n_items = max(dataset.item_domain) + 1
    trained = train_and_rank(train, histories, targets, n_items, config)
    ranks = trained.ranks[ALL_ITEMS].raw
    per_user: dict[tuple[str, int], list[int]] = {}
    for owner, rank in zip(owners, ranks.tolist()):
        per_user.setdefault(owner, []).append(rank)
    results = {}
    for name, group in groups.items():
        user_ranks = [np.array(per_user[(name, index)], dtype=np.int64) for index in range(len(group.users))]
        results[name] = basket_metrics(user_ranks, group.repeat, ks)
    return results, f"`{trained.config}`, trained in {trained.train_seconds:.0f} s"


def evaluate_tafeng(dataset: TaFengDataset, config: NextBasketEvalConfig) -> EvalReport:
    split = user_split(dataset, config.split_seed)
    train_users = split.train[::config.user_stride]
    groups = {"valid": BasketTargets.of(dataset, split.valid[::config.user_stride]),
              "test": BasketTargets.of(dataset, split.test[::config.user_stride])}
    n_items = max(dataset.item_domain) + 1
    known_baskets = ([basket for user in train_users for basket in dataset.steps_of(user)]
                     + [basket for group in groups.values() for history in group.histories for basket in history])
    popularity = GlobalPopularity(known_baskets)
    k_max = max(config.ks)
    train_histories = [dataset.history[user] for user in train_users]
    tuning = tune_tifu_knn(train_histories, groups["valid"], n_items, config.grid, config.tune_metric, config.ks)
    tifu = TifuKnn(train_histories, n_items, tuning.best)
    rows: dict[str, dict[str, dict[str, float]]] = {name: {} for name in groups}
    for name, group in groups.items():
        rows[name]["G-TopFreq (global popularity)"] = score_lists([popularity.top(k_max)] * len(group.users),
                                                                  group, config.ks)
        rows[name]["P-TopFreq (personal frequency)"] = score_lists(
            [personal_frequency(history, k_max) for history in group.histories], group, config.ks)
        rows[name]["G-P-TopFreq (personal, then global)"] = score_lists(
            [personal_then_global(history, popularity, k_max) for history in group.histories], group, config.ks)
        rows[name]["TIFU-KNN (tuned on valid)"] = score_lists(tifu.predict(group.histories, k_max), group, config.ks)
    model_note = "SASRec over baskets: not run (no model configured)"
    if config.model is not None:
        model_rows, trained = sasrec_metrics(dataset, train_users, groups, config.model, config.ks)
        for name in groups:
            rows[name]["SASRec over flattened baskets (ours)"] = model_rows[name]
        model_note = f"SASRec over flattened baskets: {trained}"
    report = EvalReport(
        "Ta-Feng: next-basket recommendation (Reality-Check preprocessing)",
        f"Users split 72/8/20 with seed {config.split_seed} (`recllm.datasets.tafeng.user_split`): "
        f"{len(train_users):,} train / {len(groups['valid'].users):,} valid / {len(groups['test'].users):,} test "
        f"users. Each method predicts a ranked list from the history baskets; the target is the whole future "
        f"basket T (distinct items). Recall@K = |top-K ∩ T| / |T|; NDCG@K binary, ideal DCG over min(|T|, K) "
        f"items; PHR@K = share of users with a hit; Rrep / Rexpl = recall over the target items the user bought "
        f"before / never bought, averaged over users having such items. Popularity counts the baskets known at "
        f"prediction time (all training baskets and every evaluated user's history). TIFU-KNN's {tuning.tried} "
        f"grid points were scored on the validation users only (neighbour pool = training users' histories; "
        f"{tuning.seconds:.0f} s); chosen by valid {config.tune_metric}: `{tuning.best}`. {model_note}. The "
        f"README collected no published numbers for this split.")
    main_columns = [f"{m}@{k}" for k in config.ks for m in ("R", "N", "PHR")]
    split_columns = [f"{m}@{k}" for k in config.ks for m in ("Rrep", "Rexpl")]
    report.add_table("test", f"Test users (n={len(groups['test'].users):,})", rows["test"], main_columns)
    report.add_table("test_repeat_explore", "Test users: repeat / explore recall", rows["test"], split_columns)
    report.add_table("valid", f"Validation users (n={len(groups['valid'].users):,}; TIFU-KNN tuned here)",
                     rows["valid"], main_columns + split_columns)
    return report
