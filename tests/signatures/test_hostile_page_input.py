"""Hostile text from an integrator never runs in a signer's browser (docs/security.md, XSS).

A CRM copies whatever its users type into the title, the message, the signer's name and the
document's name.  Each one here carries a script in a different context (element, attribute,
``</script>`` inside the page's JSON configuration); the page must show it as text, run none of
it, and the invitation email must be plain text that no mail client renders as markup.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from typing import Any

from fastapi.testclient import TestClient
from playwright.sync_api import expect

from tests.signatures.flow import process_request, signer, wait_mail
from tests.signatures.test_signing_page import database_url, live, live_port, mail_overrides
from tests.support.browser import browser_page, chromium
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

__all__ = ["browser_page", "chromium", "database_url", "live", "live_port", "mail_overrides"]

TITLE = 'Quote <img src=x onerror="window.__pwned=1"></script><script>window.__pwned=2</script>'
MESSAGE = 'Read me" onmouseover="window.__pwned=3" <svg onload=window.__pwned=4>'
NAME = 'Ann "><script>window.__pwned=5</script>'
DOCUMENT = "<iframe src=javascript:window.__pwned=6>.pdf"


def test_script_in_every_text_field_is_shown_not_run(
    mail_env: MailEnv, live: Any, browser_page: Any, client: TestClient, key: dict[str, str]
) -> None:
    page = browser_page
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    body = process_request(signer(NAME, "ann", "1"), title=TITLE, message=MESSAGE)
    body["documents"][0]["name"] = DOCUMENT
    created = client.post("/v1/signatures", json=body, headers=key)
    assert created.status_code == 201, created.text

    invitation = wait_mail(mail_env, "ann", "asks you to sign")
    link = re.search(r"(http://\S+/sign/\S+)", invitation)
    assert link
    page.goto(link.group(1))
    expect(page.get_by_test_id("page-0-1")).to_be_visible()  # the page's own script ran

    assert page.locator("#title").inner_text() == TITLE
    assert page.locator("#signer-name").inner_text() == NAME
    assert page.locator("#message").inner_text() == MESSAGE
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src=x], svg[onload], iframe").count() == 0
    assert dialogs == []

    # the invitation is plain text only: no mail client renders its markup
    address = f"ann@{RECIPIENT_DOMAIN}"
    sent = [message_from_bytes(r.data) for r in mail_env.peer.received if address in r.rcpt_tos]
    assert sent and all(
        part.get_content_type() != "text/html" for mail in sent for part in mail.walk()
    )
    assert TITLE in invitation  # the text part shows it as typed, as the page does
