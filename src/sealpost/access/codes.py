"""One-time codes: 6 random digits, stored only as an HMAC.

The HMAC is keyed by a secret every replica derives from the seal key and bound to the party
(a UUID), so a database dump reveals no code and a code of one person is worthless for another.
Guessing has 5 tries at 1 in 10^6 each before the holder is locked out (``model.MAX_ATTEMPTS``).
Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import serialization

from sealpost.access.model import DIGITS
from sealpost.pki.keys import SigningIdentity


def derive_key(seal_key_der: bytes) -> bytes:
    return hashlib.sha256(b"sealpost-otp\0" + seal_key_der).digest()


def key_for(seal: SigningIdentity) -> bytes:
    """The code key of this deployment: the same on every replica, never stored."""
    der = seal.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return derive_key(der)


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def digest(key: bytes, party_id: str, code: str) -> str:
    return hmac.new(key, f"{party_id}\0{code}".encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, party_id: str, code: str, stored: str) -> bool:
    candidate = code.strip()
    if len(candidate) != DIGITS or not candidate.isdigit():
        return False
    return hmac.compare_digest(digest(key, party_id, candidate), stored)
