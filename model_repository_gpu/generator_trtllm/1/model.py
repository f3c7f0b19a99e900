"""Triton adapter (GPU repository): ranked items + profile facts -> a reply from Qwen2 on TensorRT-LLM, per-user LoRA.

Calls the decoupled ``tensorrt_llm`` model through BLS and collects its streamed tokens. Which adapter serves a
request is the adapter store's policy (``recllm.user_layers.adapter_store.fallback_chain``): the user's adapter if
exported and fresh (``adapter_ttl_s`` / ``adapter_min_events``, defaults from ``AdapterStoreConfig``), else the
user's segment adapter, else the base model. LoRA protocol of the TensorRT-LLM backend: a task id's first request
carries ``lora_weights`` + ``lora_config``, later ones the id only; an id the cache has evicted comes back as an
error, and this adapter then resends once with the weights. If the adapter still cannot be served, the next one in
the chain is tried, ending with the base model; a log line says which one served (user / segment number / base,
no user ids). Adapters live in ``<adapter_dir>/<task_id>/`` as ``recllm.user_layers.trtllm_export`` writes them,
segments in ``<adapter_dir>/user_segments.json`` (read once at start). Not yet run on a GPU node
(docs/gpu_nodes.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, OrderedDict
from contextlib import closing
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from recllm_proto.user_token import KeyringFile

from recllm.serving.bls_stream import DecoupledBlsStreams
from recllm.user_layers.adapter_store import AdapterStoreConfig, fallback_chain, user_adapter_name
from recllm.user_layers.trtllm_export import exported_info, load_exported, lora_task_id, read_user_segments

log = logging.getLogger(__name__)
UPLOADED_IDS_KEPT = 65536                       # ids this instance has sent weights for (bounded, LRU)
SYSTEM_PROMPT = ("Ты помощник по покупкам в сервисах samokat, megamarket и kuper. Предлагай только товары из списка "
                 "и коротко объясняй выбор, опираясь на факты о пользователе.")


def build_messages(query: str, service: str, item_names, profile_facts) -> list[dict]:
    items = "\n".join(f"- {name}" for name in item_names)
    facts = "\n".join(f"- {fact}" for fact in profile_facts) or "- (нет данных)"
    context = f"Сервис: {service}\nФакты о пользователе:\n{facts}\nТовары:\n{items}"
    return [{"role": "system", "content": f"{SYSTEM_PROMPT}\n\n{context}"}, {"role": "user", "content": query}]


def bf16_tensor(name: str, array: np.ndarray):
    """A TYPE_BF16 input (the engine's dtype) from any float array: numpy has no bf16, so go through torch DLPack."""
    import torch
    from torch.utils import dlpack

    value = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(torch.bfloat16)
    return pb_utils.Tensor.from_dlpack(name, dlpack.to_dlpack(value))


def is_uncached_lora_error(message: str) -> bool:
    text = message.lower()
    return "lora" in text and ("not found" in text or "cache" in text)


def is_lora_error(message: str) -> bool:
    """Errors another adapter (or none) may avoid; anything else would fail the base model too."""
    return "lora" in message.lower()


def served_by(name: str | None) -> str:
    """What a log line may say about an adapter: "user", "segment/<n>" or "base" (never the user id)."""
    if name is None:
        return "base"
    return "user" if name.startswith("user/") else name


def _text(request, name: str) -> list[str]:
    values = pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


class TritonPythonModel:
    def initialize(self, args):
        from transformers import AutoTokenizer

        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        if not os.environ.get("RECLLM_KEYRING"):
            raise RuntimeError("RECLLM_KEYRING is not set: the generator verifies user tokens with the server keyring")
        keys = KeyringFile(os.environ["RECLLM_KEYRING"])
        self.setup(AutoTokenizer.from_pretrained(params["tokenizer_dir"]), params, keys.current)

    def setup(self, tokenizer, params: dict, keyring=None) -> None:
        if keyring is not None:
            self.keyring = keyring                          # () -> the current recllm_proto Keyring
        self.tokenizer = tokenizer
        self.adapter_dir = Path(params["adapter_dir"])
        self.llm_model = params["llm_model"]
        self.reply_tokens = int(params["reply_tokens"])
        self.max_input_len = int(params["max_input_len"])
        defaults = AdapterStoreConfig()
        self.policy = AdapterStoreConfig(ttl_s=int(params.get("adapter_ttl_s", defaults.ttl_s)),
                                         min_events=int(params.get("adapter_min_events", defaults.min_events)))
        self.segments = read_user_segments(self.adapter_dir)    # user-adapter task id -> segment
        self.now = lambda: int(time.time())
        self.uploaded: OrderedDict[int, None] = OrderedDict()
        self.streams = DecoupledBlsStreams()
        self.served = Counter()                                 # "user" / "segment/<n>" / "base" -> replies

    def prompt_ids(self, request) -> np.ndarray:
        messages = build_messages(_text(request, "QUERY")[0], _text(request, "RESOLVED_SERVICE")[0],
                                  _text(request, "ITEM_NAMES"), _text(request, "PROFILE_FACTS"))
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(getattr(ids, "input_ids", ids))
        return np.asarray(ids[-self.max_input_len:], dtype=np.int32)       # keep the query end

    def llm_inputs(self, ids: np.ndarray, task_id: int | None, adapter) -> list:
        end_id = self.tokenizer.eos_token_id
        tensors = {
            "input_ids": ids.reshape(1, -1), "input_lengths": np.array([[ids.size]], np.int32),
            "request_output_len": np.array([[self.reply_tokens]], np.int32),
            "end_id": np.array([[end_id]], np.int32),
            "pad_id": np.array([[self.tokenizer.pad_token_id or end_id]], np.int32),
            "streaming": np.array([[True]]), "exclude_input_in_output": np.array([[True]]),
        }
        if task_id is not None:
            tensors["lora_task_id"] = np.array([[task_id]], np.uint64)
        inputs = [pb_utils.Tensor(name, value) for name, value in tensors.items()]
        if adapter is not None:
            weights, config = adapter
            inputs += [bf16_tensor("lora_weights", weights[None]), pb_utils.Tensor("lora_config", config[None])]
        return inputs

    def generate(self, ids: np.ndarray, task_id: int | None, adapter, caller) -> tuple[list[int], str | None]:
        """The streamed tokens of one decoupled BLS call (``caller``: the request being executed, whose
        ``is_cancelled`` tells when the stub has let go of the stream, ``recllm.serving.bls_stream``)."""
        request = pb_utils.InferenceRequest(model_name=self.llm_model, inputs=self.llm_inputs(ids, task_id, adapter),
                                            requested_output_names=["output_ids", "sequence_length"])
        tokens: list[int] = []
        with closing(self.streams.responses(request, caller)) as responses:  # read to the end even on an error
            for response in responses:
                if response.has_error():
                    return tokens, response.error().message()
                output = pb_utils.get_output_tensor_by_name(response, "output_ids")
                if output is not None:
                    tokens.extend(int(t) for t in output.as_numpy().reshape(-1))
        return tokens, None

    def generate_with(self, ids: np.ndarray, name: str | None, caller) -> tuple[list[int], str | None]:
        """One adapter (None: the base model): weights on first use, else the id, resent once if evicted."""
        if name is None:
            return self.generate(ids, None, None, caller)
        task_id, adapter = lora_task_id(name), load_exported(self.adapter_dir, name)
        first_use = task_id not in self.uploaded
        tokens, error = self.generate(ids, task_id, adapter if first_use else None, caller)
        if error and not first_use and is_uncached_lora_error(error):
            log.info("LoRA cache evicted the %s adapter; resending its weights", served_by(name))
            tokens, error = self.generate(ids, task_id, adapter, caller)
        if error is None:
            self.uploaded[task_id] = None
            self.uploaded.move_to_end(task_id)
            while len(self.uploaded) > UPLOADED_IDS_KEPT:
                self.uploaded.popitem(last=False)
        else:
            self.uploaded.pop(task_id, None)                # the next request carries the weights again
        return tokens, error

    def handle(self, request) -> dict:
        ids = self.prompt_ids(request)
        token = pb_utils.get_input_tensor_by_name(request, "USER_TOKEN").as_numpy().reshape(-1)[0]
        user_id = self.keyring().verify(token).subject      # the verified user alone chooses the adapter
        segment = self.segments.get(lora_task_id(user_adapter_name(user_id))) if user_id else None
        chain = fallback_chain(user_id, segment, self.now(), lambda name: exported_info(self.adapter_dir, name),
                               self.policy)
        for name in chain:
            tokens, error = self.generate_with(ids, name, request)
            if error is None:
                break
            if name is None or not is_lora_error(error):
                raise RuntimeError(f"tensorrt_llm: {error}")
            # the backend's message names the task id (a hash of the user id): not logged
            log.warning("the %s adapter could not be served after a resend; falling back", served_by(name))
        self.served[served_by(name)] += 1
        log.info("generator_trtllm reply served by the %s adapter", served_by(name))
        reply = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return {"REPLY": np.array([reply.encode("utf-8")], dtype=np.object_)}

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = self.handle(request)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]))
            except Exception as error:                        # one request's failure is that request's error
                log.exception("generator_trtllm request failed")
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))))
        return responses
