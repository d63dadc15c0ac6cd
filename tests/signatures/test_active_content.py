"""Active content at intake (issue 12, defect 5): a PDF that runs scripts, launches programs,
sends or fetches data, or swaps what it shows is refused by default with a 422 naming what was
found; allowed, it is described.  The check is bounded: cycles end, huge graphs stop in time,
and no mutation of a hostile document makes intake fail otherwise than with a 422."""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.errors import InvalidInput
from sealpost.signatures.active_content import (
    KINDS,
    MAX_FINDINGS,
    MAX_LISTED,
    MAX_OBJECTS,
    ActiveContentRefused,
    Finding,
    find_active_content,
)
from sealpost.signatures.documents import inspect_pdf, render_page_png
from tests.signatures.pdf_samples import (
    Hostile,
    clean_interactive_pdf,
    document,
    first_extra,
    hostile_pdfs,
)

HOSTILE = hostile_pdfs()
JS = b"<< /S /JavaScript /JS (app.alert(1);) >>"


def _refused(data: bytes, name: str = "contract.pdf") -> ActiveContentRefused:
    with pytest.raises(ActiveContentRefused) as caught:
        inspect_pdf(data, name=name)
    error = caught.value
    assert (error.status, error.code) == (422, "active_content")
    assert error.message.startswith(f'"{name}" contains active content')
    assert "allow_active_content" in error.message  # says how a tenant may accept it
    return error


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_each_kind_of_active_content_is_refused_with_what_was_found(hostile: Hostile) -> None:
    error = _refused(hostile.pdf, f"{hostile.name}.pdf")
    assert hostile.finding in error.findings
    assert hostile.finding in error.message
    assert error.extensions() == {
        "document": f"{hostile.name}.pdf",
        "findings": list(error.findings),
    }


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_allowed_active_content_is_accepted_and_described(hostile: Hostile) -> None:
    info = inspect_pdf(hostile.pdf, name="x.pdf", allow_active_content=True)
    assert Finding(hostile.kind, hostile.finding) in info.active_content
    assert render_page_png(hostile.pdf, 1, width_px=40).startswith(b"\x89PNG")


def test_every_kind_the_documentation_lists_has_a_sample() -> None:
    assert {h.kind for h in HOSTILE} == set(KINDS) - {"too_complex"}  # that one: below


def test_links_bookmarks_and_attachments_that_are_not_programs_are_no_finding() -> None:
    assert inspect_pdf(clean_interactive_pdf()).active_content == ()
    web = b"<< /S /URI /URI (https://a.test) >>"
    harmless = document(
        b"/OpenAction << /S /GoTo /D [3 0 R /Fit] /Next << /S /Named /N /NextPage >> >>",
        [b"/Annots [4 0 R] /AA << /C << /S /Trans /Trans << /S /Dissolve >> >> >>"],
        [b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A %s >>" % web],
    )
    assert inspect_pdf(harmless).active_content == ()


def test_an_action_shared_by_a_click_and_an_automatic_trigger_is_found_for_the_trigger() -> None:
    """The link is walked first (pages are); the page's /AA must still be read."""
    n = first_extra()
    pdf = document(
        pages=[
            b"/Annots [<< /Subtype /Link /Rect [0 0 9 9] /A %d 0 R >>] /AA << /O %d 0 R >>" % (n, n)
        ],
        extra=[b"<< /S /URI /URI (https://tracker.test/) >>"],
    )
    assert _refused(pdf).findings == ("page 1 opens a web address when the page is opened",)


def test_a_web_address_is_a_finding_only_when_it_opens_by_itself() -> None:
    uri = b"<< /S /URI /URI (https://tracker.test/) >>"
    clicked = document(pages=[b"/Annots [<< /Subtype /Link /Rect [0 0 9 9] /A %s >>]" % uri])
    assert inspect_pdf(clicked).active_content == ()
    hovered = document(
        pages=[b"/Annots [<< /Subtype /Link /Rect [0 0 9 9] /AA << /E %s >> >>]" % uri]
    )
    assert _refused(hovered).findings == (
        "a link on page 1 opens a web address when the pointer enters it",
    )


def test_names_from_the_document_cannot_inject_lines_or_flood_the_message() -> None:
    name = b"(Total\\000\\r\\nX-Injected: 1" + b"x" * 300 + b")"
    pdf = document(
        b"/AcroForm << /Fields [4 0 R] >>",
        extra=[b"<< /FT /Tx /T %s /AA << /K %d 0 R >> >>" % (name, first_extra() + 1), JS],
    )
    (finding,) = _refused(pdf).findings
    assert finding.startswith("the form field “Total") and "…" in finding
    assert all(c.isprintable() for c in finding) and len(finding) < 160


def test_many_findings_are_kept_up_to_a_bound_and_counted_beyond() -> None:
    fields = 3 * MAX_FINDINGS
    refs = b" ".join(b"%d 0 R" % (first_extra() + i) for i in range(fields))
    pdf = document(
        b"/AcroForm << /Fields [%s] >>" % refs,
        extra=[
            b"<< /FT /Tx /T (f%d) /AA << /V << /S /JavaScript /JS (1) >> >> >>" % i
            for i in range(fields)
        ],
    )
    error = _refused(pdf)
    assert len(error.findings) == MAX_FINDINGS + 1
    assert error.findings[-1] == f"{fields - MAX_FINDINGS} more of the kind javascript"
    assert f"; and {MAX_FINDINGS + 1 - MAX_LISTED} more." in error.message
    assert len(error.message) < 2500


# --- bounds ------------------------------------------------------------------------------------


def test_cycles_in_the_graph_end_and_what_is_in_them_is_found_once() -> None:
    n = first_extra()
    pdf = document(
        b"/OpenAction %d 0 R /Outlines %d 0 R /Names << /EmbeddedFiles %d 0 R >>"
        % (n, n + 2, n + 4),
        [b"/Annots %d 0 R" % (n + 5)],
        [
            b"<< /S /GoTo /D [3 0 R /Fit] /Next %d 0 R >>" % (n + 1),
            b"<< /S /JavaScript /JS (1) /Next [%d 0 R %d 0 R] >>" % (n, n + 1),
            b"<< /First %d 0 R >>" % (n + 3),
            b"<< /Title (Loop) /Next %d 0 R /First %d 0 R >>" % (n + 3, n + 3),
            b"<< /Kids [%d 0 R] >>" % (n + 4),
            b"[%d 0 R << /Subtype /Link /Rect [0 0 9 9] /A %d 0 R >>]" % (n + 5, n + 1),
        ],
    )
    started = time.monotonic()
    error = _refused(pdf)
    assert time.monotonic() - started < 5
    assert sorted(error.findings) == [
        "a link on page 1 runs JavaScript when clicked",
        "the document runs JavaScript when it is opened",
    ]


def _chain(length: int) -> bytes:
    """An /OpenAction that navigates, then ``length`` more navigations chained by /Next, each
    its own object: harmless, but a graph larger than the check visits."""
    n = first_extra()
    actions = [b"<< /S /GoTo /D [3 0 R /Fit] /Next %d 0 R >>" % (n + i + 1) for i in range(length)]
    return document(b"/OpenAction %d 0 R" % n, extra=[*actions, b"<< /S /GoTo /D [3 0 R /Fit] >>"])


def test_a_graph_larger_than_the_bound_is_refused_in_bounded_time() -> None:
    huge = _chain(int(MAX_OBJECTS * 1.2))
    started = time.monotonic()
    error = _refused(huge)
    elapsed = time.monotonic() - started
    assert error.findings == (
        "the document is too complex to check for active content (the check stops after "
        f"{MAX_OBJECTS} objects or 5 seconds)",
    )
    assert elapsed < 30, elapsed  # the check's 5 s, opening the file, PDFium; a noisy machine


def test_the_object_bound_is_what_stops_the_walk() -> None:
    pdf = _chain(300)
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    pages = [reader.root["/Pages"].raw_get("/Kids").raw_get(0)]
    root = reader.trailer.raw_get("/Root")
    assert find_active_content(reader.root, root, pages, max_objects=1000) == ()
    stopped = find_active_content(reader.root, root, pages, max_objects=200)
    assert [f.kind for f in stopped] == ["too_complex"]
    assert "200 objects" in stopped[0].text


def test_deeply_nested_direct_objects_are_refused_cleanly() -> None:
    deep = document(pages=[b"/Annots [<< /A %s >>]" % (b"[" * 5000 + b"]" * 5000)])
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="damaged PDF") as caught:
        inspect_pdf(deep)
    assert caught.value.status == 422
    assert time.monotonic() - started < 10


# --- fuzzing: hostile documents, mutated -------------------------------------------------------

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = [h.pdf for h in HOSTILE]
BOUND_SECONDS = 15.0
"""Each document, whatever it is, is accepted or refused within this (generously: the check's
own bound is 5 s, and the machine is shared)."""


def _accepted_or_refused(data: bytes) -> None:
    """Accepted, or refused with a 422 naming the document; with active content refused by
    default exactly when the tenant's permission would have let it through, with the same
    findings; all within :data:`BOUND_SECONDS`."""
    started = time.monotonic()
    refusal: InvalidInput | None = None
    try:
        info = inspect_pdf(data, name="fuzz.pdf", allow_active_content=True)
    except InvalidInput as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.status == 422 and not isinstance(refusal, ActiveContentRefused)
        assert refusal.message.startswith('"fuzz.pdf" ')
    else:
        assert all(f.kind in KINDS for f in info.active_content)
        if info.active_content:
            with pytest.raises(ActiveContentRefused) as caught:
                inspect_pdf(data, name="fuzz.pdf")
            assert caught.value.findings == tuple(f.text for f in info.active_content)
    assert time.monotonic() - started < BOUND_SECONDS


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=10),
)
def test_a_hostile_pdf_with_bytes_changed_is_accepted_or_refused_cleanly(
    seed: bytes, changes: list[tuple[int, int]]
) -> None:
    data = bytearray(seed)
    for position, value in changes:
        data[position % len(data)] = value
    _accepted_or_refused(bytes(data))


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 10**6), st.integers(0, 10**6), st.binary(max_size=64))
def test_a_hostile_pdf_cut_or_spliced_is_accepted_or_refused_cleanly(
    seed: bytes, start: int, end: int, insert: bytes
) -> None:
    start, end = sorted((start % (len(seed) + 1), end % (len(seed) + 1)))
    _accepted_or_refused(seed[:start] + insert + seed[end:])


_KEYS = [
    "/S", "/JS", "/Next", "/A", "/AA", "/O", "/C", "/K", "/F", "/E", "/WC", "/Kids", "/Names",
    "/JavaScript", "/EmbeddedFiles", "/EF", "/UF", "/Annots", "/Subtype", "/FT", "/T", "/Title",
    "/First", "/Fields", "/XFA", "/OpenAction", "/Filter", "/Type", "/Parent", "/P",
]  # fmt: skip
_NAMES = [
    "/JavaScript", "/Launch", "/URI", "/GoTo", "/GoToR", "/SubmitForm", "/Link", "/Widget",
    "/RichMedia", "/FlateDecode", "/Annot", "/Filespec", "/Tx",
]  # fmt: skip


def _objects(count: int) -> st.SearchStrategy[bytes]:
    """PDF object bodies built from the vocabulary of active content, with references to any
    object of the document (cycles, dangling references, wrong types)."""
    leaf = st.one_of(
        st.sampled_from(_NAMES).map(str.encode),
        st.integers(-5, 10**9).map(lambda i: b"%d" % i),
        st.integers(1, count).map(lambda i: b"%d 0 R" % i),
        st.sampled_from([b"(setup.exe)", b"(x)", b"()", b"<4d5a>", b"null", b"true"]),
    )

    def containers(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        entries = st.lists(st.tuples(st.sampled_from(_KEYS).map(str.encode), inner), max_size=5)
        return st.one_of(
            st.lists(inner, max_size=5).map(lambda items: b"[" + b" ".join(items) + b"]"),
            entries.map(lambda kv: b"<< " + b" ".join(k + b" " + v for k, v in kv) + b" >>"),
        )

    return st.recursive(leaf, containers, max_leaves=20)


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_inserted_objects_of_any_shape_are_accepted_or_refused_cleanly(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 12))
    total = first_extra() + count
    extra = data.draw(st.lists(_objects(total), min_size=count, max_size=count))
    catalog = data.draw(_objects(total))
    page = data.draw(_objects(total))
    # the new objects hang from the catalog and the page, inside a dictionary's entries
    pdf = document(b"/X " + catalog + b" /OpenAction 4 0 R", [b"/Annots " + page], extra)
    _accepted_or_refused(pdf)
