"""Addresses: splitting, IDNA, VERP round trips and certify-domain unwrapping."""

from __future__ import annotations

import pytest

from sealpost.communications.email.addresses import (
    AddressError,
    domain_of,
    idna_domain,
    is_certify_address,
    split_address,
    unwrap_certify_address,
)
from sealpost.errors import InvalidInput

CID = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
CERTIFY = "certify.example.net"


def test_split_address() -> None:
    assert split_address("alice@example.com") == ("alice", "example.com")
    assert split_address(" <Alice.B@Example.COM> ") == ("Alice.B", "Example.COM")
    assert split_address('"a@b"@example.com') == ('"a@b"', "example.com")


@pytest.mark.parametrize("bad", ["", "alice", "@example.com", "alice@", "<>"])
def test_split_address_refuses_non_addresses(bad: str) -> None:
    with pytest.raises(AddressError) as info:
        split_address(bad)
    assert isinstance(info.value, InvalidInput)
    assert info.value.address == bad


def test_domain_of_is_lower_case_idna() -> None:
    assert domain_of("alice@Example.COM") == "example.com"
    assert domain_of("zoë@Bücher.Example") == "xn--bcher-kva.example"
    assert domain_of("x@straße.de") == "xn--strae-oqa.de"  # IDNA 2008, not "strasse"
    assert domain_of("x@example.com.") == "example.com"


@pytest.mark.parametrize(
    "bad", ["x@exa mple.com", "x@-example.com", "x@a..b", "x@[192.0.2.1]", "x@a_b.example"]
)
def test_domain_of_refuses_non_host_names(bad: str) -> None:
    with pytest.raises(AddressError):
        domain_of(bad)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("alice@example.com.certify.example.net", "alice@example.com"),
        ("Alice.B@Example.COM.CERTIFY.example.net", "Alice.B@example.com"),
        ("<bob@mail.example.co.uk.certify.example.net>", "bob@mail.example.co.uk"),
        ("zoë@bücher.de.certify.example.net", "zoë@xn--bcher-kva.de"),
    ],
)
def test_unwrap_certify_address(address: str, expected: str) -> None:
    assert unwrap_certify_address(address, CERTIFY) == expected
    assert is_certify_address(address, CERTIFY)


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",  # not rewritten
        "certify@certify.example.net",  # the Bcc form is not a rewritten address
        "alice@certify.example.net",
        "alice@localhost.certify.example.net",  # one label: not a public host name
        "alice@10.0.0.1.certify.example.net",  # numeric top-level label
        "alice@example.com.certify.example.net.evil.example",
        "alice@example.comcertify.example.net",
        "alice@exa_mple.com.certify.example.net",
        "@example.com.certify.example.net",
        "a b@example.com.certify.example.net",
        "x" * 65 + "@example.com.certify.example.net",
        "garbage",
    ],
)
def test_unwrap_certify_address_refuses(address: str) -> None:
    assert unwrap_certify_address(address, CERTIFY) is None
    assert not is_certify_address(address, CERTIFY)


def test_idna_domain() -> None:
    assert idna_domain("Example.COM") == "example.com"
    assert idna_domain("例子.测试") == "xn--fsqu00a.xn--0zwm56d"
    with pytest.raises(AddressError):
        idna_domain("a" * 64 + ".example")
    with pytest.raises(AddressError):
        idna_domain("")
