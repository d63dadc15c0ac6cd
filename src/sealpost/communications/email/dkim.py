"""DKIM (RFC 6376) signing of outbound mail and verification of inbound mail, with dkimpy.

Outbound, the tenant's domain signs every message so the recipient's server can tie it to
the sender.  Inbound, a valid signature of a tenant's verified domain is what lets a message
sent to a rewritten ``alice@example.com.<certify domain>`` address be accepted: the caller
checks that :attr:`DkimResult.domain` (or one of :attr:`DkimResult.valid_domains`) belongs to
the tenant.

Keys are looked up through a :data:`KeyLookup` function, never by dkimpy's own DNS code, so
tests and operators can pin keys (:func:`pinned_key_lookup`) and the DNS one
(:func:`dns_key_lookup`) has one timeout and one error policy.  dkimpy quirks handled here:
it wants a PEM with LF line ends (PKCS#1 or PKCS#8), it logs key errors instead of raising
them, and its DNS callback receives ``b"<selector>._domainkey.<domain>."`` with a final dot.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dkim
import dns.exception
import dns.name
import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns.rdtypes.txtbase import TXTBase

from sealpost.communications.email.addresses import AddressError, idna_domain
from sealpost.communications.email.mime import line_ending
from sealpost.errors import InvalidInput, ServiceUnavailable

__all__ = [
    "MAX_SIGNATURES",
    "SIGNED_HEADERS",
    "DkimCheck",
    "DkimError",
    "DkimResult",
    "KeyLookup",
    "KeyLookupFailed",
    "dns_key_lookup",
    "generate_dkim_key",
    "pinned_key_lookup",
    "sign_message",
    "verify_message",
]

MAX_SIGNATURES = 5
"""DKIM-Signature fields verified per message, the first ones (those its last hops added)."""

KeyLookup = Callable[[str, str], str | None]
"""``(selector, domain) -> TXT record text`` of ``<selector>._domainkey.<domain>``, or None
when no key is published.  Raise :class:`KeyLookupFailed` for a temporary failure."""

SIGNED_HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
)
"""Signed when present (RFC 6376 §5.4.1), each once more than it appears so that no further
instance can be added without breaking the signature (§8.15, "over-signing")."""

_SELECTOR = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")
_KEY_BITS = 2048  # RFC 8301 §3.2: at least 1024, 2048 recommended


def _quiet_logger() -> logging.Logger:
    """dkimpy logs key errors at ERROR level; they are reported in DkimResult.reason instead."""
    logger = logging.Logger("sealpost.communications.email.dkim.dkimpy", level=logging.CRITICAL + 1)
    logger.addHandler(logging.NullHandler())
    return logger


_LOG = _quiet_logger()


class DkimError(InvalidInput):
    """A message or key that cannot be signed with (bad PEM, no From header, bad selector)."""

    code = "dkim_error"
    title = "The message or key cannot be DKIM-signed"


class KeyLookupFailed(ServiceUnavailable):
    """The key could not be looked up right now (DNS timeout, no reachable name server).

    RFC 6376 §6.1.2 calls this TEMPFAIL: the SMTP server should answer 451, not 550.
    """

    code = "dkim_key_lookup_failed"
    title = "The DKIM key lookup failed; retry later"


@dataclass(frozen=True)
class DkimCheck:
    """The outcome for one DKIM-Signature header, topmost first."""

    valid: bool
    domain: str | None
    """The ``d=`` tag, lower-cased; None if the signature could not be read."""
    selector: str | None
    reason: str
    temporary: bool = False


@dataclass(frozen=True)
class DkimResult:
    """Whether any DKIM signature of the message verified (RFC 6376 §6).

    ``domain``/``selector`` are those of the first valid signature, or of the first signature
    when none is valid; ``reason`` says why in plain words.  ``checks`` has every signature
    verified: the first :data:`MAX_SIGNATURES`.
    """

    valid: bool
    domain: str | None
    selector: str | None
    reason: str
    temporary: bool = False
    """No signature verified and at least one could not be checked for a temporary reason."""
    checks: tuple[DkimCheck, ...] = ()

    @property
    def valid_domains(self) -> frozenset[str]:
        """Every ``d=`` domain with a valid signature, for the tenant-domain check."""
        return frozenset(c.domain for c in self.checks if c.valid and c.domain)


# -- keys ----------------------------------------------------------------------------------


def generate_dkim_key() -> tuple[bytes, str]:
    """A new RSA-2048 key: the PKCS#1 PEM private key and the DNS TXT record value.

    The record is ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>`` (RFC 6376 §3.6.1).  At
    about 400 characters it exceeds one DNS character-string (255 octets): publish it as
    several strings in one TXT record, which resolvers concatenate (RFC 7208 §3.3 practice).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy documents
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode('ascii')}"


def dns_key_lookup(
    resolver: dns.resolver.Resolver | None = None, *, timeout: float = 5.0
) -> KeyLookup:
    """A :data:`KeyLookup` over DNS: the TXT record at ``<selector>._domainkey.<domain>``.

    NXDOMAIN, an empty answer or no DKIM record give None (RFC 6376 §6.1.2 PERMFAIL, "no key");
    a timeout or unreachable name servers raise :class:`KeyLookupFailed` (TEMPFAIL).  When the
    name holds several TXT records, the one that looks like a DKIM key is preferred.
    """
    state: dict[str, dns.resolver.Resolver] = {}

    def lookup(selector: str, domain: str) -> str | None:
        try:
            name = dns.name.from_text(f"{selector}._domainkey.{domain.rstrip('.')}.")
        except dns.exception.DNSException:
            return None  # not even a valid DNS name: nothing can be published there
        try:
            active = resolver or state.get("resolver")
            if active is None:
                active = state["resolver"] = dns.resolver.Resolver()
            answer = active.resolve(
                name, "TXT", lifetime=timeout, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL, no name servers
            raise KeyLookupFailed(f"DNS lookup of {name} failed: {exc}") from None
        texts = [
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in answer
            if isinstance(rdata, TXTBase)
        ]
        keys = [t for t in texts if t.lstrip().startswith("v=DKIM1") or "p=" in t]
        chosen = keys or texts
        return chosen[0] if chosen else None

    return lookup


def pinned_key_lookup(
    keys: Mapping[tuple[str, str], str], fallback: KeyLookup | None = None
) -> KeyLookup:
    """Keys pinned by the operator when a tenant's domain was verified, then ``fallback``.

    Pinning makes a tenant's own signatures verifiable without trusting DNS at submission
    time.  Selector and domain compare case-insensitively (they are DNS names).
    """
    pinned = {(s.lower(), d.lower().rstrip(".")): txt for (s, d), txt in keys.items()}

    def lookup(selector: str, domain: str) -> str | None:
        found = pinned.get((selector.lower(), domain.lower().rstrip(".")))
        if found is not None or fallback is None:
            return found
        return fallback(selector, domain)

    return lookup


# -- signing -------------------------------------------------------------------------------


def sign_message(
    raw: bytes,
    *,
    domain: str,
    selector: str,
    private_key_pem: bytes | str,
    headers: Sequence[bytes] | None = None,
) -> bytes:
    """The ``DKIM-Signature`` header field for ``raw``, to prepend as is: ``sig + raw``.

    rsa-sha256 (RFC 8301), relaxed/relaxed canonicalization (RFC 6376 §3.4) so that header
    refolding or CRLF/LF conversion on the way does not break it.  By default the
    :data:`SIGNED_HEADERS` present are signed and over-signed; ``headers`` overrides the list.
    The field is folded and terminated with the message's own line ending (CRLF for anything
    that came over SMTP), so prepending keeps the message consistent.
    """
    try:
        d_tag = idna_domain(domain)
    except AddressError as exc:
        raise DkimError(f"DKIM domain: {exc.message}") from None
    if not _SELECTOR.match(selector):
        raise DkimError(f"invalid DKIM selector {selector!r}")
    pem = private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
    pem = pem.replace(b"\r\n", b"\n")  # dkimpy's PEM regex expects LF line ends
    linesep = line_ending(raw)
    try:
        signer = dkim.DKIM(raw, logger=_LOG, linesep=linesep)
    except Exception as exc:  # dkimpy raises IndexError too, e.g. on a leading blank
        raise DkimError(f"message cannot be signed: {exc!r}") from None
    include = list(headers) if headers is not None else _present_headers(signer.headers)
    try:
        signature = signer.sign(
            selector.encode("ascii"),
            d_tag.encode("ascii"),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    except dkim.KeyFormatError as exc:
        raise DkimError(f"DKIM private key unusable: {exc}") from None
    except dkim.DKIMException as exc:
        raise DkimError(f"message cannot be signed: {exc}") from None
    assert isinstance(signature, bytes)
    return signature


def _present_headers(message_headers: Sequence[Sequence[bytes]]) -> list[bytes]:
    counts: dict[bytes, int] = {}
    for raw_name, _value in message_headers:
        key = bytes(raw_name).lower()
        counts[key] = counts.get(key, 0) + 1
    out: list[bytes] = []
    for name in SIGNED_HEADERS:
        wanted = name.lower().encode("ascii")
        present = counts.get(wanted, 0)
        if present:
            out.extend([wanted] * (present + 1))
    return out


# -- verification --------------------------------------------------------------------------


def verify_message(raw: bytes, *, key_lookup: KeyLookup) -> DkimResult:
    """Verify every DKIM-Signature of ``raw``; valid if at least one verifies (RFC 6376 §6).

    Never raises on a bad message or signature: the reason says what was wrong ("no
    DKIM-Signature header", "body hash mismatch", "no key published for s1._domainkey.
    example.com", ...).  Not accepted either: rsa-sha1 (RFC 8301 §3.1) and a signature whose
    ``l=`` covers less than the whole body (RFC 6376 §8.2: content could be appended under it).
    """
    try:
        parsed = dkim.DKIM(raw, logger=_LOG)
    except Exception as exc:  # dkimpy raises IndexError too, e.g. on a leading blank
        return DkimResult(False, None, None, f"message header cannot be read: {exc!r}")
    count = sum(1 for name, _ in parsed.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return DkimResult(False, None, None, "no DKIM-Signature header")
    # RFC 6376 §6.1: "Verifiers SHOULD limit the number of signatures they attempt to validate";
    # each costs a key lookup and a pass over the whole body (400 on 1 MiB took 11 s)
    checks = tuple(_check_one(raw, idx, key_lookup) for idx in range(min(count, MAX_SIGNATURES)))
    chosen = next((c for c in checks if c.valid), checks[0])
    temporary = not chosen.valid and any(c.temporary for c in checks)
    return DkimResult(
        chosen.valid, chosen.domain, chosen.selector, chosen.reason, temporary, checks
    )


class _Lookups:
    """dkimpy's DNS callback, backed by a KeyLookup, remembering what it answered."""

    def __init__(self, key_lookup: KeyLookup) -> None:
        self.key_lookup = key_lookup
        self.name = ""
        self.answer: str | None = None
        self.failure: str | None = None

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace").rstrip(".")
        self.name = text
        selector, _, domain = text.partition("._domainkey.")
        try:
            self.answer = self.key_lookup(selector, domain)
        except KeyLookupFailed as exc:
            self.failure = exc.message
            return None
        return self.answer.encode("utf-8") if self.answer is not None else None


def _check_one(raw: bytes, idx: int, key_lookup: KeyLookup) -> DkimCheck:
    lookups = _Lookups(key_lookup)
    domain: str | None = None
    selector: str | None = None
    try:
        verifier = dkim.DKIM(raw, logger=_LOG, minkey=1024)
        prep = verifier.verify_headerprep(idx)
        sig = prep[0]
        domain = sig[b"d"].decode("ascii", "replace").lower()
        selector = sig[b"s"].decode("ascii", "replace")
        if sig.get(b"a", b"").strip().lower() == b"rsa-sha1":
            return DkimCheck(False, domain, selector, "rsa-sha1 is not accepted (RFC 8301 §3.1)")
        partial = _partial_body(verifier, sig)
        if partial:
            return DkimCheck(False, domain, selector, partial)
        ok = verifier.verify_sig(sig, prep[1], prep[2][idx], lookups)
    except dkim.ValidationError as exc:
        return DkimCheck(False, domain, selector, _validation_reason(str(exc)))
    except dkim.KeyFormatError as exc:
        return DkimCheck(False, domain, selector, f"unusable key: {exc}")
    except binascii.Error as exc:
        return DkimCheck(False, domain, selector, f"malformed DKIM-Signature: bad base64 ({exc})")
    except dkim.DKIMException as exc:
        return DkimCheck(False, domain, selector, f"malformed DKIM-Signature: {exc}")
    except Exception as exc:  # dkimpy on hostile input: a failed check, not a crash
        return DkimCheck(False, domain, selector, f"signature cannot be checked: {exc!r}")
    if ok:
        return DkimCheck(True, domain, selector, "signature verified")
    if lookups.failure is not None:
        return DkimCheck(False, domain, selector, lookups.failure, temporary=True)
    if lookups.answer is None:
        return DkimCheck(False, domain, selector, f"no key published for {lookups.name}")
    try:
        dkim.evaluate_pk(lookups.name, lookups.answer.encode("utf-8"))
    except Exception as exc:  # dkimpy logged this instead of raising it
        return DkimCheck(False, domain, selector, f"unusable key at {lookups.name}: {exc}")
    return DkimCheck(False, domain, selector, "signature does not match the signed headers")


def _partial_body(verifier: dkim.DKIM, sig: Mapping[bytes, bytes]) -> str | None:
    """A reason to refuse an ``l=`` signature that leaves part of the body unsigned."""
    if b"l" not in sig:
        return None
    try:
        policy = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        body_length = len(policy.canonicalize_body(verifier.body))
        signed = int(sig[b"l"])
    except Exception:  # a malformed c= or l= is reported by the verification itself
        return None
    if signed < body_length:
        return f"signature covers only {signed} of {body_length} body bytes (l= tag)"
    return None


def _validation_reason(text: str) -> str:
    """dkimpy's messages in plain words, without the base64 noise."""
    if text.startswith("body hash mismatch"):
        return "body hash mismatch"
    return text
