"""Ed25519 over a proof (§11): what is signed, the key's id and its JWK.

The signed bytes are ``canonical`` of the proof's fields other than ``signature``, plus
``investigation_id``. ``key_id`` is derived from the public key (the first 16 hex digits
of SHA-256 over its 32 raw bytes), so a verifier can tell which key a proof names.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .canonical import canonical

SIGNATURE = "signature"


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """RFC 8037's form, as ``GET /api/v1/keys`` lists it."""
    return {
        "kty": "OKP", "crv": "Ed25519", "x": _b64url(raw_public(key)), "kid": key_id(key), "use": "sig", "alg": "EdDSA",
    }


def key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """Raises ``ValueError`` for anything but an Ed25519 OKP key."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an Ed25519 JWK (kty OKP, crv Ed25519)")
    return Ed25519PublicKey.from_public_bytes(_unb64url(jwk["x"]))


def signed_bytes(proof: Mapping[str, Any], investigation_id: str) -> bytes:
    fields = {k: v for k, v in proof.items() if k != SIGNATURE}
    return canonical({**fields, "investigation_id": investigation_id})


class Signer:
    """The server's signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def ephemeral(cls) -> Signer:
        """A key that lives as long as the process (the memory store keeps nothing)."""
        return cls(Ed25519PrivateKey.generate())

    def pem(self) -> bytes:
        """The private key as PKCS#8 PEM (what a key file holds)."""
        return self._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def jwk(self) -> dict[str, str]:
        return public_jwk(self.public)

    def sign(self, fields: Mapping[str, Any], investigation_id: str) -> dict[str, Any]:
        """``fields`` plus ``key_id`` and ``signature``: the proof of §11."""
        proof = {**fields, "key_id": self.key_id}
        signature = self._private.sign(signed_bytes(proof, investigation_id))
        return {**proof, SIGNATURE: base64.b64encode(signature).decode()}


def signature_valid(proof: Mapping[str, Any], investigation_id: str, key: Ed25519PublicKey) -> bool:
    try:
        signature = base64.b64decode(str(proof.get(SIGNATURE, "")), validate=True)
        key.verify(signature, signed_bytes(proof, investigation_id))
    except (InvalidSignature, ValueError):
        return False
    return True
