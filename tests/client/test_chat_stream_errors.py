"""A chat stream to a server that is gone fails with RecLLMClientError, whichever way the broken stream surfaces
(the callback's error, or tritonclient refusing to send on a stream already in a failed state)."""

from __future__ import annotations

import pytest

from recllm.serving.triton_server import free_port
from recllm_client import RecLLMClient
from recllm_client.triton_client import RecLLMClientError


def test_chat_stream_to_a_dead_server_raises_the_client_error():
    with RecLLMClient(f"127.0.0.1:{free_port()}", timeout_s=5, token_provider=lambda user: "token") as client:
        for k in range(5):
            with pytest.raises(RecLLMClientError):
                list(client.chat_stream(f"s{k}", "u000001", "молоко", top_k=3))
