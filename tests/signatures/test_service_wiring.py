"""The signature service built from its parts alone: no ``Sealpost`` object, no HTTP.

What it receives is all it uses: the repositories, the access kit, the content store, the seal,
a timestamper, the trust roots, a slice of the settings, the PDF intake (its worker processes),
and a ``Mailer`` (here one that keeps
the mails, as an integration would; the real one is communications' certified email, wired in
``sealpost.app``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from sealpost.access import codes
from sealpost.access.repository import AccessRepository
from sealpost.access.service import AccessService
from sealpost.certificates.pades.validation import check_signatures
from sealpost.communications.contents import ContentStore
from sealpost.db import migrate
from sealpost.db.blobs import BlobStore
from sealpost.db.engine import make_engine
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from sealpost.signatures.intake import PdfIntake
from sealpost.signatures.model import (
    DocumentRequest,
    FieldRequest,
    ProcessRequest,
    SignerRequest,
    SigningConfig,
    SignInput,
    Visitor,
)
from sealpost.signatures.ports import OutgoingMail
from sealpost.signatures.repository import SignatureRepository
from sealpost.signatures.service import SignatureService
from sealpost.tenants.repository import TenantRepository
from tests.signatures.flow import contract_pdf

VISITOR = Visitor("192.0.2.7", "pytest")


class KeptMail:
    """A ``Mailer`` that keeps what it is given and numbers it as communications."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []

    def send(self, mail: OutgoingMail) -> str:
        self.sent.append(mail)
        return f"communication-{len(self.sent)}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The database (SQLite, then PostgreSQL) at the head of the migrations."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def build_service(
    engine: Engine,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    blobs: Path,
    mail: KeptMail,
    intake: PdfIntake,
    *,
    inline_max_bytes: int = 1 << 20,
) -> SignatureService:
    """Every part the service uses, and nothing else."""
    return SignatureService(
        repo=SignatureRepository(engine),
        access=AccessService(AccessRepository(engine), code_key=codes.key_for(identities.seal)),
        tenants=TenantRepository(engine),
        contents=ContentStore(engine, BlobStore(blobs), inline_max_bytes=inline_max_bytes),
        mailer=mail,
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        config=SigningConfig(
            public_url="https://sign.example.test",
            mail_from="signatures@example.test",
            hostname="example.test",
            ledger_origin="example.test/ledger",
            link_hours=72,
            session_minutes=60,
            default_expiry_days=30,
            max_document_bytes=10 << 20,
        ),
        intake=intake,
    )


def one_signer(identification: str = "email_otp") -> ProcessRequest:
    return ProcessRequest(
        title="Repair quote 4711",
        documents=(DocumentRequest("quote.pdf", contract_pdf()),),
        signers=(
            SignerRequest(
                name="Jane Customer",
                email="jane@example.net",
                phone=None,
                role="signer",
                order=1,
                identification=identification,
                fields=(FieldRequest(0, anchor="1"),),
            ),
        ),
    )


def test_a_service_built_from_real_parts_runs_a_process_to_completion(
    engine: Engine,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    tmp_path: Path,
    pdf_intake: PdfIntake,
) -> None:
    mail = KeptMail()
    service = build_service(engine, identities, timestamper, tmp_path / "blobs", mail, pdf_intake)
    tenant = TenantRepository(engine).create("Acme Repairs")
    process, created = service.create(tenant, one_signer())
    assert created
    invitation = mail.sent[-1]
    assert invitation.to == "jane@example.net" and invitation.tenant_id == tenant.id
    assert invitation.details["purpose"] == "invitation"
    found = re.search(r"https://sign\.example\.test/sign/(\S+)", invitation.text)
    assert found, invitation.text

    session, process, signer = service.open_link(found.group(1), VISITOR)
    assert service.page_status(process, signer) == "identify"
    service.send_otp(process, signer, VISITOR, session=session)
    code = re.search(r" is (\d{6})\.", mail.sent[-1].text)
    assert code and mail.sent[-1].details["purpose"] == "otp"
    assert invitation.access_secret and mail.sent[-1].access_secret
    assert code.group(1) not in mail.sent[-1].subject
    process = service.get(tenant.id, process.id)
    signer = process.signers[0]
    service.verify_otp(process, signer, code.group(1), VISITOR, session=session)
    process = service.get(tenant.id, process.id)
    assert service.sign(process, process.signers[0], SignInput(True, None, "Jane"), VISITOR) == (
        "signed"
    )

    done = service.get(tenant.id, process.id)
    assert done.status == "completed"
    _document, pdf = service.document_pdf(done, 0)
    checks = check_signatures(pdf, [identities.root])
    assert [c.signer_name for c in checks if not c.is_document_timestamp] == ["Jane Customer"]
    assert all(c.ok for c in checks)
    assert mail.sent[-1].details["purpose"] == "copy" and mail.sent[-1].attachments
    assert service.audit_pdf(done).startswith(b"%PDF")


def test_documents_above_the_inline_size_are_kept_as_blob_files(
    engine: Engine,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    tmp_path: Path,
    pdf_intake: PdfIntake,
) -> None:
    """Contents above ``content_inline_max_bytes`` live as blob files: a process stores its
    documents, their signed revisions and its audit trail there too, before committing."""
    mail = KeptMail()
    service = build_service(
        engine, identities, timestamper, tmp_path / "blobs", mail, pdf_intake, inline_max_bytes=0
    )
    tenant = TenantRepository(engine).create("Acme Repairs")
    process, _created = service.create(tenant, one_signer("none"))
    document, pdf = service.document_pdf(process, 0)
    assert hashlib.sha256(pdf).hexdigest() == document.current_sha256
    assert service.page_png(process, 0, 1).startswith(b"\x89PNG")
    token = re.search(r"/sign/(\S+)", mail.sent[-1].text)
    assert token
    _session, process, signer = service.open_link(token.group(1), VISITOR)
    assert service.sign(process, signer, SignInput(True, None, "Jane"), VISITOR) == "signed"
    done = service.get(tenant.id, process.id)
    assert done.status == "completed" and done.audit_sha256 is not None
    document, pdf = service.document_pdf(done, 0)
    assert hashlib.sha256(pdf).hexdigest() == document.current_sha256
    assert service.audit_pdf(done).startswith(b"%PDF")
