"""Reply decoding: our Qwen2 through the lean decode loop, item spans under each request's live prefix trie.

Last pipeline stage: the reranker hands over an ordered candidate list and the generator writes a reply that may
name only those items, each once (``item_constraint.ItemSpanConstraint``, plugged into ``DecodeLoop`` as its
per-request logits processor), and may quote only the profile facts of its prompt (``fact_constraint``, when the
request carries ``quotable_facts``). Requests of different prompt lengths decode together in one batch
(``generate_batch``: one forward per step for all of them, each request's bad input its own error); ``stream``
yields one request's text deltas as they are decoded; ``beam_search`` keeps the best of ``beam_width`` hypotheses
under the same constraint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .decode_loop import DecodeLoop, Request, StaticKVCache, cacheable_prefix_len, decode_one_token, prefill
from .item_codes import ItemCodes
from .fact_constraint import DecodeStrain, FactSpanConstraint, ReplyConstraint, SpacingRule, quote_tokens
from .item_constraint import ItemSpanConstraint, text_token_mask
from .known_words import KnownWordRule, known_word_table, other_frame_words
from .corpus_spans import (SPAN_ACTS, ListSpanConstraint, OfferSpanConstraint, OpeningSpanConstraint,
                           list_key, load_reply_spans, offer_key, opening_key, opens_a_quote)
from .model import GENERATOR_CONFIG_FILE, GeneratorConfig
from .qwen2 import Qwen2
from .qwen2_checkpoint import load_qwen2
from .reply_shape import reply_shape
from .reply_check import LIST_ACTS, REPLY_WORD_PAIRS_FILE, REPLY_WORDS_FILE
from .tokenizer import ReplyTokenizer

logger = logging.getLogger(__name__)

ItemName = Callable[[int], str]


class Personalizer(Protocol):
    """What the generator asks of the user layers (``recllm.user_layers.reply_personalizer``): one layer context
    for a batch, rows in request order (None rows: no user; a row's user context, when given, is the profile the
    retriever read for that turn)."""

    def layer_context(self, user_ids: Sequence[str | None], user_contexts: Sequence[Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class Sampling:
    """Greedy when ``temperature`` is 0; ``seed`` makes a sampled reply reproducible."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None


GREEDY = Sampling()


@dataclass(frozen=True)
class ReplyRequest:
    prompt: str  # reply_prompt.build_prompt(...)
    candidate_item_ids: tuple[int, ...]  # the ranked list, best first: the only items the reply may name
    sampling: Sampling = GREEDY
    max_new_tokens: int | None = None  # None: GeneratorConfig.max_new_tokens
    quotable_facts: tuple[str, ...] | None = None  # the prompt's facts, the only quotes allowed; None: unconstrained
    user_id: str | None = None  # the verified user: their user layers apply when the generator has a personalizer
    # the user's profile as the retriever read it for this turn (``recllm.profile.user_context.UserContext``): the
    # personalizer derives the user's ``u`` from it instead of reading the profile again; None: it reads the profile
    user_context: Any = field(default=None, repr=False, compare=False)
    # the reply's language ("ru" / "en") and act (``generator.ACTS``): the shape rules decoding keeps
    # (``reply_shape``: the language's script, a list act naming an item first); empty: not kept
    language: str = ""
    act: str = ""
    # with the shape rules, and when the generator knows its training replies' words (``reply_words``): the format
    # of those replies holds too — their words only (``known_words``), no digit, a label's items (``reply_shape``);
    # False: not held to it
    corpus_rules: bool = True
    # with the corpus rules: the recommend frames the request's text matches (``reply_frame.frames_in``), so a list's
    # opening says no other (None: any)
    frames: frozenset[str] | None = None
    # what the prompt decides, with the generator's training spans (``reply_spans``, ``corpus_spans``): a
    # nothing-left reply's relaxation (``reply_prompt.RELAXATIONS``: the text after its first sentence is one of its
    # offers) and a list reply's frame (``reply_frame``, "" generic: its opening is one of the frame's; None: free)
    relaxation: str = ""
    frame: str | None = None


@dataclass(frozen=True)
class GeneratedReply:
    text: str  # user-facing text, item spans rendered by item_name
    item_ids: tuple[int, ...]  # named items, in order
    num_tokens: int  # generated tokens, <eos> excluded
    token_ids: tuple[int, ...] = field(default=(), repr=False)
    # decoded under the corpus-format rules (``fact_constraint.DecodeStrain``, a measurement): some step refused more
    # than half of the model's probability; ``strain``: the largest share refused at one step
    pushed: bool = False
    strain: float = 0.0


class ReplyRenderer:
    """Token ids → text deltas. Text between items is decoded as a whole so far and only complete characters are
    released (a byte-level token may end inside a multi-byte UTF-8 character); an item shows up once its span is
    complete, as ``item_name(id)``."""

    def __init__(self, tokenizer: ReplyTokenizer, item_name: ItemName):
        self.tokenizer, self.item_name = tokenizer, item_name
        self.segment: list[int] = []
        self.released = 0

    def feed(self, token: int, item: int | None) -> str:
        if token == self.tokenizer.eos_id or token in self.tokenizer.control_ids:
            return ""
        if self.tokenizer.sid_of_token(token) is None:
            self.segment.append(token)
            text = self.tokenizer.decode(self.segment)
            if text.endswith("\ufffd") or len(text) <= self.released:
                return ""
            delta, self.released = text[self.released:], len(text)
            return delta
        if item is None:
            return ""
        delta = self.flush()
        return delta + self.item_name(item)

    def flush(self) -> str:
        text = self.tokenizer.decode(self.segment) if self.segment else ""
        delta = text[self.released:]
        self.segment, self.released = [], 0
        return delta


class ReplyJoiner:
    """The decode loop's ``Joiner`` for reply requests: the requests ``more`` hands over are prepared (their
    constraints appended where the logits processor finds them) and join; user layers come from the generator's
    personalizer for whichever rows are decoding."""

    def __init__(self, generator: "ReplyGenerator", requests: list[ReplyRequest], constraints: list[ReplyConstraint],
                 more: Callable[[int], Sequence[ReplyRequest]], max_rows: int):
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        self.generator, self.requests, self.constraints, self.more = generator, requests, constraints, more
        self.max_rows = max_rows

    def take(self, free_rows: int) -> list[Request]:
        joining = []
        for request in self.more(free_rows):
            loop_request, constraint = self.generator._prepare(request)
            self.requests.append(request)
            self.constraints.append(constraint)
            joining.append(loop_request)
        return joining

    def layer_context(self, request_indices: Sequence[int]):
        return self.generator.layer_context([self.requests[i] for i in request_indices])

    def budget(self, index: int) -> int:
        return self.generator.max_new_tokens(self.requests[index])

    def release(self, index: int) -> None:
        """Request ``index`` is done: its request and constraint (a trie, masks) are dropped."""
        self.requests[index] = self.constraints[index] = None


class ReplyGenerator:
    def __init__(self, model: Qwen2, tokenizer: ReplyTokenizer, config: GeneratorConfig, codes: ItemCodes,
                 compile: bool = False):
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"model vocab_size={model.config.vocab_size} is smaller than "
                             f"tokenizer vocab_size={tokenizer.vocab_size}")
        if list(codes.vocab_sizes) != [min(a, b) for a, b in zip(codes.vocab_sizes, tokenizer.sid_vocab_sizes)]:
            raise ValueError(f"item codes use SID vocab sizes {codes.vocab_sizes}; the tokenizer has "
                             f"{list(tokenizer.sid_vocab_sizes)}")
        self.model = model.eval()
        self.tokenizer, self.config, self.codes = tokenizer, config, codes
        self.loop = DecodeLoop(model, compile=compile, pad_token_id=tokenizer.pad_id)
        self.personalizer: Personalizer | None = None  # set by the serving stage when the build has user layers
        # the words its training replies write (``reply_words.json``); None for a checkpoint trained elsewhere
        self.reply_words: frozenset[str] | None = None
        # the adjacent word pairs those replies write (``reply_word_pairs.json``); None: not known
        self.reply_word_pairs: frozenset[str] | None = None
        # the openings and offers of its training replies (``corpus_spans.spans_of``); None: not known
        self.reply_spans: dict[str, dict[str, list[str]]] | None = None
        self._text_mask = text_token_mask(tokenizer, model.config.vocab_size)  # [V]

    @classmethod
    def load(cls, directory: Path) -> "ReplyGenerator":
        """Load a local folder written by ``train_generator`` (HF-format weights, never a hub name)."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not a local model directory (no config.json)")
        model = load_qwen2(directory, dtype=torch.float32)
        config_path = directory / GENERATOR_CONFIG_FILE
        if config_path.is_file():
            config = GeneratorConfig.load(config_path)
        else:
            logger.warning("no %s in %s; using default decoding settings", GENERATOR_CONFIG_FILE, directory)
            config = GeneratorConfig()
        generator = cls(model, ReplyTokenizer.load(directory), config, ItemCodes.load(directory))
        words = directory / REPLY_WORDS_FILE
        if words.is_file():
            generator.reply_words = frozenset(json.loads(words.read_text(encoding="utf-8")))
        generator.reply_spans = load_reply_spans(directory)
        pairs = directory / REPLY_WORD_PAIRS_FILE
        if pairs.is_file():
            generator.reply_word_pairs = frozenset(json.loads(pairs.read_text(encoding="utf-8")))
        return generator

    # -- requests ----------------------------------------------------------------------------------------------

    def _prepare(self, request: ReplyRequest) -> tuple[Request, ReplyConstraint]:
        """The decode-loop request and its constraint; a bad request raises ``ValueError`` here."""
        if not request.prompt or not request.prompt.strip():
            raise ValueError("prompt is empty")
        unknown = [i for i in request.candidate_item_ids if not self.codes.has(i)]
        if unknown:
            raise ValueError(f"candidate item ids without a Semantic ID: {unknown[:10]}")
        candidates = list(dict.fromkeys(int(i) for i in request.candidate_item_ids))  # drop duplicates
        max_new = self.max_new_tokens(request)
        if max_new <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {max_new}")
        max_prompt = self.model.config.max_position_embeddings - max_new
        prompt = self.tokenizer.encode_prompt(request.prompt, [self.codes.sid_of(i) for i in candidates],
                                              max_prompt)
        s = request.sampling
        loop_request = Request(prompt, max_new, (self.tokenizer.eos_id,), s.temperature, s.top_k, s.top_p, s.seed)
        constraint = ItemSpanConstraint(self.tokenizer, self.codes, candidates, self._text_mask,
                                        self.config.max_items_per_reply, max_new)
        quotes = quote_tokens(self.tokenizer, self.model.config.vocab_size)
        facts = None if request.quotable_facts is None else FactSpanConstraint(self.tokenizer, request.quotable_facts,
                                                                               quotes, max_new)
        corpus = request.corpus_rules and self.reply_words is not None
        shape = reply_shape(quotes, self.tokenizer.eos_id, request.language, request.act, corpus) \
            if request.language or request.act else None
        words = self._word_rule(request, quotes) if shape is not None and corpus else None
        strain = plain_shape = None
        if shape is not None and corpus:
            strain = DecodeStrain()
            plain_shape = reply_shape(quotes, self.tokenizer.eos_id, request.language, request.act)
        return loop_request, ReplyConstraint(constraint, facts, SpacingRule(quotes), shape, words, strain,
                                             plain_shape, self._offer_rule(request, quotes, max_new),
                                             self._opening_rule(request, quotes, max_new),
                                             self._list_rule(request, quotes))

    def _offer_rule(self, request: ReplyRequest, quotes, max_new: int) -> OfferSpanConstraint | None:
        """A nothing-left request's offer, when the training replies offer its relaxation in its language."""
        if request.act != "nothing_left" or not request.relaxation or not self.reply_spans:
            return None
        offers = self.reply_spans.get("offers", {}).get(offer_key(request.relaxation, request.language))
        return OfferSpanConstraint(self.tokenizer, offers, quotes, self.tokenizer.eos_id, max_new) if offers else None

    def _list_rule(self, request: ReplyRequest, quotes) -> ListSpanConstraint | None:
        """A list's separators and ending, when the training replies of the request's act and language have them."""
        if request.act not in SPAN_ACTS or request.frame is None or not self.reply_spans:
            return None
        separators = self.reply_spans.get("separators", {}).get(list_key(request.act, request.language))
        endings = self.reply_spans.get("endings", {}).get(list_key(request.act, request.language)) or ()
        if request.quotable_facts is not None and not request.quotable_facts:  # nothing to quote: no ending opening one
            endings = [e for e in endings if not opens_a_quote(e)]
        return ListSpanConstraint(self.tokenizer, separators, endings, quotes) if separators and endings else None

    def _opening_rule(self, request: ReplyRequest, quotes, max_new: int) -> OpeningSpanConstraint | None:
        """A list's opening, when the training replies of the request's act, frame and language have openings."""
        if request.act not in SPAN_ACTS or request.frame is None or not self.reply_spans:
            return None
        openings = self.reply_spans.get("openings", {}).get(opening_key(request.act, request.frame, request.language))
        return OpeningSpanConstraint(self.tokenizer, openings, quotes, max_new, self.tokenizer.sid_depth) \
            if openings else None

    def _word_rule(self, request: ReplyRequest, quotes) -> KnownWordRule:
        """The known words of this request: before a list's first item, none of another frame."""
        known = self.reply_words
        opening = None
        if request.act in LIST_ACTS and request.frames is not None:
            opening = known_word_table(quotes, known - other_frame_words(known, request.frames))
        return KnownWordRule(known_word_table(quotes, known), opening)

    def validate(self, request: ReplyRequest) -> None:
        """Raise the ``ValueError`` that decoding ``request`` would raise (empty prompt, unknown item, budget)."""
        self._prepare(request)

    def max_new_tokens(self, request: ReplyRequest) -> int:
        """The token budget ``request`` decodes under (its own, else ``GeneratorConfig.max_new_tokens``)."""
        return self.config.max_new_tokens if request.max_new_tokens is None else request.max_new_tokens

    def _processor(self, constraints: list[ReplyConstraint]):
        def constrain(request_index: torch.Tensor, generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            rows = request_index.tolist()
            for row, i in enumerate(rows):  # the strain the corpus rules put on the model (when they hold)
                constraints[i].measure(logits[row])
            allowed = torch.stack([constraints[i].allowed() for i in rows])  # [B, V]
            return logits.masked_fill(~allowed, float("-inf"))  # [B, V]
        return constrain

    def stream_batch(self, requests: Sequence[ReplyRequest]) -> Iterator[tuple[int, int, int | None]]:
        """(request index, token, item id completed by this token or None) for all ``requests`` decoded as one
        batch; the constraint of each request advances as its tokens are consumed. Raises ``ValueError`` for the
        first bad request (``generate_batch`` isolates them)."""
        _, steps = self.decode_batch(requests)
        yield from steps

    def decode_batch(self, requests: Sequence[ReplyRequest],
                     more: Callable[[int], Sequence[ReplyRequest]] | None = None, max_rows: int = 8
                     ) -> tuple[list[ReplyConstraint], Iterator[tuple[int, int, int | None]]]:
        """``stream_batch``'s steps with each request's constraint beside them. ``more(free_rows)``: continuous
        batching — asked at every step boundary for requests (valid ones: ``validate``) that join the batch while
        it decodes, up to ``max_rows`` rows in all; they take the next request indices, in order, and their
        constraints are appended. Raises ``ValueError`` for the first bad request, before any decoding."""
        prepared = [self._prepare(r) for r in requests]
        constraints = [c for _, c in prepared]
        joiner = None if more is None else ReplyJoiner(self, list(requests), constraints, more, max_rows)
        layer_context = self.layer_context(requests) if joiner is None else None

        def steps() -> Iterator[tuple[int, int, int | None]]:
            counts: dict[int, int] = {}
            for index, token in self.loop.stream([r for r, _ in prepared], self._processor(constraints),
                                                 layer_context, forced=lambda i: constraints[i].forced(),
                                                 joiner=joiner):
                yield index, token, constraints[index].advance(token)
                if joiner is not None:  # a batch that keeps admitting requests lives on: a done one's state goes
                    counts[index] = counts.get(index, 0) + 1
                    if token == self.tokenizer.eos_id or counts[index] >= joiner.budget(index):
                        joiner.release(index)
                        del counts[index]
        return constraints, steps()

    def layer_context(self, requests: Sequence[ReplyRequest]):
        """The personalizer's per-row user layers for a batch (rows in request order), or None (base model)."""
        if self.personalizer is None or not any(r.user_id for r in requests):
            return None
        return self.personalizer.layer_context([r.user_id for r in requests], [r.user_context for r in requests])

    def generate_batch(self, requests: Sequence[ReplyRequest], item_name: ItemName
                       ) -> list[GeneratedReply | ValueError]:
        """One reply per request, all decoded in one batch; a bad request gets its ``ValueError`` in its slot."""
        results: list[GeneratedReply | ValueError | None] = [None] * len(requests)
        good = []
        for i, request in enumerate(requests):
            try:
                self._prepare(request)
                good.append(i)
            except ValueError as exc:
                results[i] = exc
        tokens: dict[int, list[int]] = {i: [] for i in good}
        items: dict[int, list[int]] = {i: [] for i in good}
        renderers = {i: ReplyRenderer(self.tokenizer, item_name) for i in good}
        texts: dict[int, list[str]] = {i: [] for i in good}
        constraints, steps = self.decode_batch([requests[i] for i in good]) if good else ([], iter(()))
        for j, token, item in steps:
            i = good[j]
            tokens[i].append(token)
            texts[i].append(renderers[i].feed(token, item))
            if item is not None:
                items[i].append(item)
        for j, i in enumerate(good):
            texts[i].append(renderers[i].flush())
            generated = [t for t in tokens[i] if t != self.tokenizer.eos_id]
            strain = constraints[j].strain
            results[i] = GeneratedReply("".join(texts[i]), tuple(items[i]), len(generated), tuple(generated),
                                        constraints[j].pushed, 0.0 if strain is None else strain.most)
        return results

    def stream(self, prompt: str, candidate_item_ids: Sequence[int], item_name: ItemName,
               sampling: Sampling = GREEDY, max_new_tokens: int | None = None) -> Iterator[str]:
        """User-visible text deltas of one reply as tokens are decoded. Bad requests raise ``ValueError`` before
        the first delta."""
        request = ReplyRequest(prompt, tuple(int(i) for i in candidate_item_ids), sampling, max_new_tokens)
        self._prepare(request)  # raise now, not at the first next()
        return self._stream_one(request, item_name)

    def _stream_one(self, request: ReplyRequest, item_name: ItemName) -> Iterator[str]:
        renderer = ReplyRenderer(self.tokenizer, item_name)
        for _, token, item in self.stream_batch([request]):
            delta = renderer.feed(token, item)
            if delta:
                yield delta
        tail = renderer.flush()
        if tail:
            yield tail

    def generate(self, prompt: str, candidate_item_ids: Sequence[int], item_name: ItemName,
                 sampling: Sampling = GREEDY, max_new_tokens: int | None = None) -> GeneratedReply:
        request = ReplyRequest(prompt, tuple(int(i) for i in candidate_item_ids), sampling, max_new_tokens)
        result = self.generate_batch([request], item_name)[0]
        if isinstance(result, ValueError):
            raise result
        return result

    # -- beam search -------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def beam_search(self, prompt: str, candidate_item_ids: Sequence[int], item_name: ItemName, beam_width: int = 4,
                    max_new_tokens: int | None = None, length_penalty: float = 1.0,
                    quotable_facts: Sequence[str] | None = None, user_id: str | None = None,
                    user_context: Any = None) -> GeneratedReply:
        """The highest (length-normalised) log-probability reply among ``beam_width`` hypotheses; every
        hypothesis walks its own copy of the item constraint. ``user_id``: the user's layers apply to every beam
        (as in ``stream_batch``)."""
        if beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        facts = None if quotable_facts is None else tuple(quotable_facts)
        request = ReplyRequest(prompt, tuple(int(i) for i in candidate_item_ids), GREEDY, max_new_tokens, facts,
                               user_id=user_id, user_context=user_context)
        loop_request, root = self._prepare(request)
        W, eos = beam_width, self.tokenizer.eos_id
        layer_context = self.layer_context([request] * W)  # one user: every beam row the same layers
        prompt_ids = torch.tensor([list(loop_request.prompt)] * W)  # [W, T]
        T, max_new = prompt_ids.shape[1], loop_request.max_new_tokens
        cache = StaticKVCache.for_model(self.model, W, T + max_new,
                                        cacheable_prefix_len(layer_context, self.model.config.num_hidden_layers))
        left_pad = torch.zeros(W, dtype=torch.long)  # [W]
        logits = prefill(self.model, prompt_ids, cache, left_pad, layer_context)  # [W, V]
        scores = torch.full((W,), float("-inf"))
        scores[0] = 0.0
        beams = [(root, [], [])] + [(root.copy(), [], []) for _ in range(W - 1)]  # constraint, tokens, items
        finished: list[tuple[float, list[int], list[int]]] = []
        for step in range(max_new):
            allowed = torch.stack([b[0].allowed() for b in beams])  # [W, V]
            logp = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1) + scores[:, None]  # [W, V]
            top, flat = logp.flatten().topk(2 * W)  # [2W]
            next_beams, parents, next_tokens, next_scores = [], [], [], []
            for score, index in zip(top.tolist(), flat.tolist()):
                if score == float("-inf"):
                    break
                parent, token = divmod(index, logp.shape[1])
                constraint, tokens, items = beams[parent]
                if token == eos:
                    finished.append((score / max(1, len(tokens)) ** length_penalty, tokens, items))
                    continue
                state = constraint.copy()
                item = state.advance(token)
                next_beams.append((state, tokens + [token], items + ([item] if item is not None else [])))
                parents.append(parent)
                next_tokens.append(token)
                next_scores.append(score)
                if len(next_beams) == W:
                    break
            if not next_beams or (len(finished) >= W and max(f[0] for f in finished) >= max(next_scores)
                                  / max(1, step + 1) ** length_penalty):
                break
            while len(next_beams) < W:  # keep the batch shape: pad with dead copies of the last beam
                next_beams.append(next_beams[-1])
                parents.append(parents[-1])
                next_tokens.append(next_tokens[-1])
                next_scores.append(float("-inf"))
            beams, scores = next_beams, torch.tensor(next_scores)
            index = torch.tensor(parents)
            cache.k.copy_(cache.k[:, index])
            cache.v.copy_(cache.v[:, index])
            logits = decode_one_token(self.model, torch.tensor(next_tokens)[:, None], torch.tensor([T + step]),
                                      cache, left_pad, layer_context)  # [W, V]
        else:
            for (_, tokens, items), score in zip(beams, scores.tolist()):
                if score > float("-inf"):
                    finished.append((score / max(1, len(tokens)) ** length_penalty, tokens, items))
        _, tokens, items = max(finished, key=lambda f: f[0])
        return self._render(tokens, items, item_name)

    def _render(self, tokens: list[int], items: list[int], item_name: ItemName) -> GeneratedReply:
        renderer, named, parts = ReplyRenderer(self.tokenizer, item_name), iter(items), []
        prefix = 0
        for token in tokens:
            item = None
            if self.tokenizer.sid_of_token(token) is not None:
                prefix += 1
                if prefix == self.tokenizer.sid_depth:
                    item, prefix = next(named), 0
            parts.append(renderer.feed(token, item))
        parts.append(renderer.flush())
        return GeneratedReply("".join(parts), tuple(items), len(tokens), tuple(tokens))
