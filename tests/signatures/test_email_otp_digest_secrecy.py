"""Review 2 (HIGH), email: the tenant must not recover a signer's code from a sealed digest.

The tenant sees its 'Your signing code' email in ``GET /v1/communications`` (sender,
recipient, subject, Message-ID, submission time) and the whole message's SHA-256 in the list
and in every evidence record.  The message is a fixed template around six digits, so it was
rebuilt around each of 10^6 codes and the code found from the digest; the tenant, who can
open the signer's page itself (``POST .../link``), then signed in the signer's place.  Now an
access-secret email carries ``Sealpost-Nonce: <128 random bits>``: the same hunt over every
digest the tenant sees finds nothing, while the operator's stored bytes still match the seal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sealpost.communications.email.mime import build_message
from sealpost.communications.email.outgoing import NONCE_HEADER
from tests.certificates.support import poppler
from tests.signatures.flow import code_in, link_path, open_page, process_request, signer, wait_mail
from tests.sms.test_sms_codes import CodesEnv, codes_env, codes_overrides, smsc
from tests.support.digest_hunt import brute_force, digests_in

__all__ = ["codes_env", "codes_overrides", "smsc"]  # fixtures of the SMS code tests

TEXT = (
    'Hello Ana Ruiz,\n\nYour code to sign "Repair quote 4711" is {code}.\n'
    "It is valid for 10 minutes. Never share it: nobody from "
    "the sender or from Sealpost will ask you for it.\n"
)


def _rebuilder(listed: dict[str, Any]) -> Any:
    """The review's attacker: the message rebuilt from what the list shows, for each code (Date
    within a second of submitted_at), and the text part alone (part digests)."""
    at = datetime.fromisoformat(listed["submitted_at"].replace("Z", "+00:00"))
    splits = []
    for d in (0, -1, 1):
        raw = build_message(
            sender=listed["sender"],
            to=[listed["recipient"]],
            subject=listed["subject"],
            text=TEXT.format(code="999999"),
            html=None,
            attachments=(),
            message_id=listed["message_id"],
            date=at.replace(microsecond=0) + timedelta(seconds=d),
        )
        splits.append(tuple(raw.split(b"999999")))
    body = tuple(TEXT.format(code="999999").encode().split(b"999999"))

    def candidates(code: bytes) -> Iterator[bytes]:
        for head, tail in splits:
            yield head + code + tail
        yield body[0] + code + body[1]

    return candidates


def _wait(predicate: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def test_the_tenant_finds_no_email_code_in_any_digest_and_the_signer_still_signs(
    codes_env: CodesEnv, tmp_path: Path
) -> None:
    env = codes_env
    created = env.client.post(
        "/v1/signatures", json=process_request(signer("Ana Ruiz", "ana")), headers=env.key
    ).json()
    pid, sid = created["id"], created["signers"][0]["id"]
    link = env.client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=env.key).json()
    page = open_page(env.client, "/sign/" + link["url"].rsplit("/sign/", 1)[1])
    assert page.call("POST", "/otp").status_code == 200
    code = code_in(wait_mail(env.mail, "ana", "Your signing code"))

    def listed_code_mail() -> dict[str, Any] | None:
        items = env.client.get("/v1/communications", headers=env.key).json()["items"]
        mail = next((i for i in items if i["subject"] == "Your signing code"), None)
        return mail if mail is not None and mail["status"] == "delivered" else None

    listed = _wait(listed_code_mail, "the code mail was not delivered")
    cid = listed["id"]
    seen: list[Any] = [
        env.client.get("/v1/communications", headers=env.key).json(),
        env.client.get(f"/v1/communications/{cid}", headers=env.key).json(),
    ]
    evidence = env.client.get(f"/v1/communications/{cid}/evidence?wait=10", headers=env.key)
    assert evidence.status_code == 200 and not evidence.json()["pending"], evidence.text
    seen.append(evidence.json())
    events = [b["record"]["event"]["name"] for b in evidence.json()["bundles"]]
    assert "SubmissionAcceptance" in events and len(events) >= 2, events  # and its delivery
    for bundle in evidence.json()["bundles"]:
        etsi = env.client.get(f"/v1/evidence/{bundle['record']['id']}?format=etsi", headers=env.key)
        assert etsi.status_code == 200, etsi.text
        seen.append(etsi.json())
    pdf = _wait(
        lambda: (
            r.content
            if (
                r := env.client.get(f"/v1/communications/{cid}/certificate.pdf", headers=env.key)
            ).status_code
            == 200
            else None
        ),
        "no certificate",
    )
    (tmp_path / "c.pdf").write_bytes(pdf)
    words = poppler("pdftotext", tmp_path / "c.pdf", "-").stdout
    assert "not embedded" in words
    seen.append(words)
    assert (
        env.client.get(f"/v1/communications/{cid}/original.eml", headers=env.key).status_code == 403
    )

    digests = digests_in(seen)
    assert listed["content_sha256"] in digests
    hunt = _rebuilder(listed)
    # would the hunt work?  the operator's bytes without the nonce line are found from their
    # plain digest: the rebuild is exact, and only the nonce stands between tenant and code
    stored = env.sp.contents.get(listed["content_sha256"])
    assert hashlib.sha256(stored).hexdigest() == listed["content_sha256"]  # the seal holds
    first, rest = stored.split(b"\r\n", 1)
    assert first.startswith(f"{NONCE_HEADER}: ".encode()) and len(first.split(b": ")[1]) == 32
    nonce = first.split(b": ")[1].decode()
    assert brute_force(hunt, digests | {hashlib.sha256(rest).hexdigest()}) == code
    assert brute_force(hunt, digests) is None  # nothing the tenant sees gives the code
    shown = repr(seen)
    assert nonce not in shown and NONCE_HEADER not in shown and code not in shown

    # the real signer, with the mailbox, on the page its own link opens: signs
    created = env.client.post(
        "/v1/signatures", json=process_request(signer("Eva Gil", "eva")), headers=env.key
    )
    assert created.status_code == 201
    own = open_page(env.client, link_path(wait_mail(env.mail, "eva", "/sign/")))
    own.identify(env.mail, "eva")
    signed = own.sign(typed="Eva Gil")
    assert signed.status_code == 200 and signed.json()["status"] == "signed", signed.text
