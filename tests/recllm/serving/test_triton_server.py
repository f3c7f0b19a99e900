import socket

import pytest

from recllm.artifacts import ArtifactsNotBuiltError
from recllm.serving.triton_server import (
    TritonServer,
    TritonServerConfig,
    TritonServerError,
    crash_traces,
    free_port,
    prepare_backend_dir,
    server_command,
)


def test_config_rejects_bad_and_clashing_ports():
    with pytest.raises(ValueError, match="grpc_port"):
        TritonServerConfig(grpc_port=0)
    with pytest.raises(ValueError, match="must differ"):
        TritonServerConfig(grpc_port=9000, http_port=9000, metrics_port=9001)


def test_unbuilt_artifacts_fail_with_a_clear_message(tmp_path):
    config = TritonServerConfig(artifact_dir=tmp_path / "nothing", grpc_port=free_port(), http_port=free_port(),
                                metrics_port=free_port())
    with pytest.raises(ArtifactsNotBuiltError, match="recllm build"):
        TritonServer(config).start()


def test_taken_port_fails_before_starting(test_artifacts, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        config = TritonServerConfig(artifact_dir=test_artifacts.root, grpc_port=taken, http_port=free_port(),
                                    metrics_port=free_port(), runtime_dir=tmp_path)
        with pytest.raises(TritonServerError, match=f"grpc port {taken} .* already in use"):
            TritonServer(config).start()


def test_backend_dir_has_the_stub_for_this_python(tmp_path):
    backends = prepare_backend_dir(tmp_path)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (backends / "python" / name).exists()
    assert prepare_backend_dir(tmp_path) == backends  # idempotent


def test_command_binds_loopback_and_all_three_ports(tmp_path):
    config = TritonServerConfig(grpc_port=7001, http_port=7000, metrics_port=7002)
    command = " ".join(server_command(config, tmp_path, admin_key="k"))
    for flag in ("--grpc-port=7001", "--http-port=7000", "--metrics-port=7002", "--grpc-address=127.0.0.1"):
        assert flag in command


def test_the_watchdog_runs_explicit_model_control_behind_the_admin_key(tmp_path):
    command = server_command(TritonServerConfig(), tmp_path, admin_key="the-key")
    assert "--model-control-mode=explicit" in command and "--load-model=*" in command
    assert "--http-restricted-api=model-repository:recllm-admin-key=the-key" in command
    assert "--grpc-restricted-protocol=model-repository:recllm-admin-key=the-key" in command
    with pytest.raises(ValueError, match="admin key goes with the stub watchdog"):
        server_command(TritonServerConfig(), tmp_path)  # the watchdog cannot reload without the key


def test_without_the_watchdog_the_server_runs_model_control_none(tmp_path):
    command = server_command(TritonServerConfig(stub_watchdog=None), tmp_path)
    assert not any(arg.startswith(("--model-control-mode", "--http-restricted-api")) for arg in command)
    with pytest.raises(ValueError, match="admin key goes with the stub watchdog"):
        server_command(TritonServerConfig(stub_watchdog=None), tmp_path, admin_key="k")


def test_a_subset_of_models_loads_under_the_watchdog_only(tmp_path):
    config = TritonServerConfig(load_models=("recllm", "recllm_rank"))
    command = server_command(config, tmp_path, admin_key="k")
    assert [a for a in command if a.startswith("--load-model")] == ["--load-model=recllm", "--load-model=recllm_rank"]
    with pytest.raises(ValueError, match="load_models"):
        TritonServerConfig(load_models=("recllm",), stub_watchdog=None)
    with pytest.raises(ValueError, match="load_models"):
        TritonServerConfig(load_models=())


def test_model_control_flags_clash_with_the_watchdog():
    with pytest.raises(ValueError, match="sets the model control mode itself"):
        TritonServerConfig(extra_args=("--model-control-mode=poll",))
    TritonServerConfig(extra_args=("--model-control-mode=poll",), stub_watchdog=None)  # the caller's choice


def test_crash_traces_keep_what_faulthandler_wrote_and_nothing_of_the_server_s_own_lines(tmp_path):
    log = tmp_path / "tritonserver.log"
    log.write_text("\n".join([
        'I1130 06:00:01.1 1 server.cc:1] "started"',
        "Fatal Python error: Segmentation fault",
        "",
        "Thread 0x00007f (most recent call first):",
        '  File "/repo/recllm/dialogue/chat_engine.py", line 10 in turn',
        'E1130 06:00:02.2 1 python_be.cc:1] "Stub process \'recllm_chat_0_0\' is not healthy."',
        "Fatal Python error: Aborted",
        '  File "/repo/x.py", line 1 in f',
        "Signal (2) received.",
        'I1130 06:00:03.3 1 server.cc:305] "Waiting for in-flight requests to complete."',
        "Fatal Python error: Segmentation fault",
        "  <no Python frame>",
    ]))
    traces = crash_traces(log)
    first, second = traces["serving"]
    assert first.splitlines()[0] == "Fatal Python error: Segmentation fault" and "chat_engine.py" in first
    assert "not healthy" not in first and second.endswith("line 1 in f")
    assert traces["shutdown"] == ["Fatal Python error: Segmentation fault\n  <no Python frame>"]
    assert crash_traces(tmp_path / "missing.log") == {"serving": [], "shutdown": []}
