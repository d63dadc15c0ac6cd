"""One-time codes that identify a signer: 6 digits, 10 minutes, 5 attempts.

A code is stored only as an HMAC keyed by a secret every replica derives from the seal key and
bound to the signer, so a database dump reveals no code and a code of one signer is worthless
for another.  Guessing has 5 tries at 1 in 10^6 each before the signer is locked out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

DIGITS = 6
VALID_SECONDS = 600
MAX_ATTEMPTS = 5
MAX_SENDS = 5
"""Codes sent to one signer per link: more is someone hammering the button (or a bot)."""


def derive_key(seal_key_der: bytes) -> bytes:
    return hashlib.sha256(b"sealpost-otp\0" + seal_key_der).digest()


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def digest(key: bytes, signer_id: str, code: str) -> str:
    return hmac.new(key, f"{signer_id}\0{code}".encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, signer_id: str, code: str, stored: str) -> bool:
    candidate = code.strip()
    if len(candidate) != DIGITS or not candidate.isdigit():
        return False
    return hmac.compare_digest(digest(key, signer_id, candidate), stored)


def mask_email(address: str) -> str:
    """``j***@example.com``: enough for the signer to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
