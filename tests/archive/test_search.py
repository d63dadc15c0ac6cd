"""Search of the archive: accent- and case-insensitive words, prefixes, the text of HTML and of
attached PDFs, filters, what each key may see, files that could not be read listed, and user
input that never becomes query syntax.  On SQLite (FTS5) and PostgreSQL (tsvector + GIN)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fpdf import FPDF

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.extract import Extractor, PdfLimits
from sealpost.archive.model import Source
from sealpost.archive.search import ArchiveSearch, SearchQuery


def mail(
    subject: str,
    body: str = "Hola, una consulta.\n",
    *,
    sender: str = "cliente@gmail.com",
    to: str = "soporte@acme.es",
    date: str = "Mon, 07 Dec 2026 09:00:00 +0100",
    html: str | None = None,
    html_only: bool = False,
    attachments: tuple[tuple[str, bytes, str], ...] = (),
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = date
    if html_only:
        m.set_content(html or "", subtype="html")
    else:
        m.set_content(body)
        if html is not None:
            m.add_alternative(html, subtype="html")
    for name, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes()


def pdf(*lines: str) -> bytes:
    doc = FPDF()
    doc.add_page()
    doc.set_font("helvetica", size=12)
    for line in lines:
        doc.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


@pytest.fixture
def admin(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"])
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def agent(client: TestClient, admin: dict[str, str], email: str, role: str = "agent") -> Any:
    r = client.post("/v1/archive/agents", json={"email": email, "role": role}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['api_key']}"}


def archive(sealpost: Sealpost, tenant_id: str, raw: bytes) -> str:
    return sealpost.archive.ingest(tenant_id, raw, Source("journal")).message.id


def found(client: TestClient, headers: dict[str, str], q: str, **filters: Any) -> list[str]:
    r = client.get("/v1/archive/search", params={"q": q, **filters}, headers=headers)
    assert r.status_code == 200, r.text
    return [item["subject"] for item in r.json()["items"]]


def test_words_are_found_without_their_accents_or_case_and_as_prefixes(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    archive(sealpost, tenant_id, mail("Reclamación", "Quiero usar la garantía del televisor.\n"))
    archive(sealpost, tenant_id, mail("Aviso", "Hemos enviado las notificaciones de pago.\n"))
    archive(sealpost, tenant_id, mail("Otro", "Nada que ver aquí.\n"))
    assert found(client, admin, "garantia") == []  # not indexed yet: the indexer's job
    assert sealpost.archive_search.index_all() == 3

    assert found(client, admin, "garantia") == ["Reclamación"]
    assert found(client, admin, "GARANTÍA") == ["Reclamación"]
    assert found(client, admin, "NOTIFICACION") == ["Aviso"]
    assert found(client, admin, "reclamacion televisor") == ["Reclamación"]  # subject + body
    assert found(client, admin, "garantia notificaciones") == []  # every word is required
    r = client.get("/v1/archive/search", params={"q": "notificación"}, headers=admin)
    hit = r.json()["items"][0]
    assert hit["index_state"] == "indexed" and "notificaciones de pago" in hit["snippet"]


def test_the_text_of_an_attached_pdf_and_its_name_are_found(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    contract = pdf("Contrato de arrendamiento 4471", "Clausula de penalizacion por impago")
    attached = (("condiciones-firmadas.pdf", contract, "application/pdf"),)
    archive(sealpost, tenant_id, mail("Documentos", attachments=attached))
    sealpost.archive_search.index_all()
    assert found(client, admin, "penalización impago") == ["Documentos"]
    assert found(client, admin, "arrendamiento") == ["Documentos"]
    assert found(client, admin, "condiciones firmadas") == ["Documentos"]  # the file's name
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["indexed"], health["partial"], health["unindexed"]) == (1, 0, [])


def test_an_html_only_message_is_found_by_its_text_not_by_its_markup(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    page = (
        "<html><head><style>.importe { font-family: Verdana }</style>"
        "<script>var seguimiento = 1;</script></head><body><table><tr>"
        '<td class="importe" title="confidencial">El reembolso fue aprobado</td>'
        "</tr></table></body></html>"
    )
    archive(sealpost, tenant_id, mail("Su caso", html=page, html_only=True))
    sealpost.archive_search.index_all()
    assert found(client, admin, "reembolso aprobado") == ["Su caso"]
    for markup in ("table", "verdana", "importe", "seguimiento", "confidencial", "td"):
        assert found(client, admin, markup) == [], markup


def test_a_corrupt_pdf_is_archived_indexed_partial_and_named_in_index_health(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    broken = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nstream\x00\xff garbage"
    raw = mail(
        "Factura",
        "Adjunto la factura de diciembre.\n",
        attachments=(("factura-diciembre.pdf", broken, "application/pdf"),),
    )
    message_id = archive(sealpost, tenant_id, raw)
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["archived"], health["pending"]) == (1, 1)
    assert health["oldest_pending_seconds"] is not None

    sealpost.archive_search.index_all()
    assert client.get(f"/v1/archive/messages/{message_id}/raw", headers=admin).content == raw
    assert found(client, admin, "diciembre") == ["Factura"]  # its body still is searchable
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["archived"], health["indexed"], health["partial"], health["pending"]) == (
        1,
        0,
        1,
        0,
    )
    [listed] = health["unindexed"]
    assert listed["message"]["id"] == message_id
    assert listed["message"]["index_state"] == "partial"
    [problem] = listed["problems"]
    assert problem["file"] == "factura-diciembre.pdf"
    assert "PDFium" in problem["reason"]


def test_another_tenant_s_messages_never_appear(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    other = sealpost.tenants.create("other-tenant").id
    theirs = {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(other).secret}"}
    same = mail("Garantía", "Garantía de la lavadora.\n")
    archive(sealpost, tenant_id, same)
    archive(sealpost, other, same)
    archive(sealpost, other, mail("Garantía ampliada", "Solo del otro.\n"))
    sealpost.archive_search.index_all()
    mine = client.get("/v1/archive/search", params={"q": "garantia"}, headers=admin).json()
    assert [i["subject"] for i in mine["items"]] == ["Garantía"]
    assert len(found(client, theirs, "garantia")) == 2
    assert sealpost.archive_search.matching_ids(tenant_id, SearchQuery("lavadora")) == [
        mine["items"][0]["id"]
    ]


def test_an_agent_finds_only_the_threads_it_may_see(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    luis_id, luis = agent(client, admin, "luis@acme.es")
    _, boss = agent(client, admin, "jefa@acme.es", "supervisor")
    lent = sealpost.archive.ingest(
        tenant_id, mail("Préstamo", "Mi préstamo hipotecario.\n"), Source("journal")
    ).message
    archive(sealpost, tenant_id, mail("Tarjeta", "Perdí la tarjeta del préstamo.\n"))
    r = client.post(
        f"/v1/archive/threads/{lent.thread_id}/assign", json={"agent_id": luis_id}, headers=admin
    )
    assert r.status_code == 200, r.text
    sealpost.archive_search.index_all()
    assert sorted(found(client, luis, "prestamo")) == ["Préstamo", "Tarjeta"]
    assert found(client, ana, "prestamo") == ["Tarjeta"]  # the unassigned queue only
    assert found(client, ana, "hipotecario") == []
    assert sorted(found(client, boss, "prestamo")) == ["Préstamo", "Tarjeta"]
    assert found(client, admin, "prestamo", agent_id=luis_id) == ["Préstamo"]
    assert found(client, admin, "prestamo", agent_id=ana_id) == []
    # index-health is not an agent's page
    assert client.get("/v1/archive/index-health", headers=ana).status_code == 403
    assert client.get("/v1/archive/index-health", headers=boss).status_code == 200


def test_each_filter_narrows_the_results(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    archive(
        sealpost,
        tenant_id,
        mail("Pedido uno", "Pedido urgente.\n", date="Tue, 01 Dec 2026 10:00:00 +0000"),
    )
    archive(
        sealpost,
        tenant_id,
        mail(
            "Pedido dos",
            "Pedido con albarán.\n",
            sender="compras@proveedor.es",
            date="Fri, 04 Dec 2026 10:00:00 +0000",
            attachments=(("albaran.txt", b"Albaran 99", "text/plain"),),
        ),
    )
    archive(
        sealpost,
        tenant_id,
        mail(
            "Re: Pedido uno",
            "Su pedido sale hoy.\n",
            sender="ana@acme.es",
            to="cliente@gmail.com",
            date="Mon, 07 Dec 2026 10:00:00 +0000",
        ),
    )
    sealpost.archive_search.index_all()
    everything = found(client, admin, "pedido")
    assert sorted(everything) == ["Pedido dos", "Pedido uno", "Re: Pedido uno"]
    assert found(client, admin, "pedido", **{"from": "compras@proveedor.es"}) == ["Pedido dos"]
    assert found(client, admin, "pedido", **{"from": "@acme.es"}) == ["Re: Pedido uno"]
    assert found(client, admin, "pedido", to="cliente@gmail.com") == ["Re: Pedido uno"]
    assert found(client, admin, "pedido", has_attachment="true") == ["Pedido dos"]
    assert sorted(found(client, admin, "pedido", has_attachment="false")) == [
        "Pedido uno",
        "Re: Pedido uno",
    ]
    assert found(client, admin, "pedido", direction="outbound") == ["Re: Pedido uno"]
    window = {"after": "2026-12-02T00:00:00Z", "before": "2026-12-05T00:00:00Z"}
    assert found(client, admin, "pedido", **window) == ["Pedido dos"]
    assert found(client, admin, "albaran 99") == ["Pedido dos"]  # a text attachment's text
    # pages: newest first, no repeats
    r = client.get("/v1/archive/search", params={"q": "pedido", "limit": 2}, headers=admin)
    page = r.json()
    rest = client.get(
        "/v1/archive/search",
        params={"q": "pedido", "limit": 2, "cursor": page["next_cursor"]},
        headers=admin,
    ).json()
    assert len(page["items"]) == 2 and rest["next_cursor"] is None
    assert sorted(i["subject"] for i in page["items"] + rest["items"]) == sorted(everything)
    r = client.get(
        "/v1/archive/search", params={"q": "pedido", "after": "2026-12-02T00:00:00"}, headers=admin
    )
    assert r.status_code == 422 and "after" in r.text


G = ["Garantía"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ('"', None),
        ("\\", None),
        ('garantia"', G),
        ('"garantía', G),
        ("garantia*", G),
        ("'garantia'", G),
        ("-garantia", G),
        ("^garantia", G),
        ("(garantia)", G),
        ("garantia OR lavadora", []),  # words, all required: never an OR
        ("garantia | lavadora", []),
        ("NEAR(garantia lavadora)", []),
        ("garantia AND (", []),  # "and" is a word like any other
        ("subject:garantia", []),  # no column filter: "subject" is a word
        ("garantia & !x | y:*", []),
        ("ʼgarantía", G),  # U+02BC: unaccent makes it an apostrophe, a tsquery's quote
        ("ʻgarantía", G),
        ("garantíaːmotor", G),  # U+02D0: unaccent makes it a colon (a phrase operator)
    ],
)
def test_query_syntax_in_user_input_neither_breaks_nor_widens_a_search(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    q: str,
    expected: list[str] | None,
) -> None:
    archive(sealpost, tenant_id, mail("Garantía", "La garantía cubre el motor.\n"))
    archive(sealpost, tenant_id, mail("Lavadora", "La lavadora no centrifuga.\n"))
    sealpost.archive_search.index_all()
    r = client.get("/v1/archive/search", params={"q": q}, headers=admin)
    if expected is None:
        assert r.status_code == 422 and "q:" in r.json()["detail"]
        return
    assert r.status_code == 200, r.text
    assert [i["subject"] for i in r.json()["items"]] == expected


def test_a_part_in_a_bytes_codec_neither_fails_the_message_nor_hides_it(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    raw = mail(
        "Contrato",
        "Pago del contrato 4711.\n",
        attachments=(("nota.txt", b"texto", "text/plain"),),
    ).replace(b'filename="nota.txt"', b'filename="nota.txt"', 1)
    raw = raw.replace(
        b'Content-Type: text/plain; charset="utf-8"', b"Content-Type: text/plain; charset=zlib", 1
    )
    archive(sealpost, tenant_id, raw)
    sealpost.archive_search.index_all()
    assert found(client, admin, "contrato 4711") == ["Contrato"]


def test_a_query_of_punctuation_only_is_a_clear_422(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    for q in ("*", "()", '"" --', "…¿?"):
        r = client.get("/v1/archive/search", params={"q": q}, headers=admin)
        assert r.status_code == 422, (q, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_the_indexer_loop_indexes_new_mail_soon_after_it_is_archived(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    sealpost.settings.archive_indexer_interval_seconds = 0.1
    sealpost.supervisor.start(sealpost.archive_search_loops())  # start_archive runs it too
    archive(sealpost, tenant_id, mail("Baja", "Solicito la baja del servicio.\n"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and found(client, admin, "solicito") == []:
        time.sleep(0.1)
    assert found(client, admin, "solicito baja") == ["Baja"]
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["indexed"], health["pending"], health["oldest_pending_seconds"]) == (1, 0, None)


def test_a_forwarded_message_and_a_document_format_not_read_are_handled(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    inner = EmailMessage()
    inner["From"] = "proveedor@otro.es"
    inner["Subject"] = "Presupuesto original"
    inner.set_content("El presupuesto incluye instalación.\n")
    outer = EmailMessage()
    outer["From"] = "cliente@gmail.com"
    outer["To"] = "soporte@acme.es"
    outer["Subject"] = "RV: presupuesto"
    outer["Date"] = "Mon, 07 Dec 2026 09:00:00 +0100"
    outer.set_content("Os reenvío esto.\n")
    outer.add_attachment(inner)
    outer.add_attachment(
        b"PK\x03\x04 not really",
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="anexo.docx",
    )
    archive(sealpost, tenant_id, outer.as_bytes())
    sealpost.archive_search.index_all()
    assert found(client, admin, "instalacion") == ["RV: presupuesto"]
    assert found(client, admin, "anexo") == ["RV: presupuesto"]  # by its name
    health = client.get("/v1/archive/index-health", headers=admin).json()
    [listed] = health["unindexed"]
    assert [p["file"] for p in listed["problems"]] == ["anexo.docx"]


def test_a_search_s_dates_must_be_dates(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    r = client.get("/v1/archive/search", params={"q": "x", "before": "mañana"}, headers=admin)
    assert r.status_code == 422
    assert SearchQuery("x", after=datetime(2026, 1, 1, tzinfo=UTC)).after is not None


def test_pdf_limits_name_each_file_and_keep_what_could_be_read(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    limits = PdfLimits(max_bytes=20_000, max_pages=1)
    search = ArchiveSearch(sealpost.engine, sealpost.archive_blobs, Extractor(limits))
    blank = FPDF()
    blank.add_page()  # a page without text: what a scanner produces, less the image
    long = FPDF()
    long.set_font("helvetica", size=12)
    for word in ("primera", "segunda", "tercera"):
        long.add_page()
        long.cell(0, 10, f"Pagina {word}")
    big = pdf("Enorme", *(f"linea {i} " * 8 for i in range(60)))
    big += b"%" + b"x" * 30_000 + b"\n"  # a comment past %%EOF: still a PDF, but too big
    attached = (
        ("escaneo.pdf", bytes(blank.output()), "application/pdf"),
        ("largo.pdf", bytes(long.output()), "application/pdf"),
        ("enorme.pdf", big, "application/pdf"),
    )
    archive(sealpost, tenant_id, mail("Anexos", attachments=attached))
    assert search.index_all() == 1
    assert found(client, admin, "primera") == ["Anexos"]  # the first page is indexed
    assert found(client, admin, "tercera") == []  # past the page cap
    assert found(client, admin, "enorme") == ["Anexos"]  # by its name
    health = client.get("/v1/archive/index-health", headers=admin).json()
    problems = {p["file"]: p["reason"] for p in health["unindexed"][0]["problems"]}
    assert set(problems) == {"escaneo.pdf", "largo.pdf", "enorme.pdf"}
    assert "no text layer" in problems["escaneo.pdf"]
    assert "first 1 of 3 pages" in problems["largo.pdf"]
    assert "over the 20000-byte limit" in problems["enorme.pdf"]


def test_a_pdf_that_takes_too_long_is_stopped_and_named(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    search = ArchiveSearch(
        sealpost.engine, sealpost.archive_blobs, Extractor(PdfLimits(timeout_seconds=0.01))
    )
    attached = (("lento.pdf", pdf("Texto del documento lento"), "application/pdf"),)
    archive(sealpost, tenant_id, mail("Lento", "Cuerpo del correo.\n", attachments=attached))
    started = time.monotonic()
    search.index_all()
    assert time.monotonic() - started < 5
    assert found(client, admin, "cuerpo") == ["Lento"]
    health = client.get("/v1/archive/index-health", headers=admin).json()
    [problem] = health["unindexed"][0]["problems"]
    assert problem["file"] == "lento.pdf" and "longer than" in problem["reason"]


def test_control_characters_in_any_parameter_are_a_422_not_a_database_error(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    for params in (
        {"q": "garantia\x00"},
        {"q": "garantia", "from": "a\x00@b.es"},
        {"q": "garantia", "to": "a@b.es\x00"},
        {"q": "garantia", "thread_id": "\x00"},
        {"q": "garantia", "agent_id": "x\x01"},
        {"q": "garantia", "after": "2026-12-01"},
    ):
        r = client.get("/v1/archive/search", params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_a_message_whose_bytes_cannot_be_read_is_failed_listed_and_found_by_subject(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    message = sealpost.archive.ingest(
        tenant_id, mail("Contrato perdido", "Texto del cuerpo.\n"), Source("journal")
    ).message
    sealpost.archive_blobs.path(message.sha256).unlink()  # a disk fault, a bad restore
    assert sealpost.archive_search.index_all() == 1  # no retry loop: done, as failed
    assert found(client, admin, "contrato perdido") == ["Contrato perdido"]
    assert found(client, admin, "cuerpo") == []
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["failed"], health["pending"]) == (1, 0)
    [problem] = health["unindexed"][0]["problems"]
    assert problem["file"] == "(message)" and "could not be read" in problem["reason"]


def test_two_indexers_at_once_index_each_message_once(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    for i in range(12):
        archive(sealpost, tenant_id, mail(f"Consulta {i}", f"Duda sobre la póliza {i}.\n"))
    other = ArchiveSearch(sealpost.engine, sealpost.archive_blobs)
    errors: list[BaseException] = []

    def run(search: ArchiveSearch) -> None:
        try:
            search.index_all(batch=3)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (sealpost.archive_search, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    subjects = found(client, admin, "poliza", limit=50)
    assert sorted(subjects) == sorted(f"Consulta {i}" for i in range(12))  # no duplicates
    health = client.get("/v1/archive/index-health", headers=admin).json()
    assert (health["indexed"], health["pending"]) == (12, 0)
