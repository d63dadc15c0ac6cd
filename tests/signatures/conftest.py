"""Fixtures of the signing tests: the local PKI and TSA, a sample contract, a drawn signature.

The keys come from the session's ``keys_dir`` (tests/conftest.py); everything here is cheap
and read-only, so it is shared per module or per session.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from fpdf import FPDF
from PIL import Image, ImageDraw

from sealpost.signatures.intake import PdfIntake
from sealpost.signatures.workers import Limits

SAMPLE_PAGES = 3


@pytest.fixture(scope="session")
def sample_pdf() -> bytes:
    """A three-page A4 contract: text in the top half of each page, the bottom third blank
    for signature fields."""
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_auto_page_break(False)
    for number in range(1, SAMPLE_PAGES + 1):
        pdf.add_page()
        pdf.set_font("helvetica", "B", 16)
        pdf.set_xy(56, 56)
        pdf.cell(text=f"Service agreement, page {number} of {SAMPLE_PAGES}")
        pdf.set_font("helvetica", size=11)
        for line in range(12):
            pdf.set_xy(56, 96 + line * 18)
            pdf.cell(text=f"Clause {number}.{line + 1}. The provider repairs the device in time.")
    return bytes(pdf.output())


@pytest.fixture(scope="session")
def drawn_png() -> bytes:
    """A drawn signature as the signing page sends it: dark strokes on a transparent PNG."""
    img = Image.new("RGBA", (360, 120), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.line(
        [(12, 90), (70, 20), (120, 95), (190, 25), (250, 90), (340, 30)],
        fill=(10, 20, 90, 255),
        width=6,
    )
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def client(mail_client: TestClient) -> TestClient:
    """The REST API (and the signing page) of the test's Sealpost."""
    return mail_client


@pytest.fixture
def key(mail_key: dict[str, str]) -> dict[str, str]:
    return mail_key


@pytest.fixture(scope="session")
def pdf_intake() -> Iterator[PdfIntake]:
    """PDF intake's worker processes, with the default limits, for services built by hand."""
    intake = PdfIntake(Limits(timeout_seconds=30.0, memory_mb=1024, workers=2))
    try:
        yield intake
    finally:
        intake.close()
