"""A fixed set of daemon threads that serve requests a decoupled Python-backend model hands them.

A decoupled model's ``execute`` may return before it has answered: the chat model submits each request here and
returns, and one of ``threads`` serves it (sending its responses and final flag itself), so one instance has that
many turns in progress while each mostly waits on its BLS calls. ``submit`` waits while every thread has a request:
the instance's ``execute`` then holds, so Triton keeps the requests beyond that in its own queue (with its queue
policy) and gives them to an instance with a free thread, instead of a queue here. The threads are daemons and ``close`` waits a bounded time: a stub whose server died (kill -9) must still exit, even with a turn
stuck in a BLS call that will never answer.

``serve`` must answer its request whatever happens (the chat model's ``serve_turn`` sends an error response and the
final flag); an exception that still escapes it is logged, and the thread serves the next request.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class TurnThreads:
    def __init__(self, threads: int, serve: Callable[[Any], None], name: str = "turn"):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"TurnThreads.threads must be an int >= 1, got {threads!r}")
        self.serve = serve
        self._requests: queue.Queue[Any] = queue.Queue()
        self._free = threading.Semaphore(threads)  # threads without a request
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, request: Any) -> None:
        """Hand ``request`` to a thread, waiting until one is free."""
        if self._closed:
            raise RuntimeError("TurnThreads is closed")
        self._free.acquire()
        self._requests.put(request)

    def close(self, timeout_s: float = 30.0) -> None:
        """Serve what was submitted, then stop the threads (waiting at most ``timeout_s`` in all)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout_s / len(self._threads))

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                self.serve(request)
            except Exception:  # noqa: BLE001 - the thread serves every later request
                log.exception("serving a request failed")
            finally:
                self._free.release()
