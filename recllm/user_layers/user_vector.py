"""The user context vector ``u`` [d_u]: what every adaptive user layer is conditioned on.

``u`` is built from the profile only through what the model is allowed to read (``read_user_context``):

    u = [ pref_long (DP release) [P] ; pref_short (DP release) [P] ;     zeros when the user has no release
          age band one-hot [A] ; region one-hot [G] ;                    unknown band/region: all zeros
          time-of-day shares [4] (night 0-6, morning 6-12, day 12-18, evening 18-24 local) ; weekend share [1] ;
          per-service activity shares [3] ; log1p(purchases) / 8 [1] ;
          explanation style [3]: asked for detailed, asked for short (the latest ``feedback_style_*`` wins),
          «почему?» asks min(n, 3) / 3 ]

The temporal part comes from the store's per-service hour/weekday histograms when the store has them, else from the
purchase timestamps (same local clock, ``profile.history``). Nothing here touches the raw preference vectors: the
DP release is the only preference input, so ``u`` inherits its per-user ε ledger.

Cold users (no purchases, no release) get their **segment's** vector. Segments are k-means clusters (k-means++
seeded, Lloyd iterations, deterministic for a seed) over the warm users' ``u``; a cold user is assigned to the
segment whose centroid is nearest on the demographic coordinates alone (the only ones a cold user has), and gets
that centroid with its own demographic one-hots written in. ``SegmentModel`` is saved with the trained layers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from recllm.catalog.product_catalog import SERVICES
from recllm.profile.history import DAY_S, EPOCH_WEEKDAY, HOUR_S, HistoryConfig, histograms_from_rows
from recllm.profile.user_context import UserContext, read_user_context

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
REGIONS: tuple[str, ...] = ("moscow", "spb", "kazan", "ekaterinburg", "novosibirsk", "other")
DAY_PARTS = 4
ACTIVITY_SCALE = 8.0  # log1p(purchases) / 8 stays below ~1 up to a few thousand purchases
STYLE_PART = 3  # [asked detailed, asked short, «почему?» asks / WHY_SCALE]
WHY_SCALE = 3


@dataclass
class UserVectorConfig:
    """Layout of ``u``; ``pref_dim`` is the item-vector (and so DP-release) dimension."""

    pref_dim: int = 16
    age_bands: tuple[str, ...] = AGE_BANDS
    regions: tuple[str, ...] = REGIONS
    services: tuple[str, ...] = SERVICES
    n_segments: int = 8
    kmeans_iters: int = 50
    seed: int = 0

    def __post_init__(self):
        for name in ("pref_dim", "n_segments", "kmeans_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"UserVectorConfig.{name} must be a positive int, got {value!r}")
        for name in ("age_bands", "regions", "services"):
            value = tuple(getattr(self, name))
            if not value or len(set(value)) != len(value):
                raise ValueError(f"UserVectorConfig.{name} must be non-empty and without duplicates, got {value!r}")
            setattr(self, name, value)

    @property
    def dim(self) -> int:
        return (2 * self.pref_dim + len(self.age_bands) + len(self.regions) + DAY_PARTS + 1 + len(self.services) + 1
                + STYLE_PART)

    def slices(self) -> dict[str, slice]:
        """Named coordinate ranges of ``u``."""
        sizes = [("pref_long", self.pref_dim), ("pref_short", self.pref_dim), ("age_band", len(self.age_bands)),
                 ("region", len(self.regions)), ("day_parts", DAY_PARTS), ("weekend", 1),
                 ("service_share", len(self.services)), ("activity", 1), ("style", STYLE_PART)]
        out, start = {}, 0
        for name, size in sizes:
            out[name] = slice(start, start + size)
            start += size
        return out


@dataclass(frozen=True)
class Demographics:
    age_band: str | None = None
    region: str | None = None


def read_demographics(profile) -> dict[str, Demographics]:
    """user_id -> Demographics from the store's ``users`` table (SQLite backend; empty when it has none)."""
    connection = getattr(profile, "connection", None)
    if connection is None:
        return {}
    rows = connection().execute("SELECT user_id, age_band, region FROM users").fetchall()
    return {user_id: Demographics(age_band, region) for user_id, age_band, region in rows}


def temporal_counts(timestamps: Sequence[int], offset_s: int) -> tuple[np.ndarray, np.ndarray]:
    """(hour counts [24], weekday counts [7]) of unix timestamps on the local clock ``offset_s``."""
    local = np.asarray(timestamps, dtype=np.int64) + offset_s
    hours = np.bincount(local % DAY_S // HOUR_S, minlength=24)
    weekdays = np.bincount((local // DAY_S + EPOCH_WEEKDAY) % 7, minlength=7)
    return hours, weekdays


def _temporal_part(hours: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    parts = hours.reshape(DAY_PARTS, -1).sum(axis=1).astype(np.float64)  # [4]
    total = max(parts.sum(), 1.0)
    weekend = weekdays[5:].sum() / max(weekdays.sum(), 1)
    return np.concatenate([parts / total, [weekend]])


def _one_hot(value: str | None, vocabulary: tuple[str, ...], fallback: str | None = None) -> np.ndarray:
    out = np.zeros(len(vocabulary))
    if value in vocabulary:
        out[vocabulary.index(value)] = 1.0
    elif value is not None and fallback in vocabulary:
        out[vocabulary.index(fallback)] = 1.0
    return out


def user_vector(context: UserContext, config: UserVectorConfig, demographics: Demographics | None = None,
                histogram_rows: Sequence | None = None,
                history: HistoryConfig | None = None) -> np.ndarray:
    """``u`` [d_u] float32 of one user (see the module docstring); ``histogram_rows`` as the store returns them."""
    demographics = demographics or Demographics()
    signals = context.signals
    prefs = []
    for vector in (signals.pref_long, signals.pref_short):
        if vector is not None and len(vector) != config.pref_dim:
            raise ValueError(f"preference vector has {len(vector)} dims, UserVectorConfig.pref_dim={config.pref_dim}")
        prefs.append(np.zeros(config.pref_dim) if vector is None else np.asarray(vector, dtype=np.float64))
    if histogram_rows:
        histograms = histograms_from_rows(histogram_rows)
        hours = sum(histograms.hours.values())
        weekdays = sum(histograms.weekdays.values())
    else:
        hours, weekdays = temporal_counts([e.timestamp for e in context.purchases],
                                          (history or HistoryConfig()).offset_s)
    region = demographics.region
    if region is None and context.purchases:
        region = max(set(e.region for e in context.purchases), key=[e.region for e in context.purchases].count)
    service_counts = np.array([sum(1 for e in context.purchases if e.service == s) for s in config.services], float)
    shares = service_counts / max(service_counts.sum(), 1.0)
    activity = np.log1p(len(context.purchases)) / ACTIVITY_SCALE
    feedback = context.feedback
    style = [float(feedback.style == "detailed"), float(feedback.style == "short"),
             min(feedback.explain_requests, WHY_SCALE) / WHY_SCALE]
    u = np.concatenate([*prefs, _one_hot(demographics.age_band, config.age_bands),
                        _one_hot(region, config.regions, fallback="other"), _temporal_part(hours, weekdays),
                        shares, [activity], style])
    return u.astype(np.float32)


def is_cold(context: UserContext) -> bool:
    return not context.purchases and context.signals.pref_long is None


@dataclass
class SegmentModel:
    """k-means segments over warm users' ``u``; assigns any user (cold ones by demographics) to a segment."""

    config: UserVectorConfig
    centroids: np.ndarray  # [S, d_u] float32
    counts: list[int] = field(default_factory=list)  # warm users per segment at fit time

    @classmethod
    def fit(cls, vectors: np.ndarray, config: UserVectorConfig) -> "SegmentModel":
        if vectors.ndim != 2 or vectors.shape[1] != config.dim:
            raise ValueError(f"SegmentModel.fit needs [N, {config.dim}] vectors, got {vectors.shape}")
        if len(vectors) < config.n_segments:
            raise ValueError(f"SegmentModel.fit needs at least n_segments={config.n_segments} warm users, "
                             f"got {len(vectors)}")
        centroids = kmeans(vectors.astype(np.float64), config.n_segments, config.kmeans_iters, config.seed)
        labels = _nearest(vectors, centroids)
        return cls(config, centroids.astype(np.float32), np.bincount(labels, minlength=len(centroids)).tolist())

    def assign(self, u: np.ndarray, cold: bool = False) -> int:
        """The user's segment: nearest centroid on all of ``u`` (warm) or on the demographic coordinates (cold)."""
        if cold:
            s = self.config.slices()
            dims = np.r_[s["age_band"], s["region"]]
            return int(_nearest(u[None, dims], self.centroids[:, dims])[0])
        return int(_nearest(u[None], self.centroids)[0])

    def cold_vector(self, u: np.ndarray) -> tuple[int, np.ndarray]:
        """(segment, vector) for a cold user whose ``u`` holds only demographics."""
        segment = self.assign(u, cold=True)
        s = self.config.slices()
        vector = self.centroids[segment].copy()
        for name in ("age_band", "region"):
            if u[s[name]].any():
                vector[s[name]] = u[s[name]]
        return segment, vector

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps({"config": asdict(self.config), "centroids": self.centroids.tolist(),
                                          "counts": self.counts}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> "SegmentModel":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(UserVectorConfig(**raw["config"]), np.asarray(raw["centroids"], dtype=np.float32), raw["counts"])


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d2 = ((vectors[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)  # [N, S]
    return d2.argmin(axis=1)


def kmeans(vectors: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """k-means++ initialisation then Lloyd iterations; an emptied cluster takes the point farthest from its centre."""
    rng = np.random.default_rng(seed)
    centroids = [vectors[rng.integers(len(vectors))]]
    for _ in range(1, k):
        d2 = ((vectors[:, None, :] - np.asarray(centroids)[None]) ** 2).sum(-1).min(axis=1)  # [N]
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(vectors), 1 / len(vectors))
        centroids.append(vectors[rng.choice(len(vectors), p=probs)])
    centroids = np.asarray(centroids)
    for _ in range(iters):
        labels = _nearest(vectors, centroids)
        new = centroids.copy()
        for j in range(k):
            members = vectors[labels == j]
            if len(members):
                new[j] = members.mean(axis=0)
            else:
                far = ((vectors - centroids[labels]) ** 2).sum(-1).argmax()
                new[j] = vectors[far]
        if np.allclose(new, centroids):
            break
        centroids = new
    return centroids


class UserVectorBuilder:
    """``u`` per user id from a profile store (one ``read_user_context`` per user), cold users via segments."""

    def __init__(self, config: UserVectorConfig, profile, catalog, item_vectors: np.ndarray,
                 demographics: Mapping[str, Demographics] | None = None, segments: SegmentModel | None = None,
                 demographics_per_user: bool = False):
        if item_vectors.ndim != 2 or item_vectors.shape[1] != config.pref_dim:
            raise ValueError(f"item_vectors must be [num_items, pref_dim={config.pref_dim}], "
                             f"got {item_vectors.shape}")
        self.config, self.profile, self.catalog, self.item_vectors = config, profile, catalog, item_vectors
        # serving reads one user's demographics per request (``demographics_per_user``) instead of the whole table
        self.demographics_per_user = demographics_per_user
        self.demographics = dict(demographics) if demographics is not None else \
            {} if demographics_per_user else read_demographics(profile)
        self.segments = segments

    def demographics_of(self, user_id: str) -> Demographics | None:
        if user_id in self.demographics or not self.demographics_per_user:
            return self.demographics.get(user_id)
        row = self.profile.demographics_of(user_id)
        return Demographics(*row) if row is not None else None

    def raw_vector(self, user_id: str, context: UserContext | None = None) -> tuple[np.ndarray, bool]:
        """(u, cold) without the segment fallback. ``context``: the user's profile as a served request already read
        it (``read_user_context`` with the DP-released preferences, as the retriever serves); None: read here."""
        if context is None:
            context = read_user_context(self.profile, self.catalog, self.item_vectors, user_id)
        elif context.user_id != user_id:
            raise ValueError("UserVectorBuilder: the user context belongs to another user than user_id")
        rows = self.profile.temporal_histograms_of(user_id)
        u = user_vector(context, self.config, self.demographics_of(user_id), rows)
        return u, is_cold(context)

    def fit_segments(self, user_ids: Sequence[str]) -> SegmentModel:
        warm = [u for u, cold in map(self.raw_vector, user_ids) if not cold]
        self.segments = SegmentModel.fit(np.stack(warm), self.config)
        return self.segments

    def vector(self, user_id: str, context: UserContext | None = None) -> tuple[np.ndarray, int]:
        """(u, segment) of one user (from ``context`` when given, see ``raw_vector``); cold users get their
        segment's vector."""
        if self.segments is None:
            raise ValueError("UserVectorBuilder.segments is not set: call fit_segments or pass a SegmentModel")
        u, cold = self.raw_vector(user_id, context)
        if cold:
            return self.segments.cold_vector(u)[::-1]
        return u, self.segments.assign(u)


__all__ = ["AGE_BANDS", "REGIONS", "Demographics", "SegmentModel", "UserVectorBuilder", "UserVectorConfig",
           "is_cold", "kmeans", "read_demographics", "temporal_counts", "user_vector"]
