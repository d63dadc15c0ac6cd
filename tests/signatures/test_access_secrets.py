"""The sender cannot read a signer's link or code through its own API (security review).

Invitations and codes are the tenant's certified communications; their originals answer 403
``access_secret_withheld`` and their certificates embed none, while the signer's own flow
(link, code, signature) works as before.
"""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.certificates.embedded import read_embedded_files
from tests.signatures.flow import (
    code_in,
    link_path,
    open_page,
    process_request,
    signer,
    wait_mail,
)
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

WITHHELD = "urn:sealpost:problem:access_secret_withheld"


def test_the_tenant_reads_neither_the_signing_link_nor_the_code(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    created = client.post(
        "/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key
    )
    assert created.status_code == 201, created.text
    path = link_path(wait_mail(mail_env, "jane", "asks you to sign"))
    token = path.rsplit("/", 1)[1]
    page = open_page(client, path)
    assert page.call("POST", "/otp").status_code == 200
    code_mail = wait_mail(mail_env, "jane", "Your signing code")
    code = code_in(code_mail)
    assert code not in code_mail.splitlines()[0]  # the subject line: listed to the sender

    listed = client.get(
        "/v1/communications", params={"recipient": f"jane@{RECIPIENT_DOMAIN}"}, headers=key
    ).json()["items"]
    assert len(listed) == 2  # the invitation and the code
    for item in listed:
        assert code not in (item["subject"] or "")
        original = client.get(f"/v1/communications/{item['id']}/original.eml", headers=key)
        assert original.status_code == 403 and original.json()["type"] == WITHHELD
        assert token not in original.text and code not in original.text
        detail = client.get(f"/v1/communications/{item['id']}", headers=key).text
        assert token not in detail and f"is {code}" not in detail
        mail_env.wait_certificate(item["id"], 1)
        pdf = client.get(f"/v1/communications/{item['id']}/certificate.pdf", headers=key)
        assert pdf.status_code == 200
        files = read_embedded_files(PdfFileReader(io.BytesIO(pdf.content)))
        assert "original.eml" not in files
        assert not any(token.encode() in f or f"is {code}".encode() in f for f in files.values())

    answer = page.call("POST", "/otp/verify", json={"code": code})
    assert answer.status_code == 200, answer.text
    assert page.sign(typed="Jane").status_code == 200


def test_a_link_the_tenant_asks_for_does_not_inherit_the_signers_identification(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    """Jane entered her code and is reading; the tenant asks the API for a fresh link (it
    closes Jane's page).  Whoever opens it must enter a code again: the tenant cannot sign in
    her place, and the code Jane entered is spent."""
    body = process_request(signer("Jane", "jane"))
    created = client.post("/v1/signatures", json=body, headers=key).json()
    page = open_page(client, link_path(wait_mail(mail_env, "jane", "asks you to sign")))
    page.identify(mail_env, "jane")
    assert page.call("GET", "/state").json()["status"] != "identify"

    signer_id = created["signers"][0]["id"]
    fresh = client.post(
        f"/v1/signatures/{created['id']}/signers/{signer_id}/link", headers=key
    ).json()["url"]
    tenant_page = open_page(client, "/sign/" + fresh.rsplit("/", 1)[1])
    assert tenant_page.call("GET", "/state").json()["status"] == "identify"
    assert tenant_page.sign(typed="Jane").status_code in (401, 403, 409)
    assert page.call("GET", "/state").status_code in (401, 410)  # Jane's page was closed
