"""What the signing page does: spend a link for a session, identify the signer (a code by
email or by SMS),
record the viewing, sign or decline.  Every method checks the process is open and that it is
the signer's turn.  Links, sessions, codes and the lockout are the access kit's
(``sealpost.access``): this module decides when they may be used and records the evidence."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

from sealpost.access.model import EMAIL, MAX_ATTEMPTS, SMS, VALID_SECONDS, Challenge, Grant, mask
from sealpost.access.repository import token_digest
from sealpost.access.service import LOCKED_MESSAGE, AccessService
from sealpost.certificates.pades.appearance import check_signature_image
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
from sealpost.signatures.ports import OutgoingSms, SmsSender
from sealpost.signatures.repository import (
    DECLINED,
    DECLINED_BY,
    DONE,
    IDENTIFIED,
    IN_PROGRESS,
    LOCKED,
    NOTIFIED,
    PENDING,
    SIGNED,
    SIGNING_ROLES,
    WAITING,
    SignatureProcess,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    SUBJECT_TYPE,
    ended_message,
    identified_party,
    load_process,
    process_record,
    signer_holder,
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
        access: AccessService,
        notices: SignerNotices,
        applier: SignatureApplier,
        *,
        config: SigningConfig,
        sms: SmsSender | None = None,
    ) -> None:
        self.repo = repo
        self.sms = sms
        self.access = access
        self.notices = notices
        self.applier = applier
        self.config = config

    def _opened(self, found: Grant) -> tuple[SignatureProcess, Signer]:
        process = load_process(self.repo, found.holder.subject_id, found.holder.tenant_id)
        signer = process.signer(found.holder.party_id)
        assert signer is not None
        return process, signer

    def check_link(
        self, token: str, now: datetime | None = None
    ) -> tuple[SignatureProcess, Signer]:
        """The process and signer a link opens, if it may still be opened; raises
        :class:`LinkUnusable` saying why not.  Does not spend it."""
        _found, process, signer = self._check_link(token, now or utc_now())
        return process, signer

    def _check_link(self, token: str, now: datetime) -> tuple[Grant, SignatureProcess, Signer]:
        found = self.access.link(token, SUBJECT_TYPE)
        if found is None:
            raise LinkUnusable("This link is not valid.", kind="link_invalid", renewable=False)
        process, signer = self._opened(found)
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
        return found, process, signer

    def open_link(self, token: str, visitor: Visitor) -> tuple[str, SignatureProcess, Signer]:
        """Spend a single-use link for a signing session (its token lives only in the page,
        never in a URL).  The page does this from script, not on the GET of the link: mail
        scanners that fetch every link of a message must not spend it."""
        now = utc_now()
        found, process, signer = self._check_link(token, now)
        with self.repo.transaction() as conn:
            session = self.access.open_session_in(
                conn,
                token,
                found,
                now=now,
                expires_at=min(
                    process.expires_at,
                    now + timedelta(minutes=self.config.session_minutes),
                ),
                ip=visitor.ip,
                user_agent=visitor.user_agent,
            )
        if session is None:
            raise LinkUnusable(
                "This link was already used.",
                kind="link_used",
                renewable=True,
                process_id=process.id,
                signer_id=signer.id,
            )
        return session, process, signer

    def renew_link(self, token: str) -> None:
        """The signer of a used or expired link asks for a new one: it goes to their email
        address only, so holding an old link gives nothing."""
        found = self.access.link(token, SUBJECT_TYPE)
        if found is None:
            raise NotFound("this link is not valid")
        process, signer = self._opened(found)
        if process.status != IN_PROGRESS or signer.status in (SIGNED, DECLINED_BY, DONE):
            raise Conflict("there is nothing left to sign with this link")
        if signer.status == LOCKED:  # only the sender can give new code attempts
            raise Locked(LOCKED_MESSAGE)
        now = utc_now()
        recent = self.access.links_since(found.holder, now - timedelta(hours=1))
        if recent >= RENEWALS_PER_HOUR:
            raise TooManyRequests(
                "Several links were sent to you in the last hour: use the latest one, or "
                "try again later."
            )
        self.notices.send_link(process, signer, reminder=False, end_sessions=True)

    def session(self, token: str | None) -> tuple[SignatureProcess, Signer]:
        if not token:
            raise Unauthorized("no signing session")
        found = self.access.session(token, SUBJECT_TYPE, utc_now())
        if found is None:
            raise Unauthorized("this signing session has expired: open your link again")
        return self._opened(found)

    def challenge(self, process: SignatureProcess, signer: Signer) -> Challenge | None:
        """The signer's code state (where the last code went, attempts left)."""
        return self.access.challenge(signer_holder(process, signer))

    def page_status(self, process: SignatureProcess, signer: Signer) -> str:
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

    def _require_open(self, process: SignatureProcess, signer: Signer) -> None:
        if process.status != IN_PROGRESS:
            raise Conflict(ended_message(process))
        if signer.status == LOCKED:
            raise Locked(LOCKED_MESSAGE)
        if signer.status in (SIGNED, DECLINED_BY, DONE, PENDING):
            raise Conflict("You have already answered this request.")
        if self._before_turn(process, signer):
            raise Conflict("It is not your turn yet: you will get an email when it is.")

    def _before_turn(self, process: SignatureProcess, signer: Signer) -> bool:
        """A signer of a sequential process whose order has not come yet."""
        if process.signing_order != "sequential" or signer.role not in SIGNING_ROLES:
            return False
        current = turn(process)
        return current is not None and signer.sign_order > current

    def send_otp(
        self, process: SignatureProcess, signer: Signer, visitor: Visitor, *, session: str
    ) -> tuple[str, datetime]:
        """Send the signer a code by the channel the sender chose: a certified email
        (``email_otp``) or a certified SMS (``sms_otp``); where it went is evidence either way.
        Good only in the page ``session`` that asked for it.  Returns where it went,
        masked, and when the code expires."""
        self._require_open(process, signer)
        if signer.identification == "email_otp":
            assert signer.email is not None
            channel, to = EMAIL, signer.email
        elif signer.identification == "sms_otp":
            if self.sms is None or not signer.phone:  # the operator was removed since
                raise Conflict(
                    "Codes by SMS are not available on this Sealpost now: ask the sender."
                )
            channel, to = SMS, signer.phone
        else:
            raise Conflict("no code is needed for this signer")
        minutes = VALID_SECONDS // 60

        def deliver(code: str) -> str:
            if channel == SMS:
                assert self.sms is not None
                # No title, no sender's name: an SMS is read on a lock screen.
                return self.sms.send(
                    OutgoingSms(
                        tenant_id=process.tenant_id,
                        to=to,
                        text=f"Your signing code: {code}. Valid {minutes} min. Never share it.",
                        details={
                            "signature_process_id": process.id,
                            "signer_id": signer.id,
                            "purpose": "otp",
                        },
                        access_secret=True,  # the sender must not read the signer's code
                    )
                )
            return self.notices.mail(
                process,
                signer,
                "Your signing code",  # never the code: the subject is listed to the sender
                f'Hello {signer.name},\n\nYour code to sign "{process.title}" is {code}.\n'
                f"It is valid for {minutes} minutes. Never share it: nobody from "
                "the sender or from Sealpost will ask you for it.\n",
                purpose="otp",
                access_secret=True,
            )

        sent = self.access.send_code(
            signer_holder(process, signer),
            channel=channel,
            to=to,
            deliver=deliver,
            now=utc_now(),
            session=token_digest(session),
            ip=visitor.ip,
        )
        assert sent.sent_to is not None and sent.expires_at is not None
        return mask(sent.sent_to, sent.channel), sent.expires_at

    def verify_otp(
        self,
        process: SignatureProcess,
        signer: Signer,
        code: str,
        visitor: Visitor,
        *,
        session: str,
    ) -> int:
        """Returns the attempts left (the signer is identified when no exception is raised).
        The check, the signer's new state and its evidence commit together."""
        self._require_open(process, signer)
        holder = signer_holder(process, signer)
        if signer.status == IDENTIFIED:
            found = self.access.challenge(holder)
            return found.attempts_left if found else MAX_ATTEMPTS
        now = utc_now()
        with self.repo.transaction() as conn:  # every check counts, right or wrong, atomically
            check = self.access.check_code_in(
                conn, holder, code, now, ip=visitor.ip, session=token_digest(session)
            )
            if check.matched:
                record = process_record(
                    process,
                    "SignerIdentified",
                    now,
                    recipient=identified_party(signer, signer.identification, check.challenge),
                    details={
                        "signer_id": signer.id,
                        "attempts": check.attempts,
                        "otp_channel": check.challenge.channel,
                        "sent_to_masked": mask(
                            check.challenge.sent_to or "", check.challenge.channel
                        ),
                        **visitor_details(visitor),
                    },
                )
                if not self.repo.set_signer_in(
                    conn,
                    signer.id,
                    expect_status=(NOTIFIED,),
                    status=IDENTIFIED,
                    identified_at=now,
                ):
                    raise Conflict("the signer's state changed: reload the page")
                self.repo.add_evidence_in(conn, [record])
            elif check.locked:
                record = process_record(
                    process,
                    "SignerIdentificationFailed",
                    now,
                    recipient=signer_party(signer),
                    reasons=[Reason("otp_locked", f"{check.attempts} wrong codes")],
                    details={
                        "signer_id": signer.id,
                        "method": signer.identification,
                        **visitor_details(visitor),
                    },
                )
                if self.repo.set_signer_in(
                    conn, signer.id, expect_status=(NOTIFIED,), status=LOCKED
                ):
                    self.repo.add_evidence_in(conn, [record])
        if check.matched:
            return check.attempts_left
        if check.locked:
            raise Locked(LOCKED_MESSAGE)
        left = check.attempts_left
        raise WrongCode(f"Wrong code: {left} attempt{'s' if left > 1 else ''} left.", left)

    def viewed(self, process: SignatureProcess, signer: Signer, visitor: Visitor) -> None:
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

    def sign(
        self, process: SignatureProcess, signer: Signer, given: SignInput, visitor: Visitor
    ) -> str:
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

    def decline(
        self, process: SignatureProcess, signer: Signer, reason: str, visitor: Visitor
    ) -> None:
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
