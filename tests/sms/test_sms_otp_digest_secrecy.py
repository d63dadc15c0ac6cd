"""Review 2 (HIGH), SMS: the tenant must not recover a signer's code from a sealed digest.

The code SMS is a fixed template around six digits.  Its plain SHA-256 (once shown as
``text_sha256`` and sealed as the record's content digest) gave the code back in 0.3 s, and
the tenant, who can open the signer's page through ``POST .../link``, signed in the signer's
place.  Now the sealed digest is ``sha256(nonce ‖ 0x00 ‖ text)`` with a 128-bit nonce only the
operator holds: every digest the tenant sees (the SMS, its evidence bundles and ETSI views,
its certificate) is tried against all 10^6 codes, and none gives one.  The real signer,
holding the phone, still signs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sealpost.events.tables import outbox_events
from sealpost.sms.service import COMMITMENT, text_commitment
from tests.certificates.support import poppler
from tests.signatures.flow import link_path, open_page, process_request, signer, wait_mail
from tests.sms.test_sms_codes import CodesEnv, codes_env, codes_overrides, smsc
from tests.support.digest_hunt import brute_force, digests_in

__all__ = ["codes_env", "codes_overrides", "smsc"]  # fixtures of the SMS code tests

PHONE = "+34612345612"


def _template(code: bytes) -> bytes:
    """The code SMS exactly as signatures/page.py words it."""
    return b"Your signing code: " + code + b". Valid 10 min. Never share it."


def _candidates(code: bytes) -> tuple[bytes, ...]:
    """The whole text (a code SMS is one segment, so also the segment's text)."""
    return (_template(code),)


def _sms_ids(env: CodesEnv) -> list[str]:
    """The SMS the tenant hears of (``sealpost.sms.accepted`` in its event feed)."""
    o = outbox_events.c
    with env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(o.type, o.payload).where(o.tenant_id == env.mail.tenant_id)
        ).all()
    return [json.loads(p)["data"]["sms_id"] for t, p in rows if t == "sealpost.sms.accepted"]


def _wait(predicate: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def _tenant_view(env: CodesEnv, sms_id: str, tmp_path: Path) -> tuple[list[Any], str]:
    """Everything the tenant's API gives about the SMS, once final and sealed: the detail, every
    record's bundle and ETSI view, and the certificate's words."""
    detail = env.client.get(f"/v1/sms/{sms_id}", headers=env.key).json()
    seen: list[Any] = [detail]
    for entry in detail["evidence"]:
        for fmt in ("bundle", "etsi"):
            answer = env.client.get(
                f"/v1/evidence/{entry['record_id']}?wait=10&format={fmt}", headers=env.key
            )
            assert answer.status_code == 200, answer.text
            seen.append(answer.json())
    pdf = _wait(
        lambda: (
            r.content
            if (
                r := env.client.get(f"/v1/sms/{sms_id}/certificate.pdf", headers=env.key)
            ).status_code
            == 200
            else None
        ),
        "no SMS certificate",
    )
    path = tmp_path / f"{sms_id}.pdf"
    path.write_bytes(pdf)
    words = poppler("pdftotext", path, "-").stdout
    seen.append(words)
    return seen, " ".join(words.split())


def test_the_tenant_finds_no_sms_code_in_any_digest_and_the_signer_still_signs(
    codes_env: CodesEnv, tmp_path: Path
) -> None:
    env = codes_env
    # the attack: the tenant opens the signer's page itself and has a code sent
    body = process_request(signer("Lucía", "lucia", identification="sms_otp", phone=PHONE))
    created = env.client.post("/v1/signatures", json=body, headers=env.key).json()
    pid, sid = created["id"], created["signers"][0]["id"]
    link = env.client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=env.key).json()
    page = open_page(env.client, "/sign/" + link["url"].rsplit("/sign/", 1)[1])
    assert page.call("POST", "/otp").status_code == 200
    sms_id = _wait(lambda: _sms_ids(env), "no sealpost.sms.accepted")[-1]
    text = env.wait_text(PHONE, "Your signing code")
    code = text.split(": ", 1)[1][:6]
    assert text.encode() == _template(code.encode())  # the attacker's template is the real one
    _wait(
        lambda: env.sp.sms_repository.get(sms_id).status == "delivered",  # type: ignore[union-attr]
        "the code SMS was not delivered",
    )
    seen, words = _tenant_view(env, sms_id, tmp_path)
    shown = seen[0]
    assert shown["text"] is None and shown["text_withheld"] is True
    assert shown["text_sha256"] is None  # no plain digest of the text

    digests = digests_in(seen)
    assert digests, "the tenant sees the sealed digests (the hunt must have targets)"
    # would the hunt work?  the plain digest of the real text is found in a million tries
    plain = hashlib.sha256(text.encode()).hexdigest()
    assert brute_force(_candidates, digests | {plain}) == code
    assert brute_force(_candidates, digests) is None  # ...and nothing the tenant sees gives it

    # what is sealed is the commitment, named so a verifier knows how it is made, and the
    # operator opens it with the nonce it keeps beside the text (the tenant never sees it)
    stored = env.sp.sms_repository.get(sms_id)
    assert stored is not None and stored.text_nonce is not None
    commitment = text_commitment(stored.text_nonce, text)
    acceptance = seen[1]["record"]
    assert acceptance["event"]["name"] == "SubmissionAcceptance"
    assert acceptance["content"]["sha256"] == commitment
    assert acceptance["content"].get("parts", []) == []
    assert acceptance["details"]["digest"] == COMMITMENT == "sha256(nonce ‖ 0x00 ‖ text)"
    assert stored.text_nonce not in json.dumps(seen) and code not in json.dumps(seen)
    assert "Text commitment" in words and commitment[:32] in words.replace(" ", "")
    assert "random 16-byte nonce, one zero byte and the text" in words
    assert "(sha256(nonce ‖ 0x00 ‖ text))" in words  # as details.digest names it

    # a guess is all the tenant has left: refused, and the process stays unsigned
    refused = page.call("POST", "/otp/verify", json={"code": f"{(int(code) + 1) % 10**6:06d}"})
    assert refused.status_code == 422

    # the real signer, with the phone, on the page its own link opens: signs
    body = process_request(signer("Marta", "marta", identification="sms_otp", phone=PHONE))
    assert env.client.post("/v1/signatures", json=body, headers=env.key).status_code == 201
    own = open_page(env.client, link_path(wait_mail(env.mail, "marta", "/sign/")))
    assert own.call("POST", "/otp").status_code == 200
    mine = env.wait_text(PHONE, "Your signing code", count=2)
    answer = own.call("POST", "/otp/verify", json={"code": mine.split(": ", 1)[1][:6]})
    assert answer.status_code == 200, answer.text
    signed = own.sign(typed="Marta")
    assert signed.status_code == 200 and signed.json()["status"] == "signed", signed.text
