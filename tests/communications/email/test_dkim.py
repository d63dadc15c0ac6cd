"""DKIM signing and verification through dkimpy, with keys from an injectable lookup."""

from __future__ import annotations

import base64
from typing import Any

import dkim  # type: ignore[import-untyped]
import dns.exception
import dns.name
import dns.rdata
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sealpost.communications.email.dkim import (
    DkimError,
    KeyLookup,
    KeyLookupFailed,
    dns_key_lookup,
    generate_dkim_key,
    pinned_key_lookup,
    sign_message,
    verify_message,
)
from sealpost.communications.email.mime import prepend_headers

MESSAGE = (
    b"From: Billing <billing@sender.example>\r\n"
    b"To: alice@recipient.example\r\n"
    b"Subject: Invoice 2026-118\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <inv-118@sender.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Dear Alice,\r\n"
    b"\r\n"
    b"please pay 118 EUR by 30 November.\r\n"
)


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return generate_dkim_key()


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, str]:
    return generate_dkim_key()


@pytest.fixture
def lookup(key: tuple[bytes, str]) -> KeyLookup:
    return pinned_key_lookup({("s1", "sender.example"): key[1]})


def signed(raw: bytes, key: tuple[bytes, str], domain: str = "sender.example") -> bytes:
    return sign_message(raw, domain=domain, selector="s1", private_key_pem=key[0]) + raw


def test_generated_key_is_pkcs1_rsa_2048_and_matches_its_record(key: tuple[bytes, str]) -> None:
    pem, record = key
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert record.startswith("v=DKIM1; k=rsa; p=")
    spki = base64.b64decode(record.split("p=", 1)[1])
    public = serialization.load_der_public_key(spki)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_sign_then_verify(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    header = sign_message(MESSAGE, domain="sender.example", selector="s1", private_key_pem=key[0])
    assert header.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert header.endswith(b"\r\n")
    assert b"d=sender.example;" in header and b"s=s1;" in header
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    tags = dkim.util.parse_tag_value(header.split(b":", 1)[1])
    signed_names = [h.strip() for h in tags[b"h"].split(b":")]
    # every present header of the list, over-signed once
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"):
        assert signed_names.count(name) == 2
    assert b"cc" not in signed_names and b"received" not in signed_names

    result = verify_message(header + MESSAGE, key_lookup=lookup)
    assert result.valid, result.reason
    assert (result.domain, result.selector) == ("sender.example", "s1")
    assert result.reason == "signature verified"
    assert result.valid_domains == frozenset({"sender.example"})


def test_trace_headers_added_after_signing_do_not_break_it(
    key: tuple[bytes, str], lookup: KeyLookup
) -> None:
    message = prepend_headers(signed(MESSAGE, key), [("Received", "by mx.example; now")])
    assert verify_message(message, key_lookup=lookup).valid


def test_altered_body_is_invalid(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    message = signed(MESSAGE, key).replace(b"118 EUR", b"811 EUR")
    result = verify_message(message, key_lookup=lookup)
    assert not result.valid
    assert result.reason == "body hash mismatch"
    assert result.domain == "sender.example"


def test_altered_signed_header_is_invalid(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    message = signed(MESSAGE, key).replace(
        b"Subject: Invoice 2026-118", b"Subject: Invoice 2026-119"
    )
    result = verify_message(message, key_lookup=lookup)
    assert not result.valid
    assert result.reason == "signature does not match the signed headers"


def test_added_second_subject_is_invalid(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    message = signed(MESSAGE, key).replace(b"\r\n\r\n", b"\r\nSubject: Pay elsewhere\r\n\r\n", 1)
    assert not verify_message(message, key_lookup=lookup).valid


def test_unknown_selector_has_no_key(key: tuple[bytes, str]) -> None:
    message = signed(MESSAGE, key)
    result = verify_message(
        message, key_lookup=pinned_key_lookup({("s2", "sender.example"): key[1]})
    )
    assert not result.valid
    assert result.reason == "no key published for s1._domainkey.sender.example"
    assert not result.temporary


def test_unusable_published_key(key: tuple[bytes, str]) -> None:
    broken = pinned_key_lookup({("s1", "sender.example"): "v=DKIM1; k=rsa; p=AAAA"})
    result = verify_message(signed(MESSAGE, key), key_lookup=broken)
    assert not result.valid
    assert result.reason.startswith("unusable key at s1._domainkey.sender.example")


def test_wrong_key_is_invalid(key: tuple[bytes, str], other_key: tuple[bytes, str]) -> None:
    lookup = pinned_key_lookup({("s1", "sender.example"): other_key[1]})
    result = verify_message(signed(MESSAGE, key), key_lookup=lookup)
    assert not result.valid
    assert result.reason == "signature does not match the signed headers"


def test_message_without_signature_is_invalid(lookup: KeyLookup) -> None:
    result = verify_message(MESSAGE, key_lookup=lookup)
    assert not result.valid
    assert (result.domain, result.selector, result.checks) == (None, None, ())
    assert result.reason == "no DKIM-Signature header"


def test_signature_of_another_domain_is_reported_with_that_domain(
    key: tuple[bytes, str], other_key: tuple[bytes, str]
) -> None:
    message = signed(MESSAGE, other_key, domain="esp.example")
    lookup = pinned_key_lookup({("s1", "esp.example"): other_key[1]})
    result = verify_message(message, key_lookup=lookup)
    assert result.valid
    assert result.domain == "esp.example"  # the caller checks it belongs to the tenant


def test_every_signature_is_checked(key: tuple[bytes, str], other_key: tuple[bytes, str]) -> None:
    once = signed(MESSAGE, key, domain="sender.example")
    twice = (
        sign_message(once, domain="esp.example", selector="s1", private_key_pem=other_key[0]) + once
    )
    keys = {("s1", "sender.example"): key[1], ("s1", "esp.example"): other_key[1]}
    result = verify_message(twice, key_lookup=pinned_key_lookup(keys))
    assert result.valid and result.domain == "esp.example"
    assert result.valid_domains == frozenset({"sender.example", "esp.example"})
    # the topmost signature fails, the next one still makes the message valid
    only_tenant = pinned_key_lookup({("s1", "sender.example"): key[1]})
    result = verify_message(twice, key_lookup=only_tenant)
    assert result.valid and result.domain == "sender.example"
    assert [c.valid for c in result.checks] == [False, True]
    assert result.checks[0].reason == "no key published for s1._domainkey.esp.example"


def test_temporary_lookup_failure_is_reported_as_such(key: tuple[bytes, str]) -> None:
    def failing(selector: str, domain: str) -> str | None:
        raise KeyLookupFailed("DNS lookup of s1._domainkey.sender.example. failed: timeout")

    result = verify_message(signed(MESSAGE, key), key_lookup=failing)
    assert not result.valid and result.temporary
    assert "timeout" in result.reason


@pytest.mark.parametrize("sign_as", ["crlf", "lf"])
@pytest.mark.parametrize("verify_as", ["crlf", "lf"])
def test_line_endings(
    key: tuple[bytes, str], lookup: KeyLookup, sign_as: str, verify_as: str
) -> None:
    """Relaxed canonicalization and dkimpy's parser make LF and CRLF equivalent."""
    raw = MESSAGE if sign_as == "crlf" else MESSAGE.replace(b"\r\n", b"\n")
    header = sign_message(raw, domain="sender.example", selector="s1", private_key_pem=key[0])
    newline = b"\r\n" if sign_as == "crlf" else b"\n"
    assert header.endswith(newline) and (b"\r" not in header) == (sign_as == "lf")
    message = header + raw
    if verify_as == "crlf":
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        message = message.replace(b"\r\n", b"\n")
    assert verify_message(message, key_lookup=lookup).valid


def test_partial_body_signature_is_refused(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    header = dkim.sign(
        MESSAGE,
        b"s1",
        b"sender.example",
        key[0],
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"subject"],
        length=True,
    )
    assert verify_message(header + MESSAGE, key_lookup=lookup).valid
    appended = header + MESSAGE + b"P.S. pay to another account instead.\r\n"
    result = verify_message(appended, key_lookup=lookup)
    assert not result.valid
    assert "l= tag" in result.reason


def test_rsa_sha1_is_refused(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    header = dkim.sign(MESSAGE, b"s1", b"sender.example", key[0], signature_algorithm=b"rsa-sha1")
    assert dkim.verify(header + MESSAGE, dnsfunc=lambda name, timeout=5: key[1].encode())
    result = verify_message(header + MESSAGE, key_lookup=lookup)
    assert not result.valid
    assert result.reason == "rsa-sha1 is not accepted (RFC 8301 §3.1)"


def test_pkcs8_and_crlf_pem_keys_are_accepted(key: tuple[bytes, str], lookup: KeyLookup) -> None:
    private = serialization.load_pem_private_key(key[0], password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for pem in (pkcs8, pkcs8.replace(b"\n", b"\r\n"), key[0].decode("ascii")):
        header = sign_message(MESSAGE, domain="sender.example", selector="s1", private_key_pem=pem)
        assert verify_message(header + MESSAGE, key_lookup=lookup).valid


def test_idna_domain_is_signed_in_a_label_form(key: tuple[bytes, str]) -> None:
    header = sign_message(MESSAGE, domain="Bücher.Example", selector="s1", private_key_pem=key[0])
    assert b"d=xn--bcher-kva.example;" in header
    lookup = pinned_key_lookup({("s1", "xn--bcher-kva.example"): key[1]})
    assert verify_message(header + MESSAGE, key_lookup=lookup).domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("raw", "kwargs"),
    [
        (MESSAGE, {"private_key_pem": b"not a key"}),
        (MESSAGE, {"selector": "bad selector"}),
        (MESSAGE, {"domain": "not a domain"}),
        (b"To: x@y.example\r\n\r\nno From header\r\n", {}),
        (MESSAGE, {"headers": [b"subject"]}),  # From must be signed (RFC 6376 §5.4)
        (b"\x00garbage line\r\n\r\n", {}),
        (b" leading blank\r\nFrom: a@b.example\r\n\r\n", {}),
    ],
)
def test_sign_refuses(key: tuple[bytes, str], raw: bytes, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"domain": "sender.example", "selector": "s1", "private_key_pem": key[0]}
    args.update(kwargs)
    with pytest.raises(DkimError):
        sign_message(raw, **args)


@pytest.mark.parametrize(
    "raw",
    [
        b"DKIM-Signature: garbage\r\nFrom: a@b.example\r\n\r\nx\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=s1; h=from; bh=AAAA; b=AAAA\r\n"
        b"From: a@b.example\r\n\r\nx\r\n",
        b"DKIM-Signature: v=1; a=rsa-md5; d=x.example; s=s1; h=from; bh=AAAA; b=AAAA\r\n\r\n",
        b"\x00\xff not a message",
        b" leading blank\r\nDKIM-Signature: v=1\r\n\r\n",
        b"",
    ],
)
def test_verify_never_raises(raw: bytes, lookup: KeyLookup) -> None:
    result = verify_message(raw, key_lookup=lookup)
    assert not result.valid and result.reason


# -- key lookups -----------------------------------------------------------------------------


class FakeResolver(dns.resolver.Resolver):
    """A resolver that answers from a table, or raises what it is told to."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__(configure=False)
        self.answers = answers
        self.asked: list[tuple[str, Any]] = []

    def resolve(self, qname: Any, rdtype: Any = "A", *args: Any, **kwargs: Any) -> Any:
        self.asked.append((str(qname), kwargs.get("lifetime")))
        answer = self.answers.get(str(qname))
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise dns.resolver.NXDOMAIN()
        return [dns.rdata.from_text("IN", "TXT", text) for text in answer]


def test_dns_key_lookup_joins_strings_and_prefers_the_dkim_record() -> None:
    resolver = FakeResolver(
        {
            "s1._domainkey.sender.example.": [
                '"google-site-verification=abc"',
                '"v=DKIM1; k=rsa; " "p=MIIBIjAN"',
            ]
        }
    )
    lookup = dns_key_lookup(resolver, timeout=2.5)
    assert lookup("s1", "sender.example") == "v=DKIM1; k=rsa; p=MIIBIjAN"
    assert resolver.asked == [("s1._domainkey.sender.example.", 2.5)]


def test_dns_key_lookup_none_and_failures() -> None:
    resolver = FakeResolver(
        {
            "slow._domainkey.sender.example.": dns.exception.Timeout(),
            "down._domainkey.sender.example.": dns.resolver.NoNameservers(),
            "empty._domainkey.sender.example.": dns.resolver.NoAnswer(),
        }
    )
    lookup = dns_key_lookup(resolver)
    assert lookup("s1", "sender.example") is None  # NXDOMAIN
    assert lookup("empty", "sender.example") is None
    assert lookup("bad..selector", "sender.example") is None
    with pytest.raises(KeyLookupFailed):
        lookup("slow", "sender.example")
    with pytest.raises(KeyLookupFailed):
        lookup("down", "sender.example")


def test_dns_key_lookup_plugs_into_verify(key: tuple[bytes, str]) -> None:
    record = key[1]
    chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    resolver = FakeResolver({"s1._domainkey.sender.example.": [chunks]})
    result = verify_message(signed(MESSAGE, key), key_lookup=dns_key_lookup(resolver))
    assert result.valid, result.reason


def test_pinned_keys_come_first_then_the_fallback() -> None:
    asked: list[tuple[str, str]] = []

    def fallback(selector: str, domain: str) -> str | None:
        asked.append((selector, domain))
        return "from-dns"

    lookup = pinned_key_lookup({("S1", "Sender.Example"): "pinned"}, fallback)
    assert lookup("s1", "sender.example.") == "pinned"
    assert lookup("s2", "sender.example") == "from-dns"
    assert asked == [("s2", "sender.example")]
    assert pinned_key_lookup({})("s1", "sender.example") is None
