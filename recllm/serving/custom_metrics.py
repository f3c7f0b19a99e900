"""The generator's reply-check counts as Triton custom metrics (``pb_utils.MetricFamily``), released at finalize.

``recllm_reply_check_total{event=...}`` (checked, regenerated, failed_after_retry, withheld) and
``recllm_reply_check_failures_total{reason=...}`` follow the library's ``ReplyCheckCounters`` through a listener.

Lifetime: the model must ``close()`` them in ``finalize``. A ``MetricFamily`` still alive when the stub process
tears down is destroyed after the stub's own state and the stub segfaults on its way out (seen at every server
stop, both generator instances, "<no Python frame>"; the upstream report is triton-inference-server/server#8662).
Each ``Metric`` goes before its family: the backend refuses a metric whose family is gone.
"""

from __future__ import annotations

import threading

from recllm.generator.reply_check import ReplyCheckCounters

EVENTS = "recllm_reply_check_total"
FAILURES = "recllm_reply_check_failures_total"


class ReplyCheckMetrics:
    def __init__(self, pb_utils, counters: ReplyCheckCounters):
        family_cls = pb_utils.MetricFamily
        self._counters = counters
        self._lock = threading.Lock()
        self._events = family_cls(name=EVENTS, description="Generated replies checked, failed, regenerated "
                                  "greedily, still failing after the retry", kind=family_cls.COUNTER)
        self._failures = family_cls(name=FAILURES, description="Reply-check failures by reason",
                                    kind=family_cls.COUNTER)
        self._metrics: dict[tuple, object] = {}
        counters.add_listener(self.count)

    @classmethod
    def attach(cls, pb_utils, counters: ReplyCheckCounters) -> "ReplyCheckMetrics | None":
        """The metrics, or None when the backend has no custom metrics API."""
        return cls(pb_utils, counters) if hasattr(pb_utils, "MetricFamily") else None

    def count(self, event: str, reason: str) -> None:
        with self._lock:
            if self._events is None:  # closed: a reply finishing during finalize is not counted
                return
            family, labels = (self._failures, {"reason": reason}) if event == "failed" else (self._events,
                                                                                              {"event": event})
            key = (family is self._failures, tuple(labels.items()))
            if key not in self._metrics:
                self._metrics[key] = family.Metric(labels=labels)
            metric = self._metrics[key]
            metric.increment(1)

    def close(self) -> None:
        """Stop counting and release every metric, then the families (in the model's ``finalize``)."""
        self._counters.remove_listener(self.count)
        with self._lock:
            self._metrics.clear()
            self._events = self._failures = None
