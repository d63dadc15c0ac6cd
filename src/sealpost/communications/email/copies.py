"""The copy delivered to a recipient's server, and how it differs from the message received.

Evidence names two digests.  ``content.sha256`` (SubmissionAcceptance) is of the message
exactly as received: it is stored, and embedded in certificates as ``original.eml``.
``delivered_sha256`` (each delivery attempt) is of the exact bytes the recipient's server
received in DATA.  The copy differs from the original in these ways only, each stated in the
attempt's evidence (``delivered_changes``):

1. its line ends are CRLF: RFC 5321 §2.3.8 allows no other on the wire, so a bare LF or CR is
   transmitted as CRLF, as every SMTP client does (``line_ends_converted``), and its last line
   ends with CRLF, which DATA needs before its final dot (RFC 5321 §4.1.1.4) even when the
   message given to the API ended without one (``final_crlf_added``);
2. its Bcc and Resent-Bcc fields are removed, so that no recipient learns of the blind
   copies (RFC 5322 §3.6.3 and §3.6.6; the first of the ways §3.6.3 describes); the stored
   original keeps them (``bcc_fields_removed``);
3. fields are added on top: the trace field Received (RFC 5321 §4.4),
   X-Sealpost-Communication, a Message-ID when the message had none (RFC 5321 §6.3), and the
   DKIM-Signature of the tenant's domain (RFC 6376) (``fields_added``).

Nothing else changes, so anyone holding both can derive the one from the other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sealpost.communications.email.mime import (
    has_bare_line_ends,
    header_section,
    prepend_headers,
    to_crlf,
)

__all__ = ["DeliveryCopy", "acceptance_note", "delivery_copy", "without_bcc"]

BCC_FIELDS = frozenset({b"bcc", b"resent-bcc"})
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")  # obs-optional: WSP before ":"


@dataclass(frozen=True)
class DeliveryCopy:
    """The bytes transmitted to one recipient's server, and what was changed to make them."""

    data: bytes
    fields_added: tuple[str, ...]
    """Names of the fields added on top, top first."""
    bcc_fields_removed: int
    line_ends_converted: bool
    final_crlf_added: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def evidence(self, received_sha256: str) -> dict[str, Any]:
        """The delivery attempt's details: both digests, and how the copy differs."""
        changes: dict[str, Any] = {"fields_added": list(self.fields_added)}
        if self.bcc_fields_removed:
            changes["bcc_fields_removed"] = self.bcc_fields_removed
        if self.line_ends_converted:
            changes["line_ends_converted"] = True
        if self.final_crlf_added:
            changes["final_crlf_added"] = True
        return {
            "received_sha256": received_sha256,
            "delivered_sha256": self.sha256,
            "delivered_size": len(self.data),
            "delivered_changes": changes,
        }


def without_bcc(crlf: bytes) -> tuple[bytes, int]:
    """``crlf`` (CRLF line ends) without its Bcc and Resent-Bcc fields; how many were removed.

    Only the header section is read.  A field runs on over its continuation lines (those that
    start with white space, RFC 5322 §2.2.3), and a name with white space before its colon
    (the obsolete syntax of §4.5) counts too, since readers accept it.
    """
    head = header_section(crlf)
    kept: list[bytes] = []
    removed, dropping = 0, False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above
            if not dropping:
                kept.append(line)
            continue
        match = _FIELD_NAME.match(line)
        dropping = match is not None and match.group(1).lower() in BCC_FIELDS
        if dropping:
            removed += 1
        else:
            kept.append(line)
    if not removed:
        return crlf, 0
    return b"".join(kept) + crlf[len(head) :], removed


def delivery_copy(
    raw: bytes,
    fields: Sequence[tuple[str, str]],
    sign: Callable[[bytes], bytes | None] | None = None,
) -> DeliveryCopy:
    """The copy of ``raw`` to transmit: CRLF, no Bcc, ``fields`` on top, then ``sign``'s
    signature field (DKIM) over all of that when it gives one."""
    crlf = to_crlf(raw)
    copy, removed = without_bcc(crlf)
    data = prepend_headers(copy, fields)
    added = [name for name, _ in fields]
    signature = sign(data) if sign is not None else None
    if signature:
        data = signature + data
        added.insert(0, signature.split(b":", 1)[0].decode("ascii"))
    return DeliveryCopy(data, tuple(added), removed, has_bare_line_ends(raw), _unterminated(raw))


def _unterminated(raw: bytes) -> bool:
    """True when the last line of ``raw`` has no line end at all."""
    return not raw.endswith((b"\n", b"\r"))


def acceptance_note(raw: bytes) -> dict[str, Any] | None:
    """For the SubmissionAcceptance record: how every delivered copy will differ in content
    (Bcc removed, line ends converted) and which digest is of which form; None when only
    fields are added on top (the delivery records say which)."""
    bcc = without_bcc(to_crlf(header_section(raw)))[1]
    converted = has_bare_line_ends(raw)
    unterminated = _unterminated(raw)
    if not bcc and not converted and not unterminated:
        return None
    note: dict[str, Any] = {}
    received = "the message as received"
    delivered = "the copy transmitted to the recipient's server, Sealpost's fields on top"
    if bcc:
        note["bcc_fields_removed"] = bcc
        received += ", Bcc field included"
        delivered += ", without the Bcc field"
    if converted or unterminated:
        received += ", line ends as received"
        delivered += ", CRLF line ends"
    if converted:
        note["line_ends_converted"] = True
    if unterminated:
        note["final_crlf_added"] = True
    note["digests"] = (
        f"content.sha256 is of {received}; each delivery record's delivered_sha256 is of "
        f"{delivered}"
    )
    return note
