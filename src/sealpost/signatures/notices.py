"""Notifying signers: single-use links, invitations and reminders, the emails of a process.

Every email of a process is a certified email (sent through the :class:`Mailer` port), so
the invitation, each reminder and each code has its own evidence besides the SignerNotified
record written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sealpost.access.service import AccessService
from sealpost.errors import Conflict, Locked
from sealpost.signatures.model import SigningConfig
from sealpost.signatures.ports import Mailer, OutgoingMail
from sealpost.signatures.repository import (
    IDENTIFIED,
    IN_PROGRESS,
    LOCKED,
    NOTIFIED,
    WAITING,
    SignatureProcess,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    process_record,
    signer_holder,
    signer_party,
    turn,
    utc_now,
)
from sealpost.tenants.repository import TenantRepository


class SignerNotices:
    """Links and the emails that carry them; mails anything else a process sends."""

    def __init__(
        self,
        repo: SignatureRepository,
        access: AccessService,
        tenants: TenantRepository,
        mailer: Mailer,
        config: SigningConfig,
    ) -> None:
        self.repo = repo
        self.access = access
        self.tenants = tenants
        self.mailer = mailer
        self.config = config

    def notify_turn(self, process: SignatureProcess) -> None:
        """Invite the signers whose turn it is (all of them, in a parallel process)."""
        if process.status != IN_PROGRESS:
            return
        current = turn(process)
        for signer in process.signers:
            if signer.status != WAITING or signer.role == "cc":
                continue
            if process.signing_order == "sequential" and signer.sign_order != current:
                continue
            self.send_link(process, signer, reminder=False)

    def mail(
        self,
        process: SignatureProcess,
        signer: Signer,
        subject: str,
        text: str,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        purpose: str = "invitation",
        access_secret: bool = False,
    ) -> str:
        """Send ``signer`` a certified email about ``process``; returns its communication id."""
        assert signer.email is not None
        tenant = self.tenants.get(process.tenant_id)
        return self.mailer.send(
            OutgoingMail(
                tenant_id=process.tenant_id,
                sender=self.config.mail_from,
                to=signer.email,
                subject=subject,
                text=text,
                attachments=tuple(attachments),
                identification={"method": "signature-process", "tenant": tenant.name},
                details={
                    "signature_process_id": process.id,
                    "signer_id": signer.id,
                    "purpose": purpose,
                },
                access_secret=access_secret,
            )
        )

    def new_link(
        self,
        process: SignatureProcess,
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
        holder = signer_holder(process, signer)
        expires_at = min(process.expires_at, now + timedelta(hours=self.config.link_hours))
        with self.repo.transaction() as conn:
            token = self.access.issue_link_in(conn, holder, now=now, expires_at=expires_at)
            if end_sessions:
                self.access.end_sessions_in(conn, holder, now)
                if signer.status == IDENTIFIED:
                    # The code was entered in a page now closed: whoever opens the new link
                    # (the tenant's own ``POST .../link`` too) must enter a code again, or the
                    # tenant could sign in the place of a signer who identified and left.
                    self.repo.set_signer_in(
                        conn, signer.id, expect_status=(IDENTIFIED,), status=NOTIFIED
                    )
            if signer.status == LOCKED:  # unlock: the tenant vouches for a new try
                self.repo.set_signer_in(conn, signer.id, expect_status=(LOCKED,), status=NOTIFIED)
                self.access.reset_codes_in(conn, holder)
        return token, expires_at

    def link_url(self, token: str) -> str:
        return f"{self.config.public_url}/sign/{token}"

    def send_link(
        self,
        process: SignatureProcess,
        signer: Signer,
        *,
        reminder: bool,
        end_sessions: bool = False,
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
        tenant = self.tenants.get(process.tenant_id)
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
        communication_id = self.mail(process, signer, subject, "\n".join(lines), access_secret=True)
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
