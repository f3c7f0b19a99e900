"""Build every artifact the server needs, from the seeded synthetic ecosystem, into one folder.

Steps: synthetic catalog + users + events → profile database (events, popularity; then per user fragments, history,
temporal histograms and the differentially private preference release) → query encoder
(trained) → catalog indexes → reranker (trained on the requests' picks) → generator (trained Qwen2) → manifest.
Each user's last request is held out (``eval_queries.jsonl``) and the build reports Recall@10 on it for the
full pipeline next to a query-only ranking. Skips work when the manifest's fingerprint matches the inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from builders import generator_corpus
from recllm.artifacts import ArtifactLayout, fingerprint_inputs, import_closure, staging_dir, swap_in
from recllm.rag.catalog_index import CatalogIndex, item_search_text
from recllm.dialogue.request_understanding import default_understander
from recllm.dialogue.session_store import SessionStore
from recllm.generator import GeneratorConfig, catalog_item_codes, train_generator
from builders.train_reply_layers import ReplyLayersConfig, train_reply_layers
from recllm.pipeline import RankingStage, RecPipeline, load_generation_stage
from recllm.profile.refresh import refresh_all_profiles
from recllm.profile.sqlite_store import ProfileStore
from recllm.rag.query_encoder import QueryEncoder, QueryEncoderConfig, train_query_encoder
from recllm.rag.reranker import RerankerConfig, candidate_features, train_reranker
from recllm.rag.retriever import Retriever, RetrieverConfig
from recllm.synthetic.ecosystem import Ecosystem, SyntheticConfig, generate_ecosystem
from recllm.evaluation.synthetic_pipeline import evaluate, request_of
from recllm.profile.user_signals import compute_user_signals, with_released_preferences
from recllm.profile.feedback import STYLE_OF_KIND
from recllm.safety.moderation import ModerationConfig, trained_model
from recllm.config.field_checks import require_above

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "artifacts" / "default"
PRESETS = ("default", "test")
TOP_K_FOR_REPLIES = 5


@dataclass
class BuildConfig:
    preset: str = "default"
    output_dir: Path = DEFAULT_OUTPUT
    force: bool = False
    progress: bool = True
    seed: int = 7
    # Training threads: all cores (a generator step: 0.35 s with 2 threads vs 0.62 s with 1 on an idle 2-core
    # machine). Use 1 on a busy machine: with another job holding a core, 2 threads made a step take 11 s vs 2 s.
    torch_threads: int = min(os.cpu_count() or 1, 4)
    overrides: dict = field(default_factory=dict)  # e.g. {"generator": {"train_steps": 50}} for quick builds

    def __post_init__(self) -> None:
        require_above(self, "torch_threads", 0)
        if self.preset not in PRESETS:
            raise ValueError(f"BuildConfig.preset must be one of {PRESETS}, got {self.preset!r}")
        self.output_dir = Path(self.output_dir)


def source_fingerprint(config: BuildConfig) -> str:
    """Build settings, dependency pins and the source of every module this builder imports (serving-only edits
    don't rebuild)."""
    # pyproject.toml too: its pins (torch, transformers, faiss, natasha) shape the trained artifacts.
    sources = import_closure(REPO_ROOT, "builders.build_artifacts", ("recllm", "builders"))
    sources.append(REPO_ROOT / "pyproject.toml")
    return fingerprint_inputs(f"{config.preset}:{config.seed}:{json.dumps(config.overrides, sort_keys=True)}", sources)


def component_config(cls, config: BuildConfig, key: str):
    base = cls.from_name(config.preset)
    return cls(**{**asdict(base), **config.overrides.get(key, {})})


def split_queries(ecosystem: Ecosystem) -> tuple[list, list]:
    """Each user's last request is held out for evaluation; the rest train the reranker and generator."""
    by_user = defaultdict(list)
    for query in ecosystem.queries:
        by_user[query.user_id].append(query)
    train, held_out = [], []
    for queries in by_user.values():
        queries.sort(key=lambda q: q.timestamp)
        train.extend(queries[:-1])
        held_out.append(queries[-1])
    return train, held_out


def build_profile(ecosystem: Ecosystem, layout: ArtifactLayout) -> ProfileStore:
    for path in (layout.profile_db, layout.sessions_db):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    SessionStore(layout.sessions_db)  # created here, once: the chat instances then only open it
    return fill_profile(ProfileStore(layout.profile_db), ecosystem)


def fill_profile(store: ProfileStore, ecosystem: Ecosystem) -> ProfileStore:
    """Users (anonymized demographics), the event log and item popularity."""
    store.add_users(ecosystem.users)
    store.add_events(ecosystem.events)
    store.set_item_popularity(Counter(e.item_id for e in ecosystem.events if e.kind == "purchase"))
    return store


def encoder_pairs(ecosystem: Ecosystem, train_queries: list, seed: int) -> list[tuple[str, str]]:
    """(query, item text) pairs: each training request with several of its relevant items, plus category names."""
    rng = random.Random(seed)
    catalog = ecosystem.catalog
    pairs = []
    for query in train_queries:
        for item_id in rng.sample(query.relevant_item_ids, min(4, len(query.relevant_item_ids))):
            pairs.append((query.text, item_search_text(catalog.get(item_id), catalog)))
    for item in catalog.items:
        category = catalog.categories[item.category_id]
        text = item_search_text(item, catalog)
        pairs.append((category.name_ru, text))
        pairs.append((category.name_en, text))
    rng.shuffle(pairs)
    return pairs


def store_fragments(ecosystem: Ecosystem, store: ProfileStore, item_vectors: np.ndarray) -> None:
    """Every user's derived profile from the stored events: fragments, history, temporal histograms and the
    differentially private release of the preference vectors (charged to the ledger at the profile clock)."""
    now_ts = store.latest_timestamp()
    if now_ts is not None:
        refresh_all_profiles(store, ecosystem.catalog, item_vectors, now_ts)


def retrieve_all(queries: list, encoder: QueryEncoder, retriever: Retriever, progress: bool) -> list:
    """One retrieval per training request, shared by the reranker and generator data."""
    requests = [request_of(q) for q in queries]
    vectors = encoder.encode([r.query for r in requests])  # [Q, D]
    return [
        (request, retriever.retrieve(request, vector))
        for request, vector in tqdm(list(zip(requests, vectors)), desc="retrieval", disable=not progress, leave=False)
    ]


def reranker_lists(queries: list, retrievals: list, retriever: Retriever, store: ProfileStore
                   ) -> list[tuple[np.ndarray, int]]:
    catalog, vectors = retriever.catalog, retriever.index.item_vectors
    popularity = store.item_popularity()
    lists = []
    for query, (_, retrieval) in zip(queries, retrievals):
        hits = np.flatnonzero(retrieval.candidate_ids == query.target_item_id)
        if not len(hits):
            continue
        events = store.events_of(query.user_id, kind="purchase")
        signals = compute_user_signals(query.user_id, events, catalog, vectors, query.timestamp)
        # Train on the preference vectors the served model will see: the user's DP release.
        signals = with_released_preferences(signals, store.released_preferences_of(query.user_id))
        features = candidate_features(retrieval.candidate_ids, retrieval.candidate_scores, signals, retrieval.service,
                                      catalog, vectors, popularity, query.timestamp)
        lists.append((features, int(hits[0])))
    return lists


def generator_examples(queries: list, retrievals: list, ranking: RankingStage, ecosystem: Ecosystem, seed: int,
                       progress: bool) -> list:
    """The generator's training turns (every reply act, ``builders.generator_corpus``) from the training requests
    as retrieved and ranked by the pipeline that serves them."""
    cold = {u.user_id for u in ecosystem.users} - {e.user_id for e in ecosystem.events}
    style = {e.user_id: STYLE_OF_KIND[e.kind] for e in ecosystem.events if e.kind in STYLE_OF_KIND}  # latest wins
    return corpus_examples_of(queries, retrievals, ranking, cold, style, seed, progress)


def corpus_examples_of(queries: list, retrievals: list, ranking: RankingStage, cold: set[str], style: dict[str, str],
                       seed: int, progress: bool) -> list:
    """``generator_examples`` given the users without history (``cold``) and each user's explanation style."""
    turns = []
    rows = list(zip(queries, retrievals))
    for query, (request, retrieval) in tqdm(rows, desc="generator data", disable=not progress, leave=False):
        request = replace(request, top_k=TOP_K_FOR_REPLIES)
        ranked = ranking.rank(request, retrieval.service, retrieval.candidate_ids, retrieval.candidate_scores,
                              explain=False)
        turns.append(generator_corpus.CorpusTurn(
            intent=query.intent, language=request.language, service=retrieval.service, query=request.query,
            facts=tuple(f.text(request.language) for f, _ in retrieval.fragments),
            items=tuple(int(i) for i in ranked.item_ids), cold_user=query.user_id in cold,
            has_budget=request.max_price is not None, has_diet=bool(request.required_tags), user_id=query.user_id,
            style=style.get(query.user_id)))
    return generator_corpus.corpus_examples(turns, seed)


def build(config: BuildConfig) -> ArtifactLayout:
    """Build into a staging folder beside ``config.output_dir`` and swap it in when complete, so a rebuild never
    deletes or half-writes files under a server running on the old build (``recllm.artifacts.swap_in``)."""
    final = ArtifactLayout(config.output_dir)
    fingerprint = source_fingerprint(config)
    if not config.force and final.is_built(fingerprint):
        log.info("artifacts in %s are up to date (fingerprint %s)", final.root, fingerprint)
        return final
    staging = staging_dir(final.root)
    try:
        build_into(ArtifactLayout(staging), config, fingerprint)
        replaced = swap_in(staging, final.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replaced is not None:
        log.info("the replaced build is kept at %s until the next rebuild", replaced)
    return final


def build_into(layout: ArtifactLayout, config: BuildConfig, fingerprint: str) -> None:
    started = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.torch_threads)
    faiss.omp_set_num_threads(config.torch_threads)
    steps = tqdm(total=9, desc="build", disable=not config.progress)

    synthetic = SyntheticConfig.from_name(config.preset)
    ecosystem = generate_ecosystem(synthetic)
    ecosystem.catalog.save_jsonl(layout.catalog)
    train_queries, held_out = split_queries(ecosystem)
    write_queries(layout.eval_queries, held_out)
    write_queries(layout.train_queries, train_queries)
    steps.update()

    store = build_profile(ecosystem, layout)
    steps.update()

    encoder = train_query_encoder(encoder_pairs(ecosystem, train_queries, config.seed),
                                  component_config(QueryEncoderConfig, config, "query_encoder"), config.progress)
    encoder.save(layout.query_encoder_dir)
    item_vectors = encoder.encode([item_search_text(i, ecosystem.catalog) for i in ecosystem.catalog.items])
    index = CatalogIndex(item_vectors, ecosystem.catalog)
    index.save(layout.catalog_index_dir)
    steps.update()

    store_fragments(ecosystem, store, item_vectors)
    steps.update()

    retriever = Retriever(ecosystem.catalog, index, store, RetrieverConfig())
    retrievals = retrieve_all(train_queries, encoder, retriever, config.progress)
    reranker = train_reranker(reranker_lists(train_queries, retrievals, retriever, store),
                              component_config(RerankerConfig, config, "reranker"), config.progress)
    reranker.save(layout.reranker_dir)
    steps.update()

    ranking = RankingStage(ecosystem.catalog, index, store, reranker)
    examples = generator_examples(train_queries, retrievals, ranking, ecosystem, config.seed, config.progress)
    generator_config = component_config(GeneratorConfig, config, "generator")
    codes = catalog_item_codes(ecosystem.catalog, generator_config.sid_codebook_size, generator_config.sid_levels,
                               config.seed)
    train_generator(examples, codes, generator_config, layout.generator_dir, progress=config.progress)
    steps.update()

    user_layers = train_reply_layers(layout.generator_dir, examples, store, ecosystem.catalog, item_vectors,
                                     layout.user_layers_dir, component_config(ReplyLayersConfig, config,
                                                                              "reply_layers"), config.progress)
    steps.update()

    save_dialogue_models(layout)
    steps.update()

    pipeline = RecPipeline(encoder, retriever, ranking, load_generation_stage(layout))
    metrics = evaluate(pipeline, held_out)
    steps.update()
    steps.close()
    layout.write_manifest(fingerprint, config.preset, {
        "build_seconds": round(time.monotonic() - started, 1),
        "users": len(ecosystem.users), "items": len(ecosystem.catalog.items), "events": len(ecosystem.events),
        "generator_examples": len(examples), "evaluation": metrics,
        "user_layers": {"heldout": user_layers["heldout"], "seconds": user_layers["seconds"]},
    })
    log.info("built %s in %.0f s: %s", layout.root, time.monotonic() - started, metrics)


def save_dialogue_models(layout: ArtifactLayout) -> None:
    """Moderation and request understanding, trained on their own labeled train splits (no build data), saved so
    recllm_chat loads them instead of training them at start."""
    trained_model(ModerationConfig()).save(layout.moderation_dir)
    default_understander().save(layout.request_understanding_dir)


def write_queries(path: Path, queries: list) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for query in queries:
            f.write(json.dumps(asdict(query), ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build Rec-LLM artifacts from the synthetic ecosystem.")
    defaults = BuildConfig()
    parser.add_argument("--preset", choices=PRESETS, default=defaults.preset)
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    parser.add_argument("--force", action="store_true", help="rebuild even when the fingerprint matches")
    parser.add_argument("--torch-threads", type=int, default=defaults.torch_threads)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    layout = build(BuildConfig(preset=args.preset, output_dir=args.output_dir, force=args.force,
                               torch_threads=args.torch_threads))
    print(json.dumps(layout.read_manifest(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
