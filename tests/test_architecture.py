"""The package tree is the architecture: these tests read the imports (``ast``, not grep) and hold the layering.

* the library (``recllm/``) never imports ``builders``, ``benchmarks``, the CLI or the clients;
* inside the library, only ``serving/`` and ``profile_service/`` import Triton or gRPC;
* data flows down the tree: a package imports only the packages below it (``LAYERS``);
* ``client/`` (``recllm_client`` + ``recllm_proto``) imports neither the library nor torch, and really runs
  without them (a subprocess where importing either fails).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY = REPO_ROOT / "recllm"
CLIENT = REPO_ROOT / "client"

NEVER_FROM_LIBRARY = {"builders", "benchmarks", "recllm_cli", "recllm_client", "tests"}
TRITON_OR_GRPC = {"tritonclient", "triton_python_backend_utils", "grpc", "grpc_tools", "pytriton"}
SERVING_PACKAGES = {"serving", "profile_service"}
HEAVY_FOR_CLIENT = {"recllm", "torch", "transformers", "faiss", "builders", "natasha", "peft", "triton"}

# What each library package may import from the library (besides itself and the shared top-level helpers).
SHARED = {"config", "artifacts"}
LAYERS: dict[str, set[str]] = {
    "catalog": set(),
    "neural": set(),
    "profile": {"catalog"},
    "safety": {"catalog", "profile"},
    "rag": {"catalog", "profile", "safety", "neural"},
    "explanation": {"catalog", "profile", "safety", "rag"},   # causal checks re-score with the reranker
    "generator": {"catalog", "profile", "safety", "sid", "neural"},
    "dialogue": {"catalog", "profile", "safety", "rag", "explanation", "generator"},
    "synthetic": {"catalog", "profile"},
    "datasets": {"catalog", "profile"},
    "sid": {"catalog", "profile", "rag", "datasets", "neural"},
    "seqrec": {"catalog", "profile", "datasets", "sid", "neural"},
    "pipeline": {"catalog", "profile", "safety", "rag", "explanation", "generator", "user_layers"},
    "evaluation": {"catalog", "profile", "rag", "pipeline", "datasets", "seqrec", "sid", "synthetic", "generator"},
    "serving": {"catalog", "profile", "safety", "rag", "explanation", "generator", "dialogue", "pipeline"},
    "profile_service": {"catalog", "profile", "safety", "rag", "dialogue", "serving"},
    "user_layers": {"catalog", "profile", "generator", "neural"},
    "config": set(),
    "artifacts": set(),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def library_package(path: Path) -> str:
    parts = path.relative_to(LIBRARY).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def library_files() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if p.name != "__init__.py" or p.parent != LIBRARY)


def violations(files, rule) -> list[str]:
    found = []
    for path in files:
        for module in sorted(imported_modules(path)):
            problem = rule(path, module)
            if problem:
                found.append(f"{path.relative_to(REPO_ROOT)} imports {module}: {problem}")
    return found


def test_every_library_package_has_a_layer():
    packages = {library_package(p) for p in library_files()} - {"__init__"}
    assert packages <= set(LAYERS), f"add these packages to LAYERS: {sorted(packages - set(LAYERS))}"


def test_library_never_imports_builders_benchmarks_cli_or_clients():
    def rule(path, module):
        return "the library must not depend on it" if module.split(".")[0] in NEVER_FROM_LIBRARY else None
    assert violations(library_files(), rule) == []


def test_only_serving_and_profile_service_import_triton_or_grpc():
    def rule(path, module):
        top = module.split(".")[0]
        banned = top in TRITON_OR_GRPC or module.endswith("_pb2_grpc") or module.endswith("_pb2")
        if banned and library_package(path) not in SERVING_PACKAGES:
            return "Triton/gRPC belongs in recllm/serving or recllm/profile_service"
        return None
    assert violations(library_files(), rule) == []


def test_data_flows_down_the_package_tree():
    def rule(path, module):
        parts = module.split(".")
        if parts[0] != "recllm" or len(parts) < 2:
            return None
        own, target = library_package(path), parts[1]
        if target == own or target in SHARED or target in LAYERS.get(own, set()):
            return None
        return f"{own} may import only {sorted(LAYERS.get(own, set()) | SHARED)}"
    assert violations(library_files(), rule) == []


def test_client_imports_neither_the_library_nor_torch():
    files = sorted(CLIENT.rglob("*.py"))
    assert files, "client/ has no Python files"

    def rule(path, module):
        return "the client must install and run without it" if module.split(".")[0] in HEAVY_FOR_CLIENT else None
    assert violations(files, rule) == []


def test_the_rule_finds_a_violation(tmp_path):
    """The checks above can fail: a file importing the library from the client side is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from recllm.pipeline import RecPipeline\nimport torch\n")

    def rule(path, module):
        return "banned" if module.split(".")[0] in HEAVY_FOR_CLIENT else None
    found = [module for module in imported_modules(bad) if rule(bad, module)]
    assert sorted(found) == ["recllm.pipeline", "torch"]


def test_client_runs_with_the_library_and_torch_unimportable():
    """Import every client module in a fresh interpreter where ``import recllm`` and ``import torch`` fail."""
    script = textwrap.dedent("""
        import importlib, importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"recllm", "torch", "transformers", "faiss", "builders"}:
                    raise ImportError(f"{name} is blocked: the client must not need it")
                return None
        sys.meta_path.insert(0, Block())
        import recllm_client, recllm_proto.tensors, recllm_proto.text_arrays, recllm_proto.profile_pb2_grpc
        from recllm_client import RecLLMClient, ProfileClient
        from recllm_client.profile_client import event_message
        client = RecLLMClient("127.0.0.1:1")
        client.close()
        print("client ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=CLIENT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "client ok" in result.stdout


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_layers_name_only_known_packages(package):
    assert LAYERS[package] <= set(LAYERS), f"{package} lists unknown packages"
