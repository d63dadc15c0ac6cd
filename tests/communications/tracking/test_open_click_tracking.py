"""Open and click tracking of direct emails, end to end: the tenant turns it on, a real
recipient server receives the rewritten HTML, a real HTTP client fetches the pixel and follows
a link on a real uvicorn; each hit is its own sealed record (coalesced per minute, early ones
likely automated), an event, a line of the API view and of the certificate's "Non-essential
tracking" section.  Off (the default), a message goes out untouched; plain text is never
rewritten; an unknown token is a 404 that writes nothing."""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sealpost.api.app import create_app
from sealpost.certificates import verify_certificate_pdf
from tests.certificates.support import poppler
from tests.support.browser import LiveServer
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, submit

OFFER = "https://shop.acme.test/offer?id=42&u=7"
HTML = (
    '<html><body><p>Your offer: <a href="https://shop.acme.test/offer?id=42&amp;u=7">see it'
    "</a>, or <a href='mailto:care@acme.test'>write to us</a>.</p></body></html>"
)
TEXT = f"Your offer: {OFFER}\n"
WINDOW = 3.0


@pytest.fixture
def live_socket() -> Iterator[socket.socket]:
    """The live server's port, bound from the start: the SMTP servers the environment starts
    afterwards cannot take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def live_port(live_socket: socket.socket) -> int:
    return int(live_socket.getsockname()[1])


@pytest.fixture
def mail_overrides(live_port: int) -> dict[str, object]:
    return {
        "certificates_enabled": False,  # the test issues the version it reads
        "pickup_worker_enabled": False,
        "public_url": f"http://127.0.0.1:{live_port}",
        # short windows on the real clock: the certificate's verifier rightly refuses a
        # record timed after the ledger sealed it, so the clock is not moved ahead
        "tracking_automated_seconds": WINDOW,
        "tracking_coalesce_seconds": WINDOW,
    }


@pytest.fixture
def client(mail_client: TestClient) -> TestClient:
    return mail_client


@pytest.fixture
def key(mail_key: dict[str, str]) -> dict[str, str]:
    return mail_key


@pytest.fixture
def live(mail_env: MailEnv, live_port: int, live_socket: socket.socket) -> Iterator[LiveServer]:
    app = create_app(mail_env.sp, start_background=False)
    with LiveServer(app, live_port, sock=live_socket) as server:
        yield server


def send(client: TestClient, key: dict[str, str], local: str, **body: Any) -> str:
    request = {
        "from": "offers@acme.test",
        "to": [f"{local}@{RECIPIENT_DOMAIN}"],
        "subject": "Offer 42",
        "text": TEXT,
        "html": HTML,
        **body,
    }
    response = client.post("/v1/communications", json=request, headers=key)
    assert response.status_code == 201, response.text
    cid: str = response.json()["communications"][0]["id"]
    return cid


def received(env: MailEnv, local: str, timeout: float = 20) -> Message:
    """The one message the real recipient server accepted for ``local``."""
    deadline = time.monotonic() + timeout
    address = f"{local}@{RECIPIENT_DOMAIN}"
    while True:
        found = [r for r in env.peer.received if address in r.rcpt_tos]
        if found:
            assert len(found) == 1
            return message_from_bytes(found[0].data)
        assert time.monotonic() < deadline, "nothing delivered"
        time.sleep(0.05)


def part(msg: Message, content_type: str) -> str:
    for p in msg.walk():
        if p.get_content_type() == content_type:
            payload = p.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(p.get_content_charset() or "utf-8").replace("\r\n", "\n")
    raise AssertionError(f"no {content_type} part")


def records(env: MailEnv, cid: str, event: str) -> list[dict[str, Any]]:
    return [
        e.record for e in env.sp.communications.timeline(env.tenant_id, cid) if e.event == event
    ]


def turn_on(client: TestClient, key: dict[str, str], **choice: bool) -> None:
    put = client.put("/v1/settings/tracking", json=choice, headers=key)
    assert put.status_code == 200, put.text
    assert client.get("/v1/settings/tracking", headers=key).json() == {
        "opens": False,
        "clicks": False,
        **choice,
    }


def test_pixel_and_link_are_tracked_as_their_own_non_essential_evidence(
    mail_env: MailEnv,
    client: TestClient,
    key: dict[str, str],
    live: LiveServer,
    tmp_path: Path,
) -> None:
    turn_on(client, key, opens=True, clicks=True)
    cid = send(client, key, "ana")
    delivered = mail_env.wait_status(cid, "delivered").delivered_at
    assert delivered is not None

    # what the recipient's server got: the pixel and the link through Sealpost, nothing else
    msg = received(mail_env, "ana")
    html = part(msg, "text/html")
    pixel = re.search(rf'<img src="{re.escape(live.url)}/t/o/([A-Za-z0-9_-]{{22}})\.gif"', html)
    link = re.search(rf'<a href="{re.escape(live.url)}/t/c/([A-Za-z0-9_-]{{22}})">see it', html)
    assert pixel and link, html
    assert "href='mailto:care@acme.test'" in html  # not http(s): left alone
    assert "shop.acme.test" not in html  # the destination is not in the URL
    assert "ana" not in pixel.group(0) + link.group(0) and cid not in html  # no PII, no id
    assert part(msg, "text/plain") == TEXT  # plain text is never rewritten

    # sealed as submitted: content is the sender's bytes; the tracked copy's digest beside it
    (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
    original = client.get(f"/v1/communications/{cid}/original.eml", headers=key).content
    assert hashlib.sha256(original).hexdigest() == acceptance["content"]["sha256"]
    assert b"/t/o/" not in original and b"shop.acme.test/offer" in original
    tracking = acceptance["details"]["tracking"]
    assert tracking["opens"] and tracking["clicks"] and tracking["pixel"]
    assert tracking["links"] == 1
    tracked = mail_env.sp.contents.get(tracking["tracked_sha256"])
    assert b"/t/o/" + pixel.group(1).encode() in tracked
    (delivery,) = records(mail_env, cid, "RelayToNonERDS")
    assert delivery["details"]["received_sha256"] == acceptance["content"]["sha256"]
    assert delivery["details"]["delivered_changes"]["tracked_sha256"] == tracking["tracked_sha256"]

    with httpx.Client(base_url=live.url, timeout=10) as http:
        scanner = {"User-Agent": "LinkScanner/2.1"}
        # a scanner right after delivery: recorded, marked likely automated
        got = http.get(f"/t/o/{pixel.group(1)}.gif", headers=scanner)
        assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
        image = Image.open(io.BytesIO(got.content))
        assert image.format == "GIF" and image.size == (1, 1)
        assert "no-store" in got.headers["cache-control"]
        assert http.get(f"/t/o/{pixel.group(1)}.gif", headers=scanner).status_code == 200
        clicked = http.get(f"/t/c/{link.group(1)}", headers=scanner)
        assert clicked.status_code == 302
        assert clicked.headers["location"] == OFFER  # exactly the stored URL
        (first,) = records(mail_env, cid, "OpenTracked")  # the second fetch was coalesced
        (click,) = records(mail_env, cid, "LinkClicked")
        for record in (first, click):
            assert record["event"]["uri"].startswith("urn:sealpost:event:")
            assert record["details"]["likely_automated"] is True
            assert record["details"]["visitor"] == {
                "ip": "127.0.0.1",
                "user_agent": "LinkScanner/2.1",
            }
        assert first["event"]["name"] == "OpenTracked"
        assert click["details"]["url"] == OFFER and click["details"]["link"] == 1

        # later, a person's mail client: a new record, not automated
        recorded = datetime.fromisoformat(first["event_time"].replace("Z", "+00:00"))
        time.sleep(max(0.0, (recorded - datetime.now(UTC)).total_seconds() + WINDOW + 0.5))
        person = {"User-Agent": "Thunderbird/128.0"}
        assert http.get(f"/t/o/{pixel.group(1)}.gif", headers=person).status_code == 200
        opens = records(mail_env, cid, "OpenTracked")
        assert len(opens) == 2
        later = opens[1]["details"]
        assert later["likely_automated"] is False and later["hits_coalesced"] == 1
        assert later["hits"] == 3 and later["seconds_after_delivery"] >= WINDOW

        # unknown or malformed tokens: 404, nothing written
        count = len(mail_env.sp.communications.timeline(mail_env.tenant_id, cid))
        for path in (
            f"/t/o/{secrets.token_urlsafe(16)}.gif",
            f"/t/c/{secrets.token_urlsafe(16)}",
            f"/t/c/{pixel.group(1)}",  # the pixel's token is no link
            "/t/c/not-a-token",
        ):
            assert http.get(path).status_code == 404, path
        assert len(mail_env.sp.communications.timeline(mail_env.tenant_id, cid)) == count

    # the API shows them apart from the timeline
    view = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert view["tracking"]["opens"]["hits"] == 3 and view["tracking"]["opens"]["records"] == 2
    (shown,) = view["tracking"]["links"]
    assert shown["url"] == OFFER and shown["hits"] == 1 and shown["link"] == 1
    assert "never proof" in view["tracking"]["non_essential"]

    # events: opened and clicked, derived from the records
    mail_env.sp.start_events()
    types: list[str] = []
    deadline = time.monotonic() + 20
    while types.count("sealpost.communication.opened") < 2 and time.monotonic() < deadline:
        page = client.get("/v1/events", params={"limit": 100}, headers=key).json()
        types = [e["type"] for e in page["events"] if e["subject"] == f"communications/{cid}"]
        time.sleep(0.1)
    assert types.count("sealpost.communication.opened") == 2
    assert types.count("sealpost.communication.clicked") == 1

    # the certificate: a section of its own, saying it proves no reading
    pdf = issue_certificate(mail_env, cid)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    timeline, _, section = text.partition("Non-essential tracking")
    assert section, text
    assert "OpenTracked" not in timeline and "LinkClicked" not in timeline
    assert "never proof that the recipient read the message" in section
    assert "mail clients and their image proxies preload images" in section
    assert "security scanners follow every link" in section
    assert section.count("OpenTracked —") == 2 and section.count("LinkClicked —") == 1
    assert "likely automated" in section
    report = verify_certificate_pdf(pdf, trust_roots=mail_env.sp.trust_roots)
    assert report.ok, report.failures  # their bundles verify like every other one


def issue_certificate(env: MailEnv, cid: str, timeout: float = 30) -> bytes:
    """The next version, once every record is sealed (the background sequencer seals)."""
    deadline = time.monotonic() + timeout
    while True:
        communication = env.sp.communications.get(cid)
        assert communication is not None
        issued = env.sp.certificates.issue(communication)
        if issued is not None:
            return issued.pdf
        assert time.monotonic() < deadline, "records never sealed"
        time.sleep(0.2)


def test_off_by_default_the_email_goes_out_untouched(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    assert client.get("/v1/settings/tracking", headers=key).json() == {
        "opens": False,
        "clicks": False,
    }
    cid = send(client, key, "bea")
    mail_env.wait_status(cid, "delivered")
    msg = received(mail_env, "bea")
    assert part(msg, "text/html").rstrip("\n") == HTML
    (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
    assert "tracking" not in acceptance["details"]
    (delivery,) = records(mail_env, cid, "RelayToNonERDS")
    assert "tracked_sha256" not in delivery["details"]["delivered_changes"]
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["tracking"] is None


def test_plain_text_and_pickup_are_never_rewritten(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    turn_on(client, key, opens=True, clicks=True)
    plain = send(client, key, "carl", html=None)
    mail_env.wait_status(plain, "delivered")
    data = received(mail_env, "carl").as_bytes()
    assert b"/t/o/" not in data and b"/t/c/" not in data
    assert part(received(mail_env, "carl"), "text/plain") == TEXT
    pickup = send(client, key, "dora", delivery="pickup")
    for cid in (plain, pickup):
        (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
        assert "tracking" not in acceptance["details"]
        found = mail_env.sp.communications.get(cid)
        assert found is not None and found.tracked_sha256 is None


def test_opens_only_adds_the_pixel_and_each_recipient_gets_its_own_token(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    turn_on(client, key, opens=True)
    to = [f"eva@{RECIPIENT_DOMAIN}", f"fred@{RECIPIENT_DOMAIN}"]
    response = client.post(
        "/v1/communications",
        json={"from": "offers@acme.test", "to": to, "subject": "Offer", "html": HTML},
        headers=key,
    )
    assert response.status_code == 201, response.text
    for c in response.json()["communications"]:
        mail_env.wait_status(c["id"], "delivered")
    pixels = set()
    for local in ("eva", "fred"):
        html = part(received(mail_env, local), "text/html")
        assert "/t/c/" not in html  # clicks off: the links are the sender's
        assert 'href="https://shop.acme.test/offer?id=42&amp;u=7"' in html
        found = re.search(r"/t/o/([A-Za-z0-9_-]{22})\.gif", html)
        assert found
        pixels.add(found.group(1))
    assert len(pixels) == 2


def test_bad_settings_are_refused_and_change_nothing(
    client: TestClient, key: dict[str, str]
) -> None:
    turn_on(client, key, clicks=True)
    for body in ({"opens": "yes"}, {"clicks": 1}, {"opens": None}, []):
        bad = client.put("/v1/settings/tracking", json=body, headers=key)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/settings/tracking", headers=key).json() == {
        "opens": False,
        "clicks": True,
    }
    assert client.get("/v1/settings/tracking").status_code == 401


def test_a_burst_of_fetches_is_one_record_and_every_hit_is_counted(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], live: LiveServer
) -> None:
    turn_on(client, key, opens=True, clicks=True)
    cid = send(client, key, "gus")
    mail_env.wait_status(cid, "delivered")
    html = part(received(mail_env, "gus"), "text/html")
    found = re.search(r"/t/c/([A-Za-z0-9_-]{22})", html)
    assert found
    with httpx.Client(base_url=live.url, timeout=20) as http, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: http.get(f"/t/c/{found.group(1)}"), range(20)))
    assert {a.status_code for a in answers} == {302}
    assert {a.headers["location"] for a in answers} == {OFFER}
    (click,) = records(mail_env, cid, "LinkClicked")  # a scanner's burst: one record
    assert click["details"]["likely_automated"] is True
    (link,) = client.get(f"/v1/communications/{cid}", headers=key).json()["tracking"]["links"]
    assert link["hits"] == 20 and link["records"] == 1


def test_a_message_submitted_over_smtp_is_tracked_the_same_way(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    turn_on(client, key, opens=True, clicks=True)
    msg = EmailMessage()
    msg["From"] = "service@acme.test"
    msg["To"] = f"hana@{RECIPIENT_DOMAIN}"
    msg["Subject"] = "Offer over SMTP"
    msg["Message-ID"] = "<offer-smtp@acme.test>"
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    raw = msg.as_bytes(policy=SMTP)
    code, _ = submit(mail_env, raw, [f"hana@{RECIPIENT_DOMAIN}"])
    assert code == 250
    (c,) = mail_env.sp.communications.find_by_message_id("<offer-smtp@acme.test>")
    mail_env.wait_status(c.id, "delivered")
    html = part(received(mail_env, "hana"), "text/html")
    assert "/t/o/" in html and "/t/c/" in html and "shop.acme.test" not in html
    (acceptance,) = records(mail_env, c.id, "SubmissionAcceptance")
    assert acceptance["content"]["sha256"] == hashlib.sha256(raw).hexdigest()  # as submitted
    assert acceptance["details"]["via"] == "smtp" and acceptance["details"]["tracking"]["links"]
