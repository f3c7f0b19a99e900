"""Python gRPC client for a running Rec-LLM Triton server (``tritonclient.grpc``).

``RecLLMClient.recommend`` calls the ``recllm`` ensemble (one request, one answer); ``RecLLMClient.chat``
streams a turn from the decoupled ``recllm_chat`` model: the ranked items first, then the reply's text deltas.
"""

from .recllm_client import (
    ChatTurnResult,
    RecItem,
    RecLLMClient,
    RecLLMClientError,
    Recommendation,
)

__all__ = ["ChatTurnResult", "RecItem", "RecLLMClient", "RecLLMClientError", "Recommendation"]
