"""Python gRPC clients: the Rec-LLM Triton server (``tritonclient.grpc``) and the profile service.

``RecLLMClient.recommend`` calls the ``recllm`` ensemble (one request, one answer), ``RecLLMClient.rank`` the
``recllm_rank`` ensemble (items and explanations, no reply); ``RecLLMClient.chat``
streams a turn from the decoupled ``recllm_chat`` model: the ranked items first, then the reply's text deltas.
``ProfileClient`` streams events to the profile service (one acknowledgement per event), reads and forgets profiles.
"""

from .profile_client import ProfileClient, ProfileClientError
from .triton_client import (
    ChatTurnResult,
    Ranked,
    RecItem,
    RecLLMClient,
    RecLLMClientError,
    Recommendation,
)

__all__ = ["ChatTurnResult", "ProfileClient", "ProfileClientError", "Ranked", "RecItem", "RecLLMClient", "RecLLMClientError",
           "Recommendation"]
