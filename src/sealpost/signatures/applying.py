"""Applying signatures: one PAdES signature per signer and document, committed compare-and-set
on the revision it signed; completion (document timestamps, the sealed audit trail, copies).
A signature is never produced without its timestamp: while the TSA is down it stays pending
and the worker applies it later."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy import Connection

from sealpost.access.model import Challenge, mask
from sealpost.access.service import AccessService
from sealpost.certificates.pades.appearance import SignerAppearance
from sealpost.certificates.pades.errors import SignatureUnavailable
from sealpost.certificates.pades.evidence import evidence_digest
from sealpost.certificates.pades.signing import finalize_document, sign_for_signer
from sealpost.errors import Conflict, SealpostError
from sealpost.ledger.timestamps import TimeStamper
from sealpost.logging import get_logger
from sealpost.pki.keys import SigningIdentity
from sealpost.signatures.model import SigningConfig
from sealpost.signatures.notices import SignerNotices
from sealpost.signatures.ports import Contents
from sealpost.signatures.repository import (
    COMPLETED,
    DECLINED_BY,
    DONE,
    IDENTIFIED,
    IN_PROGRESS,
    PENDING,
    SIGNED,
    Document,
    SignatureProcess,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    Moved,
    identified_party,
    load_process,
    process_record,
    sha256_hex,
    signature_field_name,
    signer_holder,
    turn,
    utc_now,
)
from sealpost.tenants.repository import TenantRepository

log = get_logger(__name__)


class SignatureApplier:
    """Produces what a process signs with the seal and the TSA: signatures, document
    timestamps and the audit trail; commits each compare-and-set."""

    def __init__(
        self,
        repo: SignatureRepository,
        access: AccessService,
        contents: Contents,
        notices: SignerNotices,
        tenants: TenantRepository,
        *,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        config: SigningConfig,
    ) -> None:
        self.repo = repo
        self.access = access
        self.contents = contents
        self.notices = notices
        self.tenants = tenants
        self.seal = seal
        self.timestamper = timestamper
        self.trust_roots = list(trust_roots)
        self.config = config

    def apply(self, process_id: str, signer_id: str) -> bool:
        """Apply a pending signature; False (kept pending) while the TSA is unreachable."""
        for _ in range(5):  # a parallel signer may move a document under us: sign again
            process = load_process(self.repo, process_id)
            signer = process.signer(signer_id)
            if signer is None or signer.status != PENDING or signer.pending_signature is None:
                return signer is not None and signer.status == SIGNED
            if process.status != IN_PROGRESS:  # cancelled or expired meanwhile: never apply
                return False
            intent = signer.pending_signature
            challenge = self.access.challenge(signer_holder(process, signer))
            signed_at = datetime.fromisoformat(intent["signed_at"])
            image = base64.b64decode(intent["image_png"]) if intent.get("image_png") else None
            outputs: list[tuple[Document, bytes, str]] = []
            try:
                for document in process.documents:
                    before = self.contents.get(document.current_sha256)
                    field = self._field_for(signer, document)
                    evidence = self._bound_evidence(process, signer, challenge, intent, document)
                    after = sign_for_signer(
                        before,
                        field=field,
                        appearance=SignerAppearance(
                            name=signer.name,
                            signed_at=signed_at,
                            image_png=image,
                            typed=intent.get("typed"),
                            identification=self._identification_line(signer, challenge),
                        ),
                        reason=("Approved" if signer.role == "approver" else "Signed")
                        + f" by {signer.name}",
                        evidence=evidence,
                        seal=self.seal,
                        timestamper=self.timestamper,
                        trust_roots=self.trust_roots,
                    )
                    outputs.append((document, after, sha256_hex(after)))
            except SignatureUnavailable as exc:
                log.warning("signing.tsa_unavailable", process_id=process.id, error=exc.message)
                return False
            except SealpostError as exc:  # not retryable: give the signer their turn back
                log.error("signing.signature_failed", process_id=process.id, error=exc.message)
                with self.repo.transaction() as conn:
                    self.repo.set_signer_in(
                        conn,
                        signer.id,
                        expect_status=(PENDING,),
                        status=intent.get("prior_status", IDENTIFIED),
                        pending_signature=None,
                    )
                raise
            if self._commit_signature(process, signer, challenge, intent, outputs):
                self.after_signature(process.id)
                return True
        raise Conflict("the documents kept changing while signing: try again")

    @staticmethod
    def _bound_evidence(
        process: SignatureProcess,
        signer: Signer,
        challenge: Challenge | None,
        intent: Mapping[str, Any],
        document: Document,
    ) -> dict[str, str]:
        """What the signature binds (a signed attribute holds its canonical SHA-256) and the
        DocumentSigned record keeps whole, so anyone can recompute the digest."""
        image = intent.get("image_png")
        return {
            "process_id": process.id,
            "signer_id": signer.id,
            "signer_name": signer.name,
            "signer_email": signer.email or "",
            "role": signer.role,
            "identification": signer.identification,
            "otp_communication_id": (challenge.communication_id if challenge else None) or "",
            "ip": intent.get("ip") or "",
            "user_agent": intent.get("user_agent") or "",
            "consent_sha256": intent["consent_sha256"],
            "document_sha256": document.current_sha256,
            "signature_image_sha256": sha256_hex(base64.b64decode(image)) if image else "",
            "signed_at": intent["signed_at"],
        }

    def _field_for(self, signer: Signer, document: Document) -> str:
        for f in signer.fields:
            if f["document"] == document.number:
                return signature_field_name(signer, signer.number)
        return f"Signer{signer.number + 1}Invisible"

    @staticmethod
    def _identification_line(signer: Signer, challenge: Challenge | None) -> str:
        if signer.identification == "email_otp" and challenge and challenge.sent_to:
            return f"Identified by email code ({mask(challenge.sent_to, challenge.channel)})"
        if signer.identification == "sms_otp" and challenge and challenge.sent_to:
            return f"Identified by SMS code ({mask(challenge.sent_to, challenge.channel)})"
        return "Identified by the sender (simple signature)"

    def _commit_signature(
        self,
        process: SignatureProcess,
        signer: Signer,
        challenge: Challenge | None,
        intent: Mapping[str, Any],
        outputs: Sequence[tuple[Document, bytes, str]],
    ) -> bool:
        now = utc_now()
        record = process_record(
            process,
            "DocumentSigned",
            now,
            recipient=identified_party(signer, signer.identification, challenge),
            details={
                "signer_id": signer.id,
                "role": signer.role,
                "signed_at": intent["signed_at"],
                "ip": intent.get("ip"),
                "user_agent": intent.get("user_agent"),
                "consent_sha256": intent["consent_sha256"],
                "signature": "drawn" if intent.get("image_png") else "typed",
                "documents": [
                    {
                        "name": d.name,
                        "sha256_before": d.current_sha256,
                        "sha256_after": sha,
                        "field": self._field_for(signer, d),
                        "bound_evidence": (
                            bound := self._bound_evidence(process, signer, challenge, intent, d)
                        ),
                        "bound_evidence_sha256": evidence_digest(bound).hex(),
                    }
                    for d, _, sha in outputs
                ],
            },
        )
        self.contents.put_large([data for _, data, _ in outputs])  # durable before the commit
        try:
            with self.repo.transaction() as conn:
                self._advance_in(conn, outputs, kind=signer.role, signer_id=signer.id, now=now)
                if not self.repo.set_process_in(conn, process.id, updated_at=now):
                    raise Moved  # the process ended meanwhile
                if not self.repo.set_signer_in(
                    conn,
                    signer.id,
                    expect_status=(PENDING,),
                    status=SIGNED,
                    signed_at=now,
                    pending_signature=None,
                ):
                    raise Moved
                self.repo.add_evidence_in(conn, [record])
        except Moved:  # rolled back: another signer (or worker) got there first
            return False
        return True

    def _advance_in(
        self,
        conn: Connection,
        outputs: Sequence[tuple[Document, bytes, str]],
        *,
        kind: str,
        signer_id: str | None,
        now: datetime,
    ) -> None:
        """Store each new revision and move its document to it, compare-and-set on the
        revision it was made from; raises :class:`Moved` (rolling all back) if one moved.
        Revisions too large for the database must already be blob files (``put_large``)."""
        for document, data, sha in outputs:
            self.contents.put_in(conn, [data])
            if not self.repo.advance_document_in(
                conn, document, new_sha256=sha, kind=kind, signer_id=signer_id, now=now
            ):
                raise Moved

    def after_signature(self, process_id: str) -> None:
        """Whose turn next: invite them, or finalise once everyone signed."""
        process = load_process(self.repo, process_id)
        if process.status != IN_PROGRESS:
            return
        if turn(process) is None:
            with self.repo.transaction() as conn:
                self.repo.set_process_in(conn, process.id, finalize_due=1, updated_at=utc_now())
            self.finalize(process.id)
        else:
            self.notices.notify_turn(process)

    def finalize(self, process_id: str) -> bool:
        """Every signer has signed: document timestamps (B-LTA), ProcessCompleted, the sealed
        audit trail, copies to cc.  False (retried by the worker) while the TSA is down."""
        process = load_process(self.repo, process_id)
        if process.status != IN_PROGRESS or not process.finalize_due:
            return process.status == COMPLETED
        outputs = []
        try:
            for document in process.documents:
                data = finalize_document(
                    self.contents.get(document.current_sha256),
                    timestamper=self.timestamper,
                    trust_roots=self.trust_roots,
                )
                outputs.append((document, data, sha256_hex(data)))
        except SignatureUnavailable as exc:
            log.warning("signing.finalize_waits", process_id=process.id, error=exc.message)
            return False
        now = utc_now()
        record = process_record(
            process,
            "ProcessCompleted",
            now,
            details={
                "documents": [
                    {"name": d.name, "sha256_original": d.original_sha256, "sha256_final": sha}
                    for d, _, sha in outputs
                ],
                "signers": [s.id for s in process.signers if s.status == SIGNED],
            },
        )
        self.contents.put_large([data for _, data, _ in outputs])
        try:
            with self.repo.transaction() as conn:
                self._advance_in(conn, outputs, kind="timestamp", signer_id=None, now=now)
                if not self.repo.set_process_in(
                    conn,
                    process.id,
                    status=COMPLETED,
                    ended_at=now,
                    finalize_due=0,
                    updated_at=now,
                ):
                    raise Moved
                self.repo.add_evidence_in(conn, [record])
        except Moved:  # another worker finalised it, or it was cancelled meanwhile
            return False
        completed = load_process(self.repo, process.id)
        try:
            audit = self.audit_pdf(completed)
            self.contents.put_large([audit])
            with self.repo.transaction() as conn:
                self.contents.put_in(conn, [audit])
                self.repo.set_process_in(
                    conn, process.id, expect_status=COMPLETED, audit_sha256=sha256_hex(audit)
                )
        except SealpostError as exc:  # served on demand later; the process is complete anyway
            log.warning("signing.audit_deferred", process_id=process.id, error=exc.message)
        self._send_copies(completed)
        return True

    def _send_copies(self, process: SignatureProcess) -> None:
        """cc (and every signer) get the signed documents, as a certified email."""
        attachments = [
            (
                d.name if d.name.lower().endswith(".pdf") else f"{d.name}.pdf",
                "application/pdf",
                self.contents.get(d.current_sha256),
            )
            for d in process.documents
        ]
        for signer in process.signers:
            if not signer.email or signer.status == DECLINED_BY:
                continue
            try:
                self.notices.mail(
                    process,
                    signer,
                    f"Signed: {process.title}",
                    f'Hello {signer.name},\n\n"{process.title}" has been signed by everyone. '
                    "The signed documents are attached; each signature can be checked in any "
                    "PDF reader.\n",
                    attachments=attachments,
                    purpose="copy",
                )
                if signer.role == "cc":
                    with self.repo.transaction() as conn:
                        self.repo.set_signer_in(conn, signer.id, status=DONE, notified_at=utc_now())
            except SealpostError as exc:
                log.warning("signing.copy_failed", process_id=process.id, error=exc.message)

    # -- the audit trail -----------------------------------------------------------------------

    def audit_pdf(self, process: SignatureProcess) -> bytes:
        """The sealed audit trail: stored once the process completed, else made now."""
        if process.audit_sha256:
            return self.contents.get(process.audit_sha256)
        from sealpost.certificates.seal import seal_pdf
        from sealpost.signatures.audit import render_audit_trail
        from sealpost.signatures.trail import audit_trail

        trail = audit_trail(
            process,
            tenant_name=self.tenants.get(process.tenant_id).name,
            ledger_origin=self.config.ledger_origin,
            repo=self.repo,
        )
        pdf = render_audit_trail(trail)
        return seal_pdf(
            pdf,
            seal=self.seal,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            reason=f"Audit trail of signature process {process.id}",
            location=self.config.hostname,
        )
