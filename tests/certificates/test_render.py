"""The certificate's pages and attachments, before sealing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.app import Sealpost
from sealpost.certificates import fonts, render_certificate
from sealpost.certificates.embedded import read_embedded_files
from sealpost.certificates.manifest import bundle_json
from sealpost.certificates.render import SealpostPages
from tests.certificates.support import Scenario, make_certificate_data, poppler


def _pages(pdf: bytes) -> int:
    return int(PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Count"])


def test_the_pages_name_the_parties_and_every_event(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(delays=2))
    path = tmp_path / "certificate.pdf"
    path.write_bytes(render_certificate(data))
    result = poppler("pdftotext", "-layout", path, "-")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Evidence certificate" in text and "certified email" in text
    for expected in (data.sender, data.recipient, data.message_id, data.content_sha256):
        assert expected in text
    for event in data.events:
        assert event.event in text
    assert "Accepted by mx.example.org [192.0.2.1]: 250 2.0.0 Ok: queued as 4FzX" in text
    assert "451 4.7.1 greylisted" in text  # a negative event's reason
    assert "contract.pdf" in text and "How to verify" in text


def test_attachments_are_the_exact_message_the_bundles_and_a_manifest(
    ledger: Sealpost, tenant: str
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario())
    files = read_embedded_files(PdfFileReader(io.BytesIO(render_certificate(data))))
    assert files["original.eml"] == data.eml
    evidence = sorted(name for name in files if name.startswith("evidence-"))
    assert evidence == [
        f"evidence-{n:02d}-{e.event}-{e.record_id}.json" for n, e in enumerate(data.events, 1)
    ]
    for name, event in zip(evidence, data.events, strict=True):
        assert event.bundle is not None
        assert files[name] == bundle_json(event.bundle)
        assert json.loads(files[name]) == event.bundle
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "sealpost-evidence-certificate" and manifest["version"] == 1
    assert manifest["communication_id"] == data.communication_id
    assert manifest["message"]["sha256"] == data.content_sha256
    assert [e["record_id"] for e in manifest["events"]] == [e.record_id for e in data.events]
    assert [e["file"] for e in manifest["events"]] == evidence
    assert set(manifest["files"]) == set(files) - {"manifest.json"}


def test_the_attachments_are_listed_by_pdf_tools(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(render_certificate(make_certificate_data(ledger, tenant, Scenario())))
    listing = poppler("pdfdetach", "-list", path)
    assert listing.returncode == 0, listing.stderr
    assert "original.eml" in listing.stdout and "manifest.json" in listing.stdout


def test_an_unsealed_event_is_described_but_not_embedded(ledger: Sealpost, tenant: str) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(unsealed_last=True))
    pdf = render_certificate(data)
    files = read_embedded_files(PdfFileReader(io.BytesIO(pdf)))
    manifest = json.loads(files["manifest.json"])
    assert manifest["events"][-1]["event"] == "ContentHandover"
    assert manifest["events"][-1]["file"] is None
    assert not any("ContentHandover" in name for name in files)


def test_emoji_cjk_and_control_characters_render(ledger: Sealpost, tenant: str) -> None:
    subject = "Contrat 契約書 📄✅ — résiliation \u202e\x07 Ωμέγα Привет"
    data = make_certificate_data(ledger, tenant, Scenario(subject=subject))
    pdf = render_certificate(data)
    assert pdf.startswith(b"%PDF-")
    manifest = json.loads(read_embedded_files(PdfFileReader(io.BytesIO(pdf)))["manifest.json"])
    assert manifest["message"]["subject"] == subject  # the exact text is kept in the data


def test_without_dejavu_core_fonts_write_what_latin_1_cannot_as_code_points(
    ledger: Sealpost, tenant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fonts, "_FONT_DIRS", ())
    data = make_certificate_data(ledger, tenant, Scenario(subject="Résiliation — 契約 📄"))
    path = tmp_path / "certificate.pdf"
    path.write_bytes(render_certificate(data))
    text = poppler("pdftotext", path, "-").stdout
    assert "Résiliation - <U+5951><U+7D04> <U+1F4C4>" in text
    assert "Helvetica" in poppler("pdffonts", path).stdout


def test_the_text_font_keeps_what_it_can_draw() -> None:
    font = fonts.FontSet(text="t", mono="m", coverage=range(0x20, 0x250), unicode=True)
    assert font.clean("é\tx\u202e 契") == "é x  <U+5951>"
    assert font.clean("line 1\nline 2") == "line 1\nline 2"


def test_forty_events_take_several_pages(ledger: Sealpost, tenant: str) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(delays=38))
    assert len(data.events) == 40
    pdf = render_certificate(data)
    assert _pages(pdf) >= 4
    files = read_embedded_files(PdfFileReader(io.BytesIO(pdf)))
    assert sum(name.startswith("evidence-") for name in files) == 40


@pytest.mark.parametrize(
    "text",
    [
        "short",
        "The copy transmitted to the recipient's server is not byte for byte the message "
        "Sealpost received, so each has its own SHA-256 digest: compare the copy a recipient "
        "holds with the delivered one. " * 3 + "End.",
        "evidence-01-SubmissionAcceptance-e367123c-e7ea-4e77-9358-1f8c22135c21.json is long",
        "two  spaces, and\na newline",
        "Ελληνικά тест — “quoted” … " * 8 + "end",
    ],
)
def test_text_box_breaks_lines_where_multi_cell_does(text: str) -> None:
    """The fast path of SealpostPages.text_box wraps as fpdf2's multi_cell (same lines)."""
    fast, slow = SealpostPages("fast"), SealpostPages("slow")
    for pdf in (fast, slow):
        pdf.add_page()
        pdf.set_font(pdf.fontset.text, size=9.5)
        pdf.set_x(pdf.l_margin + 42)
    clean = fast.fontset.clean(text)
    expected = slow.multi_cell(0, 4.8, clean, align="L", dry_run=True, output="LINES")
    slow.multi_cell(0, 4.8, clean, align="L", new_x="LMARGIN", new_y="NEXT")
    drawn: list[str] = []
    cell = fast.cell

    def recording(*args: Any, **kwargs: Any) -> Any:
        drawn.append(args[2])
        return cell(*args, **kwargs)

    fast.cell = recording  # type: ignore[method-assign]
    fast.text_box(4.8, clean, wrap=True, align="L")
    assert (fast.get_x(), fast.get_y()) == pytest.approx((slow.get_x(), slow.get_y()))
    if drawn:  # the fast path drew it: the same lines
        assert drawn == [line.rstrip() for line in expected]
