"""TurnThreads: requests are served on a fixed set of threads at once, in order beyond that; a failing serve leaves
its thread serving; close waits a bounded time for a request that never ends."""

import threading
import time

import pytest

from recllm.serving.turn_threads import TurnThreads


def test_as_many_requests_as_threads_are_served_at_once_and_submit_waits_for_a_free_one():
    started, release = [], threading.Event()
    both_in = threading.Barrier(3)  # the two served requests and the test

    def serve(request):
        started.append(request)
        if request in ("a", "b"):
            both_in.wait(5)
            release.wait(5)

    threads = TurnThreads(2, serve)
    for request in ("a", "b"):
        threads.submit(request)
    both_in.wait(5)  # "a" and "b" are in serve at the same time
    third = threading.Thread(target=threads.submit, args=("c",))
    third.start()
    third.join(0.2)
    assert third.is_alive() and sorted(started) == ["a", "b"]  # "c" is not taken while no thread is free
    release.set()
    third.join(5)
    threads.close(timeout_s=5)
    assert sorted(started) == ["a", "b", "c"]


def test_a_failing_serve_leaves_its_thread_serving_the_next():
    served = []

    def serve(request):
        if request == "bad":
            raise RuntimeError("bad request")
        served.append(request)

    threads = TurnThreads(1, serve)
    for request in ("bad", "good"):
        threads.submit(request)
    threads.close(timeout_s=5)
    assert served == ["good"]
    with pytest.raises(RuntimeError, match="closed"):
        threads.submit("late")


def test_close_does_not_wait_forever_for_a_stuck_request():
    threads = TurnThreads(1, lambda request: time.sleep(60))
    threads.submit("stuck")
    time.sleep(0.05)
    started = time.monotonic()
    threads.close(timeout_s=0.2)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_the_thread_count_is_checked(bad):
    with pytest.raises(ValueError, match="threads"):
        TurnThreads(bad, print)
