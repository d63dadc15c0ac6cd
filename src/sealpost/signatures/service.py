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

:class:`SignatureService` is the facade the endpoints, the page and the worker call.  It is
composed, not inherited: notifying (``notices``), applying signatures (``applying``) and the
page's steps (``page``) are collaborators that each receive only what they use, and the
service itself receives its parts explicitly (the composition root, ``sealpost.app``, builds
it; so can a test, from real parts alone).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from sealpost.access.model import Challenge
from sealpost.access.service import AccessService
from sealpost.certificates.pades.fields import FieldSpec, prepare_document
from sealpost.errors import Conflict, InvalidInput, NotFound, SealpostError
from sealpost.ledger.records import Party, Reason, new_record
from sealpost.ledger.timestamps import TimeStamper
from sealpost.logging import get_logger
from sealpost.pki.keys import SigningIdentity
from sealpost.signatures.applying import SignatureApplier
from sealpost.signatures.documents import field_box_for
from sealpost.signatures.intake import DocumentTooComplex, PdfIntake, too_complex
from sealpost.signatures.model import (
    DEFAULT_CONSENT,
    IDENTIFICATIONS,
    MAX_DOCUMENTS,
    MAX_SIGNERS,
    SIGNATURE_BOX,
    ProcessRequest,
    SigningConfig,
    SignInput,
    Visitor,
    e164,
)
from sealpost.signatures.notices import SignerNotices
from sealpost.signatures.page import SigningPage
from sealpost.signatures.page_images import PageImages
from sealpost.signatures.ports import Contents, Mailer, SmsSender
from sealpost.signatures.repository import (
    CANCELLED,
    EXPIRED,
    IDENTIFIED,
    IN_PROGRESS,
    NOTIFIED,
    PENDING,
    ROLES,
    SIGNED,
    SIGNING_ROLES,
    WAITING,
    Document,
    SignatureProcess,
    SignatureRepository,
    Signer,
)
from sealpost.signatures.steps import (
    ended_message,
    load_process,
    process_record,
    process_subject,
    sha256_hex,
    signature_field_name,
    utc_now,
)
from sealpost.tenants.repository import Tenant, TenantRepository

log = get_logger(__name__)

PAGE_IMAGES_MAX_BYTES = 64 * 1024 * 1024
"""Memory for page images of the signing pages (per process); least recently seen go first."""


MAX_REMINDER_HOURS = 24 * 366


class SignatureService:
    """Signature processes: creation, reads, cancellation, expiry and the worker's pass; the
    signing page's steps (``page``), applying signatures (``applying``) and notifying
    signers (``notices``) are collaborators it delegates to."""

    def __init__(
        self,
        *,
        repo: SignatureRepository,
        access: AccessService,
        tenants: TenantRepository,
        contents: Contents,
        mailer: Mailer,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        config: SigningConfig,
        intake: PdfIntake,
        sms: SmsSender | None = None,
    ) -> None:
        self.repo = repo
        self.sms = sms
        """The sms domain's sender; None (no SMS operator): ``sms_otp`` signers are refused."""
        self.contents = contents
        self.config = config
        self.intake = intake
        """Reads the uploaded PDFs (intake, anchors, page images) in worker processes under
        limits: a hostile document costs a worker, never this process."""
        self.notices = SignerNotices(repo, access, tenants, mailer, config)
        self.applier = SignatureApplier(
            repo,
            access,
            contents,
            self.notices,
            tenants,
            seal=seal,
            timestamper=timestamper,
            trust_roots=trust_roots,
            config=config,
        )
        self.page = SigningPage(repo, access, self.notices, self.applier, config=config, sms=sms)
        self._page_images = PageImages(self._render_page, PAGE_IMAGES_MAX_BYTES)
        """Page images by (document digest, page).  A page that hit a limit is kept too (as
        the limit's name), so that asking again costs nothing."""

    # -- reads ---------------------------------------------------------------------------------

    def get(self, tenant_id: str, process_id: str) -> SignatureProcess:
        return load_process(self.repo, process_id, tenant_id)

    # -- creation ------------------------------------------------------------------------------

    def create(self, tenant: Tenant, request: ProcessRequest) -> tuple[SignatureProcess, bool]:
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
        now = utc_now()
        self._check(request, now)
        allowed = self.repo.allow_active_content(tenant.id)
        infos = [
            self.intake.inspect(d.content, name=d.name, allow_active_content=allowed)
            for d in request.documents
        ]
        for doc, info in zip(request.documents, infos, strict=True):
            if info.size > self.config.max_document_bytes:
                raise InvalidInput(
                    f"document {doc.name!r} is over {self.config.max_document_bytes} bytes"
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
        expires_at = request.expires_at or now + timedelta(days=self.config.default_expiry_days)
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
                    "phone": (e164(s.phone) or s.phone) if s.phone else None,
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
                    "current_sha256": sha256_hex(ready),
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
                        "sha256_after": sha256_hex(ready),
                        "created_at": now,
                    }
                )
        record = new_record(
            tenant_id=tenant.id,
            event="ProcessCreated",
            subject=process_subject(process_id),
            event_time=now,
            sender=Party(self.config.mail_from, display_name=tenant.name),
            details={
                "title": request.title,
                "signing_order": request.signing_order,
                "expires_at": expires_at.isoformat(),
                "consent_sha256": sha256_hex(consent.encode()),
                "documents": [
                    {
                        "name": d["name"],
                        "sha256": d["original_sha256"],
                        "pages": len(i.pages),
                        "prepared_sha256": d["current_sha256"],
                        "active_content": {
                            "findings": [f.as_json() for f in i.active_content],
                            "allow_active_content": allowed,
                        },
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
        self.contents.put_large(contents)  # large PDFs as blob files, durable before the commit
        with self.repo.transaction() as conn:
            self.contents.put_in(conn, contents)
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
                    "consent_sha256": sha256_hex(consent.encode()),
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
        self.notices.notify_turn(load_process(self.repo, process_id))
        return load_process(self.repo, process_id), True

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
        if any(
            not math.isfinite(h) or not 0 < h <= MAX_REMINDER_HOURS for h in request.reminder_hours
        ):
            raise InvalidInput(f"reminder hours must be between 0 and {MAX_REMINDER_HOURS}")
        for i, s in enumerate(request.signers):
            where = f"signers[{i}]"
            if not s.name.strip():
                raise InvalidInput(f"{where}.name is required")
            if s.role not in ROLES:
                raise InvalidInput(f"{where}.role is one of {', '.join(ROLES)}")
            if s.identification not in IDENTIFICATIONS:
                raise InvalidInput(f"{where}.identification is one of {', '.join(IDENTIFICATIONS)}")
            if s.identification == "sms_otp":
                if self.sms is None:
                    raise InvalidInput(
                        f"{where}.identification: sms_otp needs an SMS operator, and none is "
                        "configured on this Sealpost (SMS_PROVIDER=none); use email_otp"
                    )
                if not s.phone:
                    raise InvalidInput(
                        f"{where}.phone is required for sms_otp (an E.164 number: +34600111222)"
                    )
                if e164(s.phone) is None:
                    raise InvalidInput(
                        f"{where}.phone is not a valid E.164 number (+ and the country code: "
                        "+34600111222)"
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
                        document = request.documents[f.document]
                        anchors[f.document] = self.intake.anchors(
                            document.content, name=document.name
                        )
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

    def document_pdf(self, process: SignatureProcess, number: int) -> tuple[Document, bytes]:
        if not 0 <= number < len(process.documents):
            raise NotFound(f"no document {number} in this process")
        document = process.documents[number]
        return document, self.contents.get(document.current_sha256)

    def _render_page(self, sha256: str, page: int) -> bytes | str:
        """The page's PNG, or the limit that stopped drawing it (no document name: the same
        bytes may be another tenant's document under another name)."""
        try:
            return self.intake.page_png(self.contents.get(sha256), page, name="document")
        except DocumentTooComplex as exc:
            return exc.limit

    def page_png(self, process: SignatureProcess, number: int, page: int) -> bytes:
        if not 0 <= number < len(process.documents):
            raise NotFound(f"no document {number} in this process")
        document = process.documents[number]
        if not 1 <= page <= len(document.page_sizes):
            raise NotFound(f"no page {page} in document {number}")
        png = self._page_images.get(document.current_sha256, page)
        if isinstance(png, str):
            raise too_complex(document.name, png, self.intake.limits, page=page)
        return png

    def cancel(self, tenant_id: str, process_id: str, reason: str | None) -> SignatureProcess:
        process = load_process(self.repo, process_id, tenant_id)
        now = utc_now()
        text = (reason or "cancelled by the sender").strip()[:2000]
        record = new_record(
            tenant_id=tenant_id,
            event="ProcessCancelled",
            subject=process_subject(process.id),
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
        return load_process(self.repo, process.id)

    def _expire(self, process: SignatureProcess, now: datetime) -> None:
        record = process_record(
            process,
            "ProcessExpired",
            now,
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
        now = now or utc_now()
        done = 0
        for process_id in self.repo.due_processes(now):
            try:
                done += self._run_one(process_id, now)
            except SealpostError as exc:
                log.warning("signing.worker_step_failed", process_id=process_id, error=exc.message)
        return done

    def _run_one(self, process_id: str, now: datetime) -> int:
        process = load_process(self.repo, process_id)
        if process.status != IN_PROGRESS:
            return 0
        owed = process.finalize_due or any(s.status == PENDING for s in process.signers)
        if process.expires_at <= now and not owed:  # signed in time: finish, do not expire
            self._expire(process, now)
            return 1
        done = 0
        for signer in process.signers:
            if signer.status == PENDING and self.applier.apply(process.id, signer.id):
                done += 1
        if done:
            return done
        if process.finalize_due:
            return int(self.applier.finalize(process.id))
        for signer in process.signers:
            if (
                signer.next_reminder_at is not None
                and signer.next_reminder_at <= now
                and signer.status in (NOTIFIED, IDENTIFIED)
            ):
                with self.repo.transaction() as conn:  # claim it: one reminder, one worker
                    claimed = self.repo.claim_reminder_in(conn, signer.id, signer.next_reminder_at)
                if claimed:
                    self.notices.send_link(process, signer, reminder=True)
                    done += 1
        return done

    # -- links, the signing page, the audit trail: delegated -----------------------------------

    def new_link(
        self,
        process: SignatureProcess,
        signer: Signer,
        now: datetime | None = None,
        *,
        unlock: bool = False,
        end_sessions: bool = False,
    ) -> tuple[str, datetime]:
        return self.notices.new_link(process, signer, now, unlock=unlock, end_sessions=end_sessions)

    def link_url(self, token: str) -> str:
        return self.notices.link_url(token)

    def audit_pdf(self, process: SignatureProcess) -> bytes:
        return self.applier.audit_pdf(process)

    @staticmethod
    def ended_message(process: SignatureProcess) -> str:
        return ended_message(process)

    def check_link(
        self, token: str, now: datetime | None = None
    ) -> tuple[SignatureProcess, Signer]:
        return self.page.check_link(token, now)

    def open_link(self, token: str, visitor: Visitor) -> tuple[str, SignatureProcess, Signer]:
        return self.page.open_link(token, visitor)

    def renew_link(self, token: str) -> None:
        self.page.renew_link(token)

    def session(self, token: str | None) -> tuple[SignatureProcess, Signer]:
        return self.page.session(token)

    def page_status(self, process: SignatureProcess, signer: Signer) -> str:
        return self.page.page_status(process, signer)

    def challenge(self, process: SignatureProcess, signer: Signer) -> Challenge | None:
        return self.page.challenge(process, signer)

    def send_otp(
        self, process: SignatureProcess, signer: Signer, visitor: Visitor, *, session: str
    ) -> tuple[str, datetime]:
        return self.page.send_otp(process, signer, visitor, session=session)

    def verify_otp(
        self,
        process: SignatureProcess,
        signer: Signer,
        code: str,
        visitor: Visitor,
        *,
        session: str,
    ) -> int:
        return self.page.verify_otp(process, signer, code, visitor, session=session)

    def viewed(self, process: SignatureProcess, signer: Signer, visitor: Visitor) -> None:
        self.page.viewed(process, signer, visitor)

    def sign(
        self, process: SignatureProcess, signer: Signer, given: SignInput, visitor: Visitor
    ) -> str:
        return self.page.sign(process, signer, given, visitor)

    def decline(
        self, process: SignatureProcess, signer: Signer, reason: str, visitor: Visitor
    ) -> None:
        self.page.decline(process, signer, reason, visitor)
