"""The attacker of review 2 (HIGH): a tenant brute-forcing a one-time code from the digests it
is shown.  A code message is a fixed template around six digits, so any plain SHA-256 of it
(or of a part of it) gives the code back in a million tries; only a salt the tenant never sees
stops that.  These helpers collect every digest in what the tenant receives and try all 10^6
codes against them, as the review's proofs did."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{43}=")

Candidates = Callable[[bytes], Iterable[bytes]]
"""Given a six-digit code (ASCII), every byte string whose SHA-256 the tenant might see."""


def digests_in(value: Any, found: set[str] | None = None) -> set[str]:
    """Every SHA-256 (lowercase hex) written in ``value``: hex anywhere in a string, and
    base64/base64url 32-byte values (the ETSI view's digest values)."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            digests_in(key, found)
            digests_in(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            digests_in(item, found)
    elif isinstance(value, str):
        found.update(m.lower() for m in HEX.findall(value))
        for m in B64.findall(value):
            try:
                raw = base64.b64decode(m.replace("-", "+").replace("_", "/"), validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == 32:
                found.add(raw.hex())
    return found


def brute_force(candidates: Candidates, digests: set[str]) -> str | None:
    """The first code among all 10^6 one of whose candidates has a digest in ``digests``."""
    sha256 = hashlib.sha256
    for i in range(1_000_000):
        code = b"%06d" % i
        for data in candidates(code):
            if sha256(data).hexdigest() in digests:
                return code.decode()
    return None
