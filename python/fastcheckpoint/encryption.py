"""Encryption at rest under our storage model.

Give a saver LangGraph's ``EncryptedSerializer`` (with any ``CipherProtocol``)
and every body it stores (channel values, checkpoint records, pending writes)
is encrypted *after* deltas, segments, compression and checksums, so an
encrypted thread stays as small and as fast as a plain one. Each body is bound
to its row: a body copied into another row fails to read (``DecryptionError``).
Metadata stays plain JSON, as upstream stores it (``list`` filters query it).

``AesCipher`` is AES-EAX in the exact format of upstream's
``EncryptedSerializer.from_pycryptodome_aes()`` (either reads what the other
writes), run natively, under several keys so that keys can rotate: it encrypts
with the first and decrypts with any. Upstream's own pycryptodome cipher is
recognised and run natively too.

Stored type of one of our encrypted bodies: ``"fc1+<cipher name>"`` for an
envelope, ``"fc1:<type>+<cipher name>"`` for a value stored as itself (bytes,
pickle); the plaintext is ``BINDING`` bytes naming the row, then the body. With
native AES the row is named in the nonce instead (EAX authenticates it), at no
cost in size: ``"fc1n+aes"``, ``"fc1n:<type>+aes"``, the nonce's first
``NONCE_BINDING`` bytes naming the row and the other 8 random.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from fastcheckpoint._native import ENVELOPE_TYPE, AesEax
from fastcheckpoint.errors import ConfigError, DecryptionError

# Bytes of the row binding at the start of each plaintext: a BLAKE2b digest of
# the row's key. 16 bytes leave no chance of two rows of a database colliding.
BINDING = 16
# Bytes of a native AES nonce that name the row. The other 8 are random, so a
# nonce repeats under one key only if one row is rewritten ~2^32 times; two
# rows share a binding (and could swap bodies unnoticed) with a chance of
# about n^2 / 2^65 among n rows.
NONCE_BINDING = 8
_NONCE_BOUND = ENVELOPE_TYPE + "n"
MOVED = "the encrypted body belongs to another row (it was moved or copied here)"
# The environment variable upstream's from_pycryptodome_aes reads its key from.
KEY_ENV = "LANGGRAPH_AES_KEY"
AES_NAME = "aes"
_NATIVE_ENVELOPE = f"{_NONCE_BOUND}+{AES_NAME}"
# Types stored as they are when encrypted: they carry no data.
CLEAR_TYPES = frozenset({"empty", "null"})

Row = tuple[Any, ...]  # ("blob" | "checkpoint" | "write", thread, ns, ...)


def _key_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


class AesCipher(CipherProtocol):
    """AES-EAX, as upstream's ``from_pycryptodome_aes()`` cipher writes it
    (``nonce || tag || ciphertext``, cipher name ``"aes"``), run in Rust.

    ``AesCipher(key, *previous_keys)``: encrypts with ``key``, decrypts with
    whichever key opens a body, so rows written under a previous key stay
    readable while ``fastcheckpoint reencrypt`` moves them to the new one.
    Keys are 16, 24 or 32 bytes (``str`` keys are UTF-8 encoded, as upstream
    encodes ``LANGGRAPH_AES_KEY``).
    """

    def __init__(self, key: bytes | str, *previous_keys: bytes | str) -> None:
        self.aes = AesEax([_key_bytes(k) for k in (key, *previous_keys)])

    @classmethod
    def from_env(cls, *previous_key_envs: str) -> AesCipher:
        """The key in ``LANGGRAPH_AES_KEY`` (as upstream reads it), then the
        previous keys in the environment variables named."""
        keys = []
        for name in (KEY_ENV, *previous_key_envs):
            value = os.environ.get(name)
            if not value:
                raise ConfigError(f"the environment variable {name} holding an AES key is not set")
            keys.append(value)
        return cls(*keys)

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """``("aes", nonce || tag || ciphertext)`` under the first key."""
        return AES_NAME, self.aes.encrypt(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """The plaintext; ``DecryptionError`` if no key opens it."""
        if ciphername != AES_NAME:
            raise DecryptionError(f"cipher {ciphername!r} is not AES")
        return self.aes.open(ciphertext)[1]


def encrypted_serializer(key: bytes | str | None = None, *previous_keys: bytes | str) -> EncryptedSerializer:
    """``EncryptedSerializer(AesCipher(key, *previous_keys))``, the key from
    ``LANGGRAPH_AES_KEY`` when not given."""
    if key is None:
        return EncryptedSerializer(AesCipher.from_env())
    return EncryptedSerializer(AesCipher(key, *previous_keys))


def _upstream_aes(cipher: Any) -> AesEax | None:
    """The native equivalent of upstream's ``from_pycryptodome_aes`` cipher, when
    ``cipher`` is one in its default mode (EAX): its key is in the closure."""
    kind = type(cipher)
    if kind.__qualname__ != "EncryptedSerializer.from_pycryptodome_aes.<locals>.PycryptodomeAesCipher":
        return None
    fn = kind.encrypt
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=False))
    try:
        from Crypto.Cipher import AES
    except ImportError:  # pragma: no cover - the cipher was built with it
        return None
    if cells.get("kwargs") != {"mode": AES.MODE_EAX} or not isinstance(cells.get("key"), bytes):
        return None
    return AesEax([cells["key"]])


def binding(row: Row, size: int = BINDING) -> bytes:
    """The digest that binds a body to its row."""
    return hashlib.blake2b("\x1f".join(map(str, row)).encode(), digest_size=size).digest()


@dataclass(frozen=True)
class Vault:
    """Encrypts and decrypts our bodies with a saver's cipher, each bound to its row."""

    cipher: CipherProtocol
    native: AesEax | None  # the same cipher in Rust, when it is AES-EAX

    @classmethod
    def of(cls, cipher: CipherProtocol) -> Vault:
        native = cipher.aes if isinstance(cipher, AesCipher) else _upstream_aes(cipher)
        return cls(cipher, native)

    def decrypt(self, name: str, body: bytes) -> tuple[int | None, bytes]:
        """(index of the key that opened it, when known; plaintext)."""
        if self.native is not None and name == AES_NAME:
            return self.native.open(body)
        try:
            return None, self.cipher.decrypt(name, body)
        except DecryptionError:
            raise
        except Exception as e:  # a cipher of the user's own: its failure, typed
            raise DecryptionError(f"cipher {name!r} could not decrypt the body: {type(e).__name__}: {e}") from e

    def seal(self, row: Row, type_: str, data: bytes) -> tuple[str, bytes]:
        """How a body of ``type_`` (``ENVELOPE_TYPE`` or a serializer's own) is stored in ``row``."""
        if type_ in CLEAR_TYPES:
            return type_, data
        own = "" if type_ == ENVELOPE_TYPE else f":{type_}"
        if self.native is not None:
            body = self.native.encrypt_bound(data, binding(row, NONCE_BINDING))
            return f"{_NONCE_BOUND}{own}+{AES_NAME}", body
        name, body = self.cipher.encrypt(binding(row) + data)
        return f"{ENVELOPE_TYPE}{own}+{name}", body

    def open(self, row: Row, stored_type: str, body: bytes) -> tuple[str, bytes]:
        """``(type, data)`` that ``seal`` stored in ``row`` as ``stored_type``."""
        if stored_type == _NATIVE_ENVELOPE and self.native is not None:  # most reads: no parsing
            if body[:NONCE_BINDING] != binding(row, NONCE_BINDING):
                raise DecryptionError(MOVED)
            return ENVELOPE_TYPE, self.native.open(body)[1]
        return self.open_for((row,), stored_type, body)[2:]

    def open_for(self, rows: Sequence[Row], stored_type: str, body: bytes) -> tuple[int | None, int, str, bytes]:
        """A body that may be bound to any of ``rows``: (index of the key that
        opened it when known, index of its row in ``rows``, type, data)."""
        inner, _, name = stored_type.rpartition("+")
        head, _, own = inner.partition(":")
        type_ = own or ENVELOPE_TYPE
        body = bytes(body)
        if head == _NONCE_BOUND:
            which = next((i for i, row in enumerate(rows) if binding(row, NONCE_BINDING) == body[:NONCE_BINDING]), None)
            if which is None:
                raise DecryptionError(MOVED)
            index, plain = self.decrypt(name, body)
            return index, which, type_, plain
        index, plain = self.decrypt(name, body)
        bound = plain[:BINDING]
        which = next((i for i, row in enumerate(rows) if binding(row) == bound), None)
        if which is None:
            raise DecryptionError(MOVED)
        return index, which, type_, plain[BINDING:]


def is_sealed(type_: str) -> bool:
    """Whether a stored type is one of our encrypted bodies."""
    return "+" in type_ and type_.startswith(ENVELOPE_TYPE)


__all__ = ["AesCipher", "DecryptionError", "encrypted_serializer"]
