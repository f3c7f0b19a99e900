"""StreamBatcher: jobs within the window decode as one batch, each job gets its own deltas and end; cancellation,
per-job and whole-batch failures stay where they belong."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from recllm.serving.stream_batcher import StreamBatcher, StreamBatcherConfig, StreamJob


@dataclass(frozen=True)
class Event:
    index: int
    delta: str = ""
    done: bool = False
    error: ValueError | None = None


class FakeStage:
    """stream_turns over turns that are strings: each character is one delta, one per row and step; "bad" is
    refused; "boom" breaks the batch after its first delta. With ``more``, turns join at every step boundary while
    the batch has fewer than ``max_rows`` rows (the generation stage's continuous batching)."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.joined: list[str] = []
        self.widths: list[int] = []  # rows per step
        self.steps = 0

    def stream_turns(self, turns, more=None, max_rows=8):
        self.batches.append(list(turns))
        turns, active = list(turns), []
        for i, turn in enumerate(turns):
            if turn == "bad":
                yield Event(i, done=True, error=ValueError("bad turn"))
            else:
                active.append([i, turn, 0])
        while active:
            self.steps += 1
            self.widths.append(len(active))
            for row in list(active):
                i, turn, step = row
                if turn == "boom" and step == 1:
                    raise RuntimeError("forward failed")
                yield Event(i, turn[step])
                row[2] += 1
                if row[2] == len(turn):
                    active.remove(row)
                    yield Event(i, done=True)
            for turn in more(max_rows - len(active)) if more is not None else ():
                turns.append(turn)
                self.joined.append(turn)
                if turn == "bad":
                    yield Event(len(turns) - 1, done=True, error=ValueError("bad turn"))
                else:
                    active.append([len(turns) - 1, turn, 0])


class Collector:
    def __init__(self, turn, cancel_after=None, fail_send=False):
        self.turn, self.deltas, self.errors = turn, [], []
        self.done = threading.Event()
        self.cancel_after, self.fail_send = cancel_after, fail_send

    def job(self):
        return StreamJob(self.turn, self.send, self.finish, self.cancelled)

    def send(self, delta):
        if self.fail_send:
            raise ConnectionError("client gone")
        self.deltas.append(delta)

    def finish(self, error):
        assert not self.done.is_set(), "finished twice"
        self.errors.append(error)
        self.done.set()

    def cancelled(self):
        return self.cancel_after is not None and len(self.deltas) >= self.cancel_after


def run_jobs(collectors, config=StreamBatcherConfig(max_batch=8, window_s=0.2)):
    stage = FakeStage()
    batcher = StreamBatcher(stage.stream_turns, config)
    for c in collectors:
        batcher.submit(c.job())
    for c in collectors:
        assert c.done.wait(5), c.turn
    batcher.close()
    return stage, batcher


def test_jobs_in_the_window_decode_together_each_with_its_own_text():
    collectors = [Collector(t) for t in ("hello", "hi", "a longer reply")]
    stage, batcher = run_jobs(collectors)
    assert stage.batches == [["hello", "hi", "a longer reply"]] and batcher.batch_sizes == [3]
    for c in collectors:
        assert "".join(c.deltas) == c.turn and c.errors == [None]


def test_max_batch_splits_a_burst():
    collectors = [Collector(f"t{i}") for i in range(5)]
    stage, _ = run_jobs(collectors, StreamBatcherConfig(max_batch=2, window_s=0.2))
    assert [len(b) for b in stage.batches] == [2, 2, 1]
    assert all("".join(c.deltas) == c.turn for c in collectors)


def test_continuously_a_burst_joins_the_batch_as_rows_finish():
    """max_batch rows at most; a job waiting joins at the next step boundary with a free row, not after the
    whole batch; each still gets its own text and end."""
    collectors = [Collector(t) for t in ("ab", "abcdefghij", "xyz", "bad", "q")]
    stage, batcher = run_jobs(collectors, StreamBatcherConfig(max_batch=2, window_s=0.2, continuous=True))
    assert stage.batches == [["ab", "abcdefghij"]] and stage.joined == ["xyz", "bad", "q"] and batcher.joined == 3
    assert max(stage.widths) == 2 and stage.steps == len("abcdefghij")
    for c in collectors:
        if c.turn == "bad":
            assert c.deltas == [] and isinstance(c.errors[0], ValueError)
        else:
            assert "".join(c.deltas) == c.turn and c.errors == [None]


def test_with_a_send_interval_the_first_delta_goes_at_once_and_the_rest_together_before_the_end():
    """The fake decodes in far less than the interval: each job sends its first character, then the rest of its text
    in one delta before it finishes; a refused turn still gets its error alone."""
    collectors = [Collector(t) for t in ("hello", "a longer reply", "x", "bad")]
    run_jobs(collectors, StreamBatcherConfig(max_batch=8, window_s=0.2, send_interval_s=1.0))
    hello, longer, single, bad = collectors
    assert hello.deltas == ["h", "ello"] and longer.deltas == ["a", " longer reply"] and single.deltas == ["x"]
    assert [c.errors for c in (hello, longer, single)] == [[None]] * 3
    assert bad.deltas == [] and isinstance(bad.errors[0], ValueError)


def test_a_job_s_first_characters_go_out_as_decoded_then_joined():
    collectors = [Collector("abcdefgh")]
    run_jobs(collectors, StreamBatcherConfig(max_batch=8, window_s=0.2, send_interval_s=1.0, eager_chars=3))
    assert collectors[0].deltas == ["a", "b", "c", "defgh"]


def test_with_no_send_interval_every_delta_is_its_own_send():
    collectors = [Collector("abc")]
    run_jobs(collectors, StreamBatcherConfig(max_batch=8, window_s=0.2, send_interval_s=0.0))
    assert collectors[0].deltas == ["a", "b", "c"]


def test_a_client_gone_at_the_held_texts_send_ends_only_its_job():
    gone, fine = Collector("zzz", fail_send=True), Collector("fine")
    run_jobs([gone, fine], StreamBatcherConfig(max_batch=8, window_s=0.2, send_interval_s=1.0))
    assert isinstance(gone.errors[0], ConnectionError) and len(gone.errors) == 1
    assert fine.deltas == ["f", "ine"] and fine.errors == [None]


def test_a_refused_turn_and_a_broken_client_end_only_their_own_job():
    good, bad, gone = Collector("fine"), Collector("bad"), Collector("zzz", fail_send=True)
    run_jobs([good, bad, gone])
    assert "".join(good.deltas) == "fine" and good.errors == [None]
    assert bad.deltas == [] and isinstance(bad.errors[0], ValueError)
    assert isinstance(gone.errors[0], ConnectionError)


def test_a_failing_batch_finishes_every_open_job_and_the_thread_serves_the_next():
    stage = FakeStage()
    batcher = StreamBatcher(stage.stream_turns, StreamBatcherConfig(max_batch=8, window_s=0.2))
    first = [Collector("boom"), Collector("other")]
    for c in first:
        batcher.submit(c.job())
    for c in first:
        assert c.done.wait(5)
    assert all(isinstance(c.errors[0], RuntimeError) for c in first)
    later = Collector("after")
    batcher.submit(later.job())
    assert later.done.wait(5) and "".join(later.deltas) == "after"
    batcher.close()


def test_cancelled_jobs_stop_receiving_and_the_decode_stops_when_all_are_gone():
    long_a, long_b = Collector("x" * 50, cancel_after=2), Collector("y" * 50, cancel_after=3)
    stage, _ = run_jobs([long_a, long_b])
    assert long_a.deltas == ["x", "x"] and long_b.deltas == ["y", "y", "y"]
    assert long_a.errors == [None] and long_b.errors == [None]
    assert stage.steps < 10  # the decode was closed, not run to the end of the 50-token replies


def test_already_cancelled_job_is_not_decoded():
    gone = Collector("never", cancel_after=0)
    stage, _ = run_jobs([gone])
    assert stage.batches == [] and gone.deltas == [] and gone.errors == [None]


@pytest.mark.parametrize("bad", [{"max_batch": 0}, {"max_batch": True}, {"window_s": -1}, {"window_s": 5},
                                 {"send_interval_s": -0.1}, {"send_interval_s": 2}, {"eager_chars": -1},
                                 {"eager_chars": 1.5}])
def test_config_names_the_bad_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        StreamBatcherConfig(**bad)
