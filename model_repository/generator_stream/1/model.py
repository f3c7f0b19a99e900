"""Triton adapter (decoupled): the chat model's reply stream; concurrent chat turns decode as one batch.

Batching: an internal batcher (``recllm.serving.stream_batcher.StreamBatcher``), not Triton's dynamic batcher.
``execute`` parses each request, hands it to the batcher with callbacks bound to the request's own response sender,
and returns at once (a decoupled model may send its responses after ``execute`` returned); a background thread
collects the turns that arrive within ``batch_window_us`` (up to ``max_batch``), decodes them together through
``GenerationStage.stream_turns`` (one forward per step for all of them) and sends every turn's text deltas to its
own sender as they are produced (after a reply's first ``EAGER_CHARS`` characters, at most one response per
``send_interval_us``: the deltas produced meanwhile go together), with the final flag per request as soon as that
reply ends. Chosen over dynamic batching of this decoupled Python model because with ``execute`` holding its
instance for a whole reply, turns arriving mid-decode would wait for the instance anyway, and the batcher keeps the
one model process (one copy of the weights) serving every chat instance. Turns arriving mid-decode form the next batch;
``RECLLM_CONTINUOUS_BATCHING=on`` has them join the running batch at its next step boundary instead
(``StreamBatcherConfig.continuous``, off by default: measured no gain here).

Reply check, greedy regeneration of a failing sampled reply, and the act (REPLY_ACT, derived from the query when
absent) behave as ``GenerationStage.stream`` in-process. The user is the subject of the verified USER_TOKEN (the chat
model passes the caller's on); their user layers apply to their row of the batch, with ``u`` from the retriever's
sealed USER_CONTEXT that the chat model passes on (no second profile read). A bad request gets its error and the final flag at once; a
cancelled request stops receiving and is finished.
"""


import triton_python_backend_utils as pb_utils
from recllm_proto import tensors as T

from recllm.pipeline import CONTINUOUS_BATCHING_ENV, ReplyTurn, env_switch, load_generation_stage
from recllm.rag.rec_request import RequestError, detect_language, validate_query
from recllm.safety.output_guard import HOLD_CHARS
from recllm.serving.backend_adapter import (
    artifact_layout, checked_language, error_response, enable_crash_traces, freeze_loaded_state, input_item_ids,
    input_scalar, input_service, input_strings, make_response, optional_array, optional_user_context,
    positive_int_parameter, request_user_id, server_keyring,
)
from recllm.serving.stream_batcher import StreamBatcher, StreamBatcherConfig, StreamJob
from recllm_proto.text_arrays import decode_utf8_array, utf8_array

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
FINALIZE_WAIT_S = 2.0
# A reply's first characters go out as decoded, whatever the send interval: the chat's output guard holds back
# HOLD_CHARS before it releases anything, so the text it needs for the user's first words waits for no interval
# (with every delta joined, the first text's p95 at concurrency 1 grew from 54 to 80 ms in one A/B run).
EAGER_CHARS = 2 * HOLD_CHARS


def batcher_config(args) -> StreamBatcherConfig:
    """``max_batch``, ``batch_window_us`` and ``send_interval_us`` from the generated model config (defaults when
    absent)."""
    defaults = StreamBatcherConfig()
    values = {name: positive_int_parameter(args, name, default, minimum=0)
              for name, default in (("max_batch", defaults.max_batch),
                                    ("batch_window_us", int(defaults.window_s * 1e6)),
                                    ("send_interval_us", int(defaults.send_interval_s * 1e6)))}
    return StreamBatcherConfig(max_batch=values["max_batch"], window_s=values["batch_window_us"] / 1e6,
                               continuous=env_switch(CONTINUOUS_BATCHING_ENV, False),
                               send_interval_s=values["send_interval_us"] / 1e6, eager_chars=EAGER_CHARS)


def optional_text(request, spec) -> str | None:
    array = optional_array(pb_utils, request, spec.name)
    if array is None:
        return None
    if array.size != 1:
        raise RequestError(f"input {spec.name} must hold exactly one element, got shape {list(array.shape)}")
    try:
        return decode_utf8_array(array.reshape(-1))[0]
    except UnicodeDecodeError as exc:
        raise RequestError(f"input {spec.name} is not valid UTF-8 (byte {exc.start})") from None


class TritonPythonModel:
    def initialize(self, args):
        enable_crash_traces()  # a native crash leaves its Python stacks in the server log
        layout = artifact_layout(args)
        self.generation = load_generation_stage(layout)
        self.keys = server_keyring(layout)
        freeze_loaded_state()  # before the batcher thread starts allocating
        self.batcher = StreamBatcher(self.generation.stream_turns, batcher_config(args))

    def turn(self, request):
        from recllm.generator import ACTS  # noqa: PLC0415

        user_id = request_user_id(pb_utils, request, self.keys.current())
        query = validate_query(input_scalar(pb_utils, request, T.QUERY.name))
        service = input_service(pb_utils, request)
        item_ids = input_item_ids(pb_utils, request, T.ITEM_IDS.name, len(self.generation.catalog))
        facts = input_strings(pb_utils, request, T.PROFILE_FACTS.name)
        act = optional_text(request, T.REPLY_ACT)
        if act is not None and act not in ACTS:
            raise RequestError(f"{T.REPLY_ACT.name} must be one of {sorted(ACTS)}, got {act!r}")
        language = optional_text(request, T.LANGUAGE)
        language = checked_language(T.LANGUAGE.name, language) if language else detect_language(query)
        context = optional_user_context(pb_utils, request, user_id, self.keys.current())
        return ReplyTurn(service, language, query, tuple(item_ids.tolist()), tuple(facts), act,
                         optional_text(request, T.RELAXATION) or "", user_id, context)

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                turn = self.turn(request)
            except Exception as exc:  # noqa: BLE001 - a bad request is that request's error
                sender.send(error_response(pb_utils, "generator_stream", exc), flags=FINAL)
                continue
            self.batcher.submit(StreamJob(turn, send=self._sender(sender), finish=self._finisher(sender),
                                          cancelled=request.is_cancelled))
        return None

    @staticmethod
    def _sender(sender):
        def send(delta):
            sender.send(make_response(pb_utils, {T.TEXT_DELTA.name: utf8_array([delta])}))
        return send

    @staticmethod
    def _finisher(sender):
        def finish(error):
            if error is None:
                sender.send(flags=FINAL)
            else:
                sender.send(error_response(pb_utils, "generator_stream", error), flags=FINAL)
        return finish

    def finalize(self):
        # Bounded: when tritonserver died (kill -9) the stub finalizes with a batch possibly mid-decode whose senders
        # can no longer deliver; the batcher thread is a daemon, so the stub exits after this wait.
        self.batcher.close(timeout_s=FINALIZE_WAIT_S)
