import sys
from pathlib import Path

# The adapters import ``triton_python_backend_utils``; tests supply fake_pb_utils.py from this folder instead.
sys.path.insert(0, str(Path(__file__).resolve().parent))
