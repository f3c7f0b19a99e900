"""recllm.serving.bls_stream: an ended stream is held until a barrier went through the stub's queue, then dropped;
a stream closed early is read to its end first. The backend's real behaviour (the crash this prevents) is measured
by benchmarks/bls_stream_release.py and exercised end to end in tests/benchmarks/test_bls_stream_release.py."""

import pytest

import gc
import weakref
from contextlib import closing

from recllm.serving.bls_stream import DecoupledBlsStreams


class Stream:
    """A response iterator like the backend's: yields its responses, remembers how many were read."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.read == len(self.responses):
            raise StopIteration
        self.read += 1
        return self.responses[self.read - 1]


class Barrier:
    """A caller request's is_cancelled: counts its calls, answers ``cancelled``."""

    def __init__(self, cancelled=False):
        self.cancelled = cancelled
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.cancelled


def test_a_finished_stream_is_dropped_after_the_barrier_answers_not_cancelled():
    streams, stream, barrier = DecoupledBlsStreams(), Stream(["a", "b", "final"]), Barrier()
    alive = weakref.ref(stream)
    assert list(streams.stream(stream, barrier)) == ["a", "b", "final"]
    del stream
    gc.collect()
    assert barrier.calls == 1
    assert streams.held == 0 and alive() is None


def test_a_stream_closed_early_is_read_to_its_final_response_before_it_is_let_go():
    streams, stream, barrier = DecoupledBlsStreams(), Stream(["a", "b", "c", "final"]), Barrier()
    with closing(streams.stream(stream, barrier)) as responses:
        assert next(responses) == "a"
    assert stream.read == 4 and barrier.calls == 1 and streams.held == 0


def test_an_error_in_the_reader_still_drains_and_releases():
    streams, stream, barrier = DecoupledBlsStreams(), Stream(["a", "bad", "final"]), Barrier()
    try:
        with closing(streams.stream(stream, barrier)) as responses:
            for response in responses:
                if response == "bad":
                    raise ValueError(response)
    except ValueError:
        pass
    assert stream.read == 3 and streams.held == 0


def test_streams_are_held_while_the_caller_is_cancelled_and_dropped_at_the_next_uncancelled_barrier():
    streams = DecoupledBlsStreams()
    cancelled = Barrier(cancelled=True)  # the backend may answer True from its cache, without a round trip
    first, second = Stream(["x", "final"]), Stream(["y", "final"])
    alive = [weakref.ref(first), weakref.ref(second)]
    list(streams.stream(first, cancelled))
    list(streams.stream(second, cancelled))
    del first, second
    gc.collect()
    assert streams.held == 2 and all(ref() is not None for ref in alive)
    list(streams.stream(Stream(["z", "final"]), Barrier()))
    gc.collect()
    assert streams.held == 0 and all(ref() is None for ref in alive)


def test_responses_runs_the_bls_request_decoupled_and_uses_the_caller_s_is_cancelled():
    class BlsRequest:
        def exec(self, decoupled=False):
            self.decoupled = decoupled
            return Stream(["r1", "final"])

    class CallerRequest:
        calls = 0

        def is_cancelled(self):
            CallerRequest.calls += 1
            return False

    bls, streams = BlsRequest(), DecoupledBlsStreams()
    assert list(streams.responses(bls, CallerRequest())) == ["r1", "final"]
    assert bls.decoupled is True and CallerRequest.calls == 1 and streams.held == 0


class ReplayingStream(Stream):
    """Like the backend's iterator: ``iter`` of a finished one starts it over (its responses are kept)."""

    def __init__(self, responses):
        super().__init__(responses)
        self.delivered = 0

    def __iter__(self):
        if self.read == len(self.responses):
            self.read = 0
        return self

    def __next__(self):
        response = super().__next__()
        self.delivered += 1
        return response


def test_a_finished_stream_is_not_read_again():
    stream = ReplayingStream(["a", "b", "final"])
    assert list(DecoupledBlsStreams().stream(stream, Barrier())) == ["a", "b", "final"]
    assert stream.delivered == 3


def test_no_stream_is_made_until_the_first_response_is_asked_for():
    class BlsRequest:
        made = 0

        def exec(self, decoupled=False):
            BlsRequest.made += 1
            return Stream(["final"])

    class CallerRequest:
        def is_cancelled(self):
            return False

    responses = DecoupledBlsStreams().responses(BlsRequest(), CallerRequest())
    responses.close()
    assert BlsRequest.made == 0


def test_a_stream_that_fails_while_drained_is_still_held_until_the_barrier():
    class Failing(Stream):
        def __next__(self):
            if self.read == 1:
                raise RuntimeError("stub gone")
            return super().__next__()

    streams, stream = DecoupledBlsStreams(), Failing(["a", "b", "final"])
    responses = streams.stream(stream, Barrier(cancelled=True))
    assert next(responses) == "a"
    with pytest.raises(RuntimeError, match="stub gone"):
        responses.close()
    assert streams.held == 1


def test_a_barrier_drops_only_the_streams_that_had_ended_before_it_began():
    """Turns on threads of one instance: a stream another thread ended while this thread's barrier was on its way
    is not proven cleaned up by it, so it stays held until a later barrier."""
    streams = DecoupledBlsStreams()
    first, late = Stream(["x", "final"]), Stream(["y", "final"])
    alive = [weakref.ref(first), weakref.ref(late)]

    def barrier_while_another_stream_ends():  # another thread ends `late` while this barrier waits
        list(streams.stream(late, Barrier(cancelled=True)))
        return False

    list(streams.stream(first, barrier_while_another_stream_ends))
    del first, late
    gc.collect()
    assert alive[0]() is None and alive[1]() is not None and streams.held == 1
    list(streams.stream(Stream(["z", "final"]), Barrier()))
    gc.collect()
    assert alive[1]() is None and streams.held == 0


def test_streams_of_many_threads_are_all_let_go():
    import threading  # noqa: PLC0415

    streams = DecoupledBlsStreams()
    def turn():
        for _ in range(50):
            assert list(streams.stream(Stream(["a", "final"]), Barrier())) == ["a", "final"]
    threads = [threading.Thread(target=turn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    list(streams.stream(Stream(["last", "final"]), Barrier()))
    assert streams.held == 0
