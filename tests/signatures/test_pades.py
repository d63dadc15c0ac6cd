"""PAdES signatures of a process's signers, checked by the validators a court's expert would use.

One module-scoped run prepares a three-page contract, has three signers sign it one after the
other and finalizes it; each test then looks at every step of that run: pyHanko (signature,
timestamp, difference analysis), poppler's ``pdfsig`` (NSS), each revision on its own, and
what PDFium draws.  Tampering, outages and bad inputs start from the same genuine files.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped, unused-ignore]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.content import RawContent
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign.validation.dss import DocumentSecurityStore

from sealpost.certificates.pades.appearance import SignerAppearance, render_appearance
from sealpost.certificates.pades.errors import SignatureError, SignatureUnavailable
from sealpost.certificates.pades.evidence import (
    EVIDENCE_ATTRIBUTE_OID,
    bound_evidence_sha256,
    evidence_digest,
)
from sealpost.certificates.pades.fields import FieldSpec, prepare_document
from sealpost.certificates.pades.signing import (
    ARCHIVE_TIMESTAMP_FIELD,
    finalize_document,
    sign_for_signer,
)
from sealpost.certificates.pades.validation import check_signatures
from sealpost.errors import Conflict, InvalidInput, ServiceUnavailable
from sealpost.ledger.timestamps import TimeStamper, TimestampUnavailable
from sealpost.pki.keys import LocalIdentities
from sealpost.signatures.documents import PDFIUM_LOCK
from tests.certificates.support import poppler

FIELDS = (
    FieldSpec("Signer1", 3, (56.0, 70.0, 266.0, 160.0)),
    FieldSpec("Signer2", 3, (320.0, 70.0, 530.0, 160.0)),
    FieldSpec("Signer3", 2, (56.0, 70.0, 266.0, 160.0)),
)
NAMES = ("Alice Martin", "Bruno Keller", "Łukasz Żółkiewski")
SIGNED_AT = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)


def _evidence(number: int, **changes: str) -> dict[str, str]:
    evidence = {
        "otp_channel": "email",
        "ip": f"198.51.100.{number + 10}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        "consent_sha256": "c0" * 32,
        "document_sha256": "d0" * 32,
    }
    return evidence | changes


def _appearance(number: int, drawn_png: bytes) -> SignerAppearance:
    """Signers 1 and 3 draw their signature; signer 2 types it."""
    return SignerAppearance(
        name=NAMES[number],
        signed_at=SIGNED_AT + timedelta(minutes=number),
        image_png=None if number == 1 else drawn_png,
        typed=NAMES[number] if number == 1 else None,
        identification=f"Identified by email OTP ({NAMES[number][0].lower()}***@example.com)",
    )


@dataclass(frozen=True)
class Run:
    """The prepared contract, then the file after each signer and after finalization."""

    prepared: bytes
    steps: tuple[bytes, ...]

    @property
    def final(self) -> bytes:
        return self.steps[-1]


def _sign(
    pdf: bytes,
    number: int,
    identities: LocalIdentities,
    stamper: TimeStamper,
    png: bytes,
    **kwargs: object,
) -> bytes:
    options: dict[str, object] = {
        "field": FIELDS[number].name,
        "appearance": _appearance(number, png),
        "reason": f"Signed by {NAMES[number]}",
        "evidence": _evidence(number),
        "seal": identities.seal,
        "timestamper": stamper,
        "trust_roots": [identities.root],
    }
    return sign_for_signer(pdf, **(options | kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run(
    sample_pdf: bytes, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> Run:
    prepared = prepare_document(sample_pdf, FIELDS)
    steps, pdf = [], prepared
    for number in range(len(FIELDS)):
        pdf = _sign(pdf, number, identities, timestamper, drawn_png)
        steps.append(pdf)
    steps.append(finalize_document(pdf, timestamper=timestamper, trust_roots=[identities.root]))
    return Run(prepared, tuple(steps))


STEPS = [0, 1, 2, 3]
STEP_IDS = ["after-signer-1", "after-signer-2", "after-signer-3", "finalized"]


def _revision(pdf: bytes, field: str) -> bytes:
    """The bytes a signature signs: the file up to the end of its /ByteRange."""
    sig = next(
        s for s in PdfFileReader(io.BytesIO(pdf)).embedded_signatures if s.field_name == field
    )
    start, length = sig.byte_range[2], sig.byte_range[3]
    return pdf[: start + length]


def _pdfsig(pdf: bytes, tmp_path: Path, name: str = "signed.pdf") -> list[str]:
    """pdfsig's report, one section per signature (file order); pdfsig lists the fields not
    signed yet too ("The signature form field is not signed."), they are left out."""
    path = tmp_path / name
    path.write_bytes(pdf)
    result = poppler("pdfsig", path)
    assert result.returncode == 0, result.stdout + result.stderr
    sections = result.stdout.split("Signature #")[1:]
    return [s for s in sections if "form field is not signed" not in s]


# --- the happy path, step by step ------------------------------------------------------


@pytest.mark.parametrize("step", STEPS, ids=STEP_IDS)
def test_after_each_step_every_signature_validates_in_pyhanko(
    run: Run, root: x509.Certificate, step: int
) -> None:
    checks = check_signatures(run.steps[step], [root])
    signers = [c for c in checks if not c.is_document_timestamp]
    assert [c.field for c in signers] == [f.name for f in FIELDS[: min(step + 1, 3)]]
    for number, check in enumerate(signers):
        assert check.ok, check
        assert check.intact and check.valid and check.timestamp_valid and check.docmdp_ok
        assert check.signer_name == NAMES[number]
        assert check.covers_revision == number + 2  # 0: upload, 1: the prepared fields
        assert check.signed_at is not None and check.problem is None
        assert check.evidence_sha256 == evidence_digest(_evidence(number)).hex()
    # Each later signature is form filling; the finalization only adds validation data.
    expected = {
        0: ["NONE"],
        1: ["FORM_FILLING", "NONE"],
        2: ["FORM_FILLING", "FORM_FILLING", "NONE"],
        3: ["FORM_FILLING", "FORM_FILLING", "LTA_UPDATES"],
    }[step]
    assert [c.modification_level for c in signers] == expected
    stamps = [c for c in checks if c.is_document_timestamp]
    assert len(stamps) == (step == 3)
    for stamp in stamps:
        assert stamp.ok and stamp.field == ARCHIVE_TIMESTAMP_FIELD
        assert stamp.modification_level == "NONE" and stamp.covers_revision == 5


def test_signatures_are_pades_with_the_signer_and_reason_in_the_dictionary(run: Run) -> None:
    reader = PdfFileReader(io.BytesIO(run.final))
    *sigs, stamp = reader.embedded_signatures
    for number, sig in enumerate(sigs):
        assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
        assert sig.sig_object["/Name"] == NAMES[number]
        assert sig.sig_object["/Reason"] == f"Signed by {NAMES[number]}"
        assert sig.signer_cert.subject.native["common_name"] == "Sealpost Evidence Seal"
    assert stamp.sig_object["/SubFilter"] == "/ETSI.RFC3161"
    assert stamp.sig_object_type == "/DocTimeStamp"


def test_each_signature_carries_its_validation_data_in_its_own_revision(
    run: Run, identities: LocalIdentities
) -> None:
    """B-LT: the DSS of the very revision a signature signs holds the seal and TSA chains."""
    for spec in FIELDS:
        revision = _revision(run.final, spec.name)
        dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(revision)))
        names = {c.subject.native["common_name"] for c in dss.load_certs()}
        assert {"Sealpost Evidence Seal", "Sealpost Time-Stamping Authority"} <= names
        assert "Sealpost Local Root CA" in names


@pytest.mark.parametrize("step", STEPS, ids=STEP_IDS)
def test_after_each_step_pdfsig_says_every_signature_is_valid(
    run: Run, step: int, tmp_path: Path
) -> None:
    sections = _pdfsig(run.steps[step], tmp_path)
    signers = sections[:3] if step == 3 else sections
    assert len(signers) == min(step + 1, 3)
    for spec, section in zip(FIELDS, signers, strict=False):
        assert f"Signature Field Name: {spec.name}" in section
        assert "ETSI.CAdES.detached" in section
        assert "Signature is Valid" in section, section
    # pdfsig 22 does not implement document timestamps (see certificates/seal.py).
    if step == 3:
        assert f"Signature Field Name: {ARCHIVE_TIMESTAMP_FIELD}" in sections[3]
    assert "Total document signed" in sections[-1]


def test_each_revision_validates_on_its_own(
    run: Run, root: x509.Certificate, tmp_path: Path
) -> None:
    """What a signer downloaded right after signing still validates, in pyHanko and pdfsig."""
    for number, spec in enumerate(FIELDS):
        revision = _revision(run.final, spec.name)
        assert revision == run.steps[number]  # signing appends, it never rewrites
        checks = check_signatures(revision, [root])
        assert len(checks) == number + 1 and all(c.ok for c in checks), checks
        assert checks[-1].modification_level == "NONE"
        sections = _pdfsig(revision, tmp_path, f"revision-{number}.pdf")
        assert len(sections) == number + 1
        assert all("Signature is Valid" in s for s in sections)
        assert "Total document signed" in sections[-1]


def test_pyhanko_cli_validates_each_revision_and_the_final_document(
    run: Run, identities: LocalIdentities, tmp_path: Path
) -> None:
    """`pyhanko sign validate` (package pyhanko-cli, a test dependency), as a reader would."""
    cli = Path(sys.executable).parent / "pyhanko"
    assert cli.exists(), "pyhanko-cli is a test dependency: make test installs it"
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(identities.root.public_bytes(serialization.Encoding.PEM))
    files = [_revision(run.final, spec.name) for spec in FIELDS] + [run.final]
    for number, data in enumerate(files):
        document = tmp_path / f"revision-{number}.pdf"
        document.write_bytes(data)
        result = subprocess.run(
            [
                str(cli),
                "sign",
                "validate",
                "--pretty-print",
                "--no-revocation-check",
                "--trust",
                str(root_pem),
                "--trust-replace",
                str(document),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("The signature is judged VALID") >= min(number + 1, 3), (
            result.stdout
        )


# --- the appearance ----------------------------------------------------------------------


def _dark_pixels(pdf: bytes, page: int, box: tuple[float, float, float, float]) -> int:
    """Pixels darker than mid-grey that PDFium draws (annotations and forms included) inside
    ``box``, inset by 2 pt, on ``page`` (1-based), at 72 dpi."""
    x1, y1, x2, y2 = box
    with PDFIUM_LOCK:
        doc = pdfium.PdfDocument(pdf)
        try:
            doc.init_forms()
            rendered = doc[page - 1].render(scale=1, may_draw_forms=True).to_pil().convert("L")
        finally:
            doc.close()
    height = rendered.height
    region = rendered.crop((int(x1) + 2, int(height - y2) + 2, int(x2) - 2, int(height - y1) - 2))
    return sum(region.histogram()[:128])


def test_each_widget_has_its_appearance_on_its_page_and_box(run: Run) -> None:
    reader = PdfFileReader(io.BytesIO(run.final))
    pages = [reader.find_page_for_modification(i)[0] for i in range(3)]
    for spec in FIELDS:
        widget = next(
            f.get_object()
            for f in reader.root["/AcroForm"]["/Fields"]
            if f.get_object()["/T"] == spec.name
        )
        assert widget.raw_get("/P").reference == pages[spec.page - 1].reference
        assert tuple(float(v) for v in widget["/Rect"]) == spec.box
        normal = widget["/AP"]["/N"]
        assert normal.data.strip()
        drawn = normal["/Resources"]["/XObject"]
        assert any(drawn[name].data.strip() for name in drawn)


def test_pdfium_draws_each_signature_where_the_box_was_blank(run: Run) -> None:
    for spec in FIELDS:
        assert _dark_pixels(run.prepared, spec.page, spec.box) == 0
        assert _dark_pixels(run.final, spec.page, spec.box) > 200, spec


def test_the_appearance_shows_name_time_and_identification(drawn_png: bytes) -> None:
    for appearance in (_appearance(1, drawn_png), _appearance(2, drawn_png)):
        pdf = render_appearance(appearance, 210, 90)
        with PDFIUM_LOCK:
            doc = pdfium.PdfDocument(pdf)
            try:
                text = doc[0].get_textpage().get_text_range()
            finally:
                doc.close()
        assert appearance.name in text
        assert appearance.signed_at.strftime("Signed %Y-%m-%d %H:%M:%S UTC") in text
        assert appearance.identification in text


def test_a_long_name_is_shortened_to_fit_the_box(drawn_png: bytes) -> None:
    long_name = "Maria Magdalena Alexandrina von und zu Hohenzollern-Sigmaringen-Württemberg " * 2
    long_name = long_name.strip()
    appearance = dataclasses.replace(_appearance(0, drawn_png), name=long_name)
    pdf = render_appearance(appearance, 150, 70)
    with PDFIUM_LOCK:
        doc = pdfium.PdfDocument(pdf)
        try:
            page = doc[0].get_textpage()
            text = page.get_text_range()
            boxes = [page.get_charbox(i) for i in range(page.count_chars())]
        finally:
            doc.close()
    assert "Maria" in text and long_name not in text
    assert "…" in text or "..." in text  # core fonts (a Latin-1 name) have no "…"
    assert all(left >= 0 and right <= 150.5 for left, _, right, _ in boxes)  # rounding


# --- the evidence binding and the lock ----------------------------------------------------


def test_the_evidence_digest_is_a_signed_attribute_that_changes_with_the_evidence(
    run: Run, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    sig = PdfFileReader(io.BytesIO(run.steps[0])).embedded_signatures[0]
    types = [a["type"].dotted for a in sig.signer_info["signed_attrs"]]
    assert EVIDENCE_ATTRIBUTE_OID in types
    bound = bound_evidence_sha256(sig)
    assert bound == evidence_digest(_evidence(0)).hex()
    other = _sign(
        run.prepared,
        0,
        identities,
        timestamper,
        drawn_png,
        evidence=_evidence(0, ip="203.0.113.99"),
    )
    changed = PdfFileReader(io.BytesIO(other)).embedded_signatures[0]
    assert bound_evidence_sha256(changed) == evidence_digest(_evidence(0, ip="203.0.113.99")).hex()
    assert bound_evidence_sha256(changed) != bound
    assert check_signatures(other, [identities.root])[0].ok


def test_each_signature_locks_its_own_field_and_only_it(run: Run) -> None:
    reader = PdfFileReader(io.BytesIO(run.final))
    for spec, sig in zip(FIELDS, reader.embedded_signatures, strict=False):
        assert sig.fieldmdp == pdf_fields.FieldMDPSpec(
            pdf_fields.FieldMDPAction.INCLUDE, [spec.name]
        )


def test_pyhanko_enforces_a_lock_so_one_naming_another_field_would_break_its_signature(
    sample_pdf: bytes, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    """Why each field locks only itself: pyHanko reports filling a locked field as OTHER."""
    writer = IncrementalPdfFileWriter(io.BytesIO(sample_pdf))
    both = pdf_fields.FieldMDPSpec(pdf_fields.FieldMDPAction.INCLUDE, ["Signer1", "Signer2"])
    for spec, lock in ((FIELDS[0], both), (FIELDS[1], None)):
        pdf_fields.append_signature_field(
            writer,
            pdf_fields.SigFieldSpec(
                spec.name,
                on_page=spec.page - 1,
                box=spec.box,
                field_mdp_spec=lock,  # type: ignore[arg-type]
            ),
        )
    out = io.BytesIO()
    writer.write(out)
    pdf = _sign(out.getvalue(), 0, identities, timestamper, drawn_png)
    pdf = _sign(pdf, 1, identities, timestamper, drawn_png, lock=False)
    first, second = check_signatures(pdf, [identities.root])
    assert first.intact and first.valid
    assert first.modification_level == "OTHER" and not first.docmdp_ok
    assert second.ok


def test_a_lock_that_does_not_match_the_prepared_field_is_refused(
    sample_pdf: bytes, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    unlocked = prepare_document(sample_pdf, [dataclasses.replace(FIELDS[0], lock=False)])
    with pytest.raises(SignatureError, match="prepared without a lock"):
        _sign(unlocked, 0, identities, timestamper, drawn_png)
    locked = prepare_document(sample_pdf, [FIELDS[0]])
    with pytest.raises(SignatureError, match="prepared with a lock"):
        _sign(locked, 0, identities, timestamper, drawn_png, lock=False)
    assert check_signatures(
        _sign(unlocked, 0, identities, timestamper, drawn_png, lock=False), [identities.root]
    )[0].ok


def test_a_signer_without_a_field_gets_an_invisible_locked_signature(
    run: Run, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    pdf = _sign(run.steps[0], 1, identities, timestamper, drawn_png, field="Signer2Invisible")
    first, second = check_signatures(pdf, [identities.root])
    assert first.ok and first.modification_level == "FORM_FILLING"
    assert second.ok and second.field == "Signer2Invisible"
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[1]
    assert sig.fieldmdp == pdf_fields.FieldMDPSpec(
        pdf_fields.FieldMDPAction.INCLUDE, ["Signer2Invisible"]
    )


def test_signing_a_signed_field_again_is_a_conflict(
    run: Run, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    with pytest.raises(Conflict, match=r"Signer1.*signed already"):
        _sign(run.steps[0], 0, identities, timestamper, drawn_png)


# --- changes after signing ----------------------------------------------------------------


def _update(pdf: bytes, change: str) -> bytes:
    """An incremental update that changes what signer 1 signed."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    if change == "page content":
        stream = generic.StreamObject(stream_data=b"BT /F1 40 Tf 200 300 Td (PAID) Tj ET")
        writer.add_stream_to_page(2, writer.add_object(stream))
    else:
        signed = next(
            f.get_object()
            for f in writer.root["/AcroForm"]["/Fields"]
            if f.get_object()["/T"] == "Signer1"
        )
        if change == "signed field appearance":
            box = BoxConstraints(width=210, height=90)
            other = RawContent(b"0 0 1 rg 0 0 210 90 re f", box=box).as_form_xobject()
            signed["/AP"] = generic.DictionaryObject(
                {generic.pdf_name("/N"): writer.add_object(other)}
            )
        else:  # the signed field's value: another signature dictionary
            value = generic.DictionaryObject(signed["/V"])
            value["/Name"] = generic.TextStringObject("Mallory")
            signed["/V"] = writer.add_object(value)
        writer.update_container(signed)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    "change", ["page content", "signed field appearance", "signed field value"]
)
def test_a_change_after_signing_is_reported(run: Run, root: x509.Certificate, change: str) -> None:
    tampered = _update(run.steps[1], change)
    checks = check_signatures(tampered, [root])
    assert len(checks) == 2
    for check in checks:
        assert not check.ok, check
        assert not check.docmdp_ok and check.modification_level == "OTHER"


def test_a_byte_changed_inside_a_signature_range_breaks_it(
    run: Run, root: x509.Certificate
) -> None:
    pdf = bytearray(run.steps[0])
    at = pdf.index(b"/MediaBox [0 0 595.28")  # the uploaded revision, signed by signer 1
    pdf[at + 20] = ord("9")
    (check,) = check_signatures(bytes(pdf), [root])
    assert not check.intact and not check.ok


# --- outages and refusals -----------------------------------------------------------------


class DownTimeStamper(TimeStamper):
    """A TSA that cannot be reached, through the shipped transport seam."""

    def __init__(self) -> None:
        self.requests = 0

    def _transport(self, request_der: bytes) -> bytes:
        self.requests += 1
        raise TimestampUnavailable("TSA http://127.0.0.1:9/tsa unreachable: ConnectError")


def test_an_unreachable_tsa_is_a_retryable_error_and_no_signature(
    run: Run, identities: LocalIdentities, drawn_png: bytes
) -> None:
    down = DownTimeStamper()
    with pytest.raises(SignatureUnavailable) as caught:
        _sign(run.prepared, 0, identities, down, drawn_png)
    error = caught.value
    assert isinstance(error, ServiceUnavailable) and isinstance(error, SignatureError)
    assert error.status == 503 and error.retryable and down.requests >= 1
    assert error.message.startswith(
        "the timestamp authority is unreachable: the signature was not applied; it will be retried"
    )
    with pytest.raises(SignatureUnavailable, match="document timestamp was not applied"):
        finalize_document(run.steps[2], timestamper=down, trust_roots=[identities.root])


def _foreign_root() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else's Root")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_a_seal_that_does_not_chain_to_the_roots_is_refused(
    run: Run, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    foreign = _foreign_root()
    with pytest.raises(SignatureError, match="does not validate") as caught:
        _sign(run.prepared, 0, identities, timestamper, drawn_png, trust_roots=[foreign])
    assert caught.value.status == 500 and not caught.value.retryable
    checks = check_signatures(run.steps[0], [foreign])
    assert checks[0].intact and not checks[0].valid and not checks[0].ok


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (FieldSpec("Signer9", 0, (56, 70, 266, 160)), "page 0 is out of range"),
        (FieldSpec("Signer9", 4, (56, 70, 266, 160)), "page 4 is out of range .* 3 pages"),
        (FieldSpec("Signer9", 1, (400, 70, 700, 160)), "outside page 1"),
        (FieldSpec("Signer9", 1, (56, -10, 266, 160)), "outside page 1"),
        (FieldSpec("Signer9", 1, (56, 70, 56, 160)), "zero or negative size"),
        (FieldSpec("Signer9", 1, (56, 160, 266, 70)), "zero or negative size"),
        (FieldSpec("Signer9", 1, (56, 70, float("nan"), 160)), "not finite"),
        (FieldSpec("Signer.9", 1, (56, 70, 266, 160)), "letters, digits"),
    ],
    ids=[
        "page-0",
        "page-4",
        "right-of-page",
        "below-page",
        "zero-width",
        "upside-down",
        "nan",
        "dotted-name",
    ],
)
def test_prepare_document_refuses_a_bad_field(
    sample_pdf: bytes, spec: FieldSpec, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare_document(sample_pdf, [FIELDS[0], spec])


def test_prepare_document_refuses_duplicate_and_existing_names(run: Run, sample_pdf: bytes) -> None:
    with pytest.raises(InvalidInput, match="'Signer1' is given twice"):
        prepare_document(sample_pdf, [FIELDS[0], dataclasses.replace(FIELDS[1], name="Signer1")])
    with pytest.raises(InvalidInput, match="'Signer2' is already used by a field of the PDF"):
        prepare_document(run.prepared, [FIELDS[1]])


def test_prepare_document_adds_one_revision_with_a_box_on_the_page_edge(sample_pdf: bytes) -> None:
    width = 595.28  # A4, as the sample contract
    edge = FieldSpec("Edge", 1, (width - 100, 0, width, 50))
    prepared = prepare_document(sample_pdf, [edge, FIELDS[0]])
    assert prepared.startswith(sample_pdf)  # an incremental update
    reader = PdfFileReader(io.BytesIO(prepared))
    assert reader.xrefs.total_revisions == 2
    assert [name for name, _, _ in pdf_fields.enumerate_sig_fields(reader)] == ["Edge", "Signer1"]


def test_what_is_not_a_pdf_is_invalid_input(
    identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    for bad in (b"", b"%PDF-1.7\nnot really", b"GIF89a"):
        with pytest.raises(InvalidInput, match="cannot be read"):
            prepare_document(bad, FIELDS)
        with pytest.raises(InvalidInput, match="cannot be read"):
            _sign(bad, 0, identities, timestamper, drawn_png)
        with pytest.raises(InvalidInput, match="cannot be read"):
            check_signatures(bad, [identities.root])


def test_a_bad_appearance_is_invalid_input(
    run: Run, identities: LocalIdentities, timestamper: TimeStamper, drawn_png: bytes
) -> None:
    naive = dataclasses.replace(_appearance(0, drawn_png), signed_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        _sign(run.prepared, 0, identities, timestamper, drawn_png, appearance=naive)
    not_png = dataclasses.replace(_appearance(0, drawn_png), image_png=b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(InvalidInput, match="not a readable PNG"):
        _sign(run.prepared, 0, identities, timestamper, drawn_png, appearance=not_png)
