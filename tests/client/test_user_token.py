"""Signed user tokens and the keyring: rotation, expiry, tampering, unknown key ids, stage seals, the key file."""

from __future__ import annotations

import os
import stat

import pytest

from recllm_proto.user_token import (
    Keyring, KeyringFile, SigningKey, TokenError, ensure_keyring, load_keyring, save_keyring,
)

NOW = 1_700_000_000.0
USER = "u000042"


@pytest.fixture
def keyring():
    return Keyring.generate()


def test_round_trip_gives_subject_scope_and_expiry(keyring):
    token = keyring.sign(USER, ttl_s=60, now=NOW)
    verified = keyring.verify(token, now=NOW + 59)
    assert (verified.subject, verified.scope, verified.expires_at) == (USER, "user", int(NOW + 60))
    assert keyring.verify(token.encode(), now=NOW).subject == USER  # the BYTES tensor form


def test_subject_with_dots_and_unicode_survives(keyring):
    subject = "user.with.dots/юникод"
    assert keyring.verify(keyring.sign(subject, now=NOW), now=NOW).subject == subject


def refused(keyring, token, reason, **kwargs):
    with pytest.raises(TokenError) as caught:
        keyring.verify(token, now=kwargs.pop("now", NOW), **kwargs)
    message = str(caught.value)
    assert reason in message
    assert USER not in message and (not isinstance(token, str) or not token or token not in message)
    return caught.value


def test_expired_token_is_refused(keyring):
    refused(keyring, keyring.sign(USER, ttl_s=60, now=NOW), "expired", now=NOW + 61)


@pytest.mark.parametrize("part", [1, 2, 3, 4, 5])
def test_tampering_with_any_part_is_refused(keyring, part):
    token = keyring.sign(USER, ttl_s=60, now=NOW)
    pieces = token.split(".")
    forged_subject = {3: "dTAwMDA0Mw", 4: str(int(NOW) + 10**6), 2: "admin", 5: pieces[5][:-2] + "AA"}
    pieces[part] = forged_subject.get(part, "zz")
    error = refused(keyring, ".".join(pieces), "")
    assert error.reason in {"bad signature", "unknown key id", "malformed"}


def test_another_keyring_signature_is_refused(keyring):
    other = Keyring((SigningKey(keyring.token_keys[-1].kid, os.urandom(32)),))
    refused(keyring, other.sign(USER, now=NOW), "bad signature")


def test_unknown_key_id_is_refused(keyring):
    refused(keyring, Keyring.generate().sign(USER, now=NOW), "unknown key id")


@pytest.mark.parametrize("garbage", ["", "v1", "x" * 5000, "v2.a.user.b.1.c", b"\xff\xfe", "v1.a.b.c.d.e.f"])
def test_garbage_is_malformed_or_missing(keyring, garbage):
    error = refused(keyring, garbage, "")
    assert error.reason in {"malformed", "missing", "unknown key id"}


def test_scope_must_be_accepted(keyring):
    admin = keyring.sign("ops", scope="admin", now=NOW)
    refused(keyring, admin, "scope admin is not accepted")
    assert keyring.verify(admin, scopes=("user", "admin"), now=NOW).scope == "admin"


def test_rotation_signs_with_the_newest_and_verifies_listed_keys(keyring):
    old_token = keyring.sign(USER, now=NOW)
    rotated = keyring.rotated(keep=2)
    new_token = rotated.sign(USER, now=NOW)
    assert new_token.split(".")[1] == rotated.token_keys[-1].kid != keyring.token_keys[-1].kid
    assert rotated.verify(old_token, now=NOW).subject == USER   # tokens in flight keep working
    refused(keyring, new_token, "unknown key id")                  # a server not yet rotated refuses new ones
    twice = rotated.rotated(keep=2)
    refused(twice, old_token, "unknown key id")                    # the oldest key is gone after two rotations
    assert twice.verify(new_token, now=NOW).subject == USER


def test_seal_round_trip_and_refusals(keyring):
    sealed = keyring.seal(b'{"user_id":"u1"}', ttl_s=30, now=NOW)
    assert keyring.unseal(sealed, now=NOW + 29) == b'{"user_id":"u1"}'
    with pytest.raises(TokenError, match="not sealed"):
        keyring.unseal(b'{"user_id":"u1"}', now=NOW)
    forged = sealed.replace(b'"u1"', b'"u2"')
    with pytest.raises(TokenError, match="bad signature"):
        keyring.unseal(forged, now=NOW)
    with pytest.raises(TokenError, match="expired"):
        keyring.unseal(sealed, now=NOW + 31)
    with pytest.raises(TokenError, match="unknown key id"):
        Keyring.generate().unseal(sealed, now=NOW)


def test_backend_view_cannot_seal_but_signs_tokens_the_server_accepts(keyring):
    backend = keyring.backend_view()
    assert backend.stage_keys == ()
    with pytest.raises(ValueError, match="no stage keys"):
        backend.seal(b"x")
    assert keyring.verify(backend.sign(USER, now=NOW), now=NOW).subject == USER


def test_keyring_file_is_private_and_round_trips(tmp_path, keyring):
    path = save_keyring(tmp_path / "keys" / "keyring.json", keyring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(path) == keyring
    created = ensure_keyring(tmp_path / "new.json")
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600
    assert ensure_keyring(tmp_path / "new.json") == created  # an existing keyring is kept


def test_bad_keyring_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="recllm serve"):
        load_keyring(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"version": 1, "token_keys": []}')
    with pytest.raises(ValueError, match="at least one key"):
        load_keyring(tmp_path / "bad.json")
    (tmp_path / "short.json").write_text('{"version": 1, "token_keys": [{"kid": "a", "secret": "AAAA"}]}')
    with pytest.raises(ValueError, match="32 bytes"):
        load_keyring(tmp_path / "short.json")


def test_keyring_file_picks_up_a_rotation(tmp_path, keyring):
    path = save_keyring(tmp_path / "keyring.json", keyring)
    live = KeyringFile(path)
    rotated = keyring.rotated()
    save_keyring(path, rotated)
    os.utime(path, ns=(1, 1))  # a different stamp even within the file system's time resolution
    assert live.current() == rotated
