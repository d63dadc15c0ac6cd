"""The audit trail of a signature process, built from its evidence records and revisions
(``signing.audit`` draws it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealpost.signatures.audit import (
    AuditDocument,
    AuditEntry,
    AuditRevision,
    AuditSigner,
    AuditTrail,
)
from sealpost.signatures.repository import COMPLETED, SignatureProcess, SignatureRepository


def audit_trail(
    process: SignatureProcess, *, tenant_name: str, ledger_origin: str, repo: SignatureRepository
) -> AuditTrail:
    """The audit trail of ``process``: its evidence records, in order, and each document's
    revisions (hash before and after each signature)."""
    names = {s.id: s.name for s in process.signers}
    entries = []
    checked: list[Any] = []
    for entry in repo.timeline(process.tenant_id, process.id):
        record = entry.record
        details = record.get("details", {})
        if entry.event == "ProcessCreated":
            checked = [d.get("active_content") for d in details.get("documents", [])]
        recipient = record.get("recipient") or {}
        identification = recipient.get("identification") or {}
        actor = names.get(details.get("signer_id", ""), tenant_name)
        entries.append(
            AuditEntry(
                time=entry.event_time,
                event=entry.event,
                actor=actor,
                ip=details.get("ip"),
                user_agent=details.get("user_agent"),
                identification=identification.get("method"),
                details=_describe(entry.event, details, record),
                record_id=entry.record_id,
            )
        )
    documents = []
    for d in process.documents:
        revisions = tuple(
            AuditRevision(
                signer=names.get(
                    r.signer_id or "",
                    "Sealpost" if r.kind != "prepared" else "Sealpost (fields)",
                ),
                time=r.created_at,
                sha256_before=r.sha256_before,
                sha256_after=r.sha256_after,
            )
            for r in repo.revisions(d.id)
        )
        documents.append(
            AuditDocument(
                name=d.name,
                pages=len(d.page_sizes),
                sha256_original=d.original_sha256,
                sha256_final=d.current_sha256 if process.status == COMPLETED else None,
                revisions=revisions,
                active_content=active_content_text(
                    checked[d.number] if d.number < len(checked) else None
                ),
            )
        )
    return AuditTrail(
        process_id=process.id,
        tenant=tenant_name,
        title=process.title,
        status=process.status,
        created_at=process.created_at,
        completed_at=process.ended_at if process.status == COMPLETED else None,
        consent_text=process.consent_text,
        consent_sha256=process.consent_sha256,
        ledger_origin=ledger_origin,
        signers=tuple(
            AuditSigner(
                name=s.name,
                email=s.email,
                phone=s.phone,
                role=s.role,
                order=s.sign_order,
                identification=s.identification,
                status=s.status,
                signed_at=s.signed_at,
            )
            for s in process.signers
        ),
        documents=tuple(documents),
        entries=tuple(entries),
    )


def active_content_text(checked: Any) -> str | None:
    """What the ProcessCreated record says of a document's active content, in words; None
    when it says nothing (a process created before the check existed)."""
    if not isinstance(checked, Mapping):
        return None
    findings = [str(f.get("text")) for f in checked.get("findings", []) if isinstance(f, Mapping)]
    if not findings:
        return "no active content found"
    accepted = (
        "accepted because the sender allows active content"
        if checked.get("allow_active_content")
        else "accepted"
    )
    return f"found and {accepted}: " + "; ".join(findings)


def _describe(event: str, details: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """One line of the audit trail for a record."""
    reasons = "; ".join(r.get("text", "") for r in record.get("reasons", []))
    if event == "ProcessCreated":
        created = f"Created: {details.get('title')} ({len(details.get('signers', []))} signers)"
        documents = [d for d in details.get("documents", []) if isinstance(d, Mapping)]
        if not any("active_content" in d for d in documents):
            return created
        found = [
            str(d.get("name"))
            for d in documents
            if isinstance(d.get("active_content"), Mapping) and d["active_content"].get("findings")
        ]
        if found:
            return f"{created}; active content found and allowed in {', '.join(found)}"
        return f"{created}; documents checked, no active content found"
    if event == "SignerNotified":
        kind = "reminder" if details.get("reminder") else "invitation"
        return f"Email {kind} sent (certified communication {details.get('communication_id')})"
    if event == "SignerIdentified":
        # What a code proves, and no more: control of the mailbox it went to.
        to = (record.get("recipient") or {}).get("address")
        where = f"sent to {to} " if to else "sent by email "
        return f"A one-time code {where}was entered: control of that mailbox"
    if event == "DocumentViewed":
        return "Opened the documents"
    if event == "DocumentSigned":
        docs = ", ".join(
            f"{d.get('name')}: {str(d.get('sha256_before'))[:16]}... -> "
            f"{str(d.get('sha256_after'))[:16]}..."
            for d in details.get("documents", [])
        )
        consent = str(details.get("consent_sha256"))[:16]
        return f"Signed ({details.get('signature')}); consent {consent}...; {docs}"
    if event == "ProcessCompleted":
        return "Completed; document timestamps added"
    return reasons or event
