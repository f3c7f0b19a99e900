"""Refresh the reply generator's own adapters of heavy users who have bought since their adapter was trained.

A periodic job over a build (``recllm refresh-adapters --artifact-dir DIR``, e.g. nightly). The build's reply layers
(``builders.train_reply_layers``) give each heavy user an adapter slot and record, per heavy user, the newest
purchase it was trained on (``heavy_users.json``). New events reach the profile through the profile service (which
re-releases the user's preferences as they arrive); an adapter, though, stays what it was, and the adapter store
stops serving it once it is older than its TTL (``AdapterStoreConfig.ttl_s``). For every heavy user whose profile
now holds a purchase newer than their record, this job:

1. answers their requests again with the build's retriever and ranker on the profile as it is now (new purchases
   change the cited facts and the ranked items) and writes them as reply examples, exactly as the build did;
2. keeps their last requests out as the build does (validation, then test), starts their slot from their old
   adapter (from their segment's when it was never served), trains it on their replies only, the norm, prefix, gate
   and segment adapters frozen;
3. saves the adapter (new ``trained_at``, events, newest purchase) when it beats the segment mixture on their
   validation requests, and removes it otherwise (the mixture serves them), and updates their record.

Users without new purchases are not touched, so a second run with nothing new does nothing. ``refresh.json`` beside
the layers reports each refreshed user's validation and test NLL. Only the heavy users the build chose are
refreshed: a user who becomes heavy later gets an adapter from the next build. A running server's CPU generator
re-reads the adapters folder every ``PersonalizerConfig.adapter_rescan_s`` (30 s), so what this job rewrote or
removed is served without a restart (a TensorRT-LLM engine's LoRA cache is not: the GPU path exports adapters
separately, ``recllm.user_layers.trtllm_export``).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from builders.build_artifacts import corpus_examples_of, retrieve_all
from builders.train_reply_layers import (
    REPORT_FILE, HeavyUser, ReplyLayersConfig, batch_of, heavy_user_record, hold_out_requests, own_batch,
    promoted_users, read_heavy_users, save_user_adapters, train_user_slots, user_nll, user_rows, write_heavy_users,
)
from recllm.artifacts import ArtifactLayout
from recllm.evaluation.synthetic_pipeline import read_queries
from recllm.generator import ReplyGenerator
from recllm.pipeline import RankingStage, load_retriever
from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.reranker import Reranker
from recllm.profile.feedback import STYLE_OF_KIND
from recllm.user_layers.adapter_store import load_adapter, segment_adapter_name
from recllm.user_layers.adaptive_model import AdaptiveQwen2
from recllm.user_layers.reply_personalizer import ADAPTERS_DIR, load_layers
from recllm.user_layers.user_vector import UserVectorBuilder

log = logging.getLogger(__name__)

REFRESH_FILE = "refresh.json"


def users_with_new_purchases(records: dict[str, dict], profile) -> dict[str, list]:
    """Heavy user → their purchases, for those whose newest purchase is newer than their record's."""
    stale = {}
    for user_id, record in sorted(records.items()):
        purchases = profile.events_of(user_id, kind="purchase")
        if purchases and int(purchases[-1].timestamp) > int(record["last_event_ts"]):
            stale[user_id] = purchases
    return stale


def explanation_style(profile, user_id: str) -> str | None:
    """The user's latest explanation-style feedback («объясняй подробнее» / «покороче»), as the build reads it."""
    events = profile.events_of(user_id, kind=tuple(STYLE_OF_KIND))
    return STYLE_OF_KIND[events[-1].kind] if events else None


def load_trained_layers(folder: Path, generator: ReplyGenerator, profile, catalog, item_vectors: np.ndarray
                        ) -> tuple[AdaptiveQwen2, UserVectorBuilder]:
    """The build's user layers on ``generator``'s Qwen2, each segment adapter in its own slot (segment s in slot
    s, as trained, so the gate's mixture is the served one), frozen; and the ``u`` builder with its segments."""
    adaptive, vectors = load_layers(folder, generator.model, profile, catalog, item_vectors)
    for p in adaptive.parameters():  # (the base model's among them)
        p.requires_grad_(False)
    for segment in range(adaptive.config.num_segments):
        adaptive.slots.write(segment, load_adapter(folder / ADAPTERS_DIR / f"segment-{segment}"))
    return adaptive, vectors


def warm_start(adaptive: AdaptiveQwen2, heavy: HeavyUser, folder: Path) -> str:
    """The user's slot starts from their served adapter, else from their segment's; returns which."""
    own = folder / ADAPTERS_DIR / f"user-{heavy.user.user_id}"
    source = own if own.is_dir() else folder / ADAPTERS_DIR / f"segment-{heavy.user.segment}"
    adaptive.slots.write(heavy.slot, load_adapter(source))
    return "own adapter" if own.is_dir() else segment_adapter_name(heavy.user.segment)


def refresh_reply_adapters(artifact_dir: Path | str, progress: bool = False) -> dict:
    """Retrain and re-decide the own adapters of the build's heavy users with new purchases (module docstring);
    returns the report (also written to ``refresh.json`` beside the layers)."""
    started = time.monotonic()
    layout = ArtifactLayout(artifact_dir)
    layout.require_built()
    folder = layout.user_layers_dir
    records = read_heavy_users(folder)
    config = ReplyLayersConfig(**json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))["config"])
    retriever = load_retriever(layout)
    profile = retriever.profile
    stale = users_with_new_purchases(records, profile)
    report: dict = {"heavy_users": len(records), "refreshed": {}, "checked_at_ts": int(profile.latest_timestamp() or 0)}
    if stale:
        report["refreshed"] = retrain(layout, retriever, stale, records, config, progress)
    report["seconds"] = round(time.monotonic() - started, 1)
    (folder / REFRESH_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info("refreshed %d of %d heavy users' reply adapters in %.0f s", len(stale), len(records), report["seconds"])
    return report


def retrain(layout: ArtifactLayout, retriever, stale: dict[str, list], records: dict[str, dict],
            config: ReplyLayersConfig, progress: bool) -> dict:
    folder, profile = layout.user_layers_dir, retriever.profile
    queries = [q for q in read_queries(layout.train_queries) if q.user_id in stale]
    queries.sort(key=lambda q: (q.user_id, q.timestamp))
    encoder = QueryEncoder.load(layout.query_encoder_dir)
    ranking = RankingStage(retriever.catalog, retriever.index, profile, Reranker.load(layout.reranker_dir))
    retrievals = retrieve_all(queries, encoder, retriever, progress)
    style = {user_id: s for user_id in stale if (s := explanation_style(profile, user_id))}
    examples = corpus_examples_of(queries, retrievals, ranking, set(), style, config.seed, progress)  # (all bought)
    generator = ReplyGenerator.load(layout.generator_dir)
    adaptive, vectors = load_trained_layers(folder, generator, profile, retriever.catalog,
                                            retriever.index.item_vectors)
    rows = {user.user_id: user for user in user_rows(examples, generator, vectors)}
    trained_at = int(profile.latest_timestamp() or 0)
    rng, out = random.Random(config.seed), {}
    user_ids = [user_id for user_id in stale if user_id in rows]
    for user_id in sorted(set(stale) - set(user_ids)):
        log.warning("heavy user %s has new purchases but no requests in %s: not refreshed", user_id,
                    layout.train_queries)
    for start in range(0, len(user_ids), config.user_slots):  # as many users at once as there are user slots
        chunk = user_ids[start:start + config.user_slots]
        heavy = [hold_out_requests(rows[user_id], config.n_segments + j, stale[user_id], config)
                 for j, user_id in enumerate(chunk)]
        started_from = {h.user.user_id: warm_start(adaptive, h, folder) for h in heavy}
        adaptive.train()
        train_user_slots(adaptive, heavy, config, rng, progress)
        adaptive.eval()
        promoted = promoted_users(adaptive, heavy)
        served = {h.user.user_id for h in promoted}
        for h in heavy:  # (a served one is rewritten in place, its weights file atomically)
            if h.user.user_id not in served:
                shutil.rmtree(folder / ADAPTERS_DIR / f"user-{h.user.user_id}", ignore_errors=True)
        save_user_adapters(adaptive, promoted, folder / ADAPTERS_DIR, config.lora_alpha, trained_at,
                           str(layout.generator_dir))
        for h in heavy:
            records[h.user.user_id] = heavy_user_record(h, h.user.user_id in served, trained_at)
            out[h.user.user_id] = scores(adaptive, h, h.user.user_id in served, started_from[h.user.user_id])
        write_heavy_users(folder, records)
    return out


def scores(adaptive: AdaptiveQwen2, heavy: HeavyUser, served: bool, started_from: str) -> dict:
    """One refreshed user: reply NLL of the refreshed adapter and of the segment mixture on their kept requests."""
    gate, own = batch_of(adaptive, [heavy.user], "gate"), own_batch([heavy])
    with torch.inference_mode():
        return {"events": heavy.num_events, "last_event_ts": heavy.last_event_ts, "started_from": started_from,
                "served": served, "train_replies": len(heavy.user.rows),
                "valid_nll": {"own adapter": round(user_nll(adaptive, heavy.valid_rows, own), 4),
                              "MoE gate": round(user_nll(adaptive, heavy.valid_rows, gate), 4)},
                "test_nll": {"own adapter": round(user_nll(adaptive, heavy.test_rows, own), 4),
                             "MoE gate": round(user_nll(adaptive, heavy.test_rows, gate), 4)}}


__all__ = ["REFRESH_FILE", "explanation_style", "load_trained_layers", "refresh_reply_adapters",
           "users_with_new_purchases"]
