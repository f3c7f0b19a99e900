"""TLS for the two gRPC endpoints (Triton :8001, profile service :8003): certificate files and a self-signed pair.

``recllm serve --tls`` makes (once) a self-signed certificate for 127.0.0.1/localhost in a folder and starts both
servers with it; clients trust it by taking its ``cert.pem`` as their root certificate. For anything beyond one
machine, put a certificate from your own CA in that folder instead (same file names). The pair is made with the
``openssl`` command (the ``cryptography`` package is not a dependency).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")


class TlsError(RuntimeError):
    """The certificate could not be made or read."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path   # PEM certificate (clients take it as their root certificate when it is self-signed)
    key: Path    # PEM private key, mode 0600

    def __post_init__(self):
        object.__setattr__(self, "cert", Path(self.cert))
        object.__setattr__(self, "key", Path(self.key))
        for name in ("cert", "key"):
            if not getattr(self, name).is_file():
                raise ValueError(f"TlsFiles.{name}: no file at {getattr(self, name)}")


def tls_dir_for(artifact_dir: str | Path) -> Path:
    """Where ``recllm serve --tls`` keeps its self-signed pair: beside the build (like its keyring), not in it, so a
    rebuild keeps the certificate clients already trust."""
    root = Path(artifact_dir)
    return root.with_name(f"{root.name}.tls")


def self_signed(folder: str | Path, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 365) -> TlsFiles:
    """The certificate and key in ``folder``, made self-signed for ``hosts`` if the folder has none yet."""
    folder = Path(folder)
    cert, key = folder / CERT_NAME, folder / KEY_NAME
    if cert.exists() and key.exists():
        return TlsFiles(cert, key)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("`openssl` is not on PATH: install it, or put cert.pem and key.pem into " + str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={hosts[0]}",
               "-addext", f"subjectAltName={names}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TlsError(f"openssl could not make a certificate: {result.stderr.strip()[-500:]}")
    os.chmod(key, 0o600)
    return TlsFiles(cert, key)
