"""Signature processes, from creation to the sealed audit trail.

A process holds PDFs and signers.  Its life, each step an evidence record (and so an event):

    ProcessCreated → SignerNotified (a certified email with a single-use link)
      → DocumentViewed → SignerIdentified (email OTP) → DocumentSigned (one PAdES signature
      per document, in its own incremental update) → ... → ProcessCompleted (B-LTA document
      timestamps, the sealed audit trail, copies to cc)
    or ProcessDeclined / ProcessExpired / ProcessCancelled.

The slow work (PAdES signatures, timestamps) runs outside database transactions; what it
produced is committed compare-and-set on the revision it started from, so two parallel signers
never lose a signature (the second signs the new revision again).  When the TSA is down a
signature is *not* produced without its timestamp: the signer's intent is kept (``pending``),
the page says so, and the worker applies it as soon as the TSA answers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sealpost.errors import Conflict, InvalidInput, NotFound, SealpostError, Unauthorized
from sealpost.ledger.records import Party, Reason, Subject, new_record
from sealpost.logging import get_logger
from sealpost.signing import otp
from sealpost.signing.documents import field_box_for, find_anchors, inspect_pdf, render_page_png
from sealpost.signing.model import (
    DEFAULT_CONSENT,
    IDENTIFICATIONS,
    MAX_DOCUMENTS,
    MAX_IMAGE_BYTES,
    MAX_SIGNERS,
    SIGNATURE_BOX,
    LinkUnusable,
    Locked,
    ProcessRequest,
    SignerRequest,
    SignInput,
    TooManyRequests,
    Visitor,
    WrongCode,
)
from sealpost.signing.pades import (
    FieldSpec,
    SignatureUnavailable,
    SignerAppearance,
    evidence_digest,
    finalize_document,
    prepare_document,
    sign_for_signer,
)
from sealpost.store.signatures import (
    CANCELLED,
    COMPLETED,
    DECLINED,
    DECLINED_BY,
    DONE,
    EXPIRED,
    IDENTIFIED,
    IN_PROGRESS,
    LINK,
    LOCKED,
    NOTIFIED,
    PENDING,
    ROLES,
    SESSION,
    SIGNED,
    SIGNING_ROLES,
    WAITING,
    Document,
    Process,
    SignatureRepository,
    Signer,
)

if TYPE_CHECKING:
    from sealpost.app import Sealpost
    from sealpost.store.tenants import Tenant

log = get_logger(__name__)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _subject(process_id: str) -> Subject:
    return Subject("signature_process", process_id)


def _party(signer: Signer) -> Party:
    return Party(signer.email or signer.phone or signer.name, display_name=signer.name)


def _identified(signer: Signer, method: str) -> Party:
    """The signer as identified: the method, where the code went, the email that carried it."""
    return Party(
        signer.email or signer.name,
        display_name=signer.name,
        identification={
            "method": method,
            "sent_to": signer.otp_sent_to,
            "communication_id": signer.otp_communication_id,
        },
    )


def _visitor(visitor: Visitor | None) -> dict[str, Any]:
    if visitor is None:
        return {}
    return {"ip": visitor.ip, "user_agent": visitor.user_agent}


def signature_field_name(signer: Signer | SignerRequest, number: int) -> str:
    return f"Signer{number + 1}"


class SignatureService:
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

    # -- creation ------------------------------------------------------------------------------

    def create(self, tenant: Tenant, request: ProcessRequest) -> tuple[Process, bool]:
        """Validate, prepare the documents (signature fields), store, notify the first
        signers.  Returns (process, created); a retried request with the same Idempotency-Key
        returns the first process and ``False``."""
        if request.idempotency_key:
            found = self.repo.by_idempotency_key(tenant.id, request.idempotency_key)
            if found is not None:
                if found[1] != request.request_sha256:
                    raise Conflict("this Idempotency-Key was used with another request")
                existing = self.repo.get(found[0], tenant.id)
                assert existing is not None
                return existing, False
        now = _now()
        self._check(request, now)
        infos = [inspect_pdf(d.content, name=d.name) for d in request.documents]
        for doc, info in zip(request.documents, infos, strict=True):
            if info.size > self.settings.signing_max_document_bytes:
                raise InvalidInput(
                    f"document {doc.name!r} is over "
                    f"{self.settings.signing_max_document_bytes} bytes"
                )
        placements = self._placements(request, infos)
        process_id = str(uuid.uuid4())
        prepared: list[bytes] = []
        for number, doc in enumerate(request.documents):
            specs = [
                FieldSpec(signature_field_name(s, i), page, box)
                for (i, s) in enumerate(request.signers)
                for (d, page, box) in placements.get(i, [])
                if d == number
            ]
            prepared.append(prepare_document(doc.content, specs) if specs else doc.content)
        consent = request.consent_text or DEFAULT_CONSENT
        expires_at = request.expires_at or now + timedelta(
            days=self.settings.signing_default_expiry_days
        )
        documents, revisions = [], []
        contents = [d.content for d in request.documents] + prepared
        signer_rows = []
        for i, s in enumerate(request.signers):
            signer_rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "process_id": process_id,
                    "number": i,
                    "name": s.name,
                    "email": s.email,
                    "phone": s.phone,
                    "role": s.role,
                    "sign_order": s.order,
                    "identification": s.identification,
                    "fields": json.dumps(
                        [
                            {"document": d, "page": p, "box": list(b)}
                            for d, p, b in placements.get(i, [])
                        ]
                    ),
                    "status": WAITING,
                }
            )
        for number, (doc, info, ready) in enumerate(
            zip(request.documents, infos, prepared, strict=True)
        ):
            document_id = str(uuid.uuid4())
            documents.append(
                {
                    "id": document_id,
                    "process_id": process_id,
                    "number": number,
                    "name": doc.name,
                    "page_sizes": json.dumps([[p.width, p.height] for p in info.pages]),
                    "original_sha256": info.sha256,
                    "current_sha256": _sha256(ready),
                }
            )
            if ready is not doc.content:
                revisions.append(
                    {
                        "id": str(uuid.uuid4()),
                        "document_id": document_id,
                        "number": 1,
                        "kind": "prepared",
                        "signer_id": None,
                        "sha256_before": info.sha256,
                        "sha256_after": _sha256(ready),
                        "created_at": now,
                    }
                )
        record = new_record(
            tenant_id=tenant.id,
            event="ProcessCreated",
            subject=_subject(process_id),
            event_time=now,
            sender=Party(self.settings.resolved_signing_mail_from, display_name=tenant.name),
            details={
                "title": request.title,
                "signing_order": request.signing_order,
                "expires_at": expires_at.isoformat(),
                "consent_sha256": _sha256(consent.encode()),
                "documents": [
                    {
                        "name": d["name"],
                        "sha256": d["original_sha256"],
                        "pages": len(i.pages),
                        "prepared_sha256": d["current_sha256"],
                    }
                    for d, i in zip(documents, infos, strict=True)
                ],
                "signers": [
                    {
                        "signer_id": r["id"],
                        "name": r["name"],
                        "email": r["email"],
                        "phone": r["phone"],
                        "role": r["role"],
                        "order": r["sign_order"],
                        "identification": r["identification"],
                    }
                    for r in signer_rows
                ],
            },
        )
        with self.repo.transaction() as conn:
            self.sp.contents.put_in(conn, contents)
            self.repo.create_in(
                conn,
                {
                    "id": process_id,
                    "tenant_id": tenant.id,
                    "title": request.title,
                    "message": request.message,
                    "status": IN_PROGRESS,
                    "signing_order": request.signing_order,
                    "consent_text": consent,
                    "consent_sha256": _sha256(consent.encode()),
                    "reminder_hours": json.dumps(sorted(request.reminder_hours)),
                    "created_at": now,
                    "updated_at": now,
                    "expires_at": expires_at,
                    "idempotency_key": request.idempotency_key,
                    "request_sha256": request.request_sha256,
                },
                documents,
                signer_rows,
                revisions,
                [record],
            )
        process = self._get(process_id)
        self._notify_turn(process, tenant)
        return self._get(process_id), True

    def _check(self, request: ProcessRequest, now: datetime) -> None:
        if not request.title.strip():
            raise InvalidInput("title is required")
        if not request.documents:
            raise InvalidInput("at least one document is required")
        if len(request.documents) > MAX_DOCUMENTS:
            raise InvalidInput(f"at most {MAX_DOCUMENTS} documents")
        if not request.signers:
            raise InvalidInput("at least one signer is required")
        if len(request.signers) > MAX_SIGNERS:
            raise InvalidInput(f"at most {MAX_SIGNERS} signers")
        if request.signing_order not in ("sequential", "parallel"):
            raise InvalidInput("signing_order is 'sequential' or 'parallel'")
        if not any(s.role in SIGNING_ROLES for s in request.signers):
            raise InvalidInput("at least one signer must have the role 'signer' or 'approver'")
        if request.expires_at is not None:
            if request.expires_at.tzinfo is None:
                raise InvalidInput("expires_at needs a time zone, e.g. 2026-12-31T18:00:00Z")
            if request.expires_at <= now + timedelta(minutes=10):
                raise InvalidInput("expires_at must be at least 10 minutes from now")
        if any(h <= 0 for h in request.reminder_hours):
            raise InvalidInput("reminder hours must be positive")
        for i, s in enumerate(request.signers):
            where = f"signers[{i}]"
            if not s.name.strip():
                raise InvalidInput(f"{where}.name is required")
            if s.role not in ROLES:
                raise InvalidInput(f"{where}.role is one of {', '.join(ROLES)}")
            if s.identification not in IDENTIFICATIONS:
                raise InvalidInput(f"{where}.identification is one of {', '.join(IDENTIFICATIONS)}")
            if s.identification == "sms_otp":
                raise InvalidInput(
                    f"{where}: SMS codes need the SMS channel, which this Sealpost does not "
                    "have yet; use email_otp"
                )
            if not s.email:
                raise InvalidInput(
                    f"{where}.email is required (the invitation is a certified email)"
                )
            if s.role not in SIGNING_ROLES and s.fields:
                raise InvalidInput(f"{where}: a {s.role} has no signature fields")
            for f in s.fields:
                if not 0 <= f.document < len(request.documents):
                    raise InvalidInput(f"{where}.fields: document {f.document} does not exist")
                if f.anchor is None and (f.page is None or f.box is None):
                    raise InvalidInput(f"{where}.fields: give page and box, or an anchor")

    def _placements(
        self, request: ProcessRequest, infos: Sequence[Any]
    ) -> dict[int, list[tuple[int, int, tuple[float, float, float, float]]]]:
        """Each signer's visible fields: (document, page, box), anchors resolved; at most one
        per document (one PAdES signature per signer and document)."""
        anchors: dict[int, list[Any]] = {}
        out: dict[int, list[tuple[int, int, tuple[float, float, float, float]]]] = {}
        for i, s in enumerate(request.signers):
            seen: set[int] = set()
            for f in s.fields:
                if f.document in seen:
                    raise InvalidInput(
                        f"signers[{i}].fields: one field per document (document {f.document} "
                        "has two)"
                    )
                seen.add(f.document)
                if f.anchor is not None:
                    if f.document not in anchors:
                        anchors[f.document] = find_anchors(request.documents[f.document].content)
                    found = [a for a in anchors[f.document] if a.label == f.anchor]
                    if not found:
                        raise InvalidInput(
                            f"signers[{i}].fields: anchor {{{{signature:{f.anchor}}}}} not found "
                            f"in document {request.documents[f.document].name!r}"
                        )
                    anchor = found[0]
                    page = infos[f.document].pages[anchor.page - 1]
                    box = field_box_for(anchor, page, *SIGNATURE_BOX)
                    out.setdefault(i, []).append((f.document, anchor.page, box))
                else:
                    assert f.page is not None and f.box is not None
                    out.setdefault(i, []).append((f.document, f.page, f.box))
        return out

    # -- reads ---------------------------------------------------------------------------------

    def _get(self, process_id: str, tenant_id: str | None = None) -> Process:
        found = self.repo.get(process_id, tenant_id)
        if found is None:
            raise NotFound(f"no signature process {process_id}")
        return found

    def get(self, tenant_id: str, process_id: str) -> Process:
        return self._get(process_id, tenant_id)

    def document_pdf(self, process: Process, number: int) -> tuple[Document, bytes]:
        if not 0 <= number < len(process.documents):
            raise NotFound(f"no document {number} in this process")
        document = process.documents[number]
        return document, self.sp.contents.get(document.current_sha256)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one service per process, keys are hashes
    def _page(self, sha256: str, page: int) -> bytes:
        return render_page_png(self.sp.contents.get(sha256), page)

    def page_png(self, process: Process, number: int, page: int) -> bytes:
        if not 0 <= number < len(process.documents):
            raise NotFound(f"no document {number} in this process")
        document = process.documents[number]
        if not 1 <= page <= len(document.page_sizes):
            raise NotFound(f"no page {page} in document {number}")
        return self._page(document.current_sha256, page)

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
        from sealpost.email.mime import build_message, new_message_id
        from sealpost.email.submission import SubmissionRequest

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
        self, process: Process, signer: Signer, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """A fresh single-use link (token, expiry) for ``signer``."""
        now = now or _now()
        if process.status != IN_PROGRESS:
            raise Conflict(f"the process is {process.status}")
        if signer.role == "cc":
            raise Conflict("a cc gets the signed documents at the end, not a signing link")
        token = secrets.token_urlsafe(32)
        expires_at = min(
            process.expires_at, now + timedelta(hours=self.settings.signing_link_hours)
        )
        with self.repo.transaction() as conn:
            self.repo.add_link_in(
                conn, token=token, kind=LINK, signer_id=signer.id, now=now, expires_at=expires_at
            )
            if signer.status == LOCKED:  # the tenant vouches for a new try
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

    def send_link(self, process: Process, signer: Signer, *, reminder: bool) -> None:
        """Email ``signer`` a fresh link (a certified email: the invitation has evidence)."""
        now = _now()
        token, expires_at = self.new_link(process, signer, now)
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
        record = new_record(
            tenant_id=process.tenant_id,
            event="SignerNotified",
            subject=_subject(process.id),
            event_time=now,
            recipient=_party(signer),
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
            if signer.status == WAITING:
                values["status"] = NOTIFIED
            if signer.notified_at is None:
                values["notified_at"] = now
            self.repo.set_signer_in(conn, signer.id, **values)
            self.repo.add_evidence_in(conn, [record])

    # -- the signing page ----------------------------------------------------------------------

    def check_link(self, token: str, now: datetime | None = None) -> tuple[Process, Signer]:
        """The process and signer a link opens, if it may still be opened; raises
        :class:`LinkUnusable` saying why not.  Does not spend it."""
        now = now or _now()
        found = self.repo.link(token, LINK)
        if found is None:
            raise LinkUnusable("This link is not valid.", kind="link_invalid", renewable=False)
        process = self._get(found.process_id)
        signer = process.signer(found.signer_id)
        assert signer is not None
        ids = {"process_id": process.id, "signer_id": signer.id}
        if process.status != IN_PROGRESS:
            raise LinkUnusable(self._ended_message(process), kind="closed", renewable=False, **ids)
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
        now = _now()
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
                    now + timedelta(minutes=self.settings.signing_session_minutes),
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
        process = self._get(found.process_id)
        signer = process.signer(found.signer_id)
        assert signer is not None
        if process.status != IN_PROGRESS or signer.status in (SIGNED, DECLINED_BY, DONE):
            raise Conflict("there is nothing left to sign with this link")
        self.send_link(process, signer, reminder=False)

    @staticmethod
    def _ended_message(process: Process) -> str:
        return {
            COMPLETED: "This document has been signed by everyone.",
            DECLINED: "This signature request was declined.",
            EXPIRED: "This signature request has expired.",
            CANCELLED: "This signature request was cancelled by the sender.",
        }.get(process.status, "This signature request is closed.")

    def session(self, token: str | None) -> tuple[Process, Signer]:
        if not token:
            raise Unauthorized("no signing session")
        found = self.repo.link(token, SESSION)
        if found is None or found.expires_at <= _now():
            raise Unauthorized("this signing session has expired: open your link again")
        process = self._get(found.process_id)
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
        turn = self._turn(process)
        if signer.status == WAITING or (
            process.signing_order == "sequential"
            and signer.role in SIGNING_ROLES
            and turn is not None
            and turn < signer.sign_order
        ):
            return "waiting"
        if signer.identification == "none" or signer.status == IDENTIFIED:
            return "ready"
        return "identify"

    def _require_open(self, process: Process, signer: Signer) -> None:
        if process.status != IN_PROGRESS:
            raise Conflict(self._ended_message(process))
        if signer.status == LOCKED:
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        if signer.status in (SIGNED, DECLINED_BY, DONE, PENDING):
            raise Conflict("You have already answered this request.")
        if process.signing_order == "sequential" and signer.role in SIGNING_ROLES:
            turn = self._turn(process)
            if turn is not None and signer.sign_order > turn:
                raise Conflict("It is not your turn yet: you will get an email when it is.")

    def send_otp(self, process: Process, signer: Signer, visitor: Visitor) -> tuple[str, datetime]:
        self._require_open(process, signer)
        if signer.identification != "email_otp":
            raise Conflict("no code is needed for this signer")
        if signer.otp_sends >= otp.MAX_SENDS:
            raise TooManyRequests(
                f"{otp.MAX_SENDS} codes were already sent: use the latest, or ask the sender "
                "for a new link"
            )
        assert signer.email is not None
        code = otp.new_code()
        now = _now()
        expires_at = now + timedelta(seconds=otp.VALID_SECONDS)
        communication_id = self._mail(
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
                otp_attempts=0,
                otp_sends=signer.otp_sends + 1,
                otp_sent_to=signer.email,
                otp_communication_id=communication_id,
            )
        return otp.mask_email(signer.email), expires_at

    def verify_otp(self, process: Process, signer: Signer, code: str, visitor: Visitor) -> int:
        """Returns the attempts left (the signer is identified when no exception is raised)."""
        self._require_open(process, signer)
        if signer.status == IDENTIFIED:
            return otp.MAX_ATTEMPTS - signer.otp_attempts
        now = _now()
        if signer.otp_hash is None or signer.otp_expires_at is None:
            raise InvalidInput("Ask for a code first.")
        if signer.otp_expires_at <= now:
            raise InvalidInput("This code has expired: ask for a new one.")
        if otp.matches(self._otp_key, signer.id, code, signer.otp_hash):
            record = new_record(
                tenant_id=process.tenant_id,
                event="SignerIdentified",
                subject=_subject(process.id),
                event_time=now,
                recipient=_identified(signer, "email_otp"),
                details={
                    "signer_id": signer.id,
                    "attempts": signer.otp_attempts + 1,
                    **_visitor(visitor),
                },
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
            return otp.MAX_ATTEMPTS - signer.otp_attempts - 1
        attempts = signer.otp_attempts + 1
        with self.repo.transaction() as conn:
            if attempts >= otp.MAX_ATTEMPTS:
                self.repo.set_signer_in(
                    conn, signer.id, status=LOCKED, otp_attempts=attempts, otp_hash=None
                )
                self.repo.add_evidence_in(
                    conn,
                    [
                        new_record(
                            tenant_id=process.tenant_id,
                            event="SignerIdentificationFailed",
                            subject=_subject(process.id),
                            event_time=now,
                            recipient=_party(signer),
                            reasons=[Reason("otp_locked", f"{attempts} wrong codes")],
                            details={
                                "signer_id": signer.id,
                                "method": "email_otp",
                                **_visitor(visitor),
                            },
                        )
                    ],
                )
            else:
                self.repo.set_signer_in(conn, signer.id, otp_attempts=attempts)
        if attempts >= otp.MAX_ATTEMPTS:
            raise Locked("Too many wrong codes: ask the sender for a new link.")
        left = otp.MAX_ATTEMPTS - attempts
        raise WrongCode(f"Wrong code: {left} attempt{'s' if left > 1 else ''} left.", left)

    def viewed(self, process: Process, signer: Signer, visitor: Visitor) -> None:
        """DocumentViewed, once per signer (the first time the pages were shown)."""
        if signer.viewed_at is not None or process.status != IN_PROGRESS:
            return
        now = _now()
        record = new_record(
            tenant_id=process.tenant_id,
            event="DocumentViewed",
            subject=_subject(process.id),
            event_time=now,
            recipient=_party(signer),
            details={
                "signer_id": signer.id,
                "documents": [
                    {"name": d.name, "sha256": d.current_sha256} for d in process.documents
                ],
                **_visitor(visitor),
            },
        )
        with self.repo.transaction() as conn:
            values: dict[str, Any] = {"viewed_at": now}
            if signer.role == "viewer":
                values["status"] = DONE
            self.repo.set_signer_in(conn, signer.id, **values)
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
            if not given.image_png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise InvalidInput("the drawn signature is not a PNG image")
        typed = (given.typed or "").strip() or None
        if given.image_png is None and typed is None:
            if signer.role == "approver":
                typed = signer.name
            else:
                raise InvalidInput("Draw or type your signature.")
        now = _now()
        intent = {
            "signed_at": now.isoformat(),
            "image_png": base64.b64encode(given.image_png).decode() if given.image_png else None,
            "typed": typed,
            "consent_sha256": process.consent_sha256,
            **_visitor(visitor),
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
        if self._apply(process.id, signer.id):
            return "signed"
        now_process = self._get(process.id)
        if now_process.status != IN_PROGRESS:  # ended (cancelled, expired) meanwhile
            raise Conflict(self._ended_message(now_process))
        return "signing_pending"

    def _apply(self, process_id: str, signer_id: str) -> bool:
        """Apply a pending signature; False (kept pending) while the TSA is unreachable."""
        for _ in range(5):  # a parallel signer may move a document under us: sign again
            process = self._get(process_id)
            signer = process.signer(signer_id)
            if signer is None or signer.status != PENDING or signer.pending_signature is None:
                return signer is not None and signer.status == SIGNED
            if process.status != IN_PROGRESS:  # cancelled or expired meanwhile: never apply
                return False
            intent = signer.pending_signature
            signed_at = datetime.fromisoformat(intent["signed_at"])
            image = base64.b64decode(intent["image_png"]) if intent.get("image_png") else None
            outputs: list[tuple[Document, bytes, str]] = []
            try:
                for document in process.documents:
                    before = self.sp.contents.get(document.current_sha256)
                    field = self._field_for(signer, document)
                    evidence = self._bound_evidence(process, signer, intent, document)
                    after = sign_for_signer(
                        before,
                        field=field,
                        appearance=SignerAppearance(
                            name=signer.name,
                            signed_at=signed_at,
                            image_png=image,
                            typed=intent.get("typed"),
                            identification=self._identification_line(signer),
                        ),
                        reason=("Approved" if signer.role == "approver" else "Signed")
                        + f" by {signer.name}",
                        evidence=evidence,
                        seal=self.sp.seal_identity,
                        timestamper=self.sp.timestamper,
                        trust_roots=self.sp.trust_roots,
                    )
                    outputs.append((document, after, _sha256(after)))
            except SignatureUnavailable as exc:
                log.warning("signing.tsa_unavailable", process_id=process.id, error=exc.message)
                return False
            if self._commit_signature(process, signer, intent, outputs):
                self._after_signature(process.id)
                return True
        raise Conflict("the documents kept changing while signing: try again")

    @staticmethod
    def _bound_evidence(
        process: Process, signer: Signer, intent: Mapping[str, Any], document: Document
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
            "otp_communication_id": signer.otp_communication_id or "",
            "ip": intent.get("ip") or "",
            "user_agent": intent.get("user_agent") or "",
            "consent_sha256": intent["consent_sha256"],
            "document_sha256": document.current_sha256,
            "signature_image_sha256": _sha256(base64.b64decode(image)) if image else "",
            "signed_at": intent["signed_at"],
        }

    def _field_for(self, signer: Signer, document: Document) -> str:
        for f in signer.fields:
            if f["document"] == document.number:
                return signature_field_name(signer, signer.number)
        return f"Signer{signer.number + 1}Invisible"

    @staticmethod
    def _identification_line(signer: Signer) -> str:
        if signer.identification == "email_otp" and signer.otp_sent_to:
            return f"Identified by email code ({otp.mask_email(signer.otp_sent_to)})"
        return "Identified by the sender (simple signature)"

    def _commit_signature(
        self,
        process: Process,
        signer: Signer,
        intent: Mapping[str, Any],
        outputs: Sequence[tuple[Document, bytes, str]],
    ) -> bool:
        now = _now()
        record = new_record(
            tenant_id=process.tenant_id,
            event="DocumentSigned",
            subject=_subject(process.id),
            event_time=now,
            recipient=_identified(signer, signer.identification),
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
                            bound := self._bound_evidence(process, signer, intent, d)
                        ),
                        "bound_evidence_sha256": evidence_digest(bound).hex(),
                    }
                    for d, _, sha in outputs
                ],
            },
        )
        try:
            with self.repo.transaction() as conn:
                for document, data, sha in outputs:
                    self.sp.contents.put_in(conn, [data])
                    if not self.repo.advance_document_in(
                        conn,
                        document,
                        new_sha256=sha,
                        kind=signer.role,
                        signer_id=signer.id,
                        now=now,
                    ):
                        raise _Moved
                if not self.repo.set_process_in(conn, process.id, updated_at=now):
                    raise _Moved  # the process ended meanwhile
                if not self.repo.set_signer_in(
                    conn,
                    signer.id,
                    expect_status=(PENDING,),
                    status=SIGNED,
                    signed_at=now,
                    pending_signature=None,
                ):
                    raise _Moved
                self.repo.add_evidence_in(conn, [record])
        except _Moved:  # rolled back: another signer (or worker) got there first
            return False
        return True

    def _after_signature(self, process_id: str) -> None:
        process = self._get(process_id)
        if process.status != IN_PROGRESS:
            return
        if self._turn(process) is None:
            with self.repo.transaction() as conn:
                self.repo.set_process_in(conn, process.id, finalize_due=1, updated_at=_now())
            self._finalize(process.id)
        else:
            self._notify_turn(process)

    def _finalize(self, process_id: str) -> bool:
        """Every signer has signed: document timestamps (B-LTA), ProcessCompleted, the sealed
        audit trail, copies to cc.  False (retried by the worker) while the TSA is down."""
        process = self._get(process_id)
        if process.status != IN_PROGRESS or not process.finalize_due:
            return process.status == COMPLETED
        outputs = []
        try:
            for document in process.documents:
                data = finalize_document(
                    self.sp.contents.get(document.current_sha256),
                    timestamper=self.sp.timestamper,
                    trust_roots=self.sp.trust_roots,
                )
                outputs.append((document, data, _sha256(data)))
        except SignatureUnavailable as exc:
            log.warning("signing.finalize_waits", process_id=process.id, error=exc.message)
            return False
        now = _now()
        record = new_record(
            tenant_id=process.tenant_id,
            event="ProcessCompleted",
            subject=_subject(process.id),
            event_time=now,
            details={
                "documents": [
                    {"name": d.name, "sha256_original": d.original_sha256, "sha256_final": sha}
                    for d, _, sha in outputs
                ],
                "signers": [s.id for s in process.signers if s.status == SIGNED],
            },
        )
        try:
            with self.repo.transaction() as conn:
                for document, data, sha in outputs:
                    self.sp.contents.put_in(conn, [data])
                    if not self.repo.advance_document_in(
                        conn,
                        document,
                        new_sha256=sha,
                        kind="timestamp",
                        signer_id=None,
                        now=now,
                    ):
                        raise _Moved
                if not self.repo.set_process_in(
                    conn,
                    process.id,
                    status=COMPLETED,
                    ended_at=now,
                    finalize_due=0,
                    updated_at=now,
                ):
                    raise _Moved
                self.repo.add_evidence_in(conn, [record])
        except _Moved:  # another worker finalised it, or it was cancelled meanwhile
            return False
        completed = self._get(process.id)
        try:
            audit = self.audit_pdf(completed)
            with self.repo.transaction() as conn:
                self.sp.contents.put_in(conn, [audit])
                self.repo.set_process_in(
                    conn, process.id, expect_status=COMPLETED, audit_sha256=_sha256(audit)
                )
        except SealpostError as exc:  # served on demand later; the process is complete anyway
            log.warning("signing.audit_deferred", process_id=process.id, error=exc.message)
        self._send_copies(completed)
        return True

    def _send_copies(self, process: Process) -> None:
        """cc (and every signer) get the signed documents, as a certified email."""
        attachments = [
            (
                d.name if d.name.lower().endswith(".pdf") else f"{d.name}.pdf",
                "application/pdf",
                self.sp.contents.get(d.current_sha256),
            )
            for d in process.documents
        ]
        for signer in process.signers:
            if not signer.email or signer.status == DECLINED_BY:
                continue
            try:
                self._mail(
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
                        self.repo.set_signer_in(conn, signer.id, status=DONE, notified_at=_now())
            except SealpostError as exc:
                log.warning("signing.copy_failed", process_id=process.id, error=exc.message)

    # -- ending --------------------------------------------------------------------------------

    def decline(self, process: Process, signer: Signer, reason: str, visitor: Visitor) -> None:
        self._require_open(process, signer)
        reason = reason.strip()
        if not reason:
            raise InvalidInput("Say why you decline.")
        now = _now()
        record = new_record(
            tenant_id=process.tenant_id,
            event="ProcessDeclined",
            subject=_subject(process.id),
            event_time=now,
            recipient=_party(signer),
            reasons=[Reason("declined", reason[:2000])],
            details={"signer_id": signer.id, **_visitor(visitor)},
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
                raise Conflict(self._ended_message(process))
            self.repo.set_signer_in(conn, signer.id, status=DECLINED_BY)
            self.repo.add_evidence_in(conn, [record])

    def cancel(self, tenant_id: str, process_id: str, reason: str | None) -> Process:
        process = self._get(process_id, tenant_id)
        now = _now()
        text = (reason or "cancelled by the sender").strip()[:2000]
        record = new_record(
            tenant_id=tenant_id,
            event="ProcessCancelled",
            subject=_subject(process.id),
            event_time=now,
            reasons=[Reason("cancelled", text)],
            details={},
        )
        with self.repo.transaction() as conn:
            if not self.repo.set_process_in(
                conn,
                process.id,
                status=CANCELLED,
                ended_at=now,
                ended_reason=text,
                updated_at=now,
            ):
                raise Conflict(f"the process is already {process.status}")
            self.repo.add_evidence_in(conn, [record])
        return self._get(process.id)

    def _expire(self, process: Process, now: datetime) -> None:
        record = new_record(
            tenant_id=process.tenant_id,
            event="ProcessExpired",
            subject=_subject(process.id),
            event_time=now,
            reasons=[Reason("expired", f"not completed by {process.expires_at.isoformat()}")],
            details={
                "unsigned": [
                    s.id for s in process.signers if s.role in SIGNING_ROLES and s.status != SIGNED
                ],
            },
        )
        with self.repo.transaction() as conn:
            if self.repo.set_process_in(
                conn,
                process.id,
                status=EXPIRED,
                ended_at=now,
                ended_reason="expired",
                updated_at=now,
            ):
                self.repo.add_evidence_in(conn, [record])

    # -- the worker ----------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> int:
        """One pass: expiries, pending signatures (TSA back?), finalisation, reminders."""
        now = now or _now()
        done = 0
        for process_id in self.repo.due_processes(now):
            try:
                done += self._run_one(process_id, now)
            except SealpostError as exc:
                log.warning("signing.worker_step_failed", process_id=process_id, error=exc.message)
        return done

    def _run_one(self, process_id: str, now: datetime) -> int:
        process = self._get(process_id)
        if process.status != IN_PROGRESS:
            return 0
        if process.expires_at <= now:
            self._expire(process, now)
            return 1
        done = 0
        for signer in process.signers:
            if signer.status == PENDING and self._apply(process.id, signer.id):
                done += 1
        if done:
            return done
        if process.finalize_due:
            return int(self._finalize(process.id))
        for signer in process.signers:
            if (
                signer.next_reminder_at is not None
                and signer.next_reminder_at <= now
                and signer.status in (NOTIFIED, IDENTIFIED)
            ):
                with self.repo.transaction() as conn:  # claim it: one reminder, one worker
                    claimed = self.repo.set_signer_in(
                        conn,
                        signer.id,
                        expect_status=(NOTIFIED, IDENTIFIED),
                        next_reminder_at=None,
                    )
                if claimed:
                    self.send_link(process, signer, reminder=True)
                    done += 1
        return done

    # -- the audit trail -----------------------------------------------------------------------

    def audit_pdf(self, process: Process) -> bytes:
        """The sealed audit trail: stored once the process completed, else made now."""
        if process.audit_sha256:
            return self.sp.contents.get(process.audit_sha256)
        from sealpost.certificates.seal import seal_pdf
        from sealpost.signing.audit import render_audit_trail
        from sealpost.signing.trail import audit_trail

        trail = audit_trail(
            process,
            tenant_name=self.sp.tenants.get(process.tenant_id).name,
            ledger_origin=self.settings.ledger_origin,
            repo=self.repo,
        )
        pdf = render_audit_trail(trail)
        return seal_pdf(
            pdf,
            seal=self.sp.seal_identity,
            timestamper=self.sp.timestamper,
            trust_roots=self.sp.trust_roots,
            reason=f"Audit trail of signature process {process.id}",
            location=self.settings.hostname,
        )


class _Moved(Exception):
    """Rolls a transaction back: what it started from changed."""
