"""Email addresses: splitting, IDNA domains, certify-domain rewriting.

Besides the signed VERP return path (``email.verp``), one address shape carries meaning:

* the **rewritten recipient** ``alice@example.com.<certify domain>`` that lets any mail client
  send a certified message by appending the certify domain to the recipient's address.

Domains are compared and returned in IDNA A-label form (RFC 5891, via dnspython's IDNA 2008
codec) because that is what DNS, DKIM's ``d=`` (RFC 6376 §3.5) and SMTP without SMTPUTF8 use.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name

from sealpost.errors import InvalidInput

__all__ = [
    "AddressError",
    "checked_address",
    "domain_of",
    "idna_domain",
    "is_certify_address",
    "split_address",
    "unwrap_certify_address",
]

_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
_MAX_DOMAIN = 253  # RFC 1035 §2.3.4 (255 octets in wire form)


class AddressError(InvalidInput):
    """An address or domain that cannot be used; ``address`` is the offending text."""

    code = "invalid_address"
    title = "Not a valid address"
    problem_fields = ("address",)

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(f"{message}: {address!r}")
        self.address = address


def split_address(address: str) -> tuple[str, str]:
    """``local@domain`` → ``(local, domain)``, split at the last ``@`` (RFC 5321 §4.1.2).

    Surrounding whitespace and one pair of angle brackets are tolerated, because envelope
    addresses and DSN fields often come as ``<alice@example.com>``.  The parts are returned as
    written: local parts are case-sensitive (RFC 5321 §2.4).
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("not an address of the form local@domain", address=address)
    return local, domain


def idna_domain(domain: str) -> str:
    """The lower-case A-label form of ``domain`` (``Bücher.Example`` → ``xn--bcher-kva.example``).

    Only host names are accepted: LDH labels after IDNA encoding (RFC 5890 §2.3.1, RFC 1123
    §2.1), at most 253 octets.  Address literals (``[192.0.2.1]``) are refused: Sealpost never
    needs them and they cannot carry DKIM or VERP.
    """
    text = domain.strip().rstrip(".")
    if not text or text.startswith("["):
        raise AddressError("not a domain name", address=domain)
    try:
        ascii_form = dns.name.from_unicode(text).to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError, ValueError):
        raise AddressError("not a valid IDNA domain name", address=domain) from None
    labels = ascii_form.split(".")
    if len(ascii_form) > _MAX_DOMAIN or not all(_LDH_LABEL.match(label) for label in labels):
        raise AddressError("not a valid host name", address=domain)
    return ascii_form


def domain_of(address: str) -> str:
    """The domain of ``address``, lower-cased and IDNA-encoded, ready for a DNS query."""
    return idna_domain(split_address(address)[1])


def unwrap_certify_address(address: str, certify_domain: str) -> str | None:
    """``alice@example.com.certify.example.net`` → ``alice@example.com``; None if not rewritten.

    The rewriting lets any mail client ask for certification by appending the certify domain
    to the recipient's domain.  The inner domain must be a plausible public host name (at
    least two labels, IDNA-valid, a non-numeric top-level label) and the local part must be
    non-empty and fit RFC 5321 §4.5.3.1.1; the result keeps the local part as written and gives
    the inner domain in lower-case A-label form.
    """
    try:
        local, domain = split_address(address)
        full = idna_domain(domain)
        suffix = "." + idna_domain(certify_domain)
    except AddressError:
        return None
    if not full.endswith(suffix):
        return None
    inner = full[: -len(suffix)]
    labels = inner.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return None
    if len(local.encode("utf-8")) > _MAX_LOCAL or any(c.isspace() for c in local):
        return None
    return f"{local}@{inner}"


def is_certify_address(address: str, certify_domain: str) -> bool:
    """Whether ``address`` is a recipient rewritten under ``certify_domain``."""
    return unwrap_certify_address(address, certify_domain) is not None


_MAILBOX = re.compile(r'^[^\s<>()\[\],;:"\\@]+@[^\s<>()\[\],;:"\\@]+$')
_MAX_PATH = 254  # RFC 5321 §4.5.3.1.3 (256 with the angle brackets)


def checked_address(address: str) -> str:
    """A bare ``local@domain`` fit for an SMTP envelope, else :class:`AddressError`.

    Stricter than RFC 5322 on purpose: no comments, quotes, routes, spaces or control
    characters, so that nothing an API caller sends can smuggle a second command or a
    parameter into ``RCPT TO`` or make the evidence name another address than the one used.
    """
    text = address.strip()
    if len(text) > _MAX_PATH or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise AddressError("not a usable address (too long or control characters)", address=text)
    if not _MAILBOX.match(text):
        raise AddressError("not a bare local@domain address", address=text)
    split_address(text)
    return text
