"""The SMS code path of the signing page in a real browser (Debian's chromium, Playwright):
the page says the code goes by SMS and where, masked; the code is read from what the SMSC
peer took; a wrong code, then the right one, then the signature."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from sealpost.api.app import create_app
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
