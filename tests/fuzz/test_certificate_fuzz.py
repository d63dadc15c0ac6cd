"""Fuzzing the certificate verifier: a changed certificate PDF never verifies, and nothing in a
PDF crashes or hangs ``verify_certificate_pdf``.

Each verification validates PAdES signatures with pyHanko (about a second here), so these
properties are the smallest of the fuzz set; ``--hypothesis-profile=fuzz`` runs 50 times more.
Three ways in:

* the bytes of a genuine certificate, damaged (havoc, or in place so that the xref still
  holds): never valid, unless the change is neutral (:func:`_neutral`: only the padding of the last
  signature's ``/Contents`` placeholder, or the case of its hex digits);
* an incremental update after sealing that swaps an attachment for a mutated one (the manifest,
  the message, an evidence bundle): never valid, whatever was attached;
* a certificate *sealed* over mutated attachments, as anyone with their own CA can make one
  and a verifier without ``--trust`` will check: valid seal, hostile contents; the contents
  checks must still answer, and fail for anything that is not a well-formed certificate.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import parser as asn1_parser
from cryptography import x509
from hypothesis import example, given
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.app import Sealpost, build
from sealpost.certificates import render_certificate, seal_pdf, verify_certificate_pdf
from sealpost.certificates.errors import NotACertificate
from sealpost.certificates.report import CertificateReport
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from tests.certificates.support import Scenario, make_certificate_data
from tests.fuzz.conftest import fuzz_settings_for
from tests.fuzz.mutations import (
    Edit,
    Havoc,
    apply_edits,
    apply_havoc,
    edits,
    fuzz_settings,
    havoc_steps,
    in_place_steps,
    time_bound,
)

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

PDF_TOKENS = (
    b"%PDF-1.7\n",
    b"%%EOF\n",
    b" 0 obj\n",
    b"endobj\n",
    b"stream\n",
    b"endstream\n",
    b"<<",
    b">>",
    b"/Type",
    b"/Length 99999999",
    b"/Kids [1 0 R]",
    b" 1 0 R",
    b"xref\n0 1\n",
    b"trailer\n",
    b"startxref\n",
    b"(",
    b")",
    b"[",
)


class Genuine:
    """A sealed certificate, the unsealed PDF it was made from, and its attachments."""

    def __init__(self, sealed: bytes, unsealed: bytes, report: CertificateReport) -> None:
        self.sealed = sealed
        self.unsealed = unsealed
        self.attachments = report.attachments
        self.manifest: dict[str, Any] = json.loads(report.attachments["manifest.json"])
        self.bundle_names = sorted(n for n in report.attachments if n.startswith("evidence-"))


@pytest.fixture(scope="module")
def genuine(
    tmp_path_factory: pytest.TempPathFactory,
    keys_dir: Path,
    identities: LocalIdentities,
    timestamper: TimeStamper,
) -> Iterator[Genuine]:
    sp: Sealpost = build(fuzz_settings_for(tmp_path_factory.mktemp("fuzz-cert"), keys_dir))
    try:
        tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}").id
        data = make_certificate_data(sp, tenant, Scenario(delays=1))
        unsealed = render_certificate(data)
        sealed = _seal(unsealed, identities, timestamper)
        report = verify_certificate_pdf(sealed, trust_roots=[identities.root])
        assert report.ok, report.failures  # else the properties would prove nothing
        yield Genuine(sealed, unsealed, report)
    finally:
        sp.engine.dispose()


def _seal(pdf: bytes, identities: LocalIdentities, timestamper: TimeStamper) -> bytes:
    return seal_pdf(
        pdf,
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="Evidence certificate",
    )


def verify(pdf: bytes, roots: list[x509.Certificate]) -> CertificateReport | None:
    """Verify within a hard bound; None for NotACertificate (the CLI's exit 2)."""
    with time_bound(60):
        try:
            report = verify_certificate_pdf(pdf, trust_roots=roots)
        except NotACertificate:
            assert b"%PDF-" not in pdf[:1024]
            return None
    assert report.checks
    assert all(c.field and c.detail for c in report.failures)
    statement = report.statement()
    assert statement.startswith("This certificate proves nothing: ") != report.ok
    json.dumps([c.__dict__ for c in report.checks])  # what `sealpost verify --json` prints
    return report


@fuzz_settings(60, deadline_ms=20_000)
@given(
    st.lists(in_place_steps(), min_size=1, max_size=3)
    | st.lists(havoc_steps(PDF_TOKENS), min_size=1, max_size=4)
)
@example([Havoc("truncate", 3 * 10**4)])
@example([Havoc("insert", 0, b"junk before the header ")])
@example([Havoc("flip", 10**9, 0)])  # the last byte
def test_damaged_certificate_bytes_never_verify(
    genuine: Genuine, root: x509.Certificate, steps: list[Havoc]
) -> None:
    pdf = apply_havoc(genuine.sealed, steps, [genuine.sealed], max_size=len(genuine.sealed) * 2)
    report = verify(pdf, [root])
    if report is not None and report.ok:
        assert _neutral(pdf, genuine.sealed), [s for s in steps]


_HEX = frozenset(b"0123456789abcdefABCDEF")


class _Signatures:
    """Where a sealed PDF's signatures are: each ``/Contents`` hex string (``start``, the end
    of its DER object ``der_end``, ``end``) and the byte ranges they sign."""

    def __init__(self, pdf: bytes) -> None:
        self.contents: list[tuple[int, int, int]] = []
        self.signed: list[range] = []
        for sig in PdfFileReader(io.BytesIO(pdf)).embedded_signatures:
            a, b, c, d = sig.byte_range
            start, end = a + b + 1, c - 1  # inside the < >
            _, _, _, header, body, _ = asn1_parser.parse(bytes.fromhex(pdf[start:end].decode()))
            self.contents.append((start, start + 2 * (len(header) + len(body)), end))
            self.signed += [range(a, a + b), range(c, c + d)]

    def unsigned(self, i: int) -> bool:
        """No signature covers byte ``i``: a later signature (the document timestamp) covers
        the ``/Contents`` of the earlier ones (ISO 32000-1 §12.8.1)."""
        return not any(i in r for r in self.signed)


def _neutral(changed: bytes, pdf: bytes) -> bool:
    """The precise neutral changes of a sealed PDF, in a ``/Contents`` that no signature
    covers: a byte of the placeholder's padding after the DER (any value: nothing reads it),
    or the case of a hex digit of the DER (the same bytes)."""
    if len(changed) != len(pdf):
        return False
    where = _Signatures(pdf)
    for i in (i for i in range(len(pdf)) if changed[i] != pdf[i]):
        case_only = changed[i] in _HEX and bytes([changed[i]]).lower() == bytes([pdf[i]]).lower()
        if not where.unsigned(i) or not any(
            der_end <= i < end or (start <= i < der_end and case_only)
            for start, der_end, end in where.contents
        ):
            return False
    return True


def test_only_the_padding_of_the_last_signature_placeholder_is_neutral(
    genuine: Genuine, root: x509.Certificate
) -> None:
    """What the oracle above calls neutral, pinned: pyHanko reads a signature's DER and
    ignores the placeholder's padding after it, but only the last signature's placeholder is
    outside every signed range; one hex digit of a DER is never padding."""
    where = _Signatures(genuine.sealed)
    assert len(where.contents) == 2  # the seal, then the document timestamp (PAdES B-LTA)
    assert [where.unsigned(start) for start, _, _ in where.contents] == [False, True]
    for start, der_end, end in where.contents:
        assert genuine.sealed[der_end:end].strip(b"0") == b"" and start < der_end
        for pos in ((der_end + end) // 2, der_end - 1):
            changed = bytearray(genuine.sealed)
            changed[pos] = ord("1") if changed[pos] in b"fF" else ord("f")  # never case only
            report = verify(bytes(changed), [root])
            neutral = where.unsigned(pos) and pos >= der_end
            assert report is not None and report.ok is neutral, (pos, where.contents, report)
            assert _neutral(bytes(changed), genuine.sealed) is neutral


def _attach(writer: IncrementalPdfFileWriter, name: str, content: bytes | None) -> None:
    """Point the EmbeddedFiles entry ``name`` at ``content`` (a new entry if there is none;
    None removes it), as an incremental update."""
    names_ref = writer.root["/Names"]["/EmbeddedFiles"]
    names = names_ref["/Names"]
    for i in range(0, len(names), 2):
        if str(names[i]) == name:
            if content is None:
                del names[i : i + 2]
                writer.update_container(names)
                return
            stream = generic.StreamObject(
                {generic.pdf_name("/Type"): generic.pdf_name("/EmbeddedFile")},
                stream_data=content,
            )
            spec_ref = names.raw_get(i + 1)
            spec_ref.get_object()["/EF"][generic.pdf_name("/F")] = writer.add_object(stream)
            writer.mark_update(spec_ref)
            return
    if content is None:
        return
    stream = generic.StreamObject(
        {generic.pdf_name("/Type"): generic.pdf_name("/EmbeddedFile")}, stream_data=content
    )
    spec = generic.DictionaryObject(
        {
            generic.pdf_name("/Type"): generic.pdf_name("/Filespec"),
            generic.pdf_name("/F"): generic.TextStringObject(name),
            generic.pdf_name("/EF"): generic.DictionaryObject(
                {generic.pdf_name("/F"): writer.add_object(stream)}
            ),
        }
    )
    names.append(generic.TextStringObject(name))
    names.append(writer.add_object(spec))
    writer.update_container(names)


def _updated(pdf: bytes, name: str, content: bytes | None) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    _attach(writer, name, content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


JSON_TOKENS = (b"[", b"{", b"]", b"}", b",", b":", b'"', b"\\ud800", b"1" * 4400, b"null")

ATTACHMENT_CHANGES = st.one_of(
    st.tuples(st.just("manifest"), edits()),
    st.tuples(st.just("manifest_text"), st.lists(havoc_steps(JSON_TOKENS), min_size=1, max_size=4)),
    st.tuples(st.just("bundle"), edits()),
    st.tuples(st.just("message"), st.lists(havoc_steps(), min_size=1, max_size=4)),
    st.tuples(st.just("extra"), st.binary(max_size=64)),
    st.tuples(st.just("remove"), st.integers(0, 8)),
)


def _changed_attachment(genuine: Genuine, change: tuple[str, Any]) -> tuple[str, bytes | None]:
    """Which attachment a change replaces, and with what (None: removed)."""
    kind, arg = change
    if kind == "manifest":
        doc = apply_edits(genuine.manifest, arg)
        return "manifest.json", _json_bytes(doc)
    if kind == "manifest_text":
        return "manifest.json", apply_havoc(genuine.attachments["manifest.json"], arg)
    if kind == "bundle":
        name = genuine.bundle_names[-1]
        donors = [json.loads(genuine.attachments[n]) for n in genuine.bundle_names[:-1]]
        doc = apply_edits(json.loads(genuine.attachments[name]), arg, donors)
        return name, _json_bytes(doc)
    if kind == "message":
        return "original.eml", apply_havoc(genuine.attachments["original.eml"], arg)
    if kind == "extra":
        return "evidence-99-extra.json", arg
    names = sorted(genuine.attachments)
    return names[arg % len(names)], None


def _json_bytes(doc: Any) -> bytes:
    try:
        return json.dumps(doc).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):  # too deep for json.dumps: write the nesting by hand
        return b"[" * 100_000 + b"]" * 100_000


@fuzz_settings(16, deadline_ms=20_000)
@given(ATTACHMENT_CHANGES)
@example(("manifest", [Edit(("events",), "nest", 100_000)]))
@example(("manifest_text", [Havoc("token", 1, b'"certificate_version": ' + b"1" * 5000 + b",")]))
@example(("manifest", [Edit(("events", 0, "file"), "replace", ["a list"])]))
@example(("remove", 0))
def test_an_attachment_swapped_after_sealing_never_verifies(
    genuine: Genuine, root: x509.Certificate, change: tuple[str, Any]
) -> None:
    name, content = _changed_attachment(genuine, change)
    if content == genuine.attachments.get(name):
        return  # the edit changed nothing
    report = verify(_updated(genuine.sealed, name, content), [root])
    assert report is not None and not report.ok


@fuzz_settings(6, deadline_ms=30_000)
@given(ATTACHMENT_CHANGES)
@example(("manifest", [Edit(("events",), "nest", 100_000)]))
@example(("manifest", [Edit(("message",), "replace", [])]))
@example(("manifest", [Edit(("files",), "replace", {"original.eml": []})]))
@example(("manifest", [Edit(("events", 0, "file"), "replace", ["a list"])]))
@example(("manifest", [Edit(("message", "sender"), "nest", 900)]))
def test_a_sealed_certificate_with_hostile_contents_is_checked_without_crashing(
    genuine: Genuine,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    change: tuple[str, Any],
) -> None:
    """The seal is valid (our key here; anyone's own CA without ``--trust``): the contents are
    what is hostile.  A manifest that is not one, or an attachment it does not list with its
    digest, is a failed check, in words."""
    name, content = _changed_attachment(genuine, change)
    pdf = _seal(_updated(genuine.unsealed, name, content), identities, timestamper)
    for roots in ([identities.root], []):
        report = verify(pdf, roots)
        assert report is not None
        if content != genuine.attachments.get(name) and name != "manifest.json":
            assert not report.ok  # every other attachment is listed with its SHA-256
