"""The recommendation pipeline as four stages: encode → retrieve → rank → generate.

Each Triton model in ``model_repository/`` loads exactly one stage from a built artifact folder and calls it;
``RecPipeline`` chains the same stages in-process (for the benchmark's in-process baseline, for the builders
and for tests), so the served and the in-process paths run identical code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
from recllm_proto import tensors

from recllm.artifacts import ArtifactLayout
from recllm.catalog.product_catalog import Catalog
from recllm.catalog.spelling import SpellingCorrector
from recllm.rag.catalog_index import CatalogIndex
from recllm.explanation.causal_explanations import CausalExplanation, CausalExplanationConfig, explain_ranked
from recllm.profile.storage import ProfileStorage, open_profile_storage, profile_location
from recllm.profile.user_context import UserContext, read_user_context
from recllm.rag.query_encoder import QueryEncoder
from recllm.rag.query_spelling import load_spelling, spelled_query
from recllm.rag.rec_request import RecRequest, parse_budget, parse_request, required_tags
from recllm.rag.reranker import Reranker, candidate_features, feedback_adjustment
from recllm.rag.retriever import Retrieval, Retriever, RetrieverConfig
from recllm_proto.text_arrays import utf8_array
from recllm.profile.user_signals import check_preference_source

if TYPE_CHECKING:  # the generator pulls in torch models: only the generation stage's process needs it
    from recllm.generator import GeneratedReply, ReplyCheckCounters, ReplyGenerator, ReplyRequest, Sampling

log = logging.getLogger(__name__)


@dataclass
class Ranking:
    item_ids: np.ndarray  # [K] int64, best first
    scores: np.ndarray  # [K] float32
    explanations: list[str]
    causal: list[CausalExplanation] = field(default_factory=list)  # the facts each explanation cites


@dataclass
class Recommendation:
    service: str
    items: list[dict]  # item_id, name, service, price, score, explanation
    reply: str
    profile_facts: list[str] = field(default_factory=list)
    spelled_query: str = ""  # the query as the stages read it (typos corrected)


class RankingStage:
    """Reranker scores + per-item explanations for one request: the profile facts that raised each item's score,
    checked by re-scoring without them (``recllm.explanation.causal_explanations``).

    The preference-similarity features use the user's DP release (``preference_source="released"``, as served);
    "raw" exists for tests of the raw signal only."""

    def __init__(self, catalog: Catalog, index: CatalogIndex, profile: ProfileStorage, reranker: Reranker,
                 explanation: CausalExplanationConfig | None = None, preference_source: str = "released"):
        check_preference_source("RankingStage preference_source", preference_source)
        self.catalog, self.index, self.profile, self.reranker = catalog, index, profile, reranker
        self.explanation = explanation or CausalExplanationConfig()
        self.preference_source = preference_source
        self.popularity = profile.item_popularity()

    def read_context(self, user_id: str) -> UserContext:
        return read_user_context(self.profile, self.catalog, self.index.item_vectors, user_id, self.preference_source)

    def rank(self, request: RecRequest, service: str, candidate_ids: np.ndarray, candidate_scores: np.ndarray,
             context: UserContext | None = None, explain: bool = True) -> Ranking:
        """Score and explain the candidates with the user's ``context`` as the retriever read it (read here only
        when the caller has none, e.g. offline evaluation); ``explain=False`` leaves the explanations out (the
        build's training data needs only the order)."""
        context = context if context is not None else self.read_context(request.user_id)
        signals = context.signals
        features = candidate_features(candidate_ids, candidate_scores, signals, service, self.catalog,
                                      self.index.item_vectors, self.popularity, context.now_ts)
        scores = self.reranker.score(features) + feedback_adjustment(candidate_ids, context.feedback, self.catalog)
        order = np.argsort(-scores, kind="stable")[: request.top_k]
        causal = explain_ranked(candidate_ids[order], candidate_scores[order], service, context, self.reranker,
                                self.catalog, self.index.item_vectors, self.popularity, request.language,
                                self.explanation) if explain else []
        return Ranking(candidate_ids[order].astype(np.int64), scores[order].astype(np.float32),
                       [c.text for c in causal], causal)

    def item_arrays(self, ranking: Ranking) -> dict[str, np.ndarray]:
        """The ranked items as the reranker's output tensors (``recllm_proto.tensors.ITEM_OUTPUTS``, UPPER_SNAKE)."""
        items = [self.catalog.get(int(i)) for i in ranking.item_ids]
        return {
            tensors.ITEM_IDS.name: ranking.item_ids.astype(np.int64),
            tensors.ITEM_SCORES.name: ranking.scores.astype(np.float32),
            tensors.ITEM_NAMES.name: utf8_array([item.name for item in items]),
            tensors.ITEM_PRICES.name: np.array([item.price for item in items], dtype=np.float32),
            tensors.ITEM_SERVICES.name: utf8_array([item.service for item in items]),
            tensors.ITEM_EXPLANATIONS.name: utf8_array(ranking.explanations),
            **{spec.name: utf8_array([c.texts[language] for c in ranking.causal])
               for language, spec in tensors.ITEM_EXPLANATIONS_IN.items()},
        }


@dataclass(frozen=True)
class ReplyTurn:
    """What the generator needs of one turn; ``act`` None = ``derive_act`` from the query and the ranked list."""

    service: str
    language: str
    query: str
    item_ids: tuple[int, ...]
    profile_facts: tuple[str, ...] = ()
    act: str | None = None
    relaxation: str = ""
    user_id: str | None = None  # the verified user (their user layers apply); None: the base model
    # the profile the retriever read for this turn (UserContext, already the verified user's): the user layers derive
    # ``u`` from it instead of reading the profile again; None: the personalizer reads it
    user_context: UserContext | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ReplyEvent:
    """One step of a batched reply stream: a text ``delta`` of turn ``index``, or its end (``done``, with the
    turn's ``error`` when it was refused)."""

    index: int
    delta: str = ""
    done: bool = False
    error: ValueError | None = None


class GenerationStage:
    """The Qwen2 reply generator, item spans constrained to the ranked items, replies checked after generation.

    ``sampling`` is the decoding of every reply (greedy by default). A reply that fails ``check_reply`` is
    regenerated greedily; failures are counted in ``counters`` (the Triton adapter exports them). A greedy stream
    is released token by token and checked when done (its greedy retry would be identical); a sampled one is
    checked, and regenerated if needed, before it is released.

    ``corpus_rules`` (off by default; ``$RECLLM_CORPUS_RULES`` "on" in ``load_generation_stage``): decode held to the
    training replies' format (``ReplyRequest.corpus_rules``). Held to it, a weak model's failures can stop being
    visible: on a fresh test build a nothing-left reply the check would have failed came out, diverted word by word
    into known words, as «Подходящих товаров не нашлось. ещё раз товаров не нашлось. ещё раз то, что чуть дороже» —
    passing every check; nor does the share of the model's probability the rules refused (``DecodeStrain``) tell such
    a reply from one they mended (benchmarks/results/reply_quality.md). So the served path sends what the model wrote
    or the plain reply."""

    def __init__(self, catalog: Catalog, generator: ReplyGenerator, sampling: Sampling | None = None,
                 counters: ReplyCheckCounters | None = None, corpus_rules: bool = False):
        from recllm.generator import GREEDY, ReplyCheckCounters  # noqa: PLC0415

        self.catalog = catalog
        self.generator = generator
        self.sampling = sampling or GREEDY
        self.counters = counters or ReplyCheckCounters()
        self.corpus_rules = corpus_rules

    def item_name(self, item_id: int) -> str:
        return self.catalog.get(item_id).name

    @staticmethod
    def act_of(turn: ReplyTurn) -> str:
        """The turn's act: its own, else ``derive_act`` from the query and the ranked list."""
        from recllm.generator import derive_act  # noqa: PLC0415

        return turn.act or derive_act(turn.query, turn.item_ids)

    def relaxation_of(self, turn: ReplyTurn) -> str:
        """The turn's relaxation: its own; for a nothing-left reply the caller offers none for (a single request, no
        dialogue) the one the training corpus pairs with its query (``default_relaxation``). No training prompt lacks
        an offer, and without one "tea" got "Can I look a little above your budget?"."""
        from recllm.generator.reply_prompt import default_relaxation  # noqa: PLC0415

        if turn.relaxation or self.act_of(turn) != "nothing_left":
            return turn.relaxation
        return default_relaxation(parse_budget(turn.query) is not None, bool(required_tags(turn.query)))

    def request(self, turn: ReplyTurn, sampling: Sampling | None = None) -> ReplyRequest:
        from recllm.generator import ReplyRequest, build_prompt, reply_frame  # noqa: PLC0415
        from recllm.generator.reply_check import LIST_ACTS  # noqa: PLC0415
        from recllm.generator.reply_frame import frames_in  # noqa: PLC0415
        from recllm.generator.reply_prompt import prompt_facts  # noqa: PLC0415

        act = self.act_of(turn)
        relaxation = self.relaxation_of(turn)
        frame = reply_frame(turn.query, act)
        prompt = build_prompt(turn.service, turn.language, turn.query, list(turn.profile_facts), act,
                              relaxation, frame)
        frames = frames_in(turn.query) if act in LIST_ACTS else None  # the check's opening rule, kept while decoding
        return ReplyRequest(prompt, tuple(int(i) for i in turn.item_ids), sampling or self.sampling,
                            quotable_facts=tuple(prompt_facts(turn.profile_facts)), user_id=turn.user_id,
                            user_context=turn.user_context, language=turn.language, act=act, frames=frames,
                            corpus_rules=self.corpus_rules, relaxation=relaxation, frame=frame)

    def check(self, turn: ReplyTurn, reply: GeneratedReply, retry: bool = False) -> bool:
        result = self.check_text(turn, reply.text, reply.item_ids)
        self.counters.record(result, retry)
        return result.ok

    def check_text(self, turn: ReplyTurn, text: str, item_ids: Sequence[int], final: bool = True):
        """``check_reply`` of the turn's reply so far (``final``: the whole of it)."""
        from recllm.generator.reply_check import LIST_ACTS, check_reply  # noqa: PLC0415
        from recllm.generator.reply_prompt import prompt_facts  # noqa: PLC0415

        act = self.act_of(turn)
        return check_reply(text, item_ids, turn.item_ids, prompt_facts(turn.profile_facts),
                           [self.item_name(i) for i in item_ids], turn.language, final and act in LIST_ACTS,
                           getattr(self.generator, "reply_words", None), turn.query if act in LIST_ACTS else None,
                           self.relaxation_of(turn) if final and act == "nothing_left" else "",
                           getattr(self.generator, "reply_word_pairs", None))

    def plain(self, turn: ReplyTurn) -> str:
        """The turn's plain reply (``plain_reply``): what a failing generated reply is replaced with."""
        from recllm.generator.plain_reply import plain_reply  # noqa: PLC0415

        return plain_reply(turn.language, self.act_of(turn), [self.item_name(i) for i in turn.item_ids[:3]],
                           self.relaxation_of(turn))

    def guarded(self, turn: ReplyTurn):
        """A ``GuardedReply`` for one streamed turn: sentences released only while the text so far passes."""
        from recllm.generator.reply_check import GuardedReply  # noqa: PLC0415

        return GuardedReply(lambda text, items, final: self.check_text(turn, text, items, final).ok,
                            lambda: self.plain(turn))

    def generate_turns(self, turns: Sequence[ReplyTurn]) -> list[str | ValueError]:
        """Replies of several turns decoded as one batch (one forward per step), each checked; a failing reply is
        regenerated greedily (the retries as a second batch); a bad turn gets its own ``ValueError``."""
        from recllm.generator import GREEDY  # noqa: PLC0415

        requests = []
        results: list = [None] * len(turns)
        for i, turn in enumerate(turns):
            try:
                requests.append((i, self.request(turn)))
            except ValueError as exc:
                results[i] = exc
        replies = self.generator.generate_batch([r for _, r in requests], self.item_name)
        retry = []
        for (i, _), reply in zip(requests, replies):
            results[i] = reply
            if not isinstance(reply, ValueError) and not self.check(turns[i], reply):
                retry.append(i)
        if retry and self.sampling != GREEDY:
            for i in retry:
                self.counters.record_regeneration()
            again = self.generator.generate_batch([self.request(turns[i], GREEDY) for i in retry], self.item_name)
            passed = set()
            for i, reply in zip(retry, again):
                results[i] = reply
                if isinstance(reply, ValueError) or self.check(turns[i], reply, retry=True):
                    passed.add(i)
            still = [i for i in retry if i not in passed]
        else:
            still = retry
        for i in still:  # failing after the greedy retry (or greedy already): the plain reply instead
            self.counters.record_withheld()
            results[i] = self.plain(turns[i])
        return [r if isinstance(r, (ValueError, str)) else r.text for r in results]

    def stream_turns(self, turns: Sequence[ReplyTurn], more: Callable[[int], Sequence[ReplyTurn]] | None = None,
                     max_rows: int = 8) -> Iterator[ReplyEvent]:
        """Several turns streamed as one batch (one forward per step): each turn's text deltas as they are decoded,
        then its ``done`` event as soon as its own reply ends (eos or its token budget), checked like ``stream``; a
        bad turn gets one ``done`` event carrying its ``ValueError`` before any decoding. A sampled batch is decoded
        whole (``generate_turns``: checked, failing replies regenerated greedily) and released per turn.
        ``more(free_rows)`` (greedy decoding): continuous batching — turns that join the batch while it decodes (up
        to ``max_rows`` rows), indexed after ``turns`` in the order handed over; a bad one gets its ``done`` event
        with its error and does not join."""
        from recllm.generator import GREEDY  # noqa: PLC0415

        if self.sampling != GREEDY:
            for i, reply in enumerate(self.generate_turns(turns)):
                if isinstance(reply, ValueError):
                    yield ReplyEvent(i, done=True, error=reply)
                    continue
                if reply:
                    yield ReplyEvent(i, reply)
                yield ReplyEvent(i, done=True)
            return
        good: list[tuple[int, ReplyRequest]] = []
        for i, turn in enumerate(turns):
            try:
                request = self.request(turn)
                self.generator.validate(request)
                good.append((i, request))
            except ValueError as exc:
                yield ReplyEvent(i, done=True, error=exc)
        if good:
            yield from self._stream_checked_batch([turns[i] for i, _ in good], [r for _, r in good],
                                                  [i for i, _ in good], more, len(turns), max_rows)

    def _stream_checked_batch(self, turns: list[ReplyTurn], requests: list[ReplyRequest], index: list[int],
                              more: Callable[[int], Sequence[ReplyTurn]] | None = None, next_index: int = 0,
                              max_rows: int = 8) -> Iterator[ReplyEvent]:
        generator = self.generator
        replies = [self.streamed(turn) for turn in turns]
        counts = [0] * len(requests)
        budgets = [generator.max_new_tokens(r) for r in requests]
        refused: list[ReplyEvent] = []  # joining turns that failed validation: their done events, sent next

        def joined(free_rows: int) -> list[ReplyRequest]:
            nonlocal next_index
            out = []
            for turn in more(free_rows):
                stage_index, next_index = next_index, next_index + 1
                try:
                    request = self.request(turn)
                    generator.validate(request)
                except ValueError as exc:
                    refused.append(ReplyEvent(stage_index, done=True, error=exc))
                    continue
                index.append(stage_index)
                replies.append(self.streamed(turn))
                counts.append(0)
                budgets.append(generator.max_new_tokens(request))
                out.append(request)
            return out

        _, steps = generator.decode_batch(requests, None if more is None else joined, max_rows)
        for j, token, item in steps:
            while refused:
                yield refused.pop(0)
            counts[j] += 1
            released = replies[j].feed(token, item)
            if released:
                yield ReplyEvent(index[j], released)
            if token == generator.tokenizer.eos_id or counts[j] >= budgets[j]:
                rest = replies[j].finish()
                if rest:
                    yield ReplyEvent(index[j], rest)
                replies[j] = None  # done: a batch that keeps admitting turns lives on
                yield ReplyEvent(index[j], done=True)
        yield from refused  # handed over at the last step boundary, when nothing else was left to decode

    def streamed(self, turn: ReplyTurn) -> "StreamedReply":
        """One turn's tokens → the text that may be sent (``ReplyRenderer`` then ``guarded``)."""
        from recllm.generator import ReplyRenderer  # noqa: PLC0415

        return StreamedReply(self, turn, ReplyRenderer(self.generator.tokenizer, self.item_name), self.guarded(turn))

    def finish_checked(self, turn: ReplyTurn, guard) -> str:
        """The whole generated reply counted by the check; what its guard still sends (the rest, or the plain
        reply), counted as withheld when some of it is not sent."""
        from recllm.generator import GeneratedReply  # noqa: PLC0415

        self.check(turn, GeneratedReply(guard.text, tuple(guard.item_ids), 0))
        rest = guard.finish()
        if guard.withheld:
            self.counters.record_withheld()
        return rest

    def stream(self, service: str, language: str, query: str, item_ids: Sequence[int],
               profile_facts: Sequence[str], act: str | None = None, relaxation: str = "",
               user_id: str | None = None, user_context: UserContext | None = None) -> Iterator[str]:
        from recllm.generator import GREEDY  # noqa: PLC0415

        turn = ReplyTurn(service, language, query, tuple(int(i) for i in item_ids), tuple(profile_facts), act,
                         relaxation, user_id, user_context)
        request = self.request(turn)
        if self.sampling != GREEDY:
            reply = self.generate_turns([turn])[0]
            if isinstance(reply, ValueError):
                raise reply
            return iter([reply] if reply else [])
        return self._stream_checked(turn, request)

    def _stream_checked(self, turn: ReplyTurn, request: ReplyRequest) -> Iterator[str]:
        """One turn's checked stream: the batch path with a batch of one (raises on a bad request at the first
        ``next()``)."""
        for event in self._stream_checked_batch([turn], [request], [0]):
            if event.delta:
                yield event.delta

    def generate(self, service: str, language: str, query: str, item_ids: Sequence[int],
                 profile_facts: Sequence[str], act: str | None = None, relaxation: str = "",
                 user_id: str | None = None, user_context: UserContext | None = None) -> str:
        turn = ReplyTurn(service, language, query, tuple(int(i) for i in item_ids), tuple(profile_facts), act,
                         relaxation, user_id, user_context)
        reply = self.generate_turns([turn])[0]
        if isinstance(reply, ValueError):
            raise reply
        return reply


@dataclass
class StreamedReply:
    """One streamed turn: each token rendered (an item's name whole) and fed to the turn's ``GuardedReply``."""

    stage: GenerationStage
    turn: ReplyTurn
    renderer: object  # ReplyRenderer
    guard: object     # GuardedReply

    def feed(self, token: int, item: int | None) -> str:
        """What may be sent after this token."""
        delta = self.renderer.feed(token, item)
        return self.guard.feed(delta, item) if delta or item is not None else ""

    def finish(self) -> str:
        """What is left to send once the turn's decoding ended (``GenerationStage.finish_checked``)."""
        tail = self.renderer.flush()
        released = self.guard.feed(tail, None) if tail else ""
        return released + self.stage.finish_checked(self.turn, self.guard)


def load_catalog_and_index(layout: ArtifactLayout) -> tuple[Catalog, CatalogIndex]:
    catalog = Catalog.load_jsonl(layout.catalog)
    return catalog, CatalogIndex.load(layout.catalog_index_dir, catalog)


# How many users' profile reads the retriever keeps (RetrieverConfig.context_cache_users; "0": every request reads
# the profile — benchmarks compare the two in one run)
CONTEXT_CACHE_USERS_ENV = "RECLLM_CONTEXT_CACHE_USERS"


def load_retriever(layout: ArtifactLayout, config: RetrieverConfig | None = None) -> Retriever:
    """The build's retriever on the profile it serves from; without ``config``, the defaults with
    ``context_cache_users`` from ``$RECLLM_CONTEXT_CACHE_USERS`` when set."""
    import os  # noqa: PLC0415

    catalog, index = load_catalog_and_index(layout)
    if config is None:
        cache_users = os.environ.get(CONTEXT_CACHE_USERS_ENV, "").strip()
        if cache_users and not cache_users.isdigit():
            raise ValueError(f"${CONTEXT_CACHE_USERS_ENV} must be a number of users >= 0, got {cache_users!r}")
        config = RetrieverConfig(**({"context_cache_users": int(cache_users)} if cache_users else {}))
    return Retriever(catalog, index, open_profile_storage(profile_location(layout.profile_db), read_only=True),
                     config)


def load_ranking_stage(layout: ArtifactLayout) -> RankingStage:
    catalog, index = load_catalog_and_index(layout)
    return RankingStage(catalog, index, open_profile_storage(profile_location(layout.profile_db), read_only=True),
                        Reranker.load(layout.reranker_dir))


# A generator folder to serve instead of the build's (``recllm serve --generator-checkpoint``: an imported Hugging
# Face Qwen2 checkpoint, recllm.generator.checkpoint_import); the model processes inherit it from the server.
GENERATOR_DIR_ENV = "RECLLM_GENERATOR_DIR"


# "off": serve the generator without its user layers (benchmarks compare the two in one run)
USER_LAYERS_ENV = "RECLLM_USER_LAYERS"
# "off": every generated token gets a forward of its own (no jump-forward; benchmarks compare the two in one run)
JUMP_FORWARD_ENV = "RECLLM_JUMP_FORWARD"
# "on": decode held to the training replies' format (``GenerationStage.corpus_rules``; off by default)
CORPUS_RULES_ENV = "RECLLM_CORPUS_RULES"
# "on": a streamed turn arriving while a batch decodes joins it (``StreamBatcherConfig.continuous``); off by default:
# it waits for the next batch (benchmarks compare the two)
CONTINUOUS_BATCHING_ENV = "RECLLM_CONTINUOUS_BATCHING"


def env_switch(name: str, default: bool) -> bool:
    """An on/off environment switch (``$RECLLM_USER_LAYERS`` and the like): unset or empty is ``default``; "on" /
    "off" (also 1/0, true/false, yes/no) in any case; anything else is a ``ValueError`` naming the variable (a typo
    like "of" used to read as on)."""
    import os  # noqa: PLC0415

    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"${name} must be on or off, got {value!r}")


def load_generation_stage(layout: ArtifactLayout, generator_dir: Path | None = None,
                          sampling: Sampling | None = None, user_layers: bool | None = None) -> GenerationStage:
    """The generation stage of a build; ``generator_dir`` (else ``$RECLLM_GENERATOR_DIR``) drops in another
    checkpoint folder in the same format (``train_generator``'s: HF-format Qwen2 weights + tokenizer.json +
    item_codes.npz). The build's user layers (``layout.user_layers_dir``) are plugged in when they were trained
    for the generator served (the build's own) and ``user_layers`` (else ``$RECLLM_USER_LAYERS`` != "off").
    ``$RECLLM_JUMP_FORWARD`` "off" decodes without jump-forward (``DecodeLoop.jump_forward``)."""
    import os  # noqa: PLC0415

    from recllm.generator import ReplyGenerator  # noqa: PLC0415

    directory = Path(generator_dir or os.environ.get(GENERATOR_DIR_ENV) or layout.generator_dir)
    catalog = Catalog.load_jsonl(layout.catalog)
    generator = ReplyGenerator.load(directory)
    generator.loop.jump_forward = env_switch(JUMP_FORWARD_ENV, True)
    if user_layers is None:
        user_layers = env_switch(USER_LAYERS_ENV, True)
    if user_layers and layout.user_layers_dir.is_dir():
        if directory.resolve() != layout.generator_dir.resolve():
            log.warning("user layers of %s were trained for the build's generator, not %s: serving without them",
                           layout.root, directory)
        else:
            generator.personalizer = load_reply_personalizer(layout, generator, catalog)
    return GenerationStage(catalog, generator, sampling, corpus_rules=env_switch(CORPUS_RULES_ENV, False))


def load_reply_personalizer(layout: ArtifactLayout, generator: ReplyGenerator, catalog: Catalog):
    """The build's user layers plugged into ``generator``'s Qwen2, reading ``u`` from the build's profile."""
    from recllm.user_layers.reply_personalizer import ReplyPersonalizer  # noqa: PLC0415

    index = CatalogIndex.load(layout.catalog_index_dir, catalog)
    profile = open_profile_storage(profile_location(layout.profile_db), read_only=True)
    return ReplyPersonalizer.load(layout.user_layers_dir, generator.model, profile, catalog, index.item_vectors)


class RecPipeline:
    """All four stages in one process."""

    def __init__(self, encoder: QueryEncoder, retriever: Retriever, ranking: RankingStage, generation: GenerationStage,
                 spelling: SpellingCorrector | None = None):
        self.encoder, self.retriever, self.ranking, self.generation = encoder, retriever, ranking, generation
        self.catalog = retriever.catalog
        self.spelling = spelling  # None: the query is read as written

    @classmethod
    def load(cls, artifact_dir: Path) -> "RecPipeline":
        layout = ArtifactLayout(artifact_dir)
        layout.require_built()
        return cls(QueryEncoder.load(layout.query_encoder_dir), load_retriever(layout),
                   load_ranking_stage(layout), load_generation_stage(layout), load_spelling(layout))

    def spelled(self, query: str | bytes) -> str | bytes:
        """The query as the served ensembles' stages read it: typos corrected (the query encoder's SPELLED_QUERY)."""
        return query if self.spelling is None else spelled_query(self.spelling, query)

    def retrieve_and_rank(self, request: RecRequest, exclude_item_ids: frozenset[int] = frozenset()
                          ) -> tuple[Retrieval, Ranking]:
        query_vector = self.encoder.encode([request.query])[0]
        retrieval = self.retriever.retrieve(request, query_vector, exclude_item_ids)
        ranking = self.ranking.rank(request, retrieval.service, retrieval.candidate_ids, retrieval.candidate_scores,
                                    retrieval.context)
        return retrieval, ranking

    def recommend(self, user_id: str, query: str, top_k: int = 5, service: str = "") -> Recommendation:
        request = parse_request(user_id, self.spelled(query), top_k, service)
        retrieval, ranking = self.retrieve_and_rank(request)
        facts = [f.text(request.language) for f, _ in retrieval.fragments]
        reply = self.generation.generate(retrieval.service, request.language, request.query, ranking.item_ids, facts,
                                         user_id=user_id, user_context=retrieval.context)
        return Recommendation(retrieval.service, self.describe(ranking), reply, facts, request.query)

    def describe(self, ranking: Ranking) -> list[dict]:
        items = []
        for item_id, score, why in zip(ranking.item_ids.tolist(), ranking.scores.tolist(), ranking.explanations):
            item = self.catalog.get(item_id)
            items.append({"item_id": item_id, "name": item.name, "service": item.service, "price": item.price,
                          "score": score, "explanation": why})
        return items
