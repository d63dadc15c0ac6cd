"""The journal address over real SMTP (the app's inbound port) and Sealpost's own sent mail
archived automatically: byte-exact, once per content, the envelope kept, malformed mail kept
and listed, huge mail streamed, and a customer's answer to a sent message in its thread."""

from __future__ import annotations

import hashlib
import json
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.pickup.flow import send_pickup
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

Headers = dict[str, str]


def journal_address(client: TestClient, key: Headers) -> str:
    r = client.get("/v1/archive/settings", headers=key)
    assert r.status_code == 200, r.text
    address: str = r.json()["journal_address"]
    return address


def journal(env: MailEnv, address: str, raw: bytes, **kwargs: Any) -> tuple[int, bytes]:
    """Send ``raw`` to ``address`` on the inbound port; returns the reply to DATA."""
    mail_from = kwargs.pop("mail_from", "ventas@acme.test")
    with smtplib.SMTP("127.0.0.1", env.sp.smtp_ports["inbound"], timeout=60) as smtp:
        smtp.ehlo("mx.acme.test")
        code, text = smtp.mail(mail_from, kwargs.pop("mail_options", []))
        assert code == 250, text
        code, text = smtp.rcpt(address)
        assert code == 250, text
        return smtp.data(raw)


def token_of(address: str) -> str:
    return address.split("@")[0].removeprefix("journal+")


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def message(subject: str, *, body: str = "Hola.\n", **headers: str) -> bytes:
    m = EmailMessage()
    m["From"] = headers.pop("sender", "cliente@gmail.com")
    m["To"] = headers.pop("to", "ventas@acme.test")
    m["Subject"] = subject
    m["Date"] = "Mon, 07 Dec 2026 09:00:00 +0100"
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m.as_bytes(policy=SMTP_POLICY)


def archived(client: TestClient, key: Headers, message_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/archive/messages/{message_id}", headers=key)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def archived_id(reply: bytes) -> str:
    return reply.decode().rsplit(" ", 1)[-1]


def wait(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_a_journaled_message_is_archived_byte_exact_with_its_envelope(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    assert address.startswith("journal+") and address.endswith("@bounces.sealpost.test")
    # a line starting with a dot (the client doubles it, RFC 5321 §4.5.2) and one that is a
    # lone dot in the text; no Message-ID at all
    raw = crlf(
        "From: cliente@gmail.com\nTo: ventas@acme.test\nSubject: Pedido 9\n\n"
        ".hidden line\n..two dots\nend\n"
    )
    code, reply = journal(mail_env, address, raw, mail_from="ventas@acme.test")
    assert code == 250, reply
    found = archived(mail_client, mail_key, archived_id(reply))
    assert found["source"] == "journal" and found["message_id"] is None
    assert found["sha256"] == hashlib.sha256(raw).hexdigest()
    body = mail_client.get(f"/v1/archive/messages/{found['id']}/raw", headers=mail_key)
    assert body.content == raw  # what the client sent, dots restored, every CRLF kept
    [sighting] = found["sightings"]
    envelope = json.loads(sighting["ref"])
    assert envelope["mail_from"] == "ventas@acme.test"
    # the token is the address's only secret: the sighting keeps the address without it
    assert envelope["rcpt_to"] == ["journal+\N{HORIZONTAL ELLIPSIS}@bounces.sealpost.test"]
    assert token_of(address) not in json.dumps(found)
    assert envelope["helo"] == "mx.acme.test" and envelope["client_ip"] == "127.0.0.1"
    # no final line break: the client must end the last line before ".", so the message it
    # transmitted (and Sealpost stores) has one more CRLF than it was given
    unterminated = crlf("From: cliente@gmail.com\nSubject: sin fin\n\nsin salto")
    code, reply = journal(mail_env, address, unterminated)
    found = archived(mail_client, mail_key, archived_id(reply))
    assert found["sha256"] == hashlib.sha256(unterminated + b"\r\n").hexdigest()


def test_an_unknown_journal_token_is_refused_at_rcpt(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    wrong = "journal+" + "0" * 32 + "@bounces.sealpost.test"
    assert wrong != address
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.mail("ventas@acme.test")
        code, text = smtp.rcpt(wrong)
        assert (code, text[:5]) == (550, b"5.1.1")
        # the journal and a bounce in one transaction: the second is refused for now
        assert smtp.rcpt(address)[0] == 250
        assert smtp.rcpt("bounces@bounces.sealpost.test")[0] == 452


def test_the_same_message_journaled_twice_and_uploaded_is_stored_once(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    raw = message("Garantía", Message_ID="<g1@gmail.com>")
    first = journal(mail_env, address, raw)
    second = journal(mail_env, address, raw)  # two journaling servers, or a retry
    assert first[0] == second[0] == 250
    assert archived_id(first[1]) == archived_id(second[1])
    upload = mail_client.post(
        "/v1/archive/messages",
        content=raw,
        headers={**mail_key, "Content-Type": "message/rfc822"},
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["duplicate"] is True
    assert upload.json()["message"]["id"] == archived_id(first[1])
    found = archived(mail_client, mail_key, archived_id(first[1]))
    assert [s["source"] for s in found["sightings"]] == ["journal", "journal", "api"]
    listed = mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"]
    assert len(listed) == 1


def test_malformed_mime_and_8bit_headers_are_archived_byte_exact_and_listed(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    broken = crlf(
        "From: cliente@gmail.com\nTo: ventas@acme.test\nSubject: roto\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
        "--b1\nContent-Type: text/plain\n\nparte uno\n--b2\nnever closed\n"
    )
    latin1 = (
        b"From: =?utf-8?q?Jos=C3=A9?= <jose@gmail.com>\r\nTo: ventas@acme.test\r\n"
        b"Subject: Reclamaci\xf3n urgente\r\n\r\nSin codificar.\r\n"
    )
    utf8 = crlf(
        "From: María <maría@correo.es>\nTo: ventas@acme.test\nSubject: Cancelación\n\nHola.\n"
    )
    long_line = crlf("From: cliente@gmail.com\nSubject: largo\n\n" + "x" * 5000 + "\n.y\nfin\n")
    results = {}
    for name, raw, options in (
        ("long line", long_line, []),  # RFC 5321 §4.5.3.1.6 says 1000 octets: kept all the same
        ("broken", broken, []),
        ("latin1", latin1, ["BODY=8BITMIME"]),
        ("utf8", utf8, ["SMTPUTF8", "BODY=8BITMIME"]),
    ):
        code, reply = journal(mail_env, address, raw, mail_options=options)
        assert code == 250, (name, reply)
        found = archived(mail_client, mail_key, archived_id(reply))
        got = mail_client.get(f"/v1/archive/messages/{found['id']}/raw", headers=mail_key)
        assert got.content == raw, name
        results[name] = found
    assert "not closed" in results["broken"]["malformed"]
    assert "8-bit header bytes" in results["latin1"]["malformed"]
    assert results["utf8"]["malformed"] is None  # RFC 6532: UTF-8 headers are valid
    assert results["utf8"]["subject"] == "Cancelación"
    assert "SMTPUTF8" in json.loads(results["utf8"]["sightings"][0]["ref"])["mail_options"]


def test_a_failed_archive_answers_451_and_the_retry_loses_nothing(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    root = Path(mail_env.sp.archive_blobs.root)
    root.mkdir(parents=True, exist_ok=True)
    aside = root.with_name("archive-aside")
    root.rename(aside)
    root.write_bytes(b"not a directory: the archive's storage is broken")
    raw = message("Factura 12", Message_ID="<f12@gmail.com>")
    try:
        code, reply = journal(mail_env, address, raw)
    finally:
        root.unlink()
        aside.rename(root)
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"] == []
    code, reply = journal(mail_env, address, raw)  # the sending server retries
    assert code == 250
    assert archived(mail_client, mail_key, archived_id(reply))["message_id"] == "<f12@gmail.com>"


SENDER = """
import hashlib, smtplib, sys
port, address, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
head = b"From: cliente@gmail.com\\r\\nTo: ventas@acme.test\\r\\nSubject: Big\\r\\n\\r\\n"
line = b"." + b"x" * 74 + b"\\r\\n"  # every line dot-stuffed on the wire
raw = head + line * (size // len(line))
with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
    smtp.ehlo("mx.acme.test")
    smtp.mail("ventas@acme.test")
    smtp.rcpt(address)
    code, reply = smtp.data(raw)
print(code, reply.decode(), hashlib.sha256(raw).hexdigest(), len(raw))
"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("mail_overrides", [{"smtp_max_message_bytes": 10 * 1024 * 1024}])
def test_a_message_larger_than_the_inbound_limit_is_journaled_with_bounded_memory(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    port = mail_env.sp.smtp_ports["inbound"]
    peak, baseline, done = [0], _rss(), threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        sent = subprocess.run(
            [
                sys.executable,
                "-c",
                SENDER,
                str(port),
                address,
                "30000000",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout.split()
    finally:
        done.set()
        sampler.join()
    code, digest, size = sent[0], sent[-2], int(sent[-1])
    assert code == "250", sent
    found = archived(mail_client, mail_key, sent[-3])
    assert (found["sha256"], found["size"]) == (digest, size)
    assert size > 29_000_000
    # aiosmtpd's own DATA would hold the lines and their join: more than twice the size
    growth = peak[0] - baseline
    assert growth < 24 * 1024 * 1024, f"RSS grew {growth} bytes for a {size}-byte message"


def test_an_email_sent_through_the_api_is_archived_as_outbound_and_the_answer_joins_it(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    client, sp = mail_client, mail_env.sp
    assert (
        client.patch(
            "/v1/archive/settings", json={"own_domains": ["acme.test"]}, headers=mail_key
        ).status_code
        == 200
    )
    made = client.post(
        "/v1/archive/agents", json={"email": "care@acme.test", "role": "agent"}, headers=mail_key
    )
    assert made.status_code == 201, made.text
    agent_id, agent_key = made.json()["id"], {"Authorization": f"Bearer {made.json()['api_key']}"}
    sent = client.post(
        "/v1/communications",
        json={
            "from": "care@acme.test",
            "to": [f"ann@{RECIPIENT_DOMAIN}"],
            "subject": "Su pedido 77",
            "text": "Su pedido sale mañana.",
        },
        headers=mail_key,
    )
    assert sent.status_code == 201, sent.text
    communication_id = sent.json()["communications"][0]["id"]
    sp.start_events()  # positions the events the archive's follower reads
    sp.start_archive()

    def outbound() -> dict[str, Any] | None:
        items = client.get("/v1/archive/messages", headers=mail_key).json()["items"]
        return next((m for m in items if m["source"] == "sealpost"), None)

    mine = wait(outbound)
    assert mine["direction"] == "outbound" and mine["subject"] == "Su pedido 77"
    original = client.get(f"/v1/communications/{communication_id}/original.eml", headers=mail_key)
    raw = client.get(f"/v1/archive/messages/{mine['id']}/raw", headers=mail_key)
    assert raw.content == original.content  # the bytes its SubmissionAcceptance seals
    detail = archived(client, mail_key, mine["id"])
    assert [(s["source"], s["ref"]) for s in detail["sightings"]] == [
        ("sealpost", communication_id)
    ]
    thread = client.get(f"/v1/archive/threads/{mine['thread_id']}", headers=mail_key).json()
    assert thread["owner_agent_id"] == agent_id  # the agent who sent it owns the thread

    # the customer answers to another address of the company, which journals it
    communication = sp.communications.get(communication_id)
    assert communication is not None
    answer = message(
        "Re: Su pedido 77",
        sender=f"ann@{RECIPIENT_DOMAIN}",
        to="ventas@acme.test",
        In_Reply_To=communication.message_id,
        body="¿Puede ser el jueves?\n",
    )
    code, reply = journal(
        mail_env, journal_address(client, mail_key), answer, mail_from=f"ann@{RECIPIENT_DOMAIN}"
    )
    assert code == 250, reply
    theirs = archived(client, mail_key, archived_id(reply))
    assert theirs["direction"] == "inbound"
    assert theirs["thread_id"] == mine["thread_id"]
    inbox = client.get("/v1/archive/inbox", headers=agent_key).json()
    assert [(n["kind"], n["thread_id"]) for n in inbox] == [("customer_wrote", mine["thread_id"])]


def test_messages_carrying_an_access_secret_are_never_archived(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    sp = mail_env.sp
    send = sp.certified_mailer.send
    common: dict[str, Any] = {
        "tenant_id": mail_env.tenant_id,
        "sender": "care@acme.test",
        "to": f"bob@{RECIPIENT_DOMAIN}",
        "identification": {"method": "test"},
        "details": {},
    }
    secret = send(subject="Your code", text="Code: 123456", access_secret=True, **common)
    plain = send(subject="Plain notice", text="Nothing secret.", **common)
    sp.start_events()
    sp.start_archive()

    def archived_refs() -> list[str]:
        items = mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"]
        refs = []
        for item in items:
            refs += [s["ref"] for s in archived(mail_client, mail_key, item["id"])["sightings"]]
        return refs

    assert wait(lambda: plain in archived_refs())
    # the follower read them in order: the secret one, accepted first, was skipped
    assert secret not in archived_refs()


def test_a_registered_pickup_is_archived_but_its_notice_with_the_link_is_not(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    client, sp = mail_client, mail_env.sp
    cid = send_pickup(client, mail_key, "deb")
    notice = wait(
        lambda: (
            (client.get(f"/v1/communications/{cid}", headers=mail_key).json()["pickup"] or {})
            .get("notice", {})
            .get("communication_id")
        )
    )
    later = client.post(
        "/v1/communications",
        json={
            "from": "claims@acme.test",
            "to": [f"eve@{RECIPIENT_DOMAIN}"],
            "subject": "Accepted after the notice",
            "text": "Plain.",
        },
        headers=mail_key,
    ).json()["communications"][0]["id"]
    sp.start_events()
    sp.start_archive()

    def refs() -> dict[str, dict[str, Any]]:
        items = client.get("/v1/archive/messages", headers=mail_key).json()["items"]
        return {
            s["ref"]: item
            for item in items
            for s in archived(client, mail_key, item["id"])["sightings"]
        }

    found = wait(lambda: later in (seen := refs()) and seen)
    assert found[cid]["subject"] == "Claim 4711" and found[cid]["direction"] == "outbound"
    assert found[cid]["attachment_names"] == ["decision.pdf"]
    assert notice not in found  # its single-use link must never reach an agent


def test_one_transaction_to_two_tenants_journal_addresses_is_archived_for_each(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    sp = mail_env.sp
    other = sp.tenants.create("other-company").id
    other_key = {"Authorization": f"Bearer {sp.tenants.issue_api_key(other).secret}"}
    mine, theirs = journal_address(mail_client, mail_key), journal_address(mail_client, other_key)
    raw = message("Para los dos", Message_ID="<both@gmail.com>")
    with smtplib.SMTP("127.0.0.1", sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.mail("cliente@gmail.com")
        assert smtp.rcpt(mine)[0] == 250 and smtp.rcpt(theirs)[0] == 250
        code, reply = smtp.data(raw)
    assert code == 250, reply
    ids = reply.decode().split(" ")[-2:]
    first = archived(mail_client, mail_key, ids[0])
    second = archived(mail_client, other_key, ids[1])
    assert first["sha256"] == second["sha256"] == hashlib.sha256(raw).hexdigest()
    # each tenant sees its own copy only
    assert mail_client.get(f"/v1/archive/messages/{ids[1]}", headers=mail_key).status_code == 404
    # neither sighting names a journal token, its own or the other tenant's
    for seen in (first, second):
        [sighting] = seen["sightings"]
        assert token_of(mine) not in sighting["ref"] and token_of(theirs) not in sighting["ref"]
        assert json.loads(sighting["ref"])["rcpt_to"] == [
            "journal+\N{HORIZONTAL ELLIPSIS}@bounces.sealpost.test"
        ]


def test_an_agent_reading_a_journaled_message_never_sees_the_journal_token(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    r = mail_client.post(
        "/v1/archive/agents", json={"email": "ana@acme.test", "role": "agent"}, headers=mail_key
    )
    assert r.status_code == 201, r.text
    ana = {"Authorization": f"Bearer {r.json()['api_key']}"}
    code, reply = journal(mail_env, address, message("Consulta", Message_ID="<c1@gmail.com>"))
    assert code == 250, reply
    assert mail_client.get("/v1/archive/settings", headers=ana).status_code == 403
    seen = mail_client.get(f"/v1/archive/messages/{archived_id(reply)}", headers=ana)
    assert seen.status_code == 200, seen.text  # an unassigned thread: the shared queue
    assert seen.json()["sightings"] and token_of(address) not in seen.text


def test_the_admin_rotates_the_journal_token_and_the_old_address_stops_at_once(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    from sqlalchemy import select

    from sealpost.events.tables import outbox_events
    from sealpost.ledger.tables import evidence_records

    old = journal_address(mail_client, mail_key)
    r = mail_client.patch(
        "/v1/archive/settings", json={"rotate_journal_token": True}, headers=mail_key
    )
    assert r.status_code == 200, r.text
    new = r.json()["journal_address"]
    assert new != old and new.startswith("journal+")
    assert journal_address(mail_client, mail_key) == new
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.mail("ventas@acme.test")
        assert smtp.rcpt(old)[0] == 550
    code, reply = journal(mail_env, new, message("Tras rotar"))
    assert code == 250, reply
    e = evidence_records.c
    with mail_env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(e.subject_type, e.subject_id, e.canonical).where(
                e.event == "JournalAddressRotated"
            )
        ).all()
    [(subject_type, subject_id, record)] = rows
    assert (subject_type, subject_id) == ("archive_settings", mail_env.tenant_id)
    assert token_of(old).encode() not in record and token_of(new).encode() not in record
    o = outbox_events.c
    with mail_env.sp.engine.connect() as conn:
        [payload] = conn.execute(
            select(o.payload).where(o.type == "sealpost.archive.journal_address_rotated")
        ).scalars()
    assert json.loads(payload)["data"]["changed_by"] == "admin"
    assert token_of(old) not in payload and token_of(new) not in payload
    # an agent can do neither
    r = mail_client.post(
        "/v1/archive/agents", json={"email": "eva@acme.test", "role": "agent"}, headers=mail_key
    )
    eva = {"Authorization": f"Bearer {r.json()['api_key']}"}
    denied = mail_client.patch(
        "/v1/archive/settings", json={"rotate_journal_token": True}, headers=eva
    )
    assert denied.status_code == 403
    assert journal_address(mail_client, mail_key) == new


@pytest.mark.parametrize("mail_overrides", [{"smtp_max_recipients": 1}])
def test_a_journal_rcpt_refused_as_one_too_many_is_not_archived(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    sp = mail_env.sp
    other = sp.tenants.create("other-company").id
    other_key = {"Authorization": f"Bearer {sp.tenants.issue_api_key(other).secret}"}
    mine, theirs = journal_address(mail_client, mail_key), journal_address(mail_client, other_key)
    with smtplib.SMTP("127.0.0.1", sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.mail("cliente@gmail.com")
        assert smtp.rcpt(mine)[0] == 250
        code, text = smtp.rcpt(theirs)
        assert (code, text) == (452, b"4.5.3 Too many recipients")
        code, reply = smtp.data(message("Sólo uno"))
    assert code == 250 and len(reply.decode().split(" ")) == 4, reply  # one id
    assert len(mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"]) == 1
    # the refused recipient's tenant keeps nothing: its server was told to try again
    assert mail_client.get("/v1/archive/messages", headers=other_key).json()["items"] == []


@pytest.mark.parametrize("mail_overrides", [{"smtp_inbound_idle_timeout_seconds": 2.0}])
def test_a_journal_data_slower_than_the_idle_timeout_but_flowing_is_archived(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    lines = [b"From: cliente@gmail.com\r\n", b"Subject: Lento\r\n", b"\r\n"]
    lines += [b"linea %d de un enlace lento\r\n" % i for i in range(10)]
    with socket.create_connection(("127.0.0.1", mail_env.sp.smtp_ports["inbound"])) as raw:
        raw.settimeout(30)
        reader = raw.makefile("rb")
        for line in (
            b"",
            b"EHLO mx.acme.test",
            b"MAIL FROM:<a@acme.test>",
            b"RCPT TO:<" + address.encode() + b">",
            b"DATA",
        ):
            if line:
                raw.sendall(line + b"\r\n")
            while (answer := reader.readline())[3:4] == b"-":
                pass
        assert answer.startswith(b"354")
        started = time.monotonic()
        for i in range(0, len(lines), 2):  # 5.5 s in all, each pause under the 2 s timeout
            raw.sendall(b"".join(lines[i : i + 2]))
            time.sleep(0.8)
        assert time.monotonic() - started > 5
        raw.sendall(b".\r\n")
        answer = reader.readline()
    assert answer.startswith(b"250 2.0.0 Archived as "), answer
    body = b"".join(lines)
    found = archived(mail_client, mail_key, answer.decode().split()[-1])
    assert found["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("mail_overrides", [{"archive_journal_max_bytes": 4096}])
def test_a_journaled_message_over_the_limit_gets_552_and_the_session_goes_on(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    big = message("Grande", body="palabra " * 1000 + "\n")
    small = message("Pequeño")
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.mail("ventas@acme.test")
        smtp.rcpt(address)
        code, reply = smtp.data(big)
        assert (code, reply[:5]) == (552, b"5.3.4")
        smtp.mail("ventas@acme.test")
        smtp.rcpt(address)
        assert smtp.data(small)[0] == 250
    items = mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"]
    assert [m["subject"] for m in items] == ["Pequeño"]


def test_a_connection_lost_during_data_archives_nothing(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    with socket.create_connection(("127.0.0.1", mail_env.sp.smtp_ports["inbound"])) as raw:
        reader = raw.makefile("rb")
        for line in (
            b"",
            b"EHLO mx.acme.test",
            b"MAIL FROM:<a@acme.test>",
            b"RCPT TO:<" + address.encode() + b">",
            b"DATA",
        ):
            if line:
                raw.sendall(line + b"\r\n")
            while (answer := reader.readline())[3:4] == b"-":
                pass
        assert answer.startswith(b"354")
        raw.sendall(b"Subject: cut\r\n\r\nhalf a message")
    time.sleep(0.5)
    assert mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"] == []
    code, _ = journal(mail_env, address, message("Entero"))  # the port is fine
    assert code == 250


def test_a_message_journaled_over_starttls_is_archived_with_its_tls_noted(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    address = journal_address(mail_client, mail_key)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = message("Cifrado", body="línea\n" * 5000)
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as smtp:
        smtp.ehlo("mx.acme.test")
        smtp.starttls(context=context)  # what Postfix does with smtp_tls_security_level=may
        smtp.ehlo("mx.acme.test")
        smtp.mail("ventas@acme.test")
        smtp.rcpt(address)
        code, reply = smtp.data(raw)
    assert code == 250, reply
    found = archived(mail_client, mail_key, archived_id(reply))
    assert found["sha256"] == hashlib.sha256(raw).hexdigest()
    assert json.loads(found["sightings"][0]["ref"])["tls"]["version"].startswith("TLSv1.")


def test_sent_mail_is_archived_once_the_archive_works_again_and_never_skipped(
    mail_env: MailEnv, mail_client: TestClient, mail_key: Headers
) -> None:
    sp = mail_env.sp
    root = Path(sp.archive_blobs.root)
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():
        root.rmdir()  # empty: nothing archived yet
    root.write_bytes(b"not a directory: the archive's storage is broken")
    try:
        sent = mail_client.post(
            "/v1/communications",
            json={
                "from": "care@acme.test",
                "to": [f"ann@{RECIPIENT_DOMAIN}"],
                "subject": "Durante la avería",
                "text": "Hola.",
            },
            headers=mail_key,
        )
        assert sent.status_code == 201, sent.text
        communication_id = sent.json()["communications"][0]["id"]
        sp.start_events()
        sp.start_archive()

        def accepted_at() -> int | None:  # its event is positioned: the follower sees it
            events = sp.outbox.after(0, 1000)
            return next(
                (e.position for e in events if e.type == "sealpost.communication.accepted"), None
            )

        position = wait(accepted_at)
        time.sleep(2.5)  # two rounds of the follower fail on the storage
        assert sp.outbox.cursor("archive-outgoing") < position  # not skipped
    finally:
        root.unlink()
    found = wait(lambda: mail_client.get("/v1/archive/messages", headers=mail_key).json()["items"])
    assert [m["subject"] for m in found] == ["Durante la avería"]
    refs = [s["ref"] for s in archived(mail_client, mail_key, found[0]["id"])["sightings"]]
    assert refs == [communication_id]
