"""Signed user tokens and the keyring behind them (HMAC-SHA256, stdlib only).

The calling backend (``recllm_client``) signs a short-lived token for the user it acts for; every Triton model that
reads a profile takes the user id from the verified token, never from a free field. Token text::

    v1.<kid>.<scope>.<base64url(subject)>.<expiry unix s>.<base64url(HMAC-SHA256(key[kid], everything before))>

``scope`` is ``user`` (subject = user id), ``service`` (a trusted backend: ingest for any user) or ``admin``
(an operator: read or forget any user). A keyring holds several keys by key id: tokens are signed with the newest
and verified with any listed one, so a new key can be added first and the old one dropped once its tokens expire.

``stage_keys`` never leave the server: they seal the user context the retriever hands to the reranker, so a caller
of the reranker cannot forge one (``seal`` / ``unseal``). A backend's copy of the keyring may leave them out.

Errors name the reason only (malformed, unknown key, bad signature, expired, scope); never the token or the user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

TOKEN_VERSION = "v1"
SEAL_VERSION = b"s1"
SCOPES = ("user", "service", "admin")
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_SECRET_BYTES = 32
MAX_SUBJECT_CHARS = 256
MAX_TOKEN_CHARS = 1024
DEFAULT_TTL_S = 300.0
KEYRING_FORMAT_VERSION = 1


class TokenError(ValueError):
    """A token or sealed value was refused; ``reason`` is one of the fixed reasons, safe to show and log."""

    def __init__(self, reason: str, what: str = "user token"):
        self.reason = reason
        super().__init__(f"{what} refused: {reason}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes

    def __post_init__(self):
        if not isinstance(self.kid, str) or not KID_PATTERN.match(self.kid):
            raise ValueError(f"SigningKey.kid must match {KID_PATTERN.pattern}, got {self.kid!r}")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"SigningKey.secret must be at least {MIN_SECRET_BYTES} bytes")

    def mac(self, message: bytes) -> bytes:
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or f"k{int(time.time())}{secrets.token_hex(2)}", secrets.token_bytes(MIN_SECRET_BYTES))


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    scope: str
    expires_at: int
    kid: str


def _find(keys: tuple[SigningKey, ...], kid: str, what: str) -> SigningKey:
    for key in keys:
        if key.kid == kid:
            return key
    raise TokenError("unknown key id", what)


@dataclass(frozen=True)
class Keyring:
    token_keys: tuple[SigningKey, ...]        # oldest first; tokens are signed with the last
    stage_keys: tuple[SigningKey, ...] = ()   # server-only; seals the context passed between stages

    def __post_init__(self):
        object.__setattr__(self, "token_keys", tuple(self.token_keys))
        object.__setattr__(self, "stage_keys", tuple(self.stage_keys))
        if not self.token_keys:
            raise ValueError("Keyring.token_keys must hold at least one key")
        for name in ("token_keys", "stage_keys"):
            kids = [key.kid for key in getattr(self, name)]
            if len(set(kids)) != len(kids):
                raise ValueError(f"Keyring.{name} has a repeated key id: {kids}")

    # --- tokens -------------------------------------------------------------------------------------------------
    def sign(self, subject: str, ttl_s: float = DEFAULT_TTL_S, scope: str = "user", now: float | None = None) -> str:
        """A token for ``subject`` valid ``ttl_s`` seconds, signed with the newest token key."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
            raise ValueError(f"token subject must be a non-empty string of at most {MAX_SUBJECT_CHARS} characters")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
        key = self.token_keys[-1]
        expires = int((time.time() if now is None else now) + ttl_s)
        body = f"{TOKEN_VERSION}.{key.kid}.{scope}.{_b64(subject.encode('utf-8'))}.{expires}"
        return f"{body}.{_b64(key.mac(body.encode('ascii')))}"

    def verify(self, token: str | bytes, scopes: tuple[str, ...] = ("user",), now: float | None = None
               ) -> VerifiedToken:
        """The token's subject and scope if its signature holds under a listed key, it has not expired and its
        scope is one of ``scopes``; else ``TokenError``."""
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise TokenError("malformed") from None
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("missing" if not token else "malformed")
        parts = token.split(".")
        if len(parts) != 6 or parts[0] != TOKEN_VERSION:
            raise TokenError("malformed")
        _, kid, scope, subject_b64, expires, signature = parts
        key = _find(self.token_keys, kid, "user token")
        body = token[:token.rfind(".")].encode("ascii")
        try:
            given = _unb64(signature)
        except (ValueError, TypeError):
            raise TokenError("malformed") from None
        if not hmac.compare_digest(given, key.mac(body)):
            raise TokenError("bad signature")
        # Only a signed token gets this far: its fields were written by a key holder.
        if not expires.isdigit() or scope not in SCOPES:
            raise TokenError("malformed")
        if (time.time() if now is None else now) > int(expires):
            raise TokenError("expired")
        if scope not in scopes:
            raise TokenError(f"scope {scope} is not accepted here")
        try:
            subject = _unb64(subject_b64).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise TokenError("malformed") from None
        return VerifiedToken(subject, scope, int(expires), kid)

    # --- stage seals ----------------------------------------------------------------------------------------------
    def seal(self, data: bytes, ttl_s: float = 120.0, now: float | None = None) -> bytes:
        """``data`` with a MAC under the newest stage key and an expiry: ``s1.<kid>.<exp>.<mac>.<data>``."""
        if not self.stage_keys:
            raise ValueError("this keyring has no stage keys (a backend's copy): only the server seals")
        key = self.stage_keys[-1]
        head = b".".join((SEAL_VERSION, key.kid.encode("ascii"),
                          str(int((time.time() if now is None else now) + ttl_s)).encode("ascii")))
        return head + b"." + _b64(key.mac(head + b"." + data)).encode("ascii") + b"." + data

    def unseal(self, sealed: bytes, what: str = "user context", now: float | None = None) -> bytes:
        """The data of a value ``seal`` produced with a listed stage key and not yet expired; else ``TokenError``."""
        parts = sealed.split(b".", 4) if isinstance(sealed, bytes) else []
        if len(parts) != 5 or parts[0] != SEAL_VERSION or not parts[2].isdigit():
            raise TokenError("not sealed by the retriever", what)
        _, kid, expires, mac, data = parts
        key = _find(self.stage_keys, kid.decode("ascii", "replace"), what)
        try:
            given = _unb64(mac.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise TokenError("malformed", what) from None
        if not hmac.compare_digest(given, key.mac(b".".join((SEAL_VERSION, kid, expires)) + b"." + data)):
            raise TokenError("bad signature", what)
        if (time.time() if now is None else now) > int(expires):
            raise TokenError("expired", what)
        return data

    # --- rotation and storage -------------------------------------------------------------------------------------
    @classmethod
    def generate(cls) -> Keyring:
        return cls((SigningKey.generate(),), (SigningKey.generate(),))

    def rotated(self, keep: int = 2) -> Keyring:
        """A new newest key in both lists; only the newest ``keep`` keys of each stay (older tokens then fail)."""
        if keep < 2:
            raise ValueError(f"keep must be >= 2 (the new key and the one tokens in flight use), got {keep!r}")
        return Keyring((*self.token_keys, SigningKey.generate())[-keep:],
                       (*self.stage_keys, SigningKey.generate())[-keep:])

    def backend_view(self) -> Keyring:
        """What a calling backend needs: the token keys, not the server's stage keys."""
        return Keyring(self.token_keys)

    def to_json(self) -> str:
        def keys(listed):
            return [{"kid": k.kid, "secret": base64.b64encode(k.secret).decode("ascii")} for k in listed]
        return json.dumps({"version": KEYRING_FORMAT_VERSION, "token_keys": keys(self.token_keys),
                           "stage_keys": keys(self.stage_keys)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        try:
            raw = json.loads(text)
            if raw.get("version") != KEYRING_FORMAT_VERSION:
                raise ValueError(f"keyring version {raw.get('version')!r} is not {KEYRING_FORMAT_VERSION}")

            def keys(name):
                return tuple(SigningKey(str(k["kid"]), base64.b64decode(k["secret"], validate=True))
                             for k in raw.get(name, []))
            return cls(keys("token_keys"), keys("stage_keys"))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"keyring is malformed: {type(exc).__name__}") from None


def load_keyring(path: str | Path) -> Keyring:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no keyring at {path}: `recllm serve` creates one (or pass --keyring)") from None
    try:
        return Keyring.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def save_keyring(path: str | Path, keyring: Keyring) -> Path:
    """Write ``keyring`` to ``path`` (mode 0600) atomically: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(keyring.to_json())
    os.replace(partial, path)
    return path


def ensure_keyring(path: str | Path) -> Keyring:
    """The keyring at ``path``, created (0600, fresh keys) if there is none; safe when two processes race."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(Keyring.generate().to_json())
    for _ in range(50):  # another process created it a moment ago and may still be writing
        try:
            return load_keyring(path)
        except ValueError:
            time.sleep(0.02)
    return load_keyring(path)


class KeyringFile:
    """A keyring read from a file and re-read when the file changes, so a server picks up a rotation without a
    restart (``current()`` costs one ``stat`` per call)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._keyring: Keyring | None = None
        self.current()

    def current(self) -> Keyring:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._keyring, self._stamp = load_keyring(self.path), stamp
        return self._keyring


# gRPC metadata that carries a token to the profile service: ("authorization", "Bearer <token>").
AUTH_METADATA_KEY = "authorization"


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),)


def bearer_token(metadata) -> str:
    """The token of an ``authorization: Bearer <token>`` entry of gRPC metadata ('' when there is none)."""
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return ""
