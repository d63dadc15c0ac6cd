"""What the signing page does: spend a link for a session, identify the signer (email code),
record the viewing, sign or decline.  Every method checks the process is open and that it is
the signer's turn."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sealpost.access import codes as otp
from sealpost.certificates.pades import check_signature_image
from sealpost.errors import (
    Conflict,
    InvalidInput,
    Locked,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from sealpost.ledger.records import Reason
from sealpost.signatures.applying import SignatureApplier
from sealpost.signatures.model import (
    MAX_IMAGE_BYTES,
    LinkUnusable,
    SigningConfig,
    SignInput,
    Visitor,
    WrongCode,
)
from sealpost.signatures.notices import SignerNotices
from sealpost.signatures.repository import (
    DECLINED,
    DECLINED_BY,
    DONE,
    IDENTIFIED,
    IN_PROGRESS,
    LINK,
    LOCKED,
    NOTIFIED,
    PENDING,
    SESSION,
    SIGNED,
    SIGNING_ROLES,
    WAITING,
    Process,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    ended_message,
    identified_party,
    load_process,
    process_record,
    signer_party,
    turn,
    utc_now,
    visitor_details,
)

RENEWALS_PER_HOUR = 3
"""New links a signer may ask for themselves in an hour (each is a certified email)."""


class SigningPage:
    """The steps of one signer on the page; each checks the process is open and their turn."""

    def __init__(
        self,
        repo: SignatureRepository,
        notices: SignerNotices,
        applier: SignatureApplier,
        *,
        otp_key: bytes,
        config: SigningConfig,
    ) -> None:
        self.repo = repo
        self.notices = notices
        self.applier = applier
        self._otp_key = otp_key
        """HMAC key of the stored codes (derived from the seal key: the same on every replica)."""
        self.config = config

    def check_link(self, token: str, now: datetime | None = None) -> tuple[Process, Signer]:
        """The process and signer a link opens, if it may still be opened; raises
        :class:`LinkUnusable` saying why not.  Does not spend it."""
        now = now or utc_now()
        found = self.repo.link(token, LINK)
        if found is None:
            raise LinkUnusable("This link is not valid.", kind="link_invalid", renewable=False)
        process = load_process(self.repo, found.process_id)
        signer = process.signer(found.signer_id)
        assert signer is not None
        ids = {"process_id": process.id, "signer_id": signer.id}
        if process.status != IN_PROGRESS:
            raise LinkUnusable(ended_message(process), kind="closed", renewable=False, **ids)
        if signer.status in (SIGNED, DECLINED_BY, DONE):
            raise LinkUnusable(
                "You have already answered this request.",
                kind="answered",
                renewable=False,
                **ids,
            )
        if found.used_at is not None:
            raise LinkUnusable(
                "This link was already used: links work once, so that nobody else can reuse yours.",
                kind="link_used",
                renewable=True,
                **ids,
            )
        if found.expires_at <= now:
            raise LinkUnusable("This link has expired.", kind="link_expired", renewable=True, **ids)
        return process, signer

    def open_link(self, token: str, visitor: Visitor) -> tuple[str, Process, Signer]:
        """Spend a single-use link for a signing session (its token lives only in the page,
        never in a URL).  The page does this from script, not on the GET of the link: mail
        scanners that fetch every link of a message must not spend it."""
        now = utc_now()
        process, signer = self.check_link(token, now)
        session = secrets.token_urlsafe(32)
        with self.repo.transaction() as conn:
            if not self.repo.use_link_in(conn, token, now):
                raise LinkUnusable(
                    "This link was already used.",
                    kind="link_used",
                    renewable=True,
                    process_id=process.id,
                    signer_id=signer.id,
                )
            self.repo.add_link_in(
                conn,
                token=session,
                kind=SESSION,
                signer_id=signer.id,
                now=now,
                expires_at=min(
                    process.expires_at,
                    now + timedelta(minutes=self.config.session_minutes),
                ),
                ip=visitor.ip,
                user_agent=visitor.user_agent,
            )
        return session, process, signer

    def renew_link(self, token: str) -> None:
        """The signer of a used or expired link asks for a new one: it goes to their email
        address only, so holding an old link gives nothing."""
        found = self.repo.link(token, LINK)
        if found is None:
            raise NotFound("this link is not valid")
        process = load_process(self.repo, found.process_id)
        signer = process.signer(found.signer_id)
        assert signer is not None
        if process.status != IN_PROGRESS or signer.status in (SIGNED, DECLINED_BY, DONE):
            raise Conflict("there is nothing left to sign with this link")
        if signer.status == LOCKED:  # only the sender can give new code attempts
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        now = utc_now()
        with self.repo.transaction() as conn:
            recent = self.repo.links_since_in(conn, signer.id, now - timedelta(hours=1))
        if recent >= RENEWALS_PER_HOUR:
            raise TooManyRequests(
                "Several links were sent to you in the last hour: use the latest one, or "
                "try again later."
            )
        self.notices.send_link(process, signer, reminder=False, end_sessions=True)

    def session(self, token: str | None) -> tuple[Process, Signer]:
        if not token:
            raise Unauthorized("no signing session")
        found = self.repo.link(token, SESSION)
        if found is None or found.expires_at <= utc_now():
            raise Unauthorized("this signing session has expired: open your link again")
        process = load_process(self.repo, found.process_id)
        signer = process.signer(found.signer_id)
        assert signer is not None
        return process, signer

    def page_status(self, process: Process, signer: Signer) -> str:
        if process.status != IN_PROGRESS:
            if signer.status == SIGNED:
                return "signed"
            return "declined" if signer.status == DECLINED_BY else "closed"
        if signer.status == LOCKED:
            return "locked"
        if signer.status == PENDING:
            return "signing_pending"
        if signer.status in (SIGNED, DONE):
            return "signed"
        if signer.status == DECLINED_BY:
            return "declined"
        if signer.status == WAITING or self._before_turn(process, signer):
            return "waiting"
        if signer.identification == "none" or signer.status == IDENTIFIED:
            return "ready"
        return "identify"

    def _require_open(self, process: Process, signer: Signer) -> None:
        if process.status != IN_PROGRESS:
            raise Conflict(ended_message(process))
        if signer.status == LOCKED:
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        if signer.status in (SIGNED, DECLINED_BY, DONE, PENDING):
            raise Conflict("You have already answered this request.")
        if self._before_turn(process, signer):
            raise Conflict("It is not your turn yet: you will get an email when it is.")

    def _before_turn(self, process: Process, signer: Signer) -> bool:
        """A signer of a sequential process whose order has not come yet."""
        if process.signing_order != "sequential" or signer.role not in SIGNING_ROLES:
            return False
        current = turn(process)
        return current is not None and signer.sign_order > current

    def send_otp(self, process: Process, signer: Signer, visitor: Visitor) -> tuple[str, datetime]:
        self._require_open(process, signer)
        if signer.identification != "email_otp":
            raise Conflict("no code is needed for this signer")
        assert signer.email is not None
        with self.repo.transaction() as conn:  # counted before sending: parallel clicks too
            if not self.repo.take_otp_send_in(conn, signer.id, otp.MAX_SENDS):
                raise TooManyRequests(
                    f"{otp.MAX_SENDS} codes were already sent: use the latest, or ask the "
                    "sender for a new link"
                )
        code = otp.new_code()
        now = utc_now()
        expires_at = now + timedelta(seconds=otp.VALID_SECONDS)
        communication_id = self.notices.mail(
            process,
            signer,
            f"Your signing code: {code}",
            f'Hello {signer.name},\n\nYour code to sign "{process.title}" is {code}.\n'
            f"It is valid for {otp.VALID_SECONDS // 60} minutes. Never share it: nobody from "
            "the sender or from Sealpost will ask you for it.\n",
            purpose="otp",
        )
        with self.repo.transaction() as conn:
            self.repo.set_signer_in(
                conn,
                signer.id,
                otp_hash=otp.digest(self._otp_key, signer.id, code),
                otp_expires_at=expires_at,
                otp_sent_to=signer.email,
                otp_communication_id=communication_id,
            )
        return otp.mask_email(signer.email), expires_at

    def verify_otp(self, process: Process, signer: Signer, code: str, visitor: Visitor) -> int:
        """Returns the attempts left (the signer is identified when no exception is raised)."""
        self._require_open(process, signer)
        if signer.status == IDENTIFIED:
            return otp.MAX_ATTEMPTS - signer.otp_attempts
        now = utc_now()
        if signer.otp_hash is None or signer.otp_expires_at is None:
            raise InvalidInput("Ask for a code first.")
        if signer.otp_expires_at <= now:
            raise InvalidInput("This code has expired: ask for a new one.")
        with self.repo.transaction() as conn:  # every check counts, right or wrong, atomically
            attempts = self.repo.take_otp_attempt_in(conn, signer.id, otp.MAX_ATTEMPTS)
        if attempts is None:
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        if otp.matches(self._otp_key, signer.id, code, signer.otp_hash):
            record = process_record(
                process,
                "SignerIdentified",
                now,
                recipient=identified_party(signer, "email_otp"),
                details={"signer_id": signer.id, "attempts": attempts, **visitor_details(visitor)},
            )
            with self.repo.transaction() as conn:
                if not self.repo.set_signer_in(
                    conn,
                    signer.id,
                    expect_status=(NOTIFIED,),
                    status=IDENTIFIED,
                    identified_at=now,
                    otp_hash=None,
                ):
                    raise Conflict("the signer's state changed: reload the page")
                self.repo.add_evidence_in(conn, [record])
            return otp.MAX_ATTEMPTS - attempts
        if attempts >= otp.MAX_ATTEMPTS:
            record = process_record(
                process,
                "SignerIdentificationFailed",
                now,
                recipient=signer_party(signer),
                reasons=[Reason("otp_locked", f"{attempts} wrong codes")],
                details={"signer_id": signer.id, "method": "email_otp", **visitor_details(visitor)},
            )
            with self.repo.transaction() as conn:
                if self.repo.set_signer_in(
                    conn, signer.id, expect_status=(NOTIFIED,), status=LOCKED, otp_hash=None
                ):
                    self.repo.add_evidence_in(conn, [record])
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        left = otp.MAX_ATTEMPTS - attempts
        raise WrongCode(f"Wrong code: {left} attempt{'s' if left > 1 else ''} left.", left)

    def viewed(self, process: Process, signer: Signer, visitor: Visitor) -> None:
        """DocumentViewed, once per signer (the first time the pages were shown)."""
        if signer.viewed_at is not None or process.status != IN_PROGRESS:
            return
        now = utc_now()
        record = process_record(
            process,
            "DocumentViewed",
            now,
            recipient=signer_party(signer),
            details={
                "signer_id": signer.id,
                "documents": [
                    {"name": d.name, "sha256": d.current_sha256} for d in process.documents
                ],
                **visitor_details(visitor),
            },
        )
        with self.repo.transaction() as conn:
            values: dict[str, Any] = {"viewed_at": now}
            if signer.role == "viewer":
                values["status"] = DONE
            if self.repo.mark_viewed_in(conn, signer.id, **values):  # once, however many tabs
                self.repo.add_evidence_in(conn, [record])

    # -- signing -------------------------------------------------------------------------------

    def sign(self, process: Process, signer: Signer, given: SignInput, visitor: Visitor) -> str:
        """Apply the signer's signature to every document: "signed", or "signing_pending"
        when the TSA is unreachable (kept, applied by the worker when it is back)."""
        self._require_open(process, signer)
        if signer.role not in SIGNING_ROLES:
            raise Conflict(f"a {signer.role} does not sign")
        if signer.identification != "none" and signer.status != IDENTIFIED:
            raise Conflict("Enter the code we sent you first.")
        if not given.consent:
            raise InvalidInput("Tick the consent box to sign.")
        if given.image_png is not None:
            if len(given.image_png) > MAX_IMAGE_BYTES:
                raise InvalidInput("the drawn signature is too large")
            check_signature_image(given.image_png)
        typed = (given.typed or "").strip() or None
        if given.image_png is None and typed is None:
            if signer.role == "approver":
                typed = signer.name
            else:
                raise InvalidInput("Draw or type your signature.")
        now = utc_now()
        intent = {
            "signed_at": now.isoformat(),
            "image_png": base64.b64encode(given.image_png).decode() if given.image_png else None,
            "typed": typed,
            "consent_sha256": process.consent_sha256,
            "prior_status": signer.status,
            **visitor_details(visitor),
        }
        with self.repo.transaction() as conn:
            if not self.repo.set_signer_in(
                conn,
                signer.id,
                expect_status=(NOTIFIED, IDENTIFIED),
                status=PENDING,
                pending_signature=json.dumps(intent),
                next_reminder_at=None,
            ):
                raise Conflict("the signer's state changed: reload the page")
        if self.applier.apply(process.id, signer.id):
            return "signed"
        now_process = load_process(self.repo, process.id)
        if now_process.status != IN_PROGRESS:  # ended (cancelled, expired) meanwhile
            raise Conflict(ended_message(now_process))
        return "signing_pending"

    # -- ending --------------------------------------------------------------------------------

    def decline(self, process: Process, signer: Signer, reason: str, visitor: Visitor) -> None:
        """Ends the process for everyone: only a signer or approver, identified as for
        signing, may do it (not whoever holds a forwarded link)."""
        self._require_open(process, signer)
        if signer.role not in SIGNING_ROLES:
            raise Conflict(f"a {signer.role} cannot decline: only signers and approvers can")
        if signer.identification != "none" and signer.status != IDENTIFIED:
            raise Conflict("Enter the code we sent you first.")
        reason = reason.strip()
        if not reason:
            raise InvalidInput("Say why you decline.")
        now = utc_now()
        record = process_record(
            process,
            "ProcessDeclined",
            now,
            recipient=signer_party(signer),
            reasons=[Reason("declined", reason[:2000])],
            details={"signer_id": signer.id, **visitor_details(visitor)},
        )
        with self.repo.transaction() as conn:
            if not self.repo.set_process_in(
                conn,
                process.id,
                status=DECLINED,
                ended_at=now,
                ended_reason=reason[:2000],
                updated_at=now,
            ):
                raise Conflict(ended_message(process))
            self.repo.set_signer_in(conn, signer.id, status=DECLINED_BY)
            self.repo.add_evidence_in(conn, [record])
