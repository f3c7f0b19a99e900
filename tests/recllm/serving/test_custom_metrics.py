"""recllm.serving.custom_metrics: reply-check events reach Triton custom metrics, and close() releases every metric
before its family and stops counting (a family left alive segfaults the stub at the server's stop)."""

from types import SimpleNamespace

from recllm.generator.reply_check import ReplyCheck, ReplyCheckCounters
from recllm.serving.custom_metrics import EVENTS, FAILURES, ReplyCheckMetrics

RELEASED: list[str] = []


class Metric:
    def __init__(self, family, labels):
        self.family, self.labels, self.value = family.name, labels, 0

    def increment(self, by):
        self.value += by
        VALUES[(self.family, tuple(self.labels.items()))] = self.value

    def __del__(self):
        RELEASED.append(f"metric {self.family}")


class MetricFamily:
    COUNTER = "counter"

    def __init__(self, name, description, kind):
        self.name, self.kind = name, kind

    def Metric(self, labels):  # noqa: N802 - the backend's spelling
        return Metric(self, labels)

    def __del__(self):
        RELEASED.append(f"family {self.name}")


VALUES: dict = {}
PB_UTILS = SimpleNamespace(MetricFamily=MetricFamily)


def failing(reason):
    return ReplyCheck(problems=(reason,))


def test_events_and_failure_reasons_are_counted_by_label():
    VALUES.clear()
    counters = ReplyCheckCounters()
    metrics = ReplyCheckMetrics.attach(PB_UTILS, counters)
    counters.record(ReplyCheck(problems=()))
    counters.record(failing("wrong_language"))
    counters.record(failing("wrong_language"))
    assert VALUES[(EVENTS, (("event", "checked"),))] == 3
    assert VALUES[(FAILURES, (("reason", "wrong_language"),))] == 2
    metrics.close()


def test_close_releases_metrics_before_their_families_and_stops_counting():
    VALUES.clear()
    RELEASED.clear()
    counters = ReplyCheckCounters()
    metrics = ReplyCheckMetrics.attach(PB_UTILS, counters)
    counters.record(failing("unknown_word"))
    metrics.close()
    families = [i for i, what in enumerate(RELEASED) if what.startswith("family")]
    metric_releases = [i for i, what in enumerate(RELEASED) if what.startswith("metric")]
    assert len(families) == 2 and len(metric_releases) == 2, RELEASED
    assert max(metric_releases) < min(families), RELEASED
    counted = dict(VALUES)
    counters.record(failing("unknown_word"))  # after close: the counters go on, the metrics are gone
    assert VALUES == counted and counters.failed == 2


def test_no_metrics_without_the_backend_api():
    assert ReplyCheckMetrics.attach(SimpleNamespace(), ReplyCheckCounters()) is None
