"""The SMS code paths in a real browser (Debian's chromium, Playwright): the signing page says
the code goes by SMS and where, masked; the code is read from what the SMSC peer took; a wrong
code, then the right one, then the signature.  The pickup page on a phone's screen: the notice
by SMS, its link, the code by SMS, accept, read, download."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from sealpost.api.app import create_app
from tests.pickup.flow import ATTACHMENT, SECRET_TEXT, events_of, link_in, send_pickup
from tests.signatures.flow import process_request, signer, wait_mail
from tests.sms.test_sms_codes import PHONE, CodesEnv, codes_env, smsc
from tests.support.browser import LiveServer, browser_page, chromium
from tests.support.smtp_peer import free_port

__all__ = ["browser_page", "chromium", "codes_env", "smsc"]


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def codes_overrides(live_port: int) -> dict[str, object]:
    return {"certificates_enabled": False, "public_url": f"http://127.0.0.1:{live_port}"}


@pytest.fixture(params=["sqlite"])  # the page is the point here; the flow runs on both DBs
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def live(codes_env: CodesEnv, live_port: int) -> Any:
    with LiveServer(create_app(codes_env.sp, start_background=False), live_port) as server:
        yield server


def test_the_signing_page_sends_the_code_by_sms_and_says_where(
    codes_env: CodesEnv, live: Any, browser_page: Any
) -> None:
    env, page = codes_env, browser_page
    body = process_request(signer("Lucía", "lucia", identification="sms_otp", phone=PHONE))
    pid = env.client.post("/v1/signatures", json=body, headers=env.key).json()["id"]
    link = re.search(r"(http://\S+/sign/\S+)", wait_mail(env.mail, "lucia", "asks you to sign"))
    assert link and link.group(1).startswith(live.url)
    page.goto(link.group(1))
    expect(page.get_by_test_id("otp-channel-hint")).to_have_text(
        "We'll text you a 6-digit code by SMS."
    )
    page.get_by_test_id("otp-send").click()
    expect(page.get_by_test_id("status")).to_contain_text(
        "We sent a 6-digit code by SMS to +34 6•• ••• •12"
    )
    found = re.search(r"(\d{6})", env.wait_text(PHONE, "Your signing code"))
    assert found
    code = found.group(1)
    page.get_by_test_id("otp-code").fill("999999" if code != "999999" else "888888")
    page.get_by_test_id("otp-verify").click()
    page.get_by_text(re.compile(r"4 attempts left")).wait_for()
    page.get_by_test_id("otp-code").fill(code)
    page.get_by_test_id("otp-verify").click()
    page.get_by_test_id("consent").check()
    page.get_by_test_id("tab-type").click()
    page.get_by_test_id("typed-name").fill("Lucía")
    page.get_by_test_id("sign").click()
    page.get_by_test_id("status").get_by_text(re.compile("Signed")).wait_for()
    detail = env.client.get(f"/v1/signatures/{pid}", headers=env.key).json()
    assert detail["status"] == "completed"
    identified = next(e for e in detail["timeline"] if e["event"] == "SignerIdentified")
    assert identified["details"]["otp_channel"] == "sms"
    assert "Chrome" in identified["details"]["user_agent"]


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
        accept_downloads=True,
        user_agent="Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


def test_the_pickup_page_from_an_sms_notice_with_an_sms_code(
    codes_env: CodesEnv, live: Any, phone: Any
) -> None:
    env, page, number = codes_env, phone, "+34612345615"
    cid = send_pickup(
        env.client, env.key, "noa", identification="sms_otp", phone=number, notice=["sms"]
    )
    link = link_in(env.wait_text(number, "/pickup/"))
    assert link.startswith(live.url)
    page.goto(link)
    expect(page.get_by_test_id("sender")).to_contain_text("claims@acme.test")
    page.get_by_test_id("code-send").click()
    expect(page.get_by_test_id("status")).to_contain_text("+34 6•• ••• •15")
    found = re.search(r"(\d{6})", env.wait_text(number, "Su código"))
    assert found
    code = found.group(1)
    page.get_by_test_id("answer").fill("000000" if code != "000000" else "111111")
    page.get_by_test_id("verify").click()
    expect(page.get_by_test_id("status")).to_contain_text("4 tries left")
    page.get_by_test_id("answer").fill(code)
    page.get_by_test_id("verify").click()
    page.get_by_test_id("accept").click()
    expect(page.get_by_test_id("text")).to_contain_text(SECRET_TEXT)
    with page.expect_download() as info:
        page.get_by_test_id("download-0").click()
    assert Path(info.value.path()).read_bytes() == ATTACHMENT
    events = events_of(env.mail, cid)
    assert events.count("ConsignmentAcceptance") == 1 and events.count("ContentHandover") == 1
    assert "NotificationAccessTracking" in events
