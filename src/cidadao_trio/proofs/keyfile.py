"""The signing key on disk (PKCS#8 PEM, as ``openssl genpkey -algorithm ed25519`` writes it).

Created once, mode 0600, with ``O_EXCL`` so two processes starting on the same directory
end up with the same key (the loser reads the winner's). Public keys for ``verify`` may
be a JWK, a JWKS (``GET /api/v1/keys``) or a PEM.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from .signing import key_from_jwk

KEY_FILE = "signing-key.pem"  # under --data-dir


class KeyFileError(Exception):
    """A key file that cannot be used; the message is one line for the operator."""


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def private_from_pem(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as bad:
        raise KeyFileError(f"{where}: not an unencrypted PEM private key ({bad})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{where}: not an Ed25519 key")
    return key


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        pem = path.read_bytes()
    except OSError as bad:
        raise KeyFileError(f"signing key {path}: {bad.strerror or bad}") from None
    return private_from_pem(pem, str(path))


def load_or_create(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key at ``path``, created (0600) if there is none; ``True`` when created here."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_private(path), False
    except OSError as bad:
        raise KeyFileError(f"signing key {path}: {bad.strerror or bad}") from None
    key = Ed25519PrivateKey.generate()
    with os.fdopen(fd, "wb") as file:
        file.write(private_pem(key))
        file.flush()
        os.fsync(file.fileno())
    return key, True


def load_public(text: bytes) -> list[Ed25519PublicKey]:
    """Every Ed25519 key in a JWK, a JWKS or a PEM (public or private); ``ValueError`` if none."""
    stripped = text.strip()
    if stripped.startswith(b"{"):
        document = json.loads(stripped)
        jwks = document["keys"] if isinstance(document, dict) and "keys" in document else [document]
        return [key_from_jwk(jwk) for jwk in jwks]
    if b"PRIVATE KEY" in stripped:
        return [private_from_pem(stripped, "key").public_key()]
    key = load_pem_public_key(stripped)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return [key]
