"""Active content through the REST API (issue 12, defect 5), on SQLite and PostgreSQL: refused
by ``POST /v1/signatures`` with a problem naming the document and what was found; accepted,
signed and sealed once the tenant allows it, with the findings in the ProcessCreated evidence
(sealed in the log) and the audit trail; and a clean document's audit trail says none was
found."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sealpost.certificates.pades.validation import check_signatures
from sealpost.signatures.model import MAX_DOCUMENTS
from tests.signatures.flow import (
    b64,
    contract_pdf,
    link_path,
    mails_to,
    open_page,
    process_request,
    signer,
    wait_mail,
)
from tests.signatures.pdf_samples import Hostile, hostile_pdfs
from tests.support.mail import MailEnv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOSTILE = hostile_pdfs()
PROBLEM = "application/problem+json"


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {"certificates_enabled": False, "signing_worker_enabled": False}


def _create(client: TestClient, key: dict[str, str], *documents: tuple[str, bytes]) -> Any:
    body = process_request(signer("Jane Customer", "jane", anchor=None, identification="none"))
    body["documents"] = [{"name": name, "content": b64(pdf)} for name, pdf in documents]
    return client.post("/v1/signatures", json=body, headers=key)


def _settings(client: TestClient, key: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.put("/v1/settings/signing", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/settings/signing", headers=key).json() == answer.json()
    result: dict[str, Any] = answer.json()
    return result


def _text(pdf: bytes) -> str:
    out = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(out.stdout.decode().split())


def _created_record(client: TestClient, key: dict[str, str], pid: str) -> dict[str, Any]:
    timeline = client.get(f"/v1/signatures/{pid}", headers=key).json()["timeline"]
    assert timeline[0]["event"] == "ProcessCreated"
    record: dict[str, Any] = timeline[0]
    return record


def test_active_content_is_refused_with_a_problem_naming_the_document_and_what_was_found(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    assert client.get("/v1/settings/signing", headers=key).json() == {
        "frame_ancestors": [],
        "allow_active_content": False,
    }
    for hostile in HOSTILE:
        name = f"{hostile.name}.pdf"
        answer = _create(client, key, ("quote.pdf", contract_pdf()), (name, hostile.pdf))
        assert answer.status_code == 422, (hostile.name, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert problem["type"] == "urn:sealpost:problem:active_content"
        assert problem["title"] == "The document contains active content"
        assert problem["document"] == name
        assert hostile.finding in problem["findings"]
        assert problem["detail"].startswith(f'"{name}" contains active content')
        assert hostile.finding in problem["detail"]
    assert client.get("/v1/signatures", headers=key).json()["items"] == []
    assert mails_to(mail_env, "jane") == []  # nobody was asked to sign


def _check_findings(documents: list[dict[str, Any]], hostile: list[Hostile]) -> None:
    assert len(documents) == len(hostile)
    for sample, document in zip(hostile, documents, strict=True):
        checked = document["active_content"]
        assert checked["allow_active_content"] is True
        assert {"kind": sample.kind, "text": sample.finding} in checked["findings"], sample.name


def test_a_tenant_that_allows_active_content_gets_it_signed_and_the_findings_recorded(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    crm = "https://crm.example.com"
    assert _settings(client, key, frame_ancestors=[crm], allow_active_content=True) == {
        "frame_ancestors": [crm],
        "allow_active_content": True,
    }
    hostile = HOSTILE[:MAX_DOCUMENTS]
    created = _create(client, key, *((f"{h.name}.pdf", h.pdf) for h in hostile))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]

    record = _created_record(client, key, pid)
    _check_findings(record["details"]["documents"], hostile)
    # the same, sealed in the log: the record in its evidence bundle
    evidence = client.get(f"/v1/signatures/{pid}/evidence?wait=10", headers=key).json()
    sealed = next(b for b in evidence["bundles"] if b["record"]["id"] == record["record_id"])
    _check_findings(sealed["record"]["details"]["documents"], hostile)

    # accepted means signable: the signer signs all of them, each signature validates
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    assert page.sign(typed="Jane Customer").json() == {"status": "signed"}
    for number in (0, len(hostile) - 1):
        signed = client.get(
            f"/v1/signatures/{pid}/document.pdf?document={number}", headers=key
        ).content
        checks = check_signatures(signed, mail_env.sp.trust_roots)
        assert checks and all(c.intact and c.valid for c in checks)

    text = _text(client.get(f"/v1/signatures/{pid}/audit.pdf", headers=key).content)
    assert text.count("Active content found and accepted because the sender allows") == len(hostile)
    for sample in hostile:
        assert sample.finding in text, sample.name
    assert "active content found and allowed in javascript-name-tree.pdf" in text

    # withdrawn (a PUT without it), the same document is refused again
    assert _settings(client, key, frame_ancestors=[crm])["allow_active_content"] is False
    again = _create(client, key, ("again.pdf", hostile[0].pdf))
    assert again.status_code == 422 and again.json()["document"] == "again.pdf"


def test_a_clean_document_is_recorded_as_checked_with_no_active_content_found(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    created = _create(client, key, ("quote.pdf", contract_pdf()))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    (document,) = _created_record(client, key, pid)["details"]["documents"]
    assert document["active_content"] == {"findings": [], "allow_active_content": False}
    text = _text(client.get(f"/v1/signatures/{pid}/audit.pdf", headers=key).content)
    assert "Active content no active content found" in text
    assert "documents checked, no active content found" in text
