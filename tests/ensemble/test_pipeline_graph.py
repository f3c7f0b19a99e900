import dataclasses
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble import pipeline_graph as graph
from recllm_proto import tensors


def test_committed_configs_match_generated():
    for name, config in graph.all_configs().items():
        path = graph.MODEL_REPOSITORY / name / "config.pbtxt"
        assert path.exists(), f"{path} missing: run `python -m ensemble.pipeline_graph`"
        assert path.read_text() == graph.render(config), f"{path} drifted: run `python -m ensemble.pipeline_graph`"


def test_committed_configs_parse_as_model_configs():
    for name in graph.all_configs():
        text = (graph.MODEL_REPOSITORY / name / "config.pbtxt").read_text()
        parsed = text_format.Parse(text, mc.ModelConfig())
        assert parsed.name == name


def test_every_python_model_has_an_adapter():
    for name, config in graph.all_configs().items():
        if config.backend == "python":
            assert (graph.MODEL_REPOSITORY / name / "1" / "model.py").exists()


def test_ensemble_steps_consume_only_available_tensors():
    config = graph.ensemble_config()
    available = {t.name for t in config.input}
    for step in config.ensemble_scheduling.step:
        missing = set(step.input_map.values()) - available
        assert not missing, f"step {step.model_name} needs {missing} before anything produces them"
        available |= set(step.output_map.values())
    assert {t.name for t in config.output} <= available


def test_ensemble_maps_every_required_stage_input_and_the_optional_ones_an_earlier_step_produces():
    stages = {s.name: s for s in graph.STAGES}
    produced = set()
    for step in graph.ensemble_config().ensemble_scheduling.step:
        inputs = stages[step.model_name].signature.inputs
        required = {t.name for t in inputs if not t.optional}
        assert set(step.input_map) == required | ({t.name for t in inputs if t.optional} & produced)
        produced |= set(step.output_map)
    generator = graph.ensemble_config().ensemble_scheduling.step[-1]
    assert generator.model_name == "generator" and generator.input_map["USER_CONTEXT"] == "USER_CONTEXT"
    rank_steps = graph.rank_ensemble_config().ensemble_scheduling.step
    assert all("MAX_PRICE" not in step.input_map for step in rank_steps)  # optional, produced by no step


def test_client_boundary_is_lower_snake_and_inside_upper_snake():
    config = graph.ensemble_config()
    for tensor in list(config.input) + list(config.output):
        assert tensor.name == tensor.name.lower()
    for stage in graph.STAGES:
        for tensor in stage.signature.inputs + stage.signature.outputs:
            assert tensor.name == tensor.name.upper()
    chat = graph.all_configs()[tensors.CHAT_MODEL]
    assert [t.name for t in chat.input] == [spec.client_name for spec in tensors.CHAT.inputs]


def test_chat_model_is_decoupled_and_stages_are_cpu():
    configs = graph.all_configs()
    assert configs[tensors.CHAT_MODEL].model_transaction_policy.decoupled
    for name, config in configs.items():
        for group in config.instance_group:
            assert group.kind == mc.ModelInstanceGroup.KIND_CPU, name


def test_write_configs_into_a_fresh_repository(tmp_path):
    written = graph.write_configs(tmp_path)
    assert {p.parent.name for p in written} == set(graph.all_configs())
    assert all((p.parent / "1").is_dir() for p in written)


def test_every_stage_tensor_comes_from_the_one_table():
    """The configs carry exactly the dtypes and shapes of recllm_proto.tensors (no second copy to drift)."""
    configs = graph.all_configs()
    for name, signature in tensors.STAGES.items():
        config = configs[name]
        for spec, declared in zip(signature.inputs + signature.outputs, list(config.input) + list(config.output)):
            assert declared.name == spec.name
            assert declared.data_type == graph.CONFIG_DTYPES[spec.dtype]
            assert tuple(declared.dims) == spec.dims


def test_retriever_hands_the_user_context_to_the_reranker():
    steps = {step.model_name: step for step in graph.ensemble_config().ensemble_scheduling.step}
    assert steps["retriever"].output_map[tensors.USER_CONTEXT.name] == steps["reranker"].input_map[tensors.USER_CONTEXT.name]


def test_later_steps_read_the_spelled_query_returned_or_not():
    """Every step after the encoder reads its QUERY from the encoder's SPELLED_QUERY, whether the ensemble returns
    it (both do) or not (review: the wiring hung on the output being returned)."""
    returning = graph.ensemble_config()
    silent = graph.ensemble_config(signature=dataclasses.replace(
        tensors.ENSEMBLE, outputs=tuple(o for o in tensors.ENSEMBLE.outputs if o.name != tensors.SPELLED_QUERY.name)))
    for config in (returning, silent):
        encoder, *later = config.ensemble_scheduling.step
        spelled = encoder.output_map[tensors.SPELLED_QUERY.name]
        assert [step.input_map[tensors.QUERY.name] for step in later] == [spelled] * len(later)
        assert encoder.input_map[tensors.QUERY.name] == tensors.QUERY.client_name
    assert returning.ensemble_scheduling.step[0].output_map[tensors.SPELLED_QUERY.name] == "spelled_query"


def test_rank_ensemble_is_the_full_ensembles_first_steps():
    rank = [s.model_name for s in graph.rank_ensemble_config().ensemble_scheduling.step]
    full = [s.model_name for s in graph.ensemble_config().ensemble_scheduling.step]
    assert rank == list(tensors.RANKING_STAGES) and full[:len(rank)] == rank and full[-1] == "generator"
    config = graph.rank_ensemble_config()
    assert {t.name for t in config.output} == {s.client_name for s in tensors.RANK.outputs}
    available = {t.name for t in config.input}
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= available
        available |= set(step.output_map.values())
    assert {t.name for t in config.output} <= available


def test_ranking_stages_batch_dynamically_with_ragged_variable_inputs():
    configs = graph.all_configs()
    for name in tensors.RANKING_STAGES:
        config = configs[name]
        assert config.max_batch_size > 1 and config.HasField("dynamic_batching"), name
        for tensor in config.input:
            assert tensor.allow_ragged_batch == (-1 in tensor.dims), (name, tensor.name)
    # The generator batches concurrent replies too, with the same ragged ITEM_IDS / PROFILE_FACTS rule; an ensemble
    # may not batch more than any of its steps.
    generator = configs["generator"]
    assert generator.max_batch_size > 1 and generator.HasField("dynamic_batching")
    assert 0 < generator.dynamic_batching.max_queue_delay_microseconds <= 2000
    for tensor in generator.input:
        assert tensor.allow_ragged_batch == (-1 in tensor.dims), tensor.name
    assert configs[tensors.ENSEMBLE_MODEL].max_batch_size == min(
        configs[n].max_batch_size for n in (*tensors.RANKING_STAGES, "generator"))
    assert configs[tensors.RANK_MODEL].max_batch_size == min(configs[n].max_batch_size for n in tensors.RANKING_STAGES)
    assert configs[tensors.CHAT_MODEL].max_batch_size == 0  # the decoupled stream keeps its unbatched boundary


def test_cpu_profiles_scale_instances_and_validate():
    small, big = graph.cpu_profile(2), graph.cpu_profile(16)
    assert big.reranker.instances > small.reranker.instances and big.chat_instances >= small.chat_instances
    config = graph.all_configs(big)["reranker"]
    assert config.instance_group[0].count == big.reranker.instances
    assert config.parameters["intra_op_threads"].string_value == str(big.reranker.intra_op_threads)
    for bad in ({"instances": 0}, {"max_batch_size": 0}, {"queue_delay_us": -1}, {"intra_op_threads": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            graph.StageServing(**bad)
    with pytest.raises(ValueError, match="cores"):
        graph.cpu_profile(0)
    for bad in ({"chat_instances": 0}, {"chat_turns_per_instance": 0}, {"stream_instances": 0},
                {"stream_send_interval_us": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(small, **bad)
    stream = graph.all_configs(dataclasses.replace(small, stream_send_interval_us=12345))["generator_stream"]
    assert stream.parameters["send_interval_us"].string_value == "12345"


def test_the_reply_uses_every_core_of_a_small_node():
    """One generator decodes on one thread: a 2-core node runs two of each reply model, and the chat turns held at
    once (instances x turns per instance) outnumber the reply streams they feed."""
    profile = graph.cpu_profile(2)
    configs = graph.all_configs(profile)
    assert configs["generator"].instance_group[0].count == profile.generator.instances == 2
    assert configs[tensors.GENERATOR_STREAM_MODEL].instance_group[0].count == profile.stream_instances == 2
    chat = configs[tensors.CHAT_MODEL]
    turns = int(chat.parameters["turns_per_instance"].string_value)
    assert chat.instance_group[0].count == profile.chat_instances and turns == profile.chat_turns_per_instance
    assert profile.chat_instances * turns > profile.stream_instances


def test_docs_hold_the_generated_profiles_table():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving_profiles.md").read_text(encoding="utf-8")
    assert graph.profiles_table() in docs


def test_wire_shapes_carry_the_batch_dim_of_batched_signatures():
    assert tensors.RANK.wire_shape(tensors.QUERY) == [1, 1]
    assert tensors.CHAT.wire_shape(tensors.QUERY) == [1]
    assert tensors.RETRIEVER.wire_shape(tensors.EXCLUDE_ITEM_IDS, 3) == [1, 3]


def test_profile_cpu_preset_writes_a_full_repository(tmp_path):
    from recllm_cli.main import profiled_repository

    target = profiled_repository(8, tmp_path)
    for name in graph.all_configs():
        parsed = text_format.Parse((target / name / "config.pbtxt").read_text(), mc.ModelConfig())
        assert parsed.name == name
    assert (target / "retriever" / "1" / "model.py").exists()
    retriever = text_format.Parse((target / "retriever" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert retriever.instance_group[0].count == graph.cpu_profile(8).retriever.instances
