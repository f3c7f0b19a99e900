"""An internal batcher for streamed replies: turns that arrive within a short window decode as one batch.

The decoupled ``generator_stream`` Triton model hands every chat turn's reply request to a ``StreamBatcher`` and
returns from ``execute`` at once; one background thread collects the jobs that arrive within ``window_s`` of the
first (up to ``max_batch``), decodes them together through ``GenerationStage.stream_turns`` (one forward per step
for all of them) and sends each job's text deltas to that job's own ``send`` as they are produced, then calls its
``finish`` (with the job's error, if any) as soon as its own reply ends. With ``send_interval_s`` a job's first
delta still goes out at once, and the later ones are held and sent joined at most once per interval (and before its
end), except while it has sent fewer than ``eager_chars`` characters: fewer responses for the same text, none of
its first words late. Jobs that arrive while a batch decodes form
the next batch; with ``continuous`` they join it at the next step boundary while it has fewer than ``max_batch``
rows instead (the decode loop's continuous batching: a finished reply's row leaves at once). Off by default: in the
closed-loop runs on this 2-core box it gained nothing (batches of concurrent turns form anyway), and with user
layers it cost CPU, since every change of rows rebuilds the batch's user-layer context
(benchmarks/results/throughput.md).

A cancelled job (``cancelled()`` true) gets no more deltas and is finished at once; when every job of a batch is
finished or cancelled the decode stops. One job's failing ``send`` ends that job only; a failure of the batch as a
whole finishes each open job with that error, and the thread carries on with the next batch.

Nothing here knows Triton: callbacks in, callbacks out (``model_repository/generator_stream/1/model.py`` binds
them to response senders).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamBatcherConfig:
    max_batch: int = 8          # jobs decoded together at most
    window_s: float = 0.002     # how long the first job of a batch waits for company
    continuous: bool = False    # jobs that arrive while a batch decodes join it (else they wait for the next)
    # A job's first delta goes out at once; later ones are held and sent together once this long has passed since
    # the job's last send (and at its end), so a reply is a few responses instead of one per delta. 0: every delta.
    send_interval_s: float = 0.0
    # ...except while a job has sent fewer characters than this: its first text goes out as decoded (a reader's
    # first words, and what a guard downstream holds back before its first release, wait for no interval)
    eager_chars: int = 0

    def __post_init__(self):
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"StreamBatcherConfig.max_batch must be an int >= 1, got {self.max_batch!r}")
        if not 0 <= self.window_s <= 1:
            raise ValueError(f"StreamBatcherConfig.window_s must be in [0, 1] seconds, got {self.window_s!r}")
        if isinstance(self.eager_chars, bool) or not isinstance(self.eager_chars, int) or self.eager_chars < 0:
            raise ValueError(f"StreamBatcherConfig.eager_chars must be an int >= 0, got {self.eager_chars!r}")
        if not 0 <= self.send_interval_s <= 1:
            raise ValueError(f"StreamBatcherConfig.send_interval_s must be in [0, 1] seconds, "
                             f"got {self.send_interval_s!r}")


@dataclass
class StreamJob:
    """One reply to stream: ``turn`` goes to ``stream_turns``; ``send(delta)`` per text delta; ``finish(error)``
    exactly once at the end (``error`` None on success or cancellation)."""

    turn: Any
    send: Callable[[str], None]
    finish: Callable[[BaseException | None], None]
    cancelled: Callable[[], bool] = field(default=lambda: False)
    _finished: bool = field(default=False, init=False, repr=False)
    _held: list[str] = field(default_factory=list, init=False, repr=False)  # deltas not sent yet
    _last_send: float | None = field(default=None, init=False, repr=False)  # monotonic time of the last send
    _sent_chars: int = field(default=0, init=False, repr=False)

    def offer(self, delta: str, interval_s: float, eager_chars: int = 0) -> None:
        """Send ``delta`` now (with what was held before it) if the job has sent fewer than ``eager_chars``
        characters or ``interval_s`` passed since its last send, else hold it for the next send or the end."""
        self._held.append(delta)
        now = time.monotonic()
        if self._sent_chars < eager_chars or self._last_send is None or now - self._last_send >= interval_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self._held:
            text, self._held = "".join(self._held), []
            self._last_send = time.monotonic() if now is None else now
            self._sent_chars += len(text)
            self.send(text)

    def end(self, error: BaseException | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        self._held = []  # a reply that ends in an error or is cancelled sends no more of its text
        try:
            self.finish(error)
        except Exception:  # noqa: BLE001 - a client that went away must not stop the other jobs
            log.warning("finishing a reply stream failed", exc_info=True)


# stream_turns(turns[, more, max_rows]) yields objects with .index, .delta, .done, .error (recllm.pipeline.ReplyEvent);
# more(free_rows) -> turns that join the batch while it decodes (``GenerationStage.stream_turns``)
StreamTurns = Callable[..., Iterator[Any]]


class StreamBatcher:
    def __init__(self, stream_turns: StreamTurns, config: StreamBatcherConfig | None = None):
        self.stream_turns = stream_turns
        self.config = config or StreamBatcherConfig()
        self.batch_sizes: list[int] = []  # decoded batch sizes, newest last (tests and diagnostics)
        self.joined = 0  # jobs that joined a batch while it decoded (continuous batching)
        self._jobs: queue.Queue[StreamJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="stream-batcher", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, job: StreamJob) -> None:
        if self._closed:
            raise RuntimeError("StreamBatcher is closed")
        self._jobs.put(job)

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join(timeout_s)

    def _next_batch(self) -> list[StreamJob] | None:
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.config.window_s
        while len(batch) < self.config.max_batch:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:  # closing: decode what we have, then stop
                self._jobs.put(None)
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self.decode(batch)
            except Exception as exc:  # noqa: BLE001 - the thread serves every later batch
                log.exception("reply stream batch of %d failed", len(batch))
                for job in batch:
                    job.end(exc)

    def decode(self, batch: list[StreamJob]) -> None:
        """Decode ``batch`` together, streaming each job's deltas to it (runs on the batcher thread)."""
        jobs = []
        for job in batch:
            if job.cancelled():
                job.end()
            else:
                jobs.append(job)
        if not jobs:
            return
        self.batch_sizes.append(len(jobs))
        open_jobs = set(range(len(jobs)))

        def more(free_rows: int) -> list[Any]:
            """Jobs waiting now (none blocks), up to ``free_rows``: they join the decoding batch."""
            turns = []
            while len(turns) < free_rows:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing: no more joins; the thread stops after this batch
                    self._jobs.put(None)
                    break
                if job.cancelled():
                    job.end()
                    continue
                open_jobs.add(len(jobs))
                jobs.append(job)
                self.joined += 1
                turns.append(job.turn)
            return turns

        events = self.stream_turns([job.turn for job in jobs], more, self.config.max_batch) \
            if self.config.continuous else self.stream_turns([job.turn for job in jobs])
        try:
            for event in events:
                if event.index not in open_jobs:
                    continue
                job = jobs[event.index]
                if job.cancelled():
                    open_jobs.discard(event.index)
                    job.end()
                elif event.done:
                    open_jobs.discard(event.index)
                    try:
                        if event.error is None:
                            job.flush()  # what was held goes before the end
                    except Exception as exc:  # noqa: BLE001 - this job's stream broke, the others go on
                        job.end(exc)
                    job.end(event.error)
                elif event.delta:
                    try:
                        job.offer(event.delta, self.config.send_interval_s, self.config.eager_chars)
                    except Exception as exc:  # noqa: BLE001 - this job's stream broke, the others go on
                        open_jobs.discard(event.index)
                        job.end(exc)
                if event.index not in open_jobs:
                    jobs[event.index] = None  # ended: a batch that keeps admitting jobs lives on
                if not open_jobs:
                    break
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: each open job gets the error
            log.exception("reply stream batch failed")
            for i in open_jobs:
                jobs[i].end(exc)
            return
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        for i in open_jobs:  # a stream that ended without a done event for some job
            jobs[i].end(RuntimeError("the reply stream ended before this reply was done"))
