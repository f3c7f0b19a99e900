"""backend_adapter helpers that need no server."""

from __future__ import annotations

import gc

from recllm.serving.backend_adapter import freeze_loaded_state


def test_freeze_loaded_state_moves_what_is_loaded_out_of_the_collections():
    loaded = [{"item": k} for k in range(1000)]  # what initialize would have built
    try:
        frozen = freeze_loaded_state()
        # (not == gc.get_freeze_count(): another test's thread freeing a frozen object between the two calls
        # lowered the count by 2 in a fresh clone's run)
        assert frozen >= len(loaded) and gc.get_freeze_count() > 0
        assert not any(gc.is_tracked(x) and x in gc.get_objects(generation=2) for x in loaded[:3])
    finally:
        gc.unfreeze()


def test_a_stub_that_crashes_natively_leaves_its_python_stack_on_stderr(tmp_path):
    """What every model's initialize runs first: a segfault then writes where each thread was."""
    import subprocess
    import sys

    script = ("import ctypes\nfrom recllm.serving.backend_adapter import enable_crash_traces\n"
              "def serve_a_turn():\n    ctypes.string_at(0)\nenable_crash_traces()\nserve_a_turn()\n")
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert crashed.returncode != 0
    assert "Fatal Python error: Segmentation fault" in crashed.stderr and "serve_a_turn" in crashed.stderr
