"""backend_adapter helpers that need no server."""

from __future__ import annotations

import gc

from recllm.serving.backend_adapter import freeze_loaded_state


def test_freeze_loaded_state_moves_what_is_loaded_out_of_the_collections():
    loaded = [{"item": k} for k in range(1000)]  # what initialize would have built
    try:
        frozen = freeze_loaded_state()
        assert frozen == gc.get_freeze_count() and frozen >= len(loaded)
        assert not any(gc.is_tracked(x) and x in gc.get_objects(generation=2) for x in loaded[:3])
    finally:
        gc.unfreeze()
