"""One ``IngestEvents`` stream: read events, admit each one, answer with one ack per event in send order.

A reader thread takes events off the stream as fast as they arrive and admits each (validation, then the writer's
queue), so the writer can group many events of one stream into a single commit; the handler thread yields the acks
in send order, each as soon as its event is durable (or at once for a rejected event once the events before it
are acknowledged). ``max_in_flight`` bounds how many events of one stream wait for their ack: past it the reader
stops reading and gRPC flow control slows the client down.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Iterable, Iterator

from recllm_proto import profile_pb2 as pb
from recllm.profile_service.messages import accepted_ack, rejected_ack

log = logging.getLogger(__name__)

# What admitting an event gives: the writer's future (resolves once durable) or an immediate rejection.
Admission = Future | pb.EventAck

_END = object()
_OFFER_POLL_S = 0.1


def ack_for(message: pb.Event, admission: Admission) -> pb.EventAck:
    """The final ack of one event: waits for the writer when the event was queued."""
    if isinstance(admission, pb.EventAck):
        return admission
    try:
        stored = admission.result()  # False: an earlier delivery of the same (user_id, event_id) is stored
    except Exception as error:  # noqa: BLE001 - the event was not stored: the client must know, the stream goes on
        return rejected_ack(message, f"event was not stored: {error}")
    return accepted_ack(message, duplicate=not stored)


class IngestStream:
    """``acks()`` yields one EventAck per event read from ``requests``, in order."""

    def __init__(self, requests: Iterable[pb.Event], admit: Callable[[pb.Event], Admission], max_in_flight: int):
        self._requests = requests
        self._admit = admit
        self._outcomes: queue.Queue = queue.Queue(maxsize=max_in_flight)
        self._closed = threading.Event()

    def acks(self) -> Iterator[pb.EventAck]:
        reader = threading.Thread(target=self._read, name="profile-ingest-reader", daemon=True)
        reader.start()
        try:
            while True:
                entry = self._outcomes.get()
                if entry is _END:
                    return
                message, admission = entry
                yield ack_for(message, admission)
        finally:
            self._closed.set()  # the client went away or the stream ended: the reader must not block on us

    def _read(self) -> None:
        try:
            for message in self._requests:
                if not self._offer((message, self._admit(message))):
                    return
        except Exception as error:  # noqa: BLE001 - a cancelled or broken client stream ends this stream only
            log.debug("ingest stream ended by the client side: %s", error)
        finally:
            self._offer(_END)

    def _offer(self, entry) -> bool:
        """Put ``entry`` for the ack loop, waiting while the stream is at ``max_in_flight``; False once closed."""
        while not self._closed.is_set():
            try:
                self._outcomes.put(entry, timeout=_OFFER_POLL_S)
                return True
            except queue.Full:
                continue
        return False
