"""Signed VERP return paths: ``bounces+<communication id>.<tag>@<bounce domain>``.

VERP (variable envelope return path) makes any bounce name the communication it is about.
The tag, an HMAC of the id under a server secret, makes the address unguessable: without it
anyone who learnt a communication id could send a "bounce" for it.  (The recipient's server
still sees the address: a late bounce after delivery is checked further by ``inbound``.)
"""

from __future__ import annotations

import hashlib
import hmac
import re

from sealpost.communications.email.addresses import AddressError, idna_domain, split_address

_TAG = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([0-9a-f]{16})$"
)


class BounceAddresses:
    def __init__(self, secret: bytes, domain: str, prefix: str = "bounces") -> None:
        self.secret = secret
        self.domain = idna_domain(domain)
        self.prefix = prefix

    def _mac(self, communication_id: str) -> str:
        return hmac.new(self.secret, communication_id.encode(), hashlib.sha256).hexdigest()[:16]

    def address(self, communication_id: str) -> str:
        cid = communication_id.lower()
        return f"{self.prefix}+{cid}.{self._mac(cid)}@{self.domain}"

    def communication(self, address: str) -> str | None:
        """The communication id of a genuine return path, else None."""
        try:
            local, domain = split_address(address)
            if idna_domain(domain) != self.domain:
                return None
        except AddressError:
            return None
        prefix, plus, tag = local.partition("+")
        found = _TAG.match(tag.lower()) if plus and prefix.lower() == self.prefix else None
        if found is None or not hmac.compare_digest(found.group(2), self._mac(found.group(1))):
            return None
        return found.group(1)

    def is_plain(self, address: str) -> bool:
        """The bare ``bounces@<domain>``: accepted, matched by Message-ID and recipient."""
        try:
            local, domain = split_address(address)
            return local.lower() == self.prefix and idna_domain(domain) == self.domain
        except AddressError:
            return False


def derive_secret(seal_key_der: bytes) -> bytes:
    """A bounce secret every replica derives alike from the seal key it already has."""
    return hashlib.sha256(b"sealpost-verp\0" + seal_key_der).digest()
