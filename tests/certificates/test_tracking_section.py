"""The certificate of a tracked message says so in a section of its own, even before any open
or click, and an untracked message's certificate has no such section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sealpost.app import Sealpost
from sealpost.certificates import render_certificate
from tests.certificates.support import Scenario, make_certificate_data, poppler


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def test_a_tracked_message_without_hits_says_none_was_recorded(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario())
    assert "Non-essential tracking" not in _text(render_certificate(data), tmp_path)
    first, *rest = data.events
    tracking = {"opens": True, "clicks": False, "pixel": True, "links": 0}
    tracked = dataclasses.replace(first, details={**first.details, "tracking": tracking})
    text = _text(render_certificate(dataclasses.replace(data, events=(tracked, *rest))), tmp_path)
    _, _, section = text.partition("Non-essential tracking")
    assert "never proof that the recipient read the message" in section
    assert "No open or click had been recorded when this version was issued" in section
