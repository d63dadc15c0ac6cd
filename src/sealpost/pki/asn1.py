"""Work around asn1crypto 1.5.1 mistaking some definite lengths for BER indefinite ones.

asn1crypto decides a value was BER-encoded with an indefinite length when its header's *last*
byte is 0x80 (``_header[-1:] == b"\\x80"``, wbond/asn1crypto#249, unfixed in the last
release).  A definite long-form length such as 0x0f80 (``30 82 0f 80``) ends with 0x80 too, so
every ``dump()`` of such a value is forced to re-encode its whole subtree.  Inside pyHanko's
CMS building that re-encoding nests and takes 5-40 s instead of milliseconds: a certificate
whose SignerInfo happens to be 3,968 bytes long (about one seal in three with RSA-3072 seal and
TSA keys) stalled the worker that long.

The fix: before the original ``dump()``, a header whose innermost length is definite is
dropped, so asn1crypto rebuilds the same header from the cached contents instead of
re-encoding them.  DER input dumps to identical bytes; a genuinely indefinite header is left
alone.  :func:`install` is idempotent and patches the five ``dump`` methods that hold the check.

Where and when: it is a process-wide patch of a library, so it is installed once at start-up
by every entry point, never as an import side effect: ``sealpost.cli.main`` (every command,
``serve`` in each role, the SMTP acceptor processes), the composition root
``sealpost.app.build`` (the HTTP app, the benchmarks, anything embedding Sealpost) and the test
suite's ``conftest``.  It lives in :mod:`sealpost.pki` because that is the lowest layer that
encodes CMS with asn1crypto (the embedded TSA's tokens, RFC 3161 / RFC 5652); the ledger's
timestamp client and pyHanko in :mod:`sealpost.certificates` build on it.
:func:`installed` says whether it is in place, for tests and for a caller that wants to check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asn1crypto import core

_PATCHED = "_sealpost_definite_length_fix"


def last_length_is_definite(header: bytes) -> bool:
    """Whether the innermost length in ``header`` (explicit tags first) is definite."""
    i, definite = 0, True
    while i < len(header):
        if header[i] & 0x1F == 0x1F:  # high tag number: base-128 bytes, last has bit 8 clear
            i += 1
            while i < len(header) and header[i] & 0x80:
                i += 1
        i += 1
        if i >= len(header):
            return True  # malformed: let asn1crypto decide
        length = header[i]
        definite = length != 0x80
        i += 1 + (length & 0x7F if length > 0x80 else 0)
    return definite


def _fixed(dump: Callable[..., bytes]) -> Callable[..., bytes]:
    @functools.wraps(dump)
    def wrapper(self: Any, force: bool = False) -> bytes:
        header = self._header
        if not force and header and header[-1] == 0x80 and last_length_is_definite(header):
            self._header = None  # rebuilt from the cached contents, byte for byte
        return dump(self, force)

    setattr(wrapper, _PATCHED, True)
    return wrapper


_CLASSES = (core.Asn1Value, core.Choice, core.Primitive, core.Sequence, core.SequenceOf)
"""The classes whose own ``dump`` holds the ``_header[-1:] == b"\\x80"`` check."""


def install() -> None:
    """Patch asn1crypto's ``dump`` methods, once per process (a second call does nothing)."""
    for cls in _CLASSES:
        method = cls.__dict__["dump"]
        if not getattr(method, _PATCHED, False):
            cls.dump = _fixed(method)


def installed() -> bool:
    """Whether :func:`install` has patched every ``dump`` method of this process."""
    return all(getattr(cls.__dict__["dump"], _PATCHED, False) for cls in _CLASSES)
