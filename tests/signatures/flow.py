"""Helpers of the signature-process tests: PDFs with anchors, the invitations and codes the
real recipient server received, and a signer walking through the page's JSON API."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from fastapi.testclient import TestClient
from fpdf import FPDF
from PIL import Image, ImageDraw

from tests.support.mail import RECIPIENT_DOMAIN, MailEnv


def contract_pdf(title: str = "Repair quote 4711", anchors: tuple[str, ...] = ("1", "2")) -> bytes:
    """A two-page PDF: terms on page 1, one ``{{signature:N}}`` anchor per signer on page 2."""
    pdf = FPDF(format="A4")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    for i in range(12):
        pdf.multi_cell(
            0,
            7,
            f"Clause {i + 1}. The repair is covered by the warranty terms.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.add_page()
    pdf.cell(0, 10, "Signatures", new_x="LMARGIN", new_y="NEXT")
    for label in anchors:
        pdf.ln(20)
        pdf.cell(0, 10, f"{{{{signature:{label}}}}}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(20)
    return bytes(pdf.output())


def drawn_signature() -> bytes:
    """A PNG with a transparent background and a scribble, like the page's canvas export."""
    image = Image.new("RGBA", (400, 120), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.line(
        [(10, 90), (80, 20), (140, 100), (220, 30), (300, 95), (390, 40)], fill="navy", width=5
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def process_request(
    *signers: dict[str, Any], document: bytes | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "title": "Repair quote 4711",
        "message": "Please sign the repair quote.",
        "documents": [{"name": "quote.pdf", "content": b64(document or contract_pdf())}],
        "signers": list(signers),
        **extra,
    }


def signer(name: str, local: str, anchor: str | None = "1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "email": f"{local}@{RECIPIENT_DOMAIN}", **extra}
    if anchor is not None:
        body["fields"] = [{"document": 0, "anchor": anchor}]
    return body


def _text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return f"Subject: {message['Subject']}\n{body.get_content()}"


def mails_to(env: MailEnv, local: str) -> list[str]:
    """Subject and text of every message the recipient server accepted for ``local``."""
    address = f"{local}@{RECIPIENT_DOMAIN}"
    return [_text(r.data) for r in env.peer.received if address in r.rcpt_tos]


def wait_mail(env: MailEnv, local: str, pattern: str, count: int = 1, timeout: float = 20) -> str:
    """The ``count``-th message to ``local`` matching ``pattern`` (delivered for real)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in mails_to(env, local) if re.search(pattern, m)]
        if len(found) >= count:
            return found[count - 1]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no mail {pattern!r} #{count} for {local}: {mails_to(env, local)}"
            )
        time.sleep(0.05)


def link_path(mail: str) -> str:
    found = re.search(r"https?://[^/\s]+(/sign/[A-Za-z0-9_\-]+)", mail)
    assert found, mail
    return found.group(1)


def code_in(mail: str) -> str:
    found = re.search(r"Your code to sign .* is (\d{6})\.", mail)
    assert found, mail
    return found.group(1)


def page_config(html: str) -> dict[str, Any]:
    found = re.search(r'<script[^>]*id="sealpost-config"[^>]*>(.*?)</script>', html, re.DOTALL)
    assert found, html[:2000]
    config: dict[str, Any] = json.loads(found.group(1))
    return config


@dataclass
class PageSession:
    """One signer on the signing page, through its JSON API (what sign.js does)."""

    client: TestClient
    config: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Signing-Session": self.config["session_token"]}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, f"/sign/api{path}", headers=self.headers, **kwargs)

    def identify(self, env: MailEnv, local: str, count: int = 1) -> None:
        assert self.call("POST", "/otp").status_code == 200
        code = code_in(wait_mail(env, local, "Your signing code", count))
        answer = self.call("POST", "/otp/verify", json={"code": code})
        assert answer.status_code == 200, answer.text

    def sign(self, image: bytes | None = None, typed: str | None = None) -> Any:
        return self.call(
            "POST",
            "/sign",
            json={"consent": True, "image_png": b64(image) if image else None, "typed": typed},
        )


def open_page(client: TestClient, path: str) -> PageSession:
    """GET the link's page (which spends nothing), then spend the link as sign.js does."""
    answer = client.get(path)
    assert answer.status_code == 200, answer.text[:500]
    config = page_config(answer.text)
    assert "session_token" not in config
    opened = client.post(config["open_url"], json={"link": config["link"]})
    assert opened.status_code == 200, opened.text
    config.update(session_token=opened.json()["session_token"], status=opened.json()["status"])
    return PageSession(client, config)
