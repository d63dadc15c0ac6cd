"""What the evidence says about each copy delivered: its digest, and how it differs.

The message Sealpost received and the copy a recipient's server received are not byte for
byte the same (CRLF line ends, Bcc removed, trace and DKIM fields on top: see
``sealpost.communications.email.copies``), so a recipient matching what they got needs both
digests.  Everything here is read from the details of the delivery records themselves
(``delivered_sha256``, ``delivered_size``, ``received_sha256``, ``delivered_changes``), so the
certificate's words never state more than its sealed evidence does; the verifier checks that
the manifest's copies are the records' (:func:`sealpost.certificates.contents.check_delivered`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sealpost.certificates.model import CertificateEvent

DELIVERY_EVENTS = ("RelayToNonERDS", "ContentConsignment", "RelayAcceptance")
"""Events whose record states a copy the next hop accepted: ETSI EN 319 522-3 RelayToNonERDS
(group F: the mail server is not a registered delivery service); ContentConsignment and
RelayAcceptance in records sealed under catalogue 1, which keep their bytes."""


@dataclass(frozen=True)
class DeliveredCopy:
    """One accepted copy, as the record of its delivery states it."""

    n: int
    """The event's number in the certificate (1-based)."""
    event: CertificateEvent
    sha256: str
    size: int | None
    received_sha256: str | None
    """The received message's digest as that record names it (absent from older records)."""
    changes: Mapping[str, Any] | None
    """``delivered_changes`` of the record; None when the record does not state them."""

    @property
    def remote_host(self) -> str | None:
        remote = self.event.details.get("remote")
        host = remote.get("host") if isinstance(remote, Mapping) else None
        return host if isinstance(host, str) else None


def delivered_copies(events: Sequence[CertificateEvent]) -> list[DeliveredCopy]:
    """The accepted copies among ``events``, in order; only records that name a digest."""
    out = []
    for n, event in enumerate(events, start=1):
        details = event.details
        digest = details.get("delivered_sha256")
        if event.event not in DELIVERY_EVENTS or not isinstance(digest, str):
            continue
        size = details.get("delivered_size")
        received = details.get("received_sha256")
        changes = details.get("delivered_changes")
        out.append(
            DeliveredCopy(
                n=n,
                event=event,
                sha256=digest,
                size=size if isinstance(size, int) else None,
                received_sha256=received if isinstance(received, str) else None,
                changes=changes if isinstance(changes, Mapping) else None,
            )
        )
    return out


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def changes_in_words(changes: Mapping[str, Any]) -> list[str]:
    """Each change the record states, as a clause; nothing it does not state."""
    out = []
    added = [str(name) for name in changes.get("fields_added", []) if isinstance(name, str)]
    if added:
        noun = "field" if len(added) == 1 else "fields"
        out.append(f"Sealpost added the header {noun} {_names(added)} at the top")
    removed = changes.get("bcc_fields_removed")
    if isinstance(removed, int) and removed > 0:
        fields = "one Bcc field" if removed == 1 else f"{removed} Bcc fields"
        out.append(
            f"it removed {fields} (the message received keeps them), so that no recipient "
            "sees the blind-copy addresses (RFC 5322 §3.6.3)"
        )
    if changes.get("line_ends_converted") is True:
        out.append(
            "it converted bare LF or CR line ends to CRLF, the only line end SMTP transmits "
            "(RFC 5321 §2.3.8)"
        )
    if changes.get("final_crlf_added") is True:
        out.append(
            "it ended the last line with CRLF, which the message received lacked and SMTP "
            "needs (RFC 5321 §4.1.1.4)"
        )
    tracked = changes.get("tracked_sha256")
    if isinstance(tracked, str):
        out.append(
            "open and click tracking was on, so the copy was made from the tracked copy "
            f"(SHA-256 {tracked}, stated in the acceptance record, which says what tracking "
            "changed in its HTML part; see Non-essential tracking)"
        )
    return out


def manifest_entry(copy: DeliveredCopy) -> dict[str, Any]:
    """The copy in ``manifest.json`` (``message.delivered[]``)."""
    return {
        "n": copy.n,
        "record_id": copy.event.record_id,
        "event": copy.event.event,
        "remote_host": copy.remote_host,
        "sha256": copy.sha256,
        "size": copy.size,
    }
