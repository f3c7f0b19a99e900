"""benchmarks/serving_latency's goal lines (the measurement itself needs a server and is run by hand)."""

from __future__ import annotations

from benchmarks.serving_latency import generator_goals


def row(p95, rps=None):
    return {"p95_ms": p95, **({"throughput_rps": rps} if rps is not None else {})}


def test_generator_goals_read_turn_first_token_and_throughput():
    results = {"triton_chat_full_turn_c1": row(290.0, 5.0), "triton_chat_first_token_c1": row(95.0),
               "triton_chat_full_turn_c4": row(600.0, 4.0), "triton_ensemble_c1": row(150.0, 6.0),
               "triton_ensemble_c4": row(400.0, 9.0)}
    goals = {g["what"]: g["met"] for g in generator_goals(results)}
    assert goals == {"triton_chat_full_turn_c1 p95 ms": True, "triton_chat_first_token_c1 p95 ms": False,
                     "triton ensemble throughput c4 / c1": True, "triton chat_full_turn throughput c4 / c1": False}
