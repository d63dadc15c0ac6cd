"""Which hop a delivery record says accepted the message, across both event catalogues.

A direct email leaves Sealpost for a plain mail server, which is not a registered delivery
service: since catalogue 2 its ``250`` is ETSI EN 319 522-3 group F, ``RelayToNonERDS``, and
``details.remote.kind`` says whether that server was the recipient domain's own (``mx`` or a
configured ``route``) or an intermediary (``smarthost``).  Records sealed under catalogue 1
named the same facts ``ContentConsignment`` and ``RelayAcceptance``; they keep their bytes,
so every reader asks here instead of comparing names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DELIVERED, RELAYED = "delivered", "relayed"

ACCEPTANCE_EVENTS = ("RelayToNonERDS", "ContentConsignment", "RelayAcceptance")
"""Event names whose record states that the next hop accepted the message (250 after DATA);
the last two only in catalogue-1 records."""

TEMPORARY_FAILURE_EVENTS = ("RelayToNonERDSFailure", "ContentConsignmentFailure")
"""A deferred attempt (4xx, no connection): retried; the second only in catalogue-1 records."""


def accepted_by(event: str, details: Mapping[str, Any], version: int) -> str | None:
    """``"delivered"`` (the recipient's server took it), ``"relayed"`` (a smarthost did), or
    None when the record is not an acceptance.

    ``version`` is the record's: ContentConsignment and RelayAcceptance meant a mail server's
    250 only in catalogue 1; in catalogue 2 they keep the standard's meaning (content made
    available by, or relayed between, registered delivery services) and are not read here.
    """
    if version == 1 and event == "ContentConsignment":
        return DELIVERED
    if version == 1 and event == "RelayAcceptance":
        return RELAYED
    if event == "RelayToNonERDS":
        remote = details.get("remote")
        kind = remote.get("kind") if isinstance(remote, Mapping) else None
        return RELAYED if kind == "smarthost" else DELIVERED
    return None
