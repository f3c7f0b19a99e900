"""Decoupled BLS streams that a Python-backend model lets go of safely on the Triton 2.51 Python backend.

A decoupled BLS call (``InferenceRequest.exec(decoupled=True)``) returns a response iterator that two owners share:
the Python caller and the stub's map of open streams. After the final response the iterator asks the stub's
stub-to-parent thread to clean up, and that thread erases the map's entry without holding the GIL. When the caller
has already dropped its reference, the erase destroys the iterator on that thread: its responses' numpy arrays (for
string tensors, object arrays of Python ``bytes``) are freed without the GIL while the model's own thread runs
Python, which corrupts the interpreter's heap. The stub then dies later with a segfault somewhere in ordinary Python
code (seen in ``recllm_chat`` about once per 2,000-3,200 turns under load; the Python backend holds the GIL there
from release 25.01 on: ``PbTensor``'s destructor, python_backend b771f4f).

Reproduced and measured by ``python -m benchmarks.bls_stream_release`` (a two-model repository that streams string
tensors): the plain loop crashes the caller's stub several times a minute, the loop below never has.

The fix here keeps the last reference on the Python side: once a stream has ended, the iterator is held until the
stub's cleanup of it is known to be done, and only then dropped (on the model's thread, with the GIL). The caller's
own ``request.is_cancelled()`` is the proof: it travels through the same first-in-first-out stub-to-parent queue
and waits for its answer, so when it returns ``False`` every cleanup queued before it has run. (Once a request is
cancelled the backend caches ``True`` without a round trip; iterators are then held until a later check of any
request returns ``False``.) A stream closed early is drained first: the stub queues its cleanup only after the final
response has been read.

Several turns may stream at once on threads of one instance (the chat model runs each turn on a thread of its own):
a barrier proves only the cleanups queued before it began, so a thread drops just the iterators that had ended
before its barrier call, never one another thread appended meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class DecoupledBlsStreams:
    """One per model instance: ``for response in streams.responses(bls_request, request): ...`` (from any thread)."""

    def __init__(self) -> None:
        self._ended: list[Any] = []  # ended iterators the stub may still hold a reference to
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """How many ended streams wait for the stub's cleanup (for tests and logs)."""
        with self._lock:
            return len(self._ended)

    def responses(self, bls_request, caller_request) -> Iterator[Any]:
        """The responses of ``bls_request.exec(decoupled=True)`` as they arrive. ``caller_request`` is the request
        being executed (its ``is_cancelled`` is the barrier). The call is made at the first ``next``, so a generator
        closed before it made no stream; closing it later reads the stream to its end (Triton 2.51 has no way to
        cancel a BLS stream: a cancelled chat turn waits for the rest of its reply)."""
        yield from self.stream(bls_request.exec(decoupled=True), caller_request.is_cancelled)

    def stream(self, iterator: Iterable[Any], is_cancelled: Callable[[], bool]) -> Iterator[Any]:
        finished = False
        try:
            yield from iter(iterator)
            finished = True
        finally:
            try:
                if not finished:  # closed early: read to the final response, which queues the stub's cleanup
                    for _ in iterator:  # (a finished one is not iterated again: the backend would replay it)
                        pass
            finally:
                with self._lock:
                    self._ended.append(iterator)  # even if reading failed: the last reference stays ours
                del iterator
                self.release(is_cancelled)

    def release(self, is_cancelled: Callable[[], bool]) -> None:
        """Drop the iterators that had ended before the barrier, if it went through the stub's queue (see the module
        docstring)."""
        with self._lock:
            before = list(self._ended)
        if is_cancelled():
            return
        proven = {id(it) for it in before}
        with self._lock:
            self._ended = [it for it in self._ended if id(it) not in proven]
        del before  # the last references, dropped here on this thread with the GIL
