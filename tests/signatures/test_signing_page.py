"""The signing page in a real browser (Debian's chromium, Playwright): a signer reads, enters
the emailed code, draws a signature and signs; inside an integrator's iframe the page reports
``sealpost:signed`` through the one-line snippet of docs/embedding.md, as written; a site the
tenant did not allow cannot frame it."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from sealpost.api.app import create_app
from sealpost.certificates.pades.validation import check_signatures
from tests.signatures.flow import code_in, process_request, signer, wait_mail
from tests.support.browser import LiveServer, StaticSite, browser_page, chromium
from tests.support.mail import MailEnv
from tests.support.smtp_peer import free_port

__all__ = ["browser_page", "chromium"]

DOCS = Path(__file__).parents[2] / "docs" / "embedding.md"


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def mail_overrides(live_port: int) -> dict[str, object]:
    return {
        "certificates_enabled": False,
        "public_url": f"http://127.0.0.1:{live_port}",
    }


@pytest.fixture(params=["sqlite"])  # the page is the point here; the flow runs on both DBs
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def live(mail_env: MailEnv, live_port: int) -> Any:
    with LiveServer(create_app(mail_env.sp, start_background=False), live_port) as server:
        yield server


def _draw(page: Any) -> None:
    pad = page.get_by_test_id("signature-pad")
    box = pad.bounding_box()
    assert box is not None
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + w * 0.1, y + h * 0.7)
    page.mouse.down()
    for i in range(1, 12):
        page.mouse.move(x + w * (0.1 + 0.07 * i), y + h * (0.3 if i % 2 else 0.7), steps=3)
    page.mouse.up()


def test_a_signer_reads_identifies_draws_and_signs_in_a_browser(
    mail_env: MailEnv, live: Any, browser_page: Any, client: TestClient, key: dict[str, str]
) -> None:
    page = browser_page
    pid = client.post(
        "/v1/signatures", json=process_request(signer("Jane Customer", "jane", "1")), headers=key
    ).json()["id"]
    link = re.search(r"(http://\S+/sign/\S+)", wait_mail(mail_env, "jane", "asks you to sign"))
    assert link and link.group(1).startswith(live.url)
    page.goto(link.group(1))
    expect(page.get_by_test_id("page-0-1")).to_be_visible()  # hidden until its image loaded
    page.get_by_test_id("otp-send").click()
    code = code_in(wait_mail(mail_env, "jane", "Your signing code"))
    page.get_by_test_id("otp-code").fill("999999" if code != "999999" else "888888")
    page.get_by_test_id("otp-verify").click()
    page.get_by_text(re.compile(r"4 attempts left")).wait_for()
    page.get_by_test_id("otp-code").fill(code)
    page.get_by_test_id("otp-verify").click()
    page.get_by_test_id("consent").check()
    page.get_by_test_id("tab-draw").click()
    _draw(page)
    page.get_by_test_id("sign").click()
    page.get_by_test_id("status").get_by_text(re.compile("Signed")).wait_for()

    detail = client.get(f"/v1/signatures/{pid}", headers=key).json()
    assert detail["status"] == "completed"
    viewed = next(e for e in detail["timeline"] if e["event"] == "DocumentViewed")
    assert "Chrome" in viewed["details"]["user_agent"]
    assert viewed["details"]["ip"] == "127.0.0.1"
    signed = next(e for e in detail["timeline"] if e["event"] == "DocumentSigned")
    assert signed["details"]["signature"] == "drawn"
    pdf = client.get(f"/v1/signatures/{pid}/document.pdf", headers=key).content
    # pyHanko's synchronous API runs its own event loop: not in Playwright's thread
    with ThreadPoolExecutor(1) as pool:
        checks = pool.submit(check_signatures, pdf, mail_env.sp.trust_roots).result()
    people = [c for c in checks if not c.is_document_timestamp]
    assert [c.signer_name for c in people] == ["Jane Customer"] and people[0].valid


def _snippet() -> str:
    found = re.search(r"```html\n(<script [^\n]*embed\.js[^\n]*</script>)\n```", DOCS.read_text())
    assert found, "docs/embedding.md has no one-line snippet"
    return found.group(1)


def _host_page(directory: Path, sealpost_url: str, link: str) -> None:
    snippet = _snippet()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(snippet.split('src="')[1].split('"')[0]))
    snippet = snippet.replace(origin, sealpost_url)
    snippet = re.sub(r'data-signing-url="[^"]*"', f'data-signing-url="{link}"', snippet)
    target = re.search(r'data-target="#([\w-]+)"', snippet)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.html").write_text(
        "<!doctype html><html><body><h1>ACME CRM</h1>"
        f'<div id="{target.group(1) if target else "signature"}"></div>'
        "<script>window.__events = [];"
        '["sealpost:signed", "sealpost:declined", "sealpost:error"].forEach(t => '
        "window.addEventListener(t, e => window.__events.push({type: t, detail: e.detail})));"
        f"</script>{snippet}</body></html>"
    )


def test_the_embedded_page_signs_and_tells_the_integrator(
    mail_env: MailEnv,
    live: Any,
    browser_page: Any,
    client: TestClient,
    key: dict[str, str],
    tmp_path: Path,
) -> None:
    page = browser_page
    with (
        StaticSite(tmp_path / "crm", free_port()) as crm,
        StaticSite(tmp_path / "other", free_port()) as other,
    ):
        client.put("/v1/settings/signing", json={"frame_ancestors": [crm.url]}, headers=key)
        body = process_request(signer("Jane Customer", "jane", "1", identification="none"))
        process = client.post("/v1/signatures", json=body, headers=key).json()
        pid, sid = process["id"], process["signers"][0]["id"]

        # a site the tenant did not allow cannot frame the page
        stolen = client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=key).json()
        _host_page(tmp_path / "other", live.url, stolen["url"])
        page.goto(f"{other.url}/index.html")
        page.wait_for_timeout(1500)
        assert page.frame_locator("iframe").get_by_test_id("sign").count() == 0

        link = client.post(f"/v1/signatures/{pid}/signers/{sid}/link", headers=key).json()
        _host_page(tmp_path / "crm", live.url, link["url"])
        page.goto(f"{crm.url}/index.html")
        frame = page.frame_locator("iframe")
        frame.get_by_test_id("consent").check()
        frame.get_by_test_id("tab-type").click()
        assert frame.get_by_test_id("typed-name").input_value() == "Jane Customer"
        frame.get_by_test_id("sign").click()
        page.wait_for_function("window.__events.length > 0")
        events = page.evaluate("window.__events")
    assert events[0]["type"] == "sealpost:signed"
    assert events[0]["detail"]["process_id"] == pid
    assert events[0]["detail"]["signer_id"] == sid
    assert client.get(f"/v1/signatures/{pid}", headers=key).json()["status"] == "completed"
