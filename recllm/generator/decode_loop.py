"""Lean batched decoding for ``qwen2.Qwen2``: static KV cache, prefill, one-token steps, sampling, streaming.

One code path serves one request and a batch: requests are left-padded to the longest prompt, so every row's last
prompt token sits in the same slot and all rows then advance one slot per step; ``left_pad`` masks the padding and
shifts each row's rotary positions, so a request decodes the same in any batch as alone. Finished rows (eos or their
own ``max_new_tokens``) stop emitting and keep riding along with a pad token until the whole batch is done (shapes
stay static, which is what ``torch.compile`` wants).

Hooks: ``logits_processor(request_index [B], generated [B, t], logits [B, V]) -> logits [B, V]`` runs before
sampling at every step (constrained decoding of item spans plugs in there); ``layer_context`` is passed to the model
unchanged (adaptive user layers, see ``qwen2.py``).

Jump-forward: ``forced(request_index) -> token | None`` names the one token a request's rules allow next (an item
span whose first code left a single candidate, ``<eos>`` when nothing else may follow), asked once the consumer has
taken the tokens yielded so far. While every unfinished row has one, those tokens are yielded without a forward of
their own (no choice to make: greedy and every sample would take them) and then written to the cache together with
the last sampled token in one forward of several slots: a span's three forced codes cost one forward, not three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .qwen2 import Qwen2

logger = logging.getLogger(__name__)

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Request:
    prompt: Sequence[int]
    max_new_tokens: int = 32
    eos_token_ids: Sequence[int] = ()  # the eos token is emitted, then the request stops
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    seed: int | None = None  # per-request torch.Generator; None = torch's global generator

    def __post_init__(self):
        if len(self.prompt) == 0:
            raise ValueError("Request.prompt must hold at least one token, got an empty prompt")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens <= 0:
            raise ValueError(f"Request.max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ValueError(f"Request.temperature must be >= 0, got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"Request.top_k must be an int >= 0, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Request.top_p must be in (0, 1], got {self.top_p!r}")


class StaticKVCache:
    """Keys and values for every layer, preallocated: k, v [layers, B, kv_heads, prefix_len + max_seq_len, head_dim].

    ``prefix_len`` > 0 reserves slots in front of the token slots for the user prefix keys/values (the adaptive
    layers' "dynamic attention embeddings", ``qwen2.PrefixKV``): written once by ``write_prefix`` at prefill, they are
    part of every later step's keys without a per-step, per-layer concatenation (how prefix tuning is served with a
    KV cache). ``input_pos`` always counts token slots; the prefix slots sit before slot 0."""

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", prefix_len: int = 0):
        shape = (num_layers, batch_size, num_kv_heads, prefix_len + max_seq_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, KV, P + S, hd]
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, KV, P + S, hd]
        self.max_seq_len, self.prefix_len = max_seq_len, prefix_len
        self.prefix_mask: torch.Tensor | None = None  # [B, P] bool once a prefix is written
        self._views()

    def _views(self) -> None:
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0)))  # per-layer views, made once per tensor
        self._token_slots = [(k[:, :, self.prefix_len:], v[:, :, self.prefix_len:]) for k, v in self._layers]

    # -- rows and slots of a batch that changes while it decodes (``DecodeLoop.stream`` with a ``Joiner``) ------

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` [B'] (in that order)."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        if self.prefix_mask is not None:
            self.prefix_mask = self.prefix_mask[rows]
        self._views()

    def append_rows(self, other: "StaticKVCache") -> None:
        """Append ``other``'s rows (same layers, heads, prefix length and slot count)."""
        if (other.prefix_len, other.max_seq_len) != (self.prefix_len, self.max_seq_len):
            raise ValueError(f"cannot append a cache of {other.prefix_len} prefix + {other.max_seq_len} slots to one "
                             f"of {self.prefix_len} + {self.max_seq_len}")
        self.k, self.v = torch.cat((self.k, other.k), 1), torch.cat((self.v, other.v), 1)
        if (self.prefix_mask is None) != (other.prefix_mask is None):
            raise ValueError("cannot append rows with a written prefix to rows without one, or back")
        if self.prefix_mask is not None:
            self.prefix_mask = torch.cat((self.prefix_mask, other.prefix_mask), 0)
        self._views()

    def drop_leading_slots(self, n: int) -> None:
        """Drop token slots 0..n-1 (padding of every row): slot s becomes s - n; the prefix slots stay."""
        if n <= 0:
            return
        P = self.prefix_len
        self.k = torch.cat((self.k[:, :, :, :P], self.k[:, :, :, P + n:]), 3)
        self.v = torch.cat((self.v[:, :, :, :P], self.v[:, :, :, P + n:]), 3)
        self.max_seq_len -= n
        self._views()

    def pad_leading_slots(self, n: int) -> None:
        """``n`` empty token slots in front (every row's padding grows by n): slot s becomes s + n."""
        if n <= 0:
            return
        L, B, KV, _, hd = self.k.shape
        P = self.prefix_len
        empty = torch.zeros((L, B, KV, n, hd), dtype=self.k.dtype, device=self.k.device)
        self.k = torch.cat((self.k[:, :, :, :P], empty, self.k[:, :, :, P:]), 3)
        self.v = torch.cat((self.v[:, :, :, :P], empty, self.v[:, :, :, P:]), 3)
        self.max_seq_len += n
        self._views()

    def grow(self, slots: int) -> None:
        """``slots`` more (empty) token slots at the end."""
        if slots <= 0:
            return
        L, B, KV, _, hd = self.k.shape
        empty = torch.zeros((L, B, KV, slots, hd), dtype=self.k.dtype, device=self.k.device)
        self.k, self.v = torch.cat((self.k, empty), 3), torch.cat((self.v, empty), 3)
        self.max_seq_len += slots
        self._views()

    @classmethod
    def for_model(cls, model: Qwen2, batch_size: int, max_seq_len: int, prefix_len: int = 0) -> "StaticKVCache":
        c, w = model.config, model.lm_head.weight
        return cls(c.num_hidden_layers, batch_size, c.num_key_value_heads, max_seq_len, c.head_dim, w.dtype, w.device,
                   prefix_len)

    @property
    def holds_prefix(self) -> bool:
        return self.prefix_mask is not None

    def write_prefix(self, layer_context: Any) -> None:
        """Copy every layer's ``layer_context.prefix_kv(layer)`` (k, v [B, KV, P, hd]) into the prefix slots."""
        mask = None
        for layer, (k_cache, v_cache) in enumerate(self._layers):
            prefix = layer_context.prefix_kv(layer)
            k_cache[:, :, :self.prefix_len].copy_(prefix.k)
            v_cache[:, :, :self.prefix_len].copy_(prefix.v)
            mask = prefix.mask if mask is None else mask & prefix.mask
        self.prefix_mask = mask  # [B, P]

    def update(self, layer: int, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k, v [B, KV, T, hd] at token slots input_pos [T]; return the layer's whole cache [B, KV, P + S, hd]
        twice (prefix slots first)."""
        k_tokens, v_tokens = self._token_slots[layer]  # [B, KV, S, hd] views
        k_tokens.index_copy_(2, input_pos, k)
        v_tokens.index_copy_(2, input_pos, v)
        return self._layers[layer]


def cacheable_prefix_len(layer_context: Any, num_layers: int) -> int:
    """P when ``layer_context`` gives every layer a user prefix of the same length P (it can then live in the KV
    cache's prefix slots), else 0 (no prefix, or only some layers: the attention concatenates per layer)."""
    if layer_context is None or not hasattr(layer_context, "prefix_kv"):
        return 0
    lengths = set()
    for layer in range(num_layers):
        prefix = layer_context.prefix_kv(layer)
        if prefix is None:
            return 0
        lengths.add(prefix.k.shape[2])
    return lengths.pop() if len(lengths) == 1 else 0


def prefill(model: Qwen2, tokens: torch.Tensor, kv_cache: StaticKVCache, left_pad: torch.Tensor,
            layer_context: Any = None) -> torch.Tensor:
    """Run the (left-padded) prompts tokens [B, T] through the model into slots 0..T-1; logits [B, V] of the
    last slot, i.e. of every row's last prompt token."""
    input_pos = torch.arange(tokens.shape[1], device=tokens.device)  # [T]
    if kv_cache.prefix_len and layer_context is not None:
        kv_cache.write_prefix(layer_context)
    return model(tokens, input_pos, kv_cache, layer_context, left_pad, last_token_only=True)[:, -1]  # [B, V]


def decode_one_token(model: Qwen2, token: torch.Tensor, input_pos: torch.Tensor, kv_cache: StaticKVCache,
                     left_pad: torch.Tensor, layer_context: Any = None) -> torch.Tensor:
    """One step: token [B, 1] written at slot input_pos [1]; logits [B, V] for the next token."""
    return model(token, input_pos, kv_cache, layer_context, left_pad)[:, -1]  # [B, V]


def decode_tokens(model: Qwen2, tokens: torch.Tensor, input_pos: torch.Tensor, kv_cache: StaticKVCache,
                  left_pad: torch.Tensor, layer_context: Any = None) -> torch.Tensor:
    """Several steps at once: tokens [B, T] written at slots input_pos [T]; logits [B, V] after the last of them."""
    return model(tokens, input_pos, kv_cache, layer_context, left_pad, last_token_only=True)[:, -1]  # [B, V]


def sample(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
           generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """Next tokens [B] from logits [B, V]: argmax where temperature is 0, otherwise a draw from the temperature-
    scaled distribution cut to the top_k most likely tokens and then to the smallest set whose probability reaches
    top_p, each row with its own generator (so a request's draws do not depend on its batch). A row whose logits
    leave one token (the rest -inf: a constraint allows only it) takes it without a draw, as jump-forward does, so
    its generator's later draws are the same whether or not the step had a forward of its own."""
    greedy = logits.argmax(-1)  # [B]
    choice = (temperature > 0) & (torch.isfinite(logits).sum(-1) > 1)  # [B]
    sampled_rows = choice.nonzero().flatten().tolist()
    if not sampled_rows:
        return greedy
    rows = torch.tensor(sampled_rows, device=logits.device)
    scaled = logits[rows].float() / temperature[rows, None]  # [R, V]
    sorted_logits, sorted_ids = scaled.sort(-1, descending=True)  # [R, V]
    V = logits.shape[-1]
    k = torch.where(top_k[rows] > 0, top_k[rows], V)  # [R]
    keep = torch.arange(V, device=logits.device)[None] < k[:, None]  # [R, V]
    probs = sorted_logits.masked_fill(~keep, float("-inf")).softmax(-1)  # [R, V]
    # drop a token when the more likely ones already reach top_p; the most likely token always stays
    keep &= (probs.cumsum(-1) - probs) < top_p[rows, None]  # [R, V]
    probs = sorted_logits.masked_fill(~keep, float("-inf")).softmax(-1)  # [R, V]
    out = greedy.clone()
    for j, row in enumerate(sampled_rows):
        choice = torch.multinomial(probs[j], 1, generator=generators[row])  # [1]
        out[row] = sorted_ids[j, choice[0]]
    return out


class Joiner(Protocol):
    """What ``DecodeLoop.stream`` asks, at every step boundary, of a batch that admits requests while it decodes
    (continuous batching). Rows stay aligned to the same slot: a request joins left-padded to the slots the batch
    has filled (every row's padding grows when its prompt is longer)."""

    max_rows: int  # rows decoded together at most

    def take(self, free_rows: int) -> list[Request]:
        """Requests that join now, at most ``free_rows``; they get the next request indices, in order."""

    def layer_context(self, request_indices: Sequence[int]) -> Any:
        """The user layers of rows holding these requests, in order (None: the base model); every call gives the
        same prefix length (``cacheable_prefix_len``)."""


class _Rows:
    """Per-row state of a batch whose rows change (``DecodeLoop._stream_joining``)."""

    def __init__(self, device):
        self.device = device
        self.index: list[int] = []          # the request each row decodes
        self.requests: list[Request] = []
        self.counts: list[int] = []         # tokens each row has yielded
        self.finished: list[bool] = []
        self.generators: list[torch.Generator | None] = []
        self.left_pad = torch.zeros(0, dtype=torch.long, device=device)  # [B]
        self.generated: list[list[int]] = []  # each row's tokens so far
        self._sampling: tuple | None = None  # ``sampling()``, made again only when the rows change

    def __len__(self) -> int:
        return len(self.index)

    def extend(self, requests: Sequence[Request], indices: Sequence[int], left_pad: torch.Tensor):
        self.index += list(indices)
        self.requests += list(requests)
        self.counts += [0] * len(requests)
        self.finished += [False] * len(requests)
        self.generators += [None if r.seed is None else torch.Generator(self.device).manual_seed(r.seed)
                            for r in requests]
        self.left_pad = torch.cat((self.left_pad, left_pad))
        self.generated += [[] for _ in requests]
        self._sampling = None

    def select(self, keep: list[int]) -> None:
        for name in ("index", "requests", "counts", "finished", "generators", "generated"):
            values = getattr(self, name)
            setattr(self, name, [values[r] for r in keep])
        self.left_pad = self.left_pad[torch.tensor(keep, dtype=torch.long, device=self.device)]
        self._sampling = None

    def history(self, pad_id: int) -> torch.Tensor:
        """[B, t] each row's tokens so far, right-padded with ``pad_id``."""
        width = max(self.counts)
        return torch.tensor([row + [pad_id] * (width - len(row)) for row in self.generated], dtype=torch.long,
                            device=self.device)

    def sampling(self) -> tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(any row samples, temperature [B], top_k [B], top_p [B]), made once per set of rows."""
        if self._sampling is None:
            temperature = torch.tensor([float(r.temperature) for r in self.requests], device=self.device)
            top_k = torch.tensor([r.top_k for r in self.requests], device=self.device)
            top_p = torch.tensor([float(r.top_p) for r in self.requests], device=self.device)
            self._sampling = (bool((temperature > 0).any()), temperature, top_k, top_p)
        return self._sampling


@dataclass
class DecodeLoop:
    """Decodes batches of ``Request`` with ``model``; ``compile=True`` compiles ``decode_one_token`` (measure first:
    see benchmarks/decode_speed.py)."""

    model: Qwen2
    compile: bool = False
    pad_token_id: int = 0
    seq_len_bucket: int = 64  # the KV cache holds a multiple of this many slots
    jump_forward: bool = True  # forced tokens (``stream``'s ``forced``) ride on the next forward
    _step: Callable = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.seq_len_bucket, bool) or not isinstance(self.seq_len_bucket, int) \
                or self.seq_len_bucket <= 0:
            raise ValueError(f"DecodeLoop.seq_len_bucket must be a positive int, got {self.seq_len_bucket!r}")
        self.model.eval()
        self._step = decode_one_token
        if self.compile:
            self._step = torch.compile(decode_one_token, dynamic=False)

    def stream(self, requests: Sequence[Request], logits_processor: LogitsProcessor | None = None,
               layer_context: Any = None, forced: Callable[[int], int | None] | None = None,
               joiner: Joiner | None = None) -> Iterator[tuple[int, int]]:
        """Yields (request_index, token_id) as tokens are produced, in step order and, within a step, by index.
        ``forced``: see the module docstring (None: every token has its forward). ``joiner``: continuous batching
        (``_stream_joining``; its ``layer_context`` replaces ``layer_context``)."""
        if not requests:
            return
        if joiner is not None:
            yield from self._stream_joining(requests, logits_processor, forced, joiner)
            return
        model, B = self.model, len(requests)
        device = model.lm_head.weight.device
        prompt_len = max(len(r.prompt) for r in requests)
        max_new = max(r.max_new_tokens for r in requests)
        max_positions = model.config.max_position_embeddings
        if prompt_len + max_new > max_positions:
            raise ValueError(f"longest prompt ({prompt_len}) + max_new_tokens ({max_new}) = {prompt_len + max_new} "
                             f"exceeds max_position_embeddings={max_positions}")
        # cache length in buckets: fewer distinct shapes, so a compiled step is not recompiled for every prompt
        max_seq_len = min(-(-(prompt_len + max_new) // self.seq_len_bucket) * self.seq_len_bucket, max_positions)

        tokens = torch.full((B, prompt_len), self.pad_token_id, dtype=torch.long, device=device)  # [B, T]
        for i, r in enumerate(requests):
            tokens[i, prompt_len - len(r.prompt):] = torch.as_tensor(list(r.prompt), dtype=torch.long)
        left_pad = torch.tensor([prompt_len - len(r.prompt) for r in requests], device=device)  # [B]
        temperature = torch.tensor([float(r.temperature) for r in requests], device=device)  # [B]
        top_k = torch.tensor([r.top_k for r in requests], device=device)  # [B]
        top_p = torch.tensor([float(r.top_p) for r in requests], device=device)  # [B]
        generators = [None if r.seed is None else torch.Generator(device).manual_seed(r.seed) for r in requests]
        any_sampling = any(r.temperature > 0 for r in requests)
        eos = [set(r.eos_token_ids) for r in requests]
        request_index = torch.arange(B, device=device)  # [B]
        generated = torch.full((B, max_new), self.pad_token_id, dtype=torch.long, device=device)  # [B, max_new]
        finished = [False] * B

        kv_cache = StaticKVCache.for_model(model, B, max_seq_len,
                                           cacheable_prefix_len(layer_context, model.config.num_hidden_layers))
        finished_rows = torch.zeros(B, dtype=torch.bool, device=device)  # [B]
        # inference mode only around tensor work: a generator must not leave it switched on while suspended
        with torch.inference_mode():
            logits = prefill(model, tokens, kv_cache, left_pad, layer_context)  # [B, V]
        step = 0  # tokens generated so far by every row (finished rows ride along with pads)
        while step < max_new:
            with torch.inference_mode():
                if logits_processor is not None:
                    logits = logits_processor(request_index, generated[:, :step], logits)  # [B, V]
                if any_sampling:
                    next_token = sample(logits, temperature, top_k, top_p, generators)  # [B]
                else:
                    next_token = logits.argmax(-1)  # [B]
                # finished rows ride along with a pad token so that shapes stay static
                next_token = next_token.masked_fill(finished_rows, self.pad_token_id)  # [B]
            written = [next_token]  # [B] each: the tokens the next forward writes to the cache
            while True:
                generated[:, step] = written[-1]
                step += 1
                for i, token in enumerate(written[-1].tolist()):
                    if finished[i]:
                        continue
                    yield i, token
                    if token in eos[i] or step >= requests[i].max_new_tokens:
                        finished[i] = True
                if all(finished):
                    return
                chained = self._forced_tokens(forced, finished) if step < max_new else None
                if chained is None:
                    break
                written.append(torch.tensor(chained, device=device))  # [B]
            finished_rows = torch.tensor(finished, device=device)  # [B]
            with torch.inference_mode():
                if len(written) == 1:
                    input_pos = torch.tensor([prompt_len + step - 1], device=device)  # [1]
                    logits = self._step(model, next_token[:, None], input_pos, kv_cache, left_pad, layer_context)
                else:
                    input_pos = torch.arange(prompt_len + step - len(written), prompt_len + step,
                                             device=device)  # [T]
                    logits = decode_tokens(model, torch.stack(written, 1), input_pos, kv_cache, left_pad,
                                           layer_context)  # [B, V]

    def _stream_joining(self, requests: Sequence[Request], logits_processor: LogitsProcessor | None,
                        forced: Callable[[int], int | None] | None, joiner: Joiner) -> Iterator[tuple[int, int]]:
        """Continuous batching: at every step boundary rows that finished leave the batch (their cache rows with
        them) and requests the ``joiner`` hands over join it, prefilled left-padded to the slots the batch has
        filled; padding every row has in front is dropped, so the batch's slots stay as long as its longest row.
        A row decodes as it would alone (its own positions, masks and sampling generator), so a request's tokens do
        not depend on what joined or left around it. The logits processor's history is right-padded per row."""
        model, device = self.model, self.model.lm_head.weight.device
        max_positions = model.config.max_position_embeddings
        rows = _Rows(device)
        self._check_fit(requests)
        filled = max(len(r.prompt) for r in requests)
        next_index = len(requests)
        with torch.inference_mode():
            cache, logits, left_pad, context = self._prefill_rows(requests, range(len(requests)), filled, joiner)
        rows.extend(requests, range(len(requests)), left_pad)
        while True:
            any_sampling, temperature, top_k, top_p = rows.sampling()
            with torch.inference_mode():
                if logits_processor is not None:
                    history = rows.history(self.pad_token_id)  # [B, t]
                    logits = logits_processor(torch.tensor(rows.index, device=device), history, logits)  # [B, V]
                next_token = sample(logits, temperature, top_k, top_p, rows.generators) if any_sampling \
                    else logits.argmax(-1)  # [B]
            written = [next_token]
            while True:
                for r, token in enumerate(written[-1].tolist()):
                    if rows.finished[r]:
                        continue
                    yield rows.index[r], token
                    rows.generated[r].append(token)
                    rows.counts[r] += 1
                    if token in rows.requests[r].eos_token_ids or rows.counts[r] >= rows.requests[r].max_new_tokens:
                        rows.finished[r] = True
                if all(rows.finished) or filled + len(written) + 1 > max_positions:
                    break
                chained = self._forced_tokens(None if forced is None else (lambda r: forced(rows.index[r])),
                                              rows.finished)
                if chained is None:
                    break
                written.append(torch.tensor(chained, device=device))  # [B]
            keep = [r for r in range(len(rows)) if not rows.finished[r]]
            joining = joiner.take(joiner.max_rows - len(keep)) if len(keep) < joiner.max_rows else []
            self._check_fit(joining)
            if not keep and not joining:
                return
            with torch.inference_mode():
                tokens = torch.stack(written, 1)  # [B, T]
                if len(keep) < len(rows):
                    kept = torch.tensor(keep, dtype=torch.long, device=device)
                    cache.select_rows(kept)
                    rows.select(keep)
                    tokens = tokens[kept]
                T = tokens.shape[1]
                if keep:
                    cache.grow(filled + T - cache.max_seq_len + self.seq_len_bucket
                               if filled + T > cache.max_seq_len else 0)
                    if context is None or context[0] != tuple(rows.index):
                        context = (tuple(rows.index), joiner.layer_context(rows.index))
                    input_pos = torch.arange(filled, filled + T, device=device)  # [T]
                    step = self._step if T == 1 else decode_tokens
                    logits = step(model, tokens, input_pos, cache, rows.left_pad, context[1])  # [B', V]
                filled += T
                if joining:
                    longest = max(len(r.prompt) for r in joining)
                    if not keep:
                        filled = longest
                    elif longest > filled:  # the batch's rows get more padding in front
                        cache.pad_leading_slots(longest - filled)
                        rows.left_pad = rows.left_pad + (longest - filled)
                        filled = longest
                    indices = range(next_index, next_index + len(joining))
                    next_index += len(joining)
                    joined, joined_logits, joined_pad, _ = self._prefill_rows(
                        joining, indices, filled, joiner, *((cache.max_seq_len, cache.prefix_len) if keep else ()))
                    if keep:
                        cache.append_rows(joined)
                        logits = torch.cat((logits, joined_logits))  # [B, V]
                    else:
                        cache, logits = joined, joined_logits
                    rows.extend(joining, indices, joined_pad)
                    context = None
                trim = int(rows.left_pad.min())  # padding every row has in front
                if trim > 0:
                    cache.drop_leading_slots(trim)
                    rows.left_pad = rows.left_pad - trim
                    filled -= trim

    def _check_fit(self, requests: Sequence[Request]) -> None:
        max_positions = self.model.config.max_position_embeddings
        for r in requests:
            if len(r.prompt) + r.max_new_tokens > max_positions:
                raise ValueError(f"prompt ({len(r.prompt)}) + max_new_tokens ({r.max_new_tokens}) = "
                                 f"{len(r.prompt) + r.max_new_tokens} exceeds max_position_embeddings={max_positions}")

    def _prefill_rows(self, requests: Sequence[Request], indices: Sequence[int], filled: int, joiner: Joiner,
                      slots: int | None = None, prefix_len: int | None = None):
        """Prefill ``requests`` left-padded to ``filled`` slots into a cache of their own (``slots`` token slots,
        else a bucket past their budgets; ``prefix_len`` prefix slots, those of the cache they will join — rows
        without a user prefix get them masked, and where the cache has none a user prefix is attended per layer
        from the layer context, as ``Attention`` does for a cache without prefix slots — else as their layer
        context has it); (cache, logits [B, V], left_pad [B], (indices, layer context))."""
        model, device = self.model, self.model.lm_head.weight.device
        tokens = torch.full((len(requests), filled), self.pad_token_id, dtype=torch.long, device=device)  # [B, T]
        for i, r in enumerate(requests):
            tokens[i, filled - len(r.prompt):] = torch.as_tensor(list(r.prompt), dtype=torch.long)
        left_pad = torch.tensor([filled - len(r.prompt) for r in requests], device=device)  # [B]
        if slots is None:
            need = filled + max(r.max_new_tokens for r in requests)
            slots = min(-(-need // self.seq_len_bucket) * self.seq_len_bucket, model.config.max_position_embeddings)
        context = joiner.layer_context(list(indices))
        own_prefix = cacheable_prefix_len(context, model.config.num_hidden_layers)
        if prefix_len is None:
            prefix_len = own_prefix
        elif prefix_len and own_prefix not in (0, prefix_len):
            raise ValueError(f"rows with a user prefix of {own_prefix} slots cannot join a cache of {prefix_len}")
        cache = StaticKVCache.for_model(model, len(requests), slots, prefix_len)
        if prefix_len and not own_prefix:  # no user prefix in these rows: the cache's prefix slots masked for them
            cache.prefix_mask = torch.zeros((len(requests), prefix_len), dtype=torch.bool, device=device)
        if prefix_len and own_prefix:
            cache.write_prefix(context)
        input_pos = torch.arange(filled, device=device)  # [T]
        logits = model(tokens, input_pos, cache, context, left_pad, last_token_only=True)[:, -1]  # [B, V]
        return cache, logits, left_pad, (tuple(indices), context)

    def _forced_tokens(self, forced: Callable[[int], int | None] | None, finished: list[bool]) -> list[int] | None:
        """Every row's next token when each unfinished row has one forced (finished rows: a pad); else None."""
        if forced is None or not self.jump_forward:
            return None
        tokens = []
        for i, done in enumerate(finished):
            token = self.pad_token_id if done else forced(i)
            if token is None:
                return None
            tokens.append(token)
        return tokens

    def generate(self, requests: Sequence[Request], logits_processor: LogitsProcessor | None = None,
                 layer_context: Any = None) -> list[list[int]]:
        """The generated token ids of each request (eos included when it stopped on one)."""
        out: list[list[int]] = [[] for _ in requests]
        for i, token in self.stream(requests, logits_processor, layer_context):
            out[i].append(token)
        return out


__all__ = ["DecodeLoop", "Joiner", "LogitsProcessor", "Request", "StaticKVCache", "cacheable_prefix_len", "decode_one_token",
           "decode_tokens", "prefill", "sample"]
