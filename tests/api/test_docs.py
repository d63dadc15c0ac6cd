"""The API docs (Swagger UI at /docs) work on a closed network: every script, style and image
comes from Sealpost itself, under a CSP that allows nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from tests.support.browser import LiveServer, browser_page, chromium
from tests.support.smtp_peer import free_port

__all__ = ["browser_page", "chromium"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:  # the pages are the point here, not the database
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


class _Links(HTMLParser):
    """Every URL a page makes the browser load from its markup: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


def test_docs_load_only_same_origin_assets(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "http" not in csp  # no other origin, no CDN
    links = _Links()
    links.feed(response.text)
    base = "http://testserver/docs"
    urls = [urljoin(base, u) for u in links.urls]
    assert {Path(urlsplit(u).path).name for u in urls} == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon.png",
    }
    assert "url: 'openapi.json'" in response.text  # Swagger UI's inline config
    urls.append(urljoin(base, "openapi.json"))
    for url in urls:
        assert urlsplit(url).netloc == "testserver", url
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES[Path(urlsplit(url).path).suffix]
        assert asset.headers["content-type"].split(";")[0] == expected, url


def test_the_docs_behind_a_root_path_load_from_under_it(sealpost: Sealpost) -> None:
    app = create_app(sealpost, start_background=False)
    with TestClient(app, root_path="/sealpost") as client:
        html = client.get("/docs").text
    assert "cdn" not in html and 'src="docs/assets/swagger-ui-bundle.js"' in html


def test_swagger_ui_renders_in_a_browser_with_no_other_origin(
    sealpost: Sealpost, browser_page: Any
) -> None:
    """Debian's chromium, every request to another origin aborted: the UI lists the API."""
    port = free_port()
    elsewhere: list[str] = []
    problems: list[str] = []
    page = browser_page
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def only_here(route: Any) -> None:
        if urlsplit(route.request.url).netloc == f"127.0.0.1:{port}":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    with LiveServer(create_app(sealpost, start_background=False), port) as live:
        page.goto(f"{live.url}/docs")
        page.locator(".swagger-ui .info .title").filter(has_text="Sealpost").wait_for()
        page.locator(".opblock-summary-path", has_text="/healthz").first.wait_for()
    assert elsewhere == []
    assert problems == []
