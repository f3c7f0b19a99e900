"""Regenerate the profile service's Python modules from ``profile.proto`` (grpcio-tools' bundled protoc).

The generated ``profile_pb2.py`` / ``profile_pb2_grpc.py`` are committed, so serving needs no protoc; a test
generates them again into a temporary folder and fails when the committed copies drift from the .proto.

    python -m recllm_proto.codegen          # rewrite the committed modules in place
"""

from __future__ import annotations

import logging
import sys
import tempfile
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent  # the folder holding the ``recllm_proto`` package: imports resolve from it
PROTO = PACKAGE_DIR / "profile.proto"
GENERATED_NAMES: tuple[str, ...] = ("profile_pb2.py", "profile_pb2_grpc.py")

log = logging.getLogger(__name__)


class CodegenError(RuntimeError):
    """protoc refused the .proto file."""


def generate(output_root: Path) -> list[Path]:
    """Run protoc on ``profile.proto`` writing under ``output_root`` (mirroring ``recllm_proto/``).

    Returns the generated module paths. The proto is named relative to ``SOURCE_ROOT`` so the generated
    ``_pb2_grpc`` imports ``recllm_proto.profile_pb2`` by its package path.
    """
    from grpc_tools import protoc  # noqa: PLC0415 - a build-time tool, not needed to serve

    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    well_known_types = resources.files("grpc_tools") / "_proto"
    relative_proto = PROTO.relative_to(SOURCE_ROOT)
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{SOURCE_ROOT}",
        f"-I{well_known_types}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        str(relative_proto),
    ])
    if status != 0:
        raise CodegenError(f"protoc failed with status {status} on {PROTO}")
    generated_dir = output_root / relative_proto.parent
    return [generated_dir / name for name in GENERATED_NAMES]


def generated_sources() -> dict[str, str]:
    """{module file name: source text} as protoc produces them now from ``profile.proto``."""
    with tempfile.TemporaryDirectory() as scratch:
        return {path.name: path.read_text() for path in generate(Path(scratch))}


def regenerate_in_place() -> list[Path]:
    """Overwrite the committed generated modules next to the .proto; returns the files written."""
    written = []
    for name, text in generated_sources().items():
        target = PACKAGE_DIR / name
        target.write_text(text)
        written.append(target)
    return written


def main() -> int:
    for path in regenerate_in_place():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
