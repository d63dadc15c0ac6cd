"""Document intake: what is accepted, what is refused and how, anchors and page images."""

from __future__ import annotations

import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers

from sealpost.certificates.seal import IdentitySigner
from sealpost.errors import InvalidInput
from sealpost.pki.keys import SigningIdentity, load_local_identities
from sealpost.signatures.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_RENDER_PX,
    Anchor,
    PageSize,
    PdfInfo,
    field_box_for,
    find_anchors,
    inspect_pdf,
    render_page_png,
)
from tests.signatures.pdf_samples import (
    A4,
    LETTER,
    Line,
    encrypted,
    no_pages,
    one_page,
    raw_pdf,
    text_pdf,
)

TWO_PAGES, WRITTEN = text_pdf(
    [
        [Line(72, 90, "Contract between the parties", 16), Line(320, 640, "{{signature:1}}")],
        [Line(72, 90, "Annex"), Line(90, 500, "Signed: {{signature:2}}", 9)],
    ],
    formats=[A4, (LETTER[1], LETTER[0])],
)


@pytest.fixture(scope="module")
def seal_identity(keys_dir: Path) -> SigningIdentity:
    return load_local_identities(keys_dir).seal


def _signed(
    pdf: bytes, identity: SigningIdentity, *, certify: fields.MDPPerm | None = None
) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name="Signature1",
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify is not None,
        docmdp_permissions=certify or fields.MDPPerm.FILL_FORMS,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    signed: bytes = signers.sign_pdf(writer, meta, signer=IdentitySigner(identity)).getvalue()
    return signed


def _refusal(data: bytes, name: str = "contract.pdf") -> str:
    with pytest.raises(InvalidInput) as caught:
        inspect_pdf(data, name=name)
    assert caught.value.status == 422
    message = caught.value.message
    assert f'"{name}"' in message, message
    return message


# --- accepted documents -----------------------------------------------------------------------


def test_a_pdf_is_described_by_its_digest_size_and_page_sizes() -> None:
    info = inspect_pdf(TWO_PAGES, name="contract.pdf")
    assert isinstance(info, PdfInfo)
    assert info.size == len(TWO_PAGES)
    assert info.sha256 == hashlib.sha256(TWO_PAGES).hexdigest()
    assert [(round(p.width), round(p.height)) for p in info.pages] == [(595, 842), (792, 612)]
    assert info.has_signatures is False


def test_page_sizes_are_as_shown_crop_box_and_rotation_applied() -> None:
    info = inspect_pdf(one_page(b"/MediaBox [0 0 595 842] /CropBox [0 0 500 700] /Rotate 90"))
    assert info.pages == (PageSize(700.0, 500.0),)


def test_a_page_without_a_media_box_is_us_letter_as_readers_show_it() -> None:
    assert inspect_pdf(one_page(b"")).pages == (PageSize(*LETTER),)


def test_an_already_signed_pdf_is_accepted_and_says_so(seal_identity: SigningIdentity) -> None:
    info = inspect_pdf(_signed(TWO_PAGES, seal_identity))
    assert info.has_signatures is True
    assert len(info.pages) == 2


def test_a_pdf_certified_to_allow_form_filling_is_accepted(seal_identity: SigningIdentity) -> None:
    certified = _signed(TWO_PAGES, seal_identity, certify=fields.MDPPerm.FILL_FORMS)
    assert inspect_pdf(certified).has_signatures is True


# --- refusals ---------------------------------------------------------------------------------


def test_an_empty_document_is_refused() -> None:
    assert "is empty (0 bytes)" in _refusal(b"")


def test_a_document_over_the_limit_is_refused_before_it_is_parsed() -> None:
    message = _refusal(b"%PDF-1.7\n" + b" " * MAX_DOCUMENT_BYTES)
    assert "too large" in message and f"limited to {MAX_DOCUMENT_BYTES} bytes (25 MiB)" in message


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(_docx(), "looks like a ZIP archive (DOCX", id="docx"),
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "DOC, XLS or PPT", id="doc"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(100), "looks like a PNG image", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0" + bytes(100), "looks like a JPEG image", id="jpeg"),
        pytest.param(
            b"\xef\xbb\xbf\n  <!DOCTYPE html><html><body>Login</body></html>",
            "looks like an HTML page",
            id="html",
        ),
        pytest.param(b"JVBERi0xLjcKJeLjz9MK", "base64-encoded PDF; decode", id="base64"),
        pytest.param(b"data:application/pdf;base64,JVBERi0x", "data: URL", id="data-url"),
        pytest.param(b'{"error": "not found"}', "looks like JSON", id="json"),
        pytest.param(b"\r\n%PDF-1.7\n...", "2 bytes precede its %PDF- header", id="prefixed"),
        pytest.param(b"Dear customer, please sign", "does not start with %PDF-", id="text"),
    ],
)
def test_what_is_not_a_pdf_is_named(data: bytes, expected: str) -> None:
    message = _refusal(data)
    assert message.startswith('"contract.pdf" is not a PDF: ')
    assert expected in message


def test_a_truncated_pdf_is_refused_as_truncated() -> None:
    message = _refusal(TWO_PAGES[: len(TWO_PAGES) // 2])
    assert "damaged PDF" in message and "truncated" in message


def test_a_pdf_whose_cross_reference_table_is_gone_is_refused() -> None:
    message = _refusal(TWO_PAGES.replace(b"startxref", b"startxerf"))
    assert "damaged PDF" in message and "structure" in message and "pyHanko" in message


def test_a_pdf_only_pdfium_can_repair_is_refused() -> None:
    """PDFium rebuilds a lost cross-reference table; pyHanko, which will sign it, cannot."""
    broken = TWO_PAGES.replace(b"xref", b"xxxx")
    message = _refusal(broken)
    assert "damaged PDF" in message


@pytest.mark.parametrize("user_password", ["", "s3cret"], ids=["opens-without-password", "locked"])
def test_an_encrypted_pdf_is_refused(user_password: str) -> None:
    message = _refusal(encrypted(user_password))
    assert "encrypted PDFs cannot be signed: remove the password" in message


def test_a_pdf_certified_against_any_change_is_refused(seal_identity: SigningIdentity) -> None:
    certified = _signed(TWO_PAGES, seal_identity, certify=fields.MDPPerm.NO_CHANGES)
    assert "no changes allowed" in _refusal(certified)


def test_a_pdf_without_pages_is_refused() -> None:
    assert "has no pages" in _refusal(no_pages())


@pytest.mark.parametrize(
    "page",
    [
        b"/MediaBox [0 0 0 842]",
        b"/MediaBox [0 0 595 0]",
        b"/MediaBox [10 10 10 842]",
        b"/MediaBox [0 0 595 842] /CropBox [0 0 0 0]",
    ],
)
def test_a_page_of_size_zero_is_refused(page: bytes) -> None:
    """PDFium would show such a page as US Letter: the declared size is checked, not its guess."""
    message = _refusal(one_page(page))
    assert "has a page of size 0 (page 1 is" in message


def test_a_page_tree_whose_count_lies_is_refused() -> None:
    message = _refusal(one_page(count=2))
    assert "damaged PDF" in message and "/Count says 2 pages, there are 1" in message


def test_a_page_tree_with_a_cycle_is_refused() -> None:
    looped = raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
        ]
    )
    assert "damaged PDF" in _refusal(looped)


def test_the_name_in_a_message_cannot_inject_lines() -> None:
    with pytest.raises(InvalidInput) as caught:
        inspect_pdf(b"", name="evil\r\nX-Injected: 1" + "x" * 200)
    message = caught.value.message
    assert "\n" not in message and "\r" not in message
    assert "…" in message and len(message) < 200


# --- never anything but InvalidInput, whatever the bytes ---------------------------------------

SEED, _ = text_pdf(
    [[Line(72, 72, "Hello {{signature:1}}")], [Line(72, 72, "Page two")]], compress=False
)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _accepted_or_refused(data: bytes) -> None:
    refusal: str | None = None
    try:
        info = inspect_pdf(data, name="fuzz.pdf")
    except InvalidInput as exc:
        refusal = exc.message
    if refusal is not None:
        assert refusal.startswith('"fuzz.pdf" ')
        return
    assert info.size == len(data) and info.pages
    assert all(p.width > 0 and p.height > 0 for p in info.pages)
    # What intake accepts, the signing page must be able to show.
    find_anchors(data)
    png = render_page_png(data, 1, width_px=40)
    assert png.startswith(b"\x89PNG")


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    _accepted_or_refused(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_after_a_pdf_header_are_refused_cleanly(tail: bytes) -> None:
    _accepted_or_refused(b"%PDF-1.7\n" + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=12))
def test_a_pdf_with_bytes_changed_is_accepted_or_refused_cleanly(
    changes: list[tuple[int, int]],
) -> None:
    data = bytearray(SEED)
    for position, value in changes:
        data[position] = value
    _accepted_or_refused(bytes(data))


@FUZZ
@given(st.integers(0, len(SEED)), st.integers(0, len(SEED)), st.binary(max_size=64))
def test_a_pdf_cut_or_spliced_is_accepted_or_refused_cleanly(
    start: int, end: int, insert: bytes
) -> None:
    start, end = sorted((start, end))
    _accepted_or_refused(SEED[:start] + insert + SEED[end:])


# --- anchors ----------------------------------------------------------------------------------


def test_anchors_are_found_on_each_page_where_they_were_written() -> None:
    anchors = find_anchors(TWO_PAGES)
    assert [(a.label, a.page) for a in anchors] == [("1", 1), ("2", 2)]
    truth = [w for w in WRITTEN if w.anchor]
    assert [w.page for w in truth] == [1, 2]
    for anchor, written in zip(anchors, truth, strict=True):
        assert anchor.box == pytest.approx(written.box, abs=2), written.text


def test_an_anchor_box_matches_the_text_fpdf2_wrote_at_several_sizes() -> None:
    lines = [Line(40, 60, "{{signature:7}}", 8), Line(200, 400, "Here: {{signature:12}}.", 20)]
    data, written = text_pdf([lines])
    anchors = find_anchors(data)
    assert [a.label for a in anchors] == ["7", "12"]
    for anchor, truth in zip(anchors, [w for w in written if w.anchor], strict=True):
        assert anchor.page == 1
        assert anchor.box == pytest.approx(truth.box, abs=2), truth.text


def test_a_document_without_anchors_has_none() -> None:
    data, _ = text_pdf([[Line(72, 72, "No anchor here: {{signature}} {signature:1} {{sign:2}}")]])
    assert find_anchors(data) == []


def test_find_anchors_refuses_what_is_not_a_pdf() -> None:
    with pytest.raises(InvalidInput):
        find_anchors(b"\x89PNG\r\n\x1a\n" + bytes(64))


def test_the_field_box_starts_at_the_anchor() -> None:
    anchor = Anchor("1", 1, (100.0, 200.0, 160.0, 210.0))
    assert field_box_for(anchor, PageSize(*A4)) == (100.0, 200.0, 280.0, 254.0)
    assert field_box_for(anchor, PageSize(*A4), width=120, height=40) == (
        100.0,
        200.0,
        220.0,
        240.0,
    )


def test_the_field_box_is_clipped_to_the_page() -> None:
    page = PageSize(595.0, 842.0)
    near_corner = Anchor("1", 1, (500.0, 820.0, 560.0, 830.0))
    assert field_box_for(near_corner, page) == (500.0, 820.0, 595.0, 842.0)
    off_page = Anchor("1", 1, (-20.0, -5.0, 10.0, 5.0))
    assert field_box_for(off_page, page) == (0.0, 0.0, 180.0, 54.0)


# --- page images ------------------------------------------------------------------------------


def _image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _grey_range(image: Image.Image) -> tuple[int, int]:
    """(darkest, lightest) grey level of the image."""
    darkest, lightest = cast(tuple[int, int], image.convert("L").getextrema())
    return darkest, lightest


def test_a_page_renders_as_a_png_of_the_page_proportions() -> None:
    image = _image(render_page_png(TWO_PAGES, 1))
    assert image.width == 1000
    assert image.height == pytest.approx(1000 * A4[1] / A4[0], abs=1)
    darkest, lightest = _grey_range(image)
    assert lightest == 255 and darkest < 100  # white paper with dark text on it


def test_a_landscape_page_renders_landscape_at_the_width_asked() -> None:
    image = _image(render_page_png(TWO_PAGES, 2, width_px=400))
    assert image.width == 400
    assert image.height == pytest.approx(400 * LETTER[0] / LETTER[1], abs=1)
    assert _grey_range(image)[0] < 200  # small text, anti-aliased to grey


def test_a_very_tall_page_is_rendered_within_the_pixel_limit() -> None:
    image = _image(render_page_png(one_page(b"/MediaBox [0 0 20 14400]"), 1))
    assert image.height <= MAX_RENDER_PX and image.width <= 1000


@pytest.mark.parametrize("page", [0, 3, -1])
def test_a_page_out_of_range_is_refused(page: int) -> None:
    with pytest.raises(InvalidInput, match=r"does not exist: the document has 2 pages"):
        render_page_png(TWO_PAGES, page)


@pytest.mark.parametrize("width_px", [0, MAX_RENDER_PX + 1])
def test_an_unreasonable_image_width_is_refused(width_px: int) -> None:
    with pytest.raises(InvalidInput, match="width_px"):
        render_page_png(TWO_PAGES, 1, width_px=width_px)


def test_rendering_what_is_not_a_pdf_is_refused() -> None:
    with pytest.raises(InvalidInput, match="damaged PDF"):
        render_page_png(b"%PDF-1.7\n garbage", 1)


def test_pdfium_is_used_from_many_threads_at_once_safely() -> None:
    """The API renders from a thread pool; PDFium itself is not thread-safe."""

    def work(n: int) -> tuple[bytes, list[Anchor], PdfInfo]:
        png = render_page_png(TWO_PAGES, 1 + n % 2, width_px=200)
        return png, find_anchors(TWO_PAGES), inspect_pdf(TWO_PAGES)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(24)))
    assert all(r == results[n % 2] for n, r in enumerate(results))
