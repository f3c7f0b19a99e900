"""GPU-node smoke steps called by ``validate_on_gpu.sh``: write two users' adapters, then chat as each of them.

    python -m builders.trtllm.gpu_smoke adapters --preset 0.5b --checkpoint CKPT --adapter-dir DIR
    python -m builders.trtllm.gpu_smoke keyring --keyring KEYRING     (then start tritonserver with RECLLM_KEYRING)
    python -m builders.trtllm.gpu_smoke chat --url localhost:8001 --keyring KEYRING --result result.json
    python -m builders.trtllm.gpu_smoke perf-input --keyring KEYRING --output perf_input.json

``chat`` sends the same turn to ``generator_trtllm`` as a user without an adapter and as two users with different
adapters, and records the replies and latencies; different replies show the adapters reach the engine. The
generator takes the user from a signed ``USER_TOKEN`` (``recllm_proto.user_token``) verified with the keyring named
by ``RECLLM_KEYRING``: ``keyring`` creates that file (0600) for the run, ``chat`` signs a short-lived token per call
with it, ``perf-input`` tokens valid for ``--token-ttl-s`` (the whole perf_analyzer run). The perf input therefore
holds live credentials for that server: keep it in the run's work folder, never commit it.
Only meaningful against a GPU tritonserver; nothing here has been run on one yet.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from builders.trtllm.lora_tensors import random_adapter
from builders.trtllm.model_shape import PRESET_SHAPES, shape_from_hf_config
from recllm.user_layers.adapter_store import AdapterStoreConfig, user_adapter_name
from recllm.user_layers.trtllm_export import lora_task_id, write_exported
from recllm_proto.user_token import Keyring, ensure_keyring

USERS = {"gpu-smoke-base": None, "gpu-smoke-a": 1, "gpu-smoke-b": 2}     # user -> adapter seed (None: no adapter)
TURN = {"QUERY": "что приготовить на ужин, чтобы было полезно?", "RESOLVED_SERVICE": "kuper",
        "ITEM_IDS": [1, 2, 3], "ITEM_NAMES": ["Брокколи 400 г", "Салат айсберг 1 шт", "Филе индейки 500 г"],
        "PROFILE_FACTS": ["почти каждый день берёт овощи"]}
CHAT_TOKEN_TTL_S = 60.0             # one call
PERF_TOKEN_TTL_S = 3600.0           # a whole perf_analyzer run (6 concurrency levels x 10 s windows x retrials)


def write_adapters(preset: str, checkpoint: Path, adapter_dir: Path, rank: int = 8) -> dict[str, int]:
    config_json = checkpoint / "config.json"
    shape = shape_from_hf_config(config_json, PRESET_SHAPES[preset]) if config_json.exists() else PRESET_SHAPES[preset]
    written = {}
    for user, seed in USERS.items():
        if seed is not None:
            # A large std so the two adapters visibly change greedy output (a smoke test, not a trained adapter).
            weights, config = random_adapter(shape, rank=rank, seed=seed, std=0.5)
            # fresh by the generator's policy (trained now, on the minimum event count), so it serves them
            name = user_adapter_name(user)
            write_exported(adapter_dir, name, weights, config, kind="user", trained_at=int(time.time()),
                           num_events=AdapterStoreConfig().min_events)
            written[user] = lora_task_id(name)
    return written


def request_inputs(token: str):
    """(name, array) pairs for one generator_trtllm request on behalf of the user ``token`` was signed for."""
    text = lambda values: np.array([v.encode("utf-8") for v in values], dtype=np.object_)  # noqa: E731
    return [("USER_TOKEN", text([token])), ("QUERY", text([TURN["QUERY"]])),
            ("RESOLVED_SERVICE", text([TURN["RESOLVED_SERVICE"]])), ("ITEM_IDS", np.array(TURN["ITEM_IDS"], np.int64)),
            ("ITEM_NAMES", text(TURN["ITEM_NAMES"])), ("PROFILE_FACTS", text(TURN["PROFILE_FACTS"]))]


def chat(url: str, keyring: Keyring, model: str = "generator_trtllm") -> dict:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    replies = {}
    for user in USERS:
        for attempt in ("first", "cached"):          # the second call sends the task id only
            inputs = []
            for name, array in request_inputs(keyring.sign(user, ttl_s=CHAT_TOKEN_TTL_S)):
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            start = time.perf_counter()
            result = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput("REPLY")])
            replies[f"{user}/{attempt}"] = {"reply": result.as_numpy("REPLY")[0].decode("utf-8"),
                                            "ms": round(1e3 * (time.perf_counter() - start), 1)}
    distinct = {replies[f"{u}/first"]["reply"] for u in USERS}
    return {"replies": replies, "distinct_replies": len(distinct), "adapters_change_output": len(distinct) == 3}


def perf_input_data(keyring: Keyring, ttl_s: float = PERF_TOKEN_TTL_S) -> dict:
    """perf_analyzer ``--input-data`` JSON: the smoke turn as each user, round-robin, each with a token valid for
    ``ttl_s`` (perf_analyzer replays the same tensors for the whole run)."""
    data = []
    for user in USERS:
        entry = {}
        for name, array in request_inputs(keyring.sign(user, ttl_s=ttl_s)):
            values = [v.decode("utf-8") if isinstance(v, bytes) else int(v) for v in array.reshape(-1)]
            entry[name] = {"content": values, "shape": list(array.shape)}
        data.append(entry)
    return {"data": data}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    adapters = sub.add_parser("adapters")
    adapters.add_argument("--preset", default="0.5b")
    adapters.add_argument("--checkpoint", type=Path, required=True)
    adapters.add_argument("--adapter-dir", type=Path, required=True)
    keys = sub.add_parser("keyring", help="create the server keyring (0600) if absent")
    turn = sub.add_parser("chat")
    turn.add_argument("--url", default="localhost:8001")
    turn.add_argument("--result", type=Path, required=True)
    perf = sub.add_parser("perf-input")
    perf.add_argument("--output", type=Path, required=True)
    perf.add_argument("--token-ttl-s", type=float, default=PERF_TOKEN_TTL_S)
    for step in (keys, turn, perf):
        step.add_argument("--keyring", type=Path, required=True,
                          help="the keyring tritonserver verifies tokens with (its RECLLM_KEYRING)")
    args = parser.parse_args(argv)
    if args.step == "keyring":
        ensure_keyring(args.keyring)
        return 0
    if args.step == "perf-input":
        data = perf_input_data(ensure_keyring(args.keyring).backend_view(), args.token_ttl_s)
        # Live tokens: readable by the owner only, like the keyring itself.
        descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        return 0
    if args.step == "adapters":
        print(json.dumps(write_adapters(args.preset, args.checkpoint, args.adapter_dir)))
        return 0
    outcome = chat(args.url, ensure_keyring(args.keyring).backend_view())
    args.result.write_text(json.dumps(outcome, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(outcome, ensure_ascii=False))
    return 0 if outcome["adapters_change_output"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
