"""Fetch NVIDIA's ``perf_analyzer`` without touching the project's virtual environment.

The standalone ``perf-analyzer`` wheels need glibc 2.38, newer than our Debian 12 machines. The
``tritonclient==2.41.0`` wheel (manylinux1) still carries a ``perf_analyzer`` binary under
``tritonclient-2.41.0.data/data/bin/``. We download that wheel with ``pip download --no-deps`` into a cache
folder (git-ignored ``artifacts/tools/``), unpack only the binary, and satisfy its two missing shared libraries,
``libb64.so.0d`` and ``libcudart.so.12``, with symlinks to the hash-renamed copies that ``nvidia-pytriton``
bundles in ``site-packages/nvidia_pytriton.libs/``. Nothing is installed; the venv's tritonclient stays as is.

    tool = ensure_perf_analyzer(Path("artifacts/tools"))
    subprocess.run([str(tool.binary), "--help"], env=tool.environment())
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recllm.serving.triton_server import REPO_ROOT, TritonServerError, pytriton_paths

TRITONCLIENT_VERSION = "2.41.0"
WHEEL_GLOB = f"tritonclient-{TRITONCLIENT_VERSION}-*manylinux1_x86_64.whl"
BINARY_MEMBER = f"tritonclient-{TRITONCLIENT_VERSION}.data/data/bin/perf_analyzer"
DEFAULT_TOOLS_DIR = REPO_ROOT / "artifacts" / "tools"
# name perf_analyzer links against -> glob of the hash-renamed copy in nvidia_pytriton.libs/
REQUIRED_LIBS = {
    "libb64.so.0d": "libb64-*.so.0d",
    "libcudart.so.12": "libcudart-*.so.12*",
}


class PerfAnalyzerToolError(RuntimeError):
    """perf_analyzer could not be made runnable; the message names the failing step."""


@dataclass(frozen=True)
class PerfAnalyzerTool:
    """A runnable perf_analyzer: the binary plus the library path it needs."""

    binary: Path
    private_lib_dir: Path
    bundled_lib_dir: Path

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        paths = [str(self.private_lib_dir), str(self.bundled_lib_dir)]
        if env.get("LD_LIBRARY_PATH"):
            paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(paths)
        return env


def cache_dir_for(tools_dir: Path) -> Path:
    return Path(tools_dir) / f"tritonclient-{TRITONCLIENT_VERSION}"


def download_wheel(cache_dir: Path) -> Path:
    """The tritonclient 2.41.0 manylinux1 wheel in ``cache_dir``, downloaded once with ``pip download``."""
    existing = sorted(cache_dir.glob(WHEEL_GLOB))
    if existing:
        return existing[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux1_x86_64", f"tritonclient=={TRITONCLIENT_VERSION}", "--dest", str(cache_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(cache_dir.glob(WHEEL_GLOB))
    if result.returncode != 0 or not found:
        raise PerfAnalyzerToolError(
            f"step 'download wheel' failed: `{' '.join(command)}` exited {result.returncode} "
            f"and left no {WHEEL_GLOB} in {cache_dir}:\n{result.stderr[-2000:]}"
        )
    return found[0]


def unpack_binary(wheel: Path, cache_dir: Path) -> Path:
    """Extract only ``perf_analyzer`` from the wheel (idempotent) and make it executable."""
    target = cache_dir / "bin" / "perf_analyzer"
    if not target.exists():
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(BINARY_MEMBER)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise PerfAnalyzerToolError(
                f"step 'unpack wheel' failed: {wheel} has no readable {BINARY_MEMBER} ({exc}); "
                f"delete {cache_dir} to download it again"
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


def find_bundled_lib(bundled_lib_dir: Path, pattern: str) -> Path:
    matches = sorted(bundled_lib_dir.glob(pattern))
    if not matches:
        raise PerfAnalyzerToolError(
            f"step 'link shared libraries' failed: no {pattern} in {bundled_lib_dir} "
            "(it ships with nvidia-pytriton; is that package installed in this venv?)"
        )
    return matches[0]


def link_private_libs(cache_dir: Path, bundled_lib_dir: Path) -> Path:
    """A private dir whose symlinks give the hash-renamed bundled libraries the names perf_analyzer wants."""
    lib_dir = cache_dir / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    for soname, pattern in REQUIRED_LIBS.items():
        source = find_bundled_lib(bundled_lib_dir, pattern)
        link = lib_dir / soname
        if link.is_symlink() or link.exists():
            if link.resolve() == source.resolve():
                continue
            link.unlink()
        link.symlink_to(source)
    return lib_dir


def smoke_test(tool: PerfAnalyzerTool) -> None:
    """Run ``perf_analyzer --help`` and fail if the dynamic loader cannot satisfy it."""
    try:
        result = subprocess.run([str(tool.binary), "--help"], capture_output=True, text=True,
                                env=tool.environment(), timeout=60, check=False)
    except OSError as exc:
        raise PerfAnalyzerToolError(f"step 'run perf_analyzer --help' failed: {exc}") from exc
    output = result.stdout + result.stderr
    if "error while loading shared libraries" in output or "perf_analyzer" not in output.lower():
        raise PerfAnalyzerToolError(
            f"step 'run perf_analyzer --help' failed (exit {result.returncode}):\n{output[-2000:]}"
        )


def ensure_perf_analyzer(tools_dir: Path = DEFAULT_TOOLS_DIR) -> PerfAnalyzerTool:
    """Download (once), unpack and link perf_analyzer under ``tools_dir``; check that it starts."""
    cache_dir = cache_dir_for(tools_dir)
    try:
        _, bundled_lib_dir = pytriton_paths()
    except TritonServerError as exc:
        raise PerfAnalyzerToolError(f"step 'locate nvidia_pytriton.libs' failed: {exc}") from exc
    if not bundled_lib_dir.is_dir():
        raise PerfAnalyzerToolError(f"step 'locate nvidia_pytriton.libs' failed: {bundled_lib_dir} is missing")
    wheel = download_wheel(cache_dir)
    binary = unpack_binary(wheel, cache_dir)
    private_lib_dir = link_private_libs(cache_dir, bundled_lib_dir)
    tool = PerfAnalyzerTool(binary=binary, private_lib_dir=private_lib_dir, bundled_lib_dir=bundled_lib_dir)
    smoke_test(tool)
    return tool
