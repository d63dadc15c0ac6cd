"""The pickup page's HTML: a small shell (the script does the rest), in the recipient's
language (English or Spanish, from Accept-Language; the page has a switch), with a strict
Content-Security-Policy: no inline script or style, nothing from elsewhere, no framing."""

from __future__ import annotations

import html
import json
from typing import Any

from sealpost.access import STATIC_PATH as ACCESS_STATIC
from sealpost.pickup import STATIC_PATH

LANGUAGES = ("en", "es")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
API_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def language(accept: str | None) -> str:
    """The first of en/es in the client's Accept-Language (RFC 9110 §12.5.4), by weight."""
    best, best_q = "en", -1.0
    for item in (accept or "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def _config_json(data: dict[str, Any]) -> str:
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_TITLE = {"en": "Certified message", "es": "Comunicación certificada"}


def page_html(config: dict[str, Any], lang: str) -> str:
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_TITLE[lang]}</title>
<link rel="stylesheet" href="{STATIC_PATH}/pickup.css">
<script type="module" src="{STATIC_PATH}/pickup.js"></script>
<link rel="modulepreload" href="{ACCESS_STATIC}/api.js">
</head>
<body>
<header>
  <h1 data-i18n="title">{_TITLE[lang]}</h1>
  <nav class="langs">
    <button type="button" data-lang="en" data-testid="lang-en">English</button>
    <button type="button" data-lang="es" data-testid="lang-es">Español</button>
  </nav>
</header>
<main>
  <p id="status" role="status" aria-live="polite" data-testid="status"></p>
  <p id="sender" data-testid="sender" hidden></p>
  <section id="identify" hidden>
    <h2 data-i18n="identify"></h2>
    <p id="question" data-testid="question" hidden></p>
    <button type="button" id="code-send" data-testid="code-send" data-i18n="send_code"
      hidden></button>
    <form id="answer-form" novalidate>
      <label for="answer" data-i18n="answer_label"></label>
      <input id="answer" data-testid="answer" autocomplete="one-time-code" maxlength="300">
      <button type="submit" data-testid="verify" data-i18n="verify"></button>
    </form>
  </section>
  <section id="decide" hidden>
    <h2 data-i18n="decide"></h2>
    <p data-i18n="decide_text"></p>
    <button type="button" id="accept" data-testid="accept" data-i18n="accept"></button>
    <label for="reason" data-i18n="reason_label"></label>
    <textarea id="reason" data-testid="reason" maxlength="2000" rows="3"></textarea>
    <button type="button" id="reject" data-testid="reject" data-i18n="reject"></button>
  </section>
  <section id="content" hidden>
    <h2 id="subject" data-testid="subject"></h2>
    <p id="from" data-testid="from"></p>
    <iframe id="html" data-testid="html" title="message" hidden
      sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer"></iframe>
    <pre id="text" data-testid="text"></pre>
    <h3 data-i18n="attachments"></h3>
    <ul id="files" data-testid="files"></ul>
    <button type="button" id="eml" data-testid="download-eml" data-i18n="download_eml"></button>
  </section>
</main>
<script type="application/json" id="config">{_config_json(config)}</script>
</body>
</html>
"""


def error_html(message: str, lang: str) -> str:
    return f"""<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_TITLE[lang]}</title><link rel="stylesheet" href="{STATIC_PATH}/pickup.css"></head>
<body><main><h1>{_TITLE[lang]}</h1>
<p data-testid="error">{html.escape(message)}</p></main></body></html>
"""
