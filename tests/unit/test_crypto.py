"""Stored-password encryption: round trip, key ids and rotation, tamper detection."""

from __future__ import annotations

import pytest

from assign.security.crypto import NONCE, Cipher, DecryptionError, derive_key, key_id_of

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32


@pytest.mark.parametrize("text", ["pass", "", "pässwörd 密码 🔑", "x" * 5000])
def test_round_trip(text: str) -> None:
    cipher = Cipher(NEW)
    stored = cipher.encrypt(text)
    assert isinstance(stored, bytes)
    assert text.encode() not in stored or text == ""
    assert cipher.decrypt(stored) == text
    assert cipher.decrypt(bytearray(stored)) == text  # drivers may hand back other buffers
    assert cipher.decrypt(memoryview(stored)) == text


def test_none_stays_none() -> None:
    cipher = Cipher(NEW)
    assert cipher.encrypt(None) is None
    assert cipher.decrypt(None) is None
    assert cipher.is_current(None)


def test_layout_and_fresh_nonce() -> None:
    cipher = Cipher(NEW)
    a, b = cipher.encrypt("same"), cipher.encrypt("same")
    assert a != b  # a new nonce each time
    assert a is not None and b is not None
    assert a[0] == b[0] == cipher.key_id == key_id_of(NEW)
    assert len(a) == 1 + NONCE + len("same") + 16  # key id, nonce, ciphertext, GCM tag


def test_key_ids_are_stable_bytes() -> None:
    assert key_id_of(NEW) == key_id_of(NEW)
    assert 1 <= key_id_of(NEW) <= 255
    assert key_id_of(OLD) != key_id_of(NEW)
    assert derive_key(NEW) == derive_key(NEW) and len(derive_key(NEW)) == 32
    assert derive_key(NEW) != derive_key(OLD)


def test_rotation_reads_older_keys_and_writes_the_current() -> None:
    stored_old = Cipher(OLD).encrypt("legacy")
    rotated = Cipher(NEW, older=[OLD])
    assert rotated.decrypt(stored_old) == "legacy"
    assert not rotated.is_current(stored_old)
    stored_new = rotated.encrypt("fresh")
    assert rotated.is_current(stored_new)
    assert stored_new is not None and stored_new[0] == key_id_of(NEW)
    # the old cipher cannot read what the new key wrote
    with pytest.raises(DecryptionError, match="no key"):
        Cipher(OLD).decrypt(stored_new)


def test_without_the_older_key_old_values_fail() -> None:
    stored_old = Cipher(OLD).encrypt("legacy")
    with pytest.raises(DecryptionError):
        Cipher(NEW).decrypt(stored_old)


@pytest.mark.parametrize("position", [1, 1 + NONCE, -1])
def test_tampering_is_detected(position: int) -> None:
    cipher = Cipher(NEW)
    stored = bytearray(cipher.encrypt("secret-value") or b"")
    stored[position] ^= 0x01
    with pytest.raises(DecryptionError, match="authentication"):
        cipher.decrypt(bytes(stored))


def test_truncated_value_is_detected() -> None:
    cipher = Cipher(NEW)
    stored = cipher.encrypt("secret-value") or b""
    with pytest.raises(DecryptionError):
        cipher.decrypt(stored[:-4])


def test_same_key_id_other_secret_fails_authentication() -> None:
    stored = bytearray(Cipher(OLD).encrypt("x") or b"")
    stored[0] = key_id_of(NEW)  # pretend it was written under the new key
    with pytest.raises(DecryptionError, match="authentication"):
        Cipher(NEW).decrypt(bytes(stored))


def test_decryption_error_is_a_value_error() -> None:
    assert issubclass(DecryptionError, ValueError)


def test_encrypt_many_is_encrypt_of_each_with_distinct_nonces() -> None:
    cipher = Cipher(NEW)
    texts = ["a", None, "pässwörd", "", "a", None]
    stored = cipher.encrypt_many(texts)
    assert [cipher.decrypt(s) for s in stored] == texts
    sealed = [s for s in stored if s is not None]
    nonces = {s[1 : 1 + NONCE] for s in sealed}
    assert len(nonces) == len(sealed)  # no nonce used twice
    assert all(s[0] == cipher.key_id for s in sealed)
    assert all(
        len(s) == 1 + NONCE + len(t.encode()) + 16
        for s, t in zip(sealed, ["a", "pässwörd", "", "a"], strict=True)
    )
    assert cipher.encrypt_many([]) == []
