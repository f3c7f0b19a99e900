"""Where built artifacts live and whether they are up to date.

``builders/`` writes one folder per build (``artifacts/default``, a test build under a temp dir): the catalog,
the profile database, the trained encoder, FAISS indexes, reranker and generator. A manifest records a
fingerprint of everything the build depends on (build preset and the source files of the modules that
produce artifacts), so ``make demo`` rebuilds only when an input changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
# How the server tells its model processes which build to load (set by ``recllm serve``).
ARTIFACT_DIR_ENV = "RECLLM_ARTIFACT_DIR"
# The keyring file the model processes verify user tokens with (set by ``recllm serve``; default ``layout.keyring``).
KEYRING_ENV = "RECLLM_KEYRING"
# The embedded default build (`recllm build`, `recllm serve`, `recllm eval --dataset synthetic`).
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "default"


class ArtifactsNotBuiltError(FileNotFoundError):
    """The artifact folder is missing or incomplete; the message says how to build it."""


@dataclass(frozen=True)
class ArtifactLayout:
    """The file layout of one artifact build."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.jsonl"

    @property
    def profile_db(self) -> Path:
        return self.root / "profile.sqlite"

    @property
    def sessions_db(self) -> Path:
        return self.root / "sessions.sqlite"

    @property
    def keyring(self) -> Path:
        """The default keyring (``recllm_proto.user_token``): beside the build, not in it, so a rebuild (which swaps
        the folder) keeps the keys the calling backends hold."""
        return self.root.with_name(f"{self.root.name}.keyring.json")

    @property
    def query_encoder_dir(self) -> Path:
        return self.root / "query_encoder"

    @property
    def catalog_index_dir(self) -> Path:
        return self.root / "catalog_index"

    @property
    def reranker_dir(self) -> Path:
        return self.root / "reranker"

    @property
    def generator_dir(self) -> Path:
        return self.root / "generator"

    @property
    def user_layers_dir(self) -> Path:
        """The reply generator's adaptive user layers (``recllm.user_layers.reply_personalizer``), when built."""
        return self.root / "user_layers"

    @property
    def eval_queries(self) -> Path:
        return self.root / "eval_queries.jsonl"

    @property
    def train_queries(self) -> Path:
        """The requests the build trained on (each user's all but last), for jobs that retrain on them later."""
        return self.root / "train_queries.jsonl"

    @property
    def moderation_dir(self) -> Path:
        """The moderation classifier (``recllm.safety.moderation``), trained by the build, loaded by recllm_chat."""
        return self.root / "moderation"

    @property
    def request_understanding_dir(self) -> Path:
        """The request understander (``recllm.dialogue.request_understanding``), as ``moderation_dir``."""
        return self.root / "request_understanding"

    def required_paths(self) -> list[Path]:
        return [
            self.catalog,
            self.profile_db,
            self.query_encoder_dir,
            self.catalog_index_dir,
            self.reranker_dir,
            self.generator_dir,
        ]

    def read_manifest(self) -> dict | None:
        if not self.manifest.exists():
            return None
        return json.loads(self.manifest.read_text())

    def is_built(self, fingerprint: str | None = None) -> bool:
        manifest = self.read_manifest()
        if manifest is None or not all(p.exists() for p in self.required_paths()):
            return False
        return fingerprint is None or manifest.get("fingerprint") == fingerprint

    def require_built(self, needs_profile_file: bool = True) -> None:
        """Raise unless the build is complete. ``needs_profile_file=False``: serving reads the profile from another
        store (``recllm serve --profile-url``), so the folder's own ``profile.sqlite`` need not be there."""
        if self.read_manifest() is None:
            raise ArtifactsNotBuiltError(
                f"artifacts are not built in {self.root}: run `recllm build` (or `make demo`) first"
            )
        missing = [str(p) for p in self.required_paths()
                   if not p.exists() and (needs_profile_file or p != self.profile_db)]
        if missing:
            raise ArtifactsNotBuiltError(
                f"artifact build in {self.root} is incomplete (missing {', '.join(missing)}): run `recllm build --force`"
            )

    def write_manifest(self, fingerprint: str, preset: str, extra: dict | None = None) -> None:
        body = {"fingerprint": fingerprint, "preset": preset, "built_at": int(time.time())}
        body.update(extra or {})
        self.manifest.write_text(json.dumps(body, ensure_ascii=False, indent=2))


PREVIOUS_SUFFIX = ".previous"


def staging_dir(root: Path) -> Path:
    """A fresh folder beside ``root`` (same file system, so the swap is a rename) to build a replacement into.

    Its name carries the building process id; folders left by builds whose process is gone (killed mid-build) are
    removed here."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(root)
    return Path(tempfile.mkdtemp(prefix=f".{root.name}.building-{os.getpid()}-", dir=root.parent))


def remove_abandoned_staging(root: Path) -> list[Path]:
    """Delete ``.<name>.building-<pid>-*`` folders beside ``root`` whose building process no longer runs."""
    removed = []
    for folder in Path(root).parent.glob(f".{Path(root).name}.building-*"):
        pid_text = folder.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def swap_in(staging: Path, root: Path) -> Path | None:
    """Make the finished build in ``staging`` the one at ``root``; returns where the replaced build now lives.

    Nothing a running server may have open is deleted: the replaced build moves to ``<root>.previous`` (the one
    before it, which no server started on ``root`` can still be using, is removed first), and the new build takes
    its place by rename. A server started on ``root`` keeps its open files and reads the new build on restart.
    """
    staging, root = Path(staging), Path(root)
    if not (staging / MANIFEST_NAME).is_file():
        raise ArtifactsNotBuiltError(f"{staging} holds no finished build (no {MANIFEST_NAME}); refusing to swap it in")
    previous = root.with_name(root.name + PREVIOUS_SUFFIX)
    replaced = None
    if root.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(root, previous)
        replaced = previous
    os.replace(staging, root)
    return replaced


def module_path(root: Path, module: str) -> Path | None:
    """The source file of a dotted module name under ``root`` (package ``__init__`` or module file)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST, package: str, packages: tuple[str, ...]) -> set[str]:
    """Dotted names of the project modules a parsed file of ``package`` imports (absolute and relative)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # "from . import x" is relative to the package, each extra dot one level up
                parts = package.split(".")
                parent = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in packages}


def import_closure(root: Path, entry_module: str, packages: tuple[str, ...]) -> list[Path]:
    """Source files of ``entry_module`` and every project module it imports, transitively (read statically)."""
    seen: dict[str, Path] = {}
    pending = [entry_module]
    while pending:
        module = pending.pop()
        path = module_path(root, module)
        if path is None or module in seen:
            continue
        seen[module] = path
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        pending.extend(parents)
        pending.extend(imported_modules(ast.parse(path.read_text()), package, packages))
    return sorted(set(seen.values()))


def fingerprint_inputs(preset: str, source_files: list[Path]) -> str:
    """A hash of the build preset and the contents of the source files that produce artifacts."""
    digest = hashlib.sha256(preset.encode())
    for path in sorted(source_files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
