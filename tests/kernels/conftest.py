"""Kernel tests run the OpenAI-Triton kernels on CPU tensors through Triton's interpreter.

TRITON_INTERPRET must be set before any ``@triton.jit`` function is created, i.e. before ``kernels.*.triton_kernel``
is imported; this conftest is loaded before the test modules in this folder. On a GPU node run the same tests
compiled with ``KERNELS_TEST_DEVICE=cuda python -m pytest tests/kernels`` (the interpreter is then left off).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEVICE = os.environ.get("KERNELS_TEST_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # ``kernels`` is a top-level folder of the repository
    sys.path.insert(0, str(REPO_ROOT))
