"""The pickup page in a real browser (Debian's chromium, Playwright) with a phone's screen:
the notice reaches a real SMTP server, its link opens the page, a wrong then the right code,
accept, read, download; the reject path; an expired pickup; a mail scanner's GET before the
person's click spends nothing; the page speaks Spanish to a Spanish browser and switches."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from sealpost.api.app import create_app
from tests.pickup.flow import (
    ATTACHMENT,
    SECRET_TEXT,
    code_in,
    events_of,
    link_in,
    notify,
    records_of,
    send_pickup,
    wait_mail,
)
from tests.support.browser import LiveServer, chromium
from tests.support.mail import MailEnv
from tests.support.smtp_peer import free_port

__all__ = ["chromium"]

NOTICE = "certified message is waiting"


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def mail_overrides(live_port: int) -> dict[str, object]:
    return {
        "certificates_enabled": False,
        "pickup_worker_enabled": False,
        "public_url": f"http://127.0.0.1:{live_port}",
    }


@pytest.fixture(params=["sqlite"])  # the page is the point here; the service tests run both
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def live(mail_env: MailEnv, live_port: int) -> Any:
    with LiveServer(create_app(mail_env.sp, start_background=False), live_port) as server:
        yield server


def _phone(chromium: Any, locale: str) -> Iterator[Any]:
    context = chromium.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        locale=locale,
        accept_downloads=True,
        user_agent="Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    yield from _phone(chromium, "en-GB")


@pytest.fixture
def phone_es(chromium: Any) -> Iterator[Any]:
    yield from _phone(chromium, "es-ES")


def test_notice_link_wrong_then_right_code_accept_and_download(
    mail_env: MailEnv, live: Any, phone: Any, client: TestClient, key: dict[str, str]
) -> None:
    page = phone
    cid = send_pickup(client, key, "ana")
    notify(mail_env)
    link = link_in(wait_mail(mail_env, "ana", NOTICE))
    assert link.startswith(live.url)
    page.goto(link)
    expect(page.get_by_test_id("sender")).to_contain_text("claims@acme.test")
    page.get_by_test_id("code-send").click()
    expect(page.get_by_test_id("status")).to_contain_text("a***@recipient.test")
    code = code_in(wait_mail(mail_env, "ana", "Su código"))
    page.get_by_test_id("answer").fill("000000" if code != "000000" else "111111")
    page.get_by_test_id("verify").click()
    expect(page.get_by_test_id("status")).to_contain_text("4 tries left")
    page.get_by_test_id("answer").fill(code)
    page.get_by_test_id("verify").click()
    expect(page.get_by_test_id("accept")).to_be_visible()
    expect(page.get_by_test_id("text")).to_be_hidden()
    page.get_by_test_id("accept").click()
    expect(page.get_by_test_id("text")).to_contain_text(SECRET_TEXT)
    expect(page.get_by_test_id("subject")).to_have_text("Claim 4711")
    with page.expect_download() as info:
        page.get_by_test_id("download-0").click()
    download = info.value
    assert download.suggested_filename == "decision.pdf"
    assert Path(download.path()).read_bytes() == ATTACHMENT
    events = events_of(mail_env, cid)
    for name in (
        "ConsignmentNotification",
        "NotificationAccessTracking",
        "NotificationForAcceptance",
        "ConsignmentAcceptance",
        "ContentHandover",
        "ContentAccessTracking",
    ):
        assert name in events, (name, events)
    agent = records_of(mail_env, cid, "ContentAccessTracking")[0]["details"]["visitor"]
    assert "Android 14" in agent["user_agent"] and agent["ip"] == "127.0.0.1"


def test_reject_path_in_spanish_with_a_switch_to_english(
    mail_env: MailEnv, live: Any, phone_es: Any, client: TestClient, key: dict[str, str]
) -> None:
    page = phone_es
    cid = send_pickup(client, key, "bea")
    notify(mail_env)
    page.goto(link_in(wait_mail(mail_env, "bea", NOTICE)))
    expect(page.get_by_test_id("code-send")).to_have_text("Enviarme un código")
    page.get_by_test_id("lang-en").click()
    expect(page.get_by_test_id("code-send")).to_have_text("Send me a code")
    page.get_by_test_id("lang-es").click()
    page.get_by_test_id("code-send").click()
    code = code_in(wait_mail(mail_env, "bea", "Su código"))
    page.get_by_test_id("answer").fill(code)
    page.get_by_test_id("verify").click()
    page.get_by_test_id("reason").fill("No soy el destinatario")
    page.get_by_test_id("reject").click()
    expect(page.get_by_test_id("status")).to_contain_text("Ha rechazado")
    expect(page.get_by_test_id("text")).to_be_hidden()
    record = records_of(mail_env, cid, "ConsignmentRejection")[0]
    assert record["reasons"][0]["text"] == "No soy el destinatario"
    assert "ContentHandover" not in events_of(mail_env, cid)


def test_an_expired_pickup_cannot_be_opened(
    mail_env: MailEnv, live: Any, phone: Any, client: TestClient, key: dict[str, str]
) -> None:
    sp = mail_env.sp
    cid = send_pickup(client, key, "cid", policy="es")
    notify(mail_env)
    link = link_in(wait_mail(mail_env, "cid", NOTICE))
    pickup = sp.pickup.repo.get(cid)
    assert pickup is not None and pickup.expires_at is not None
    later = pickup.expires_at + timedelta(minutes=1)
    sp.clock = lambda: later  # the controlled clock: eleven days on
    notify(mail_env)
    assert "AcceptanceRejectionExpiry" in events_of(mail_env, cid)
    page = phone
    page.goto(link)
    expect(page.get_by_test_id("error")).to_contain_text("expired")
    assert "NotificationAccessTracking" not in events_of(mail_env, cid)


def test_a_scanner_fetching_the_link_first_spends_nothing(
    mail_env: MailEnv, live: Any, phone: Any, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "dan")
    notify(mail_env)
    link = link_in(wait_mail(mail_env, "dan", NOTICE))
    for _ in range(2):  # Safe Links and the like: a plain GET, no script run
        with urllib.request.urlopen(link) as response:  # noqa: S310 (127.0.0.1)
            assert response.status == 200
    assert "NotificationAccessTracking" not in events_of(mail_env, cid)
    phone.goto(link)
    expect(phone.get_by_test_id("code-send")).to_be_visible()
    assert events_of(mail_env, cid).count("NotificationAccessTracking") == 1


def test_a_reload_after_accepting_resumes_the_page_and_shows_the_content(
    mail_env: MailEnv, live: Any, phone: Any, client: TestClient, key: dict[str, str]
) -> None:
    """Review 2 H2: the link is single-use; the page session kept in the tab's sessionStorage
    brings a reload back to the content, and a new tab without it is told why not."""
    page = phone
    cid = send_pickup(client, key, "rey")
    notify(mail_env)
    link = link_in(wait_mail(mail_env, "rey", NOTICE))
    page.goto(link)
    page.get_by_test_id("code-send").click()
    page.get_by_test_id("answer").fill(code_in(wait_mail(mail_env, "rey", "Su código")))
    page.get_by_test_id("verify").click()
    page.get_by_test_id("accept").click()
    expect(page.get_by_test_id("subject")).to_have_text("Claim 4711")
    page.reload()
    expect(page.get_by_test_id("text")).to_contain_text(SECRET_TEXT)
    expect(page.get_by_test_id("accept")).to_be_hidden()
    other = page.context.new_page()  # a tab of its own: no session kept for it
    other.goto(link)
    expect(other.get_by_test_id("status")).to_contain_text("already opened")
    expect(other.get_by_test_id("text")).to_be_hidden()
    assert events_of(mail_env, cid).count("ConsignmentAcceptance") == 1
