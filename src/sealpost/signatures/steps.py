"""Small pieces every part of a signature process uses: reading a process, whose turn it is,
the evidence record of a step, the signer as a party of it, the clock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sealpost.access.model import SMS, Challenge, Holder, mask
from sealpost.errors import NotFound
from sealpost.ledger.records import EvidenceRecord, Party, Subject, new_record
from sealpost.signatures.model import (
    SignerRequest,
    Visitor,
)
from sealpost.signatures.repository import (
    CANCELLED,
    COMPLETED,
    DECLINED,
    EXPIRED,
    SIGNED,
    SIGNING_ROLES,
    SignatureProcess,
    SignatureRepository,
    Signer,
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_process(
    repo: SignatureRepository, process_id: str, tenant_id: str | None = None
) -> SignatureProcess:
    """The process (of ``tenant_id`` when given), or ``NotFound``."""
    found = repo.get(process_id, tenant_id)
    if found is None:
        raise NotFound(f"no signature process {process_id}")
    return found


def turn(process: SignatureProcess) -> int | None:
    """The order number whose signers sign now (sequential); None when all have."""
    open_orders = [
        s.sign_order for s in process.signers if s.role in SIGNING_ROLES and s.status != SIGNED
    ]
    return min(open_orders) if open_orders else None


def ended_message(process: SignatureProcess) -> str:
    """What the page says about a process that is over."""
    return {
        COMPLETED: "This document has been signed by everyone.",
        DECLINED: "This signature request was declined.",
        EXPIRED: "This signature request has expired.",
        CANCELLED: "This signature request was cancelled by the sender.",
    }.get(process.status, "This signature request is closed.")


SUBJECT_TYPE = "signature_process"
"""The subject type of a process, in evidence records and in the access kit."""


def process_subject(process_id: str) -> Subject:
    return Subject(SUBJECT_TYPE, process_id)


def signer_holder(process: SignatureProcess, signer: Signer) -> Holder:
    """The signer as the access kit knows them: links, page sessions and codes are theirs."""
    return Holder(process.tenant_id, SUBJECT_TYPE, process.id, signer.id)


def signer_party(signer: Signer) -> Party:
    return Party(signer.email or signer.phone or signer.name, display_name=signer.name)


def process_record(
    process: SignatureProcess, event: str, now: datetime, **fields: Any
) -> EvidenceRecord:
    """An evidence record about ``process`` (its subject), at ``now``."""
    return new_record(
        tenant_id=process.tenant_id,
        event=event,
        subject=process_subject(process.id),
        event_time=now,
        **fields,
    )


def identified_party(signer: Signer, method: str, challenge: Challenge | None) -> Party:
    """The signer as identified: the method, the channel the code went by (``otp_channel``),
    where it went (in full and as the page showed it), and the certified message that carried
    it — a certified email's communication id, or a certified SMS's id (``sms_id``)."""
    identification: dict[str, Any] = {
        "method": method,
        "sent_to": challenge.sent_to if challenge else None,
    }
    if challenge is not None and challenge.channel == SMS:
        identification.update(
            otp_channel=SMS,
            sent_to_masked=mask(challenge.sent_to or "", SMS),
            sms_id=challenge.communication_id,
        )
    else:
        identification["communication_id"] = challenge.communication_id if challenge else None
        if challenge is not None and challenge.channel:
            identification["otp_channel"] = challenge.channel
    return Party(
        signer.email or signer.name, display_name=signer.name, identification=identification
    )


def visitor_details(visitor: Visitor | None) -> dict[str, Any]:
    if visitor is None:
        return {}
    return {"ip": visitor.ip, "user_agent": visitor.user_agent}


def signature_field_name(signer: Signer | SignerRequest, number: int) -> str:
    return f"Signer{number + 1}"


class Moved(Exception):
    """Rolls a transaction back: what it started from changed."""
