"""Signed VERP return paths: unguessable, and each names exactly one communication."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from sealpost.communications.email.verp import BounceAddresses

PATHS = BounceAddresses(b"k" * 32, "Bounces.Sealpost.Example")
CID = "5f0c2b1e-8a4d-4c1b-9a53-0c9f3f4e2d10"


def test_a_return_path_names_its_communication_behind_a_tag() -> None:
    address = PATHS.address(CID)
    local, _, domain = address.partition("@")
    assert domain == "bounces.sealpost.example" and local.startswith(f"bounces+{CID}.")
    assert PATHS.communication(address) == CID
    assert PATHS.communication(address.upper()) == CID  # MTAs may change the case


def test_a_guessed_or_altered_tag_is_refused() -> None:
    address = PATHS.address(CID)
    other = str(uuid.uuid4())
    forged = address.replace(CID, other)  # right shape, tag of another id
    assert PATHS.communication(forged) is None
    assert PATHS.communication(f"bounces+{CID}@bounces.sealpost.example") is None
    assert BounceAddresses(b"x" * 32, "bounces.sealpost.example").communication(address) is None
    assert PATHS.communication(address.replace("bounces.sealpost", "other")) is None
    assert PATHS.communication("not an address") is None
    assert PATHS.is_plain("Bounces@bounces.sealpost.example")
    assert not PATHS.is_plain(address)


@given(st.uuids())
def test_round_trip(cid: uuid.UUID) -> None:
    assert PATHS.communication(PATHS.address(str(cid))) == str(cid)
