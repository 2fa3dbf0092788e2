"""Ed25519 signatures of an archive's table of contents.

The signed bytes are the canonical JSON of the table of contents without its `signature`
field; the signature names its key by `key_id`, the first 16 bytes (hex) of the sha256 of the
raw public key. An importer verifies with the public keys it trusts, never with a key the
archive brings.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from pallet.content.identity import canonical_json
from pallet.errors import Invalid

ALGORITHM = "ed25519"


class SignatureError(Invalid):
    code = "signature"


def generate() -> tuple[str, str]:
    """A new key pair as (private key PEM, public key PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    return private_pem, public_pem(private.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(pem: str) -> Ed25519PublicKey:
    """An ed25519 public key from PEM text, or Invalid saying what is wrong."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeError):
        raise Invalid("the public key is not a PEM-encoded public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Invalid("the public key is not an ed25519 key")
    return key


def key_id(public: Ed25519PublicKey | str) -> str:
    if isinstance(public, str):
        public = load_public(public)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def signed_bytes(toc: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in toc.items() if k != "signature"})


def sign(toc: dict[str, Any], private_pem: str) -> dict[str, Any]:
    """The table of contents with its signature."""
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    value = private.sign(signed_bytes(toc))
    return {**toc, "signature": {"algorithm": ALGORITHM,
                                 "key_id": key_id(private.public_key()),
                                 "value": base64.b64encode(value).decode()}}


def verify(toc: dict[str, Any], trusted: Iterable[str], *, required: bool) -> str | None:
    """The key id that signed `toc` if a trusted key did; None if it is unsigned and no
    signature is required; else SignatureError."""
    signature = toc.get("signature")
    if signature is None:
        if required:
            raise SignatureError("the archive is not signed, and this importer requires a "
                                 "signature by a trusted key")
        return None
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        raise SignatureError("the archive's signature is not an ed25519 signature")
    keys = {key_id(pem): load_public(pem) for pem in trusted}
    signer = signature.get("key_id")
    if signer not in keys:
        if keys or required:  # an unknown signer is suspect once keys are configured
            _untrusted(signer)
        return None
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        keys[signer].verify(value, signed_bytes(toc))
    except (InvalidSignature, ValueError):
        raise SignatureError("the archive's signature does not match its table of contents: "
                             "it was altered after signing") from None
    return signer


def _untrusted(signer: object) -> None:
    raise SignatureError(f"the archive is signed by key {str(signer)[:40]}, which this "
                         "importer does not trust", details={"key_id": str(signer)[:40]})
