"""The message's HTML on the pickup page, in a real chromium: shown (structure and words), while
its scripts do not run and nothing it names is fetched — neither through the server's
sanitizer (the real flow) nor when the page's sandboxed frame is handed the raw, hostile HTML
(the second layer alone).  A real HTTP server on 127.0.0.1 counts every request it gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from sealpost.pickup.content import html_of
from tests.pickup.flow import code_in, link_in, notify, pickup_request, wait_mail
from tests.pickup.test_pickup_page import (
    database_url,
    live,
    live_port,
    mail_overrides,
    phone,
)
from tests.support.browser import chromium
from tests.support.mail import MailEnv
from tests.support.smtp_peer import free_port

__all__ = ["chromium", "database_url", "live", "live_port", "mail_overrides", "phone"]

NOTICE = "certified message is waiting"


class Tracker:
    """An HTTP server that records the path of every request (the 'remote content')."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    found = Tracker()
    yield found
    found.server.shutdown()
    found.server.server_close()


def hostile(url: str) -> str:
    return (
        "<h2>Decision 4711</h2><p>Your refund is <b>approved</b>.</p>"
        f'<img src="{url}/img.png" onerror="fetch(\'{url}/onerror\')">'
        f'<link rel="stylesheet" href="{url}/style.css">'
        f"<style>body {{ background: url({url}/style-bg.png) }}</style>"
        f'<div style="background-image: url({url}/inline-bg.png)">styled</div>'
        f'<iframe src="{url}/frame"></iframe><object data="{url}/object"></object>'
        f'<video poster="{url}/poster.png"></video>'
        f"<script>fetch('{url}/script'); new Image().src = '{url}/script-img';"
        "parent.postMessage('ran', '*');</script>"
        f"<svg onload=\"fetch('{url}/svg')\"></svg>"
        f'<form action="{url}/form"><input name="x" autofocus onfocus="this.form.submit()"></form>'
        "<a href=\"javascript:parent.postMessage('ran', '*')\">js link</a>"
        '<a href="https://example.test/terms">the terms</a>'
    )


def test_html_of_keeps_structure_and_words_and_drops_anything_active_or_remote() -> None:
    url = "http://127.0.0.1:9"
    raw = (
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + hostile(url)
    ).encode()
    safe = html_of(raw)
    assert safe is not None
    assert "<b>approved</b>" in safe and "<h2>Decision 4711</h2>" in safe
    assert '<a href="https://example.test/terms"' in safe
    lowered = safe.lower()
    for word in (
        "<script",
        "<img",
        "<link",
        "<style",
        "<iframe",
        "<object",
        "<video",
        "<svg",
        "<form",
        "onerror",
        "onload",
        "onfocus",
        "javascript:",
        "style=",
        url,
    ):
        assert word not in lowered, word  # fmt: skip
    plain = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nonly text"
    assert html_of(plain) is None


def _accepted_page(env: MailEnv, page: Any, client: TestClient, key: dict[str, str], html: str):
    body = pickup_request("hana")
    body["html"] = html
    created = client.post("/v1/communications", json=body, headers=key)
    assert created.status_code == 201, created.text
    notify(env)
    page.goto(link_in(wait_mail(env, "hana", NOTICE)))
    page.get_by_test_id("code-send").click()
    code = code_in(wait_mail(env, "hana", "Su código"))
    page.get_by_test_id("answer").fill(code)
    page.get_by_test_id("verify").click()
    page.get_by_test_id("accept").click()
    expect(page.get_by_test_id("html")).to_be_visible()


def test_the_page_shows_the_html_and_nothing_in_it_runs_or_loads(
    mail_env: MailEnv,
    live: Any,
    phone: Any,
    client: TestClient,
    key: dict[str, str],
    tracker: Tracker,
) -> None:
    page = phone
    messages: list[str] = []
    page.expose_function("noteMessage", lambda text: messages.append(text))
    _accepted_page(mail_env, page, client, key, hostile(tracker.url))
    frame = page.frame_locator("[data-testid=html]")
    expect(frame.locator("b")).to_have_text("approved")
    expect(frame.locator("h2")).to_have_text("Decision 4711")
    expect(page.get_by_test_id("text")).to_be_hidden()
    assert frame.locator("script, img, iframe, style, link, form").count() == 0

    # the second layer alone: the raw hostile HTML in the same sandboxed frame
    page.evaluate(
        """html => {
            window.addEventListener("message", e => window.noteMessage(String(e.data)));
            const frame = document.querySelector("[data-testid=html]");
            frame.srcdoc = html;
        }""",
        hostile(tracker.url),
    )
    expect(frame.locator("a").last).to_have_text("the terms")
    frame.locator("a", has_text="js link").click()
    time.sleep(1.5)  # time for anything that would run or load
    assert tracker.hits == []
    assert messages == []
    # the tracker does answer a browser (the assertion above could fail)
    probe = page.context.new_page()
    probe.goto(f"{tracker.url}/probe")
    probe.close()
    assert "/probe" in tracker.hits
