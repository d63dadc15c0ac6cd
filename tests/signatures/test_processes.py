"""Signature processes end to end through the REST API and the signing page's JSON API, on
SQLite and the real PostgreSQL: invitations and codes are certified emails delivered to a real
SMTP server on 127.0.0.1, signatures are validated by pyHanko and poppler's pdfsig."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import rfc8785
from fastapi.testclient import TestClient
from fpdf import FPDF

from sealpost.certificates.pades.validation import check_signatures
from sealpost.events.tables import outbox_events
from sealpost.pki.keys import LocalIdentities
from sealpost.pki.tsa import EmbeddedTSA
from tests.signatures.flow import (
    PageSession,
    b64,
    code_in,
    contract_pdf,
    drawn_signature,
    link_path,
    mails_to,
    open_page,
    page_config,
    process_request,
    signer,
    wait_mail,
)
from tests.support.mail import MailEnv
from tests.support.tsa import SwitchableTsa

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def tsa(identities: LocalIdentities) -> Iterator[SwitchableTsa]:
    """The TSA Sealpost uses here, over HTTP on 127.0.0.1: a test takes it down and back."""
    with SwitchableTsa(EmbeddedTSA(identities.tsa)) as server:
        yield server


@pytest.fixture
def mail_overrides(tsa: SwitchableTsa) -> dict[str, object]:
    return {
        "certificates_enabled": False,
        "signing_worker_enabled": False,
        "tsa_url": tsa.url,
        "tsa_timeout_seconds": 2.0,
    }


def _events(env: MailEnv, process_id: str) -> list[str]:
    from sqlalchemy import select

    o = outbox_events.c
    with env.sp.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.type).where(o.subject_id == process_id).order_by(o.sequence)
            ).scalars()
        )


def _pdfsig(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False).stdout


def test_two_sequential_signers_sign_and_every_signature_validates(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    created = client.post(
        "/v1/signatures",
        json=process_request(
            signer("Jane Customer", "jane", "1"), signer("Max Manager", "max", "2", order=2)
        ),
        headers=key,
    )
    assert created.status_code == 201, created.text
    process = created.json()
    pid = process["id"]
    assert [s["status"] for s in process["signers"]] == ["notified", "waiting"]

    # signer 1: the invitation is a certified email with a single-use link
    invitation = wait_mail(mail_env, "jane", "asks you to sign")
    for _ in range(3):  # a mail scanner fetching the link does not spend it
        assert client.get(link_path(invitation)).status_code == 200
    page = open_page(client, link_path(invitation))
    assert page.config["status"] == "identify"
    assert page.config["documents"][0]["pages"][0]["width"] == pytest.approx(595.28, abs=0.1)
    assert client.get(link_path(invitation)).status_code == 410  # single use
    spent = client.post("/sign/api/open", json={"link": link_path(invitation)[6:]})
    assert spent.status_code == 410 and spent.headers["content-type"] == "application/problem+json"
    assert spent.json()["type"] == "urn:sealpost:problem:link_unusable"
    assert spent.json()["kind"] == "link_used"
    image = page.call("GET", "/documents/0/pages/2.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert page.call("POST", "/view").status_code == 204
    not_yet = page.sign(drawn_signature())
    assert not_yet.status_code == 409 and "code" in not_yet.json()["message"]
    page.identify(mail_env, "jane")
    assert page.sign(drawn_signature()).json() == {"status": "signed"}

    # signer 2 is invited only now (sequential)
    invitation = wait_mail(mail_env, "max", "asks you to sign")
    second = open_page(client, link_path(invitation))
    second.identify(mail_env, "max")
    assert second.sign(typed="Max Manager").json() == {"status": "signed"}

    done = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert done["status"] == "completed"
    assert [e["event"] for e in done["timeline"]] == [
        "ProcessCreated",
        "SignerNotified",
        "DocumentViewed",
        "SignerIdentified",
        "DocumentSigned",
        "SignerNotified",
        "SignerIdentified",
        "DocumentSigned",
        "ProcessCompleted",
    ]
    signed = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key)
    assert signed.status_code == 200
    checks = check_signatures(signed.content, mail_env.sp.trust_roots)
    people = [c for c in checks if not c.is_document_timestamp]
    assert [c.signer_name for c in people] == ["Jane Customer", "Max Manager"]
    assert all(c.intact and c.valid and c.timestamp_valid and c.docmdp_ok for c in checks)
    assert any(c.is_document_timestamp for c in checks)  # B-LTA on completion
    assert _pdfsig(signed.content, tmp_path).count("Signature is Valid") >= 2
    # what each signature binds is kept whole in its DocumentSigned record: anyone can
    # recompute the digest the signed attribute holds
    records = [e for e in done["timeline"] if e["event"] == "DocumentSigned"]
    for check, entry in zip(people, records, strict=True):
        bound = entry["details"]["documents"][0]
        assert check.evidence_sha256 == bound["bound_evidence_sha256"]
        digest = hashlib.sha256(rfc8785.dumps(bound["bound_evidence"])).hexdigest()
        assert digest == bound["bound_evidence_sha256"]
        assert bound["bound_evidence"]["signer_name"] == check.signer_name

    audit = client.get(f"/v1/signatures/{pid}/audit.pdf", headers=key)
    assert audit.status_code == 200
    assert "Signature is Valid" in _pdfsig(audit.content, tmp_path)
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=audit.content, capture_output=True, check=True
    ).stdout.decode()
    for entry in done["timeline"]:
        assert entry["record_id"] in text

    assert _events(mail_env, pid) == [
        "sealpost.signature.created",
        "sealpost.signature.signer_notified",
        "sealpost.signature.document_viewed",
        "sealpost.signature.signer_identified",
        "sealpost.signature.signed",
        "sealpost.signature.signer_notified",
        "sealpost.signature.signer_identified",
        "sealpost.signature.signed",
        "sealpost.signature.completed",
    ]
    copies = wait_mail(mail_env, "jane", "^Subject: Signed:")
    assert "signed by everyone" in copies
    evidence = client.get(f"/v1/signatures/{pid}/evidence?wait=10", headers=key).json()
    assert len(evidence["bundles"]) == len(done["timeline"]) and evidence["pending"] == []


def _encrypted_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(0, 10, "secret")
    return bytes(pdf.output())


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"PK\x03\x04 this is a docx", "not a PDF"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "PDF"),
        (None, "encrypted"),
    ],
)
def test_a_document_that_is_not_a_signable_pdf_is_refused_clearly(
    client: TestClient, key: dict[str, str], document: bytes | None, message: str
) -> None:
    body = process_request(
        signer("Jane", "jane", None), document=document if document else _encrypted_pdf()
    )
    answer = client.post("/v1/signatures", json=body, headers=key)
    assert answer.status_code == 422
    assert message in answer.json()["message"]
    assert client.get("/v1/signatures", headers=key).json()["items"] == []


def test_refusals_name_the_problem(client: TestClient, key: dict[str, str]) -> None:
    cases = [
        (process_request(signer("Jane", "jane", "9")), "signature:9"),
        (
            process_request(signer("Jane", "jane", identification="sms_otp")),
            "signers[0].identification: sms_otp needs an SMS operator",
        ),
        (process_request(signer("Jane", "jane", role="viewer")), "'signer' or 'approver'"),
        (
            {
                **process_request(signer("Jane", "jane")),
                "documents": [{"name": "a", "content": "%%"}],
            },
            "base64",
        ),
    ]
    for body, message in cases:
        answer = client.post("/v1/signatures", json=body, headers=key)
        assert answer.status_code == 422, body
        assert message in answer.json()["message"]


def test_five_wrong_codes_lock_the_signer_until_a_new_link(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    pid = client.post(
        "/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key
    ).json()["id"]
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    assert page.call("POST", "/otp").status_code == 200
    real = wait_mail(mail_env, "jane", "Your signing code")
    wrong = "000000" if "000000" not in real else "111111"
    lefts = [page.call("POST", "/otp/verify", json={"code": wrong}) for _ in range(4)]
    assert [a.json()["attempts_left"] for a in lefts] == [4, 3, 2, 1]
    locked = page.call("POST", "/otp/verify", json={"code": wrong})
    assert locked.status_code == 423 and locked.json()["error"] == "locked"
    assert page.call("GET", "/state").json()["status"] == "locked"
    assert page.sign(typed="Jane").status_code == 423
    assert "sealpost.signature.signer_locked" in _events(mail_env, pid)

    detail = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert detail["signers"][0]["status"] == "locked"
    assert "SignerIdentificationFailed" in [e["event"] for e in detail["timeline"]]
    sid = detail["signers"][0]["id"]
    link = client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=key).json()
    assert link["url"].startswith(mail_env.sp.settings.resolved_public_url + "/sign/")
    again = open_page(client, urlsplit(link["url"]).path)
    again.identify(mail_env, "jane", count=2)
    assert again.sign(typed="Jane").json() == {"status": "signed"}


def _signed_while_the_tsa_is_down(
    env: MailEnv, client: TestClient, key: dict[str, str], tsa: SwitchableTsa
) -> tuple[str, PageSession]:
    """A one-signer process whose signer signed while the TSA was unreachable (connection
    refused; it still is: ``tsa.up()`` brings it back)."""
    pid: str = client.post(
        "/v1/signatures",
        json=process_request(signer("Jane", "jane", identification="none")),
        headers=key,
    ).json()["id"]
    page = open_page(client, link_path(wait_mail(env, "jane", "asks you to sign")))
    tsa.down()
    answer = page.sign(drawn_signature())
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "signing_pending"
    return pid, page


def test_tsa_down_keeps_the_signature_pending_and_the_worker_applies_it(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tsa: SwitchableTsa
) -> None:
    pid, page = _signed_while_the_tsa_is_down(mail_env, client, key, tsa)
    state = page.call("GET", "/state").json()
    assert state["status"] == "signing_pending"
    assert "timestamp authority is unreachable" in state["message"]
    assert mail_env.sp.signatures.run_due() == 0  # still down: nothing produced
    detail = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert detail["signers"][0]["status"] == "pending"
    assert "DocumentSigned" not in [e["event"] for e in detail["timeline"]]
    unsigned = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key).content
    assert check_signatures(unsigned, mail_env.sp.trust_roots) == []  # no signature without TSA

    tsa.up()  # the TSA is back
    assert mail_env.sp.signatures.run_due() >= 1
    assert page.call("GET", "/state").json()["status"] == "signed"
    done = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert done["status"] == "completed"


def test_decline_cancel_and_expiry_end_a_process_with_one_terminal_event(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    def start() -> str:
        body = process_request(signer("Jane", "jane", identification="none"))
        pid: str = client.post("/v1/signatures", json=body, headers=key).json()["id"]
        return pid

    declined = start()
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    assert page.call("POST", "/decline", json={"reason": "  "}).status_code == 422
    assert page.call("POST", "/decline", json={"reason": "Price too high"}).status_code == 200
    assert page.sign(typed="Jane").status_code == 409
    detail = client.get(f"/v1/signatures/{declined}", headers=key).json()
    assert detail["status"] == "declined" and detail["ended_reason"] == "Price too high"

    cancelled = start()
    answer = client.post(
        f"/v1/signatures/{cancelled}/cancel", json={"reason": "sent by mistake"}, headers=key
    )
    assert answer.json()["status"] == "cancelled"
    assert client.post(f"/v1/signatures/{cancelled}/cancel", headers=key).status_code == 409
    invitation = wait_mail(mail_env, "jane", "asks you to sign", count=2)
    assert client.get(link_path(invitation)).status_code == 410

    expired = start()
    later = datetime.now(UTC) + timedelta(days=31)
    mail_env.sp.signatures.run_due(now=later)
    assert client.get(f"/v1/signatures/{expired}", headers=key).json()["status"] == "expired"
    for pid, terminal in (
        (declined, "sealpost.signature.declined"),
        (cancelled, "sealpost.signature.cancelled"),
        (expired, "sealpost.signature.expired"),
    ):
        events = _events(mail_env, pid)
        assert events[-1] == terminal and events.count(terminal) == 1


def test_parallel_signers_both_land_on_the_document(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    body = process_request(
        signer("Jane", "jane", "1", identification="none"),
        signer("Max", "max", "2", identification="none"),
        signing_order="parallel",
    )
    pid = client.post("/v1/signatures", json=body, headers=key).json()["id"]
    jane = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    max_ = open_page(client, link_path(wait_mail(mail_env, "max", "asks you to sign")))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: p.sign(drawn_signature()).json(), [jane, max_]))
    assert results == [{"status": "signed"}, {"status": "signed"}]
    signed = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key).content
    people = [
        c for c in check_signatures(signed, mail_env.sp.trust_roots) if not c.is_document_timestamp
    ]
    assert sorted(c.signer_name or "" for c in people) == ["Jane", "Max"]
    assert all(c.valid and c.intact for c in people)


def test_idempotency_key_makes_a_retried_create_safe(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    body = process_request(signer("Jane", "jane"))
    headers = {**key, "Idempotency-Key": "crm-quote-4711"}
    first = client.post("/v1/signatures", json=body, headers=headers)
    again = client.post("/v1/signatures", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/signatures", json={**body, "title": "Another"}, headers=headers)
    assert other.status_code == 409
    assert len(client.get("/v1/signatures", headers=key).json()["items"]) == 1


def test_embedding_headers_follow_the_tenant_setting(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    bad = client.put(
        "/v1/settings/signing",
        json={"frame_ancestors": ["https://crm.example.com/path"]},
        headers=key,
    )
    assert bad.status_code == 422
    ok = client.put(
        "/v1/settings/signing",
        json={"frame_ancestors": ["https://crm.example.com", "http://127.0.0.1:9000"]},
        headers=key,
    )
    assert ok.status_code == 200
    client.post("/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key)
    answer = client.get(link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors https://crm.example.com http://127.0.0.1:9000" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert answer.headers["referrer-policy"] == "no-referrer"
    origins = page_config(answer.text)["post_message_origins"]
    assert origins == ["https://crm.example.com", "http://127.0.0.1:9000"]


def test_reminders_follow_the_schedule_and_stop_once_signed(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    body = process_request(
        signer("Jane", "jane", identification="none"),
        signer("Max", "max", identification="none"),
        signing_order="parallel",
        reminder_hours=[24, 72],
    )
    pid = client.post("/v1/signatures", json=body, headers=key).json()["id"]
    wait_mail(mail_env, "jane", "asks you to sign")
    max_page = open_page(client, link_path(wait_mail(mail_env, "max", "asks you to sign")))
    assert max_page.sign(typed="Max").json() == {"status": "signed"}  # Max needs no reminder
    start = datetime.now(UTC)
    service = mail_env.sp.signatures

    assert service.run_due(now=start + timedelta(hours=23)) == 0
    assert service.run_due(now=start + timedelta(hours=25)) == 1
    reminder = wait_mail(mail_env, "jane", "^Subject: Reminder:")
    assert service.run_due(now=start + timedelta(hours=26)) == 0  # once per step
    assert service.run_due(now=start + timedelta(hours=73)) == 1
    wait_mail(mail_env, "jane", "^Subject: Reminder:", count=2)
    assert service.run_due(now=start + timedelta(hours=200)) == 0  # the schedule is over

    # each reminder carries a fresh link, which works
    page = open_page(client, link_path(reminder))
    assert page.sign(typed="Jane").json() == {"status": "signed"}
    timeline = client.get(f"/v1/signatures/{pid}", headers=key).json()["timeline"]
    notified = [e["details"] for e in timeline if e["event"] == "SignerNotified"]
    assert [n["reminder"] for n in notified] == [False, False, True, True]
    assert not any(m.startswith("Subject: Reminder:") for m in mails_to(mail_env, "max"))


def test_a_pending_signature_is_never_applied_to_a_cancelled_process(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tsa: SwitchableTsa
) -> None:
    pid, page = _signed_while_the_tsa_is_down(mail_env, client, key, tsa)
    assert client.post(f"/v1/signatures/{pid}/cancel", headers=key).status_code == 200
    tsa.up()  # the TSA is back
    assert mail_env.sp.signatures.run_due() == 0
    detail = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert detail["status"] == "cancelled"
    assert "DocumentSigned" not in [e["event"] for e in detail["timeline"]]
    revision = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key).content
    assert check_signatures(revision, mail_env.sp.trust_roots) == []
    assert page.call("GET", "/state").json()["status"] == "closed"


def test_roles_and_two_documents(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    """A signer (visible field on the quote, invisible on the terms), an approver after them,
    a viewer who only reads, a cc who gets the result: two PDFs, each with both signatures."""
    terms = contract_pdf("General terms", anchors=())
    body = process_request(
        signer("Jane Customer", "jane", "1", identification="none"),
        signer("Max Manager", "max", None, role="approver", order=2, identification="none"),
        signer("Vera Viewer", "vera", None, role="viewer", order=1, identification="none"),
        signer("Archive", "archive", None, role="cc"),
    )
    body["documents"].append({"name": "terms.pdf", "content": b64(terms)})
    created = client.post("/v1/signatures", json=body, headers=key).json()
    pid = created["id"]
    assert [s["status"] for s in created["signers"]] == [
        "notified",
        "waiting",
        "notified",
        "waiting",
    ]
    vera = open_page(client, link_path(wait_mail(mail_env, "vera", "asks you to review")))
    assert vera.sign(typed="Vera").status_code == 409  # a viewer does not sign
    assert vera.call("POST", "/view").status_code == 204
    jane = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    assert jane.sign(drawn_signature()).json() == {"status": "signed"}
    max_ = open_page(client, link_path(wait_mail(mail_env, "max", "asks you to approve")))
    assert max_.sign().json() == {"status": "signed"}  # approving needs no drawing

    done = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert done["status"] == "completed"
    assert [s["status"] for s in done["signers"]] == ["signed", "signed", "done", "done"]
    for number in (0, 1):
        pdf = client.get(
            f"/v1/signatures/{pid}/document.pdf?document={number}", headers=key
        ).content
        checks = check_signatures(pdf, mail_env.sp.trust_roots)
        people = [c for c in checks if not c.is_document_timestamp]
        assert [c.signer_name for c in people] == ["Jane Customer", "Max Manager"]
        assert all(c.ok for c in checks), checks
    copy = wait_mail(mail_env, "archive", "^Subject: Signed:")
    assert "signed by everyone" in copy
    archive_mail = next(r for r in mail_env.peer.received if "archive@recipient.test" in r.rcpt_tos)
    assert archive_mail.data.count(b"application/pdf") == 2


def test_an_expired_code_is_refused_with_its_own_message(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    from sqlalchemy import update

    from sealpost.access.tables import access_challenges

    client.post("/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key)
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    assert page.call("POST", "/otp").status_code == 200
    code = code_in(wait_mail(mail_env, "jane", "Your signing code"))
    with mail_env.sp.engine.begin() as conn:  # eleven minutes later
        conn.execute(
            update(access_challenges)
            .where(access_challenges.c.party_id == page.config["signer_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    late = page.call("POST", "/otp/verify", json={"code": code})
    assert late.status_code == 422 and "expired" in late.json()["message"]
    assert "attempts_left" not in late.json()
    page.identify(mail_env, "jane", count=2)  # a new code works


def test_the_lockout_holds_until_the_sender_vouches(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    """A new code does not reset the attempts; the signer's own 'new link' does not unlock;
    only the tenant's API does, and it closes the pages opened with older links."""
    pid = client.post(
        "/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key
    ).json()["id"]
    invitation = link_path(wait_mail(mail_env, "jane", "asks you to sign"))
    page = open_page(client, invitation)
    page.call("POST", "/otp")
    real = code_in(wait_mail(mail_env, "jane", "Your signing code"))
    wrong = "000000" if real != "000000" else "111111"
    for _ in range(3):
        page.call("POST", "/otp/verify", json={"code": wrong})
    page.call("POST", "/otp")  # a fresh code keeps the count
    left = [page.call("POST", "/otp/verify", json={"code": wrong}) for _ in range(2)]
    assert [a.status_code for a in left] == [422, 423]
    renewed = client.post(f"{invitation}/renew")
    assert renewed.status_code == 423 and "ask the sender" in renewed.text
    assert page.call("GET", "/state").json()["status"] == "locked"

    detail = client.get(f"/v1/signatures/{pid}", headers=key).json()
    sid = detail["signers"][0]["id"]
    link = client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=key).json()
    assert page.call("GET", "/state").status_code == 401  # the old page is closed
    fresh = open_page(client, urlsplit(link["url"]).path)
    assert fresh.call("GET", "/state").json()["status"] == "identify"


def test_parallel_guesses_check_at_most_five_codes(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client.post("/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key)
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    page.call("POST", "/otp")
    real = code_in(wait_mail(mail_env, "jane", "Your signing code"))
    guesses = [f"{n:06d}" for n in range(40) if f"{n:06d}" != real]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda g: page.call("POST", "/otp/verify", json={"code": g}), guesses)
        )
    assert sum(a.status_code == 422 for a in answers) == 4  # the fifth locks
    assert all(a.status_code in (422, 423) for a in answers)
    assert page.call("POST", "/otp/verify", json={"code": real}).status_code == 423


def test_a_bad_drawing_is_refused_and_the_signer_can_sign_again(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    import io

    from PIL import Image

    client.post(
        "/v1/signatures",
        json=process_request(signer("Jane", "jane", identification="none")),
        headers=key,
    )
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    huge = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(huge, "PNG")
    for bad in (b"\x89PNG\r\n\x1a\n" + b"junk" * 10, drawn_signature()[:60], huge.getvalue()):
        answer = page.sign(bad)
        assert answer.status_code == 422, answer.text
        assert page.call("GET", "/state").json()["status"] == "ready"
    assert page.sign(drawn_signature()).json() == {"status": "signed"}


def test_who_may_decline_and_what_bad_input_answers(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    body = process_request(
        signer("Jane", "jane"), signer("Vera", "vera", None, role="viewer", identification="none")
    )
    pid = client.post("/v1/signatures", json=body, headers=key).json()["id"]
    jane = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    refused = jane.call("POST", "/decline", json={"reason": "no"})
    assert refused.status_code == 409 and "code" in refused.json()["message"]
    vera = open_page(client, link_path(wait_mail(mail_env, "vera", "asks you to review")))
    assert vera.call("POST", "/decline", json={"reason": "no"}).status_code == 409
    assert client.get(f"/v1/signatures/{pid}", headers=key).json()["status"] == "in_progress"

    for hours in ([1e9], [0], [-1]):
        body = process_request(signer("Jane", "jane"), reminder_hours=hours)
        assert client.post("/v1/signatures", json=body, headers=key).status_code == 422
    for origin in ("https://a.example:99999", "https://a.example:abc", "https://*.example"):
        answer = client.put("/v1/settings/signing", json={"frame_ancestors": [origin]}, headers=key)
        assert answer.status_code == 422, origin
    ipv6 = client.put(
        "/v1/settings/signing", json={"frame_ancestors": ["http://[::1]:8443"]}, headers=key
    )
    assert ipv6.json()["frame_ancestors"] == ["http://[::1]:8443"]

    named = process_request(signer("Jane", "jane2"))
    named["documents"][0]["name"] = "契約書.pdf"
    pid = client.post("/v1/signatures", json=named, headers=key).json()["id"]
    download = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key)
    assert download.status_code == 200
    assert "filename*=UTF-8''%E5%A5%91" in download.headers["content-disposition"]


def test_signed_in_time_completes_even_if_the_tsa_returns_after_the_expiry(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tsa: SwitchableTsa
) -> None:
    pid, _page = _signed_while_the_tsa_is_down(mail_env, client, key, tsa)
    tsa.up()  # the TSA is back
    mail_env.sp.signatures.run_due(now=datetime.now(UTC) + timedelta(days=31))
    assert client.get(f"/v1/signatures/{pid}", headers=key).json()["status"] == "completed"


def test_one_viewing_record_and_one_reminder_whatever_runs_at_once(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = process_request(signer("Jane", "jane", identification="none"), reminder_hours=[1])
    pid = client.post("/v1/signatures", json=body, headers=key).json()["id"]
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    later = datetime.now(UTC) + timedelta(hours=2)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: page.call("POST", "/view"), range(4)))
        list(pool.map(lambda _: mail_env.sp.signatures.run_due(now=later), range(4)))
    events = [
        e["event"] for e in client.get(f"/v1/signatures/{pid}", headers=key).json()["timeline"]
    ]
    assert events.count("DocumentViewed") == 1
    assert events.count("SignerNotified") == 2  # the invitation and one reminder
