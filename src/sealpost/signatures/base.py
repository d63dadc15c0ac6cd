"""The common ground of a signature process's parts: reading a process, whose turn it is, and
notifying signers (certified emails with single-use links)."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sealpost.access import codes as otp
from sealpost.errors import Conflict, Locked, NotFound
from sealpost.signatures.repository import (
    CANCELLED,
    COMPLETED,
    DECLINED,
    EXPIRED,
    IN_PROGRESS,
    LINK,
    LOCKED,
    NOTIFIED,
    SIGNED,
    SIGNING_ROLES,
    WAITING,
    Process,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    process_record,
    signer_party,
    utc_now,
)

if TYPE_CHECKING:
    from sealpost.app import Sealpost
    from sealpost.tenants.repository import Tenant


class ProcessBase:
    """What every part needs: the store, reading a process, whose turn it is, notifying."""

    def __init__(self, sp: Sealpost) -> None:
        self.sp = sp
        self.repo = SignatureRepository(sp.engine)
        self.settings = sp.settings

    @functools.cached_property
    def _otp_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        der = self.sp.seal_identity.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return otp.derive_key(der)

    # -- reads ---------------------------------------------------------------------------------

    def _get(self, process_id: str, tenant_id: str | None = None) -> Process:
        found = self.repo.get(process_id, tenant_id)
        if found is None:
            raise NotFound(f"no signature process {process_id}")
        return found

    def get(self, tenant_id: str, process_id: str) -> Process:
        return self._get(process_id, tenant_id)

    # -- notifications -------------------------------------------------------------------------

    def _turn(self, process: Process) -> int | None:
        """The order number whose signers sign now (sequential); None when all have."""
        open_orders = [
            s.sign_order
            for s in process.signers
            if s.role in SIGNING_ROLES and s.status not in (SIGNED,)
        ]
        return min(open_orders) if open_orders else None

    def _notify_turn(self, process: Process, tenant: Tenant | None = None) -> None:
        if process.status != IN_PROGRESS:
            return
        turn = self._turn(process)
        for signer in process.signers:
            if signer.status != WAITING or signer.role == "cc":
                continue
            if process.signing_order == "sequential" and signer.sign_order != turn:
                continue
            self.send_link(process, signer, reminder=False)

    def _mail(
        self,
        process: Process,
        signer: Signer,
        subject: str,
        text: str,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        purpose: str = "invitation",
    ) -> str:
        from sealpost.communications.email.mime import build_message, new_message_id
        from sealpost.communications.email.submission import SubmissionRequest

        assert signer.email is not None
        tenant = self.sp.tenants.get(process.tenant_id)
        sender = self.settings.resolved_signing_mail_from
        raw = build_message(
            sender=sender,
            to=[signer.email],
            subject=subject,
            text=text,
            html=None,
            attachments=attachments,
            message_id=new_message_id(self.settings.hostname),
        )
        accepted = self.sp.submissions.accept(
            SubmissionRequest(
                tenant_id=process.tenant_id,
                via="api",
                mail_from=sender,
                recipients=(signer.email,),
                raw=raw,
                identification={"method": "signature-process", "tenant": tenant.name},
                details={
                    "signature_process_id": process.id,
                    "signer_id": signer.id,
                    "purpose": purpose,
                },
            )
        )
        return accepted.communication_ids[0]

    def new_link(
        self,
        process: Process,
        signer: Signer,
        now: datetime | None = None,
        *,
        unlock: bool = False,
        end_sessions: bool = False,
    ) -> tuple[str, datetime]:
        """A fresh single-use link (token, expiry) for ``signer``.  ``unlock`` (the tenant's
        API only: the tenant vouches for the person) gives a locked signer 5 new code
        attempts; ``end_sessions`` closes the signer's open pages (whoever held an older link
        loses it)."""
        now = now or utc_now()
        if process.status != IN_PROGRESS:
            raise Conflict(f"the process is {process.status}")
        if signer.role == "cc":
            raise Conflict("a cc gets the signed documents at the end, not a signing link")
        if signer.status == LOCKED and not unlock:
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        token = secrets.token_urlsafe(32)
        expires_at = min(
            process.expires_at, now + timedelta(hours=self.settings.signing_link_hours)
        )
        with self.repo.transaction() as conn:
            self.repo.add_link_in(
                conn, token=token, kind=LINK, signer_id=signer.id, now=now, expires_at=expires_at
            )
            if end_sessions:
                self.repo.end_sessions_in(conn, signer.id, now)
            if signer.status == LOCKED:  # unlock: the tenant vouches for a new try
                self.repo.set_signer_in(
                    conn,
                    signer.id,
                    expect_status=(LOCKED,),
                    status=NOTIFIED,
                    otp_attempts=0,
                    otp_hash=None,
                    otp_sends=0,
                )
        return token, expires_at

    def link_url(self, token: str) -> str:
        return f"{self.settings.resolved_public_url}/sign/{token}"

    def send_link(
        self, process: Process, signer: Signer, *, reminder: bool, end_sessions: bool = False
    ) -> None:
        """Email ``signer`` a fresh link (a certified email: the invitation has evidence)."""
        now = utc_now()
        if signer.status == WAITING:  # their turn: claim it, so two callers invite once
            with self.repo.transaction() as conn:
                if not self.repo.set_signer_in(
                    conn, signer.id, expect_status=(WAITING,), status=NOTIFIED
                ):
                    return
        token, expires_at = self.new_link(process, signer, now, end_sessions=end_sessions)
        tenant = self.sp.tenants.get(process.tenant_id)
        verb = {"approver": "approve", "viewer": "review"}.get(signer.role, "sign")
        subject = (
            f"{'Reminder: ' if reminder else ''}{tenant.name} asks you to {verb}: {process.title}"
        )
        lines = [
            f"Hello {signer.name},",
            "",
            f'{tenant.name} asks you to {verb} "{process.title}".',
        ]
        if process.message:
            lines += ["", process.message]
        lines += [
            "",
            f"Open the document: {self.link_url(token)}",
            "",
            f"This link works once and until {expires_at:%Y-%m-%d %H:%M} UTC. "
            "If it no longer works, open it anyway to get a new one by email.",
            "",
            "Sent by Sealpost for " + tenant.name + ". Every step of this signature is recorded "
            "as sealed evidence.",
        ]
        communication_id = self._mail(process, signer, subject, "\n".join(lines))
        next_reminder = None
        hours = process.reminder_hours
        first = signer.notified_at or now
        sent = signer.reminders_sent + (1 if reminder else 0)
        if sent < len(hours):
            next_reminder = first + timedelta(hours=hours[sent])
        record = process_record(
            process,
            "SignerNotified",
            now,
            recipient=signer_party(signer),
            details={
                "signer_id": signer.id,
                "role": signer.role,
                "channel": "email",
                "communication_id": communication_id,
                "reminder": reminder,
                "link_expires_at": expires_at.isoformat(),
            },
        )
        with self.repo.transaction() as conn:
            values: dict[str, Any] = {
                "next_reminder_at": next_reminder,
                "reminders_sent": sent,
            }
            if signer.notified_at is None:
                values["notified_at"] = now
            self.repo.set_signer_in(conn, signer.id, **values)
            self.repo.add_evidence_in(conn, [record])

    @staticmethod
    def ended_message(process: Process) -> str:
        return {
            COMPLETED: "This document has been signed by everyone.",
            DECLINED: "This signature request was declined.",
            EXPIRED: "This signature request has expired.",
            CANCELLED: "This signature request was cancelled by the sender.",
        }.get(process.status, "This signature request is closed.")
