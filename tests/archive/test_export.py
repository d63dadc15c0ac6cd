"""Export of a case: a ZIP of byte-exact messages, an mboxrd mailbox, the evidence bundles, a
manifest and a sealed chain-of-custody report, checked offline by the real ``sealpost verify``
(which names each altered, missing or extra file)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from sqlalchemy import select

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.custody import verify_export
from sealpost.archive.export import write_mboxrd
from sealpost.archive.model import Source
from sealpost.archive.tables import archive_messages
from sealpost.certificates.embedded import read_embedded_files
from sealpost.certificates.seal import validation_context
from sealpost.ledger.tables import evidence_records
from tests.certificates.support import poppler

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BODY = "Primera línea.\nFrom here on, a line mbox readers would split at.\n>From quoted.\n"


def mail(subject: str, *, msg_id: str, in_reply_to: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = "cliente@gmail.com"
    m["To"] = "soporte@acme.es"
    m["Subject"] = subject
    m["Date"] = "Mon, 02 Mar 2026 10:00:00 +0100"
    m["Message-ID"] = msg_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    m.set_content(BODY)
    return m.as_bytes()


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


@dataclass
class Case:
    client: TestClient
    admin: dict[str, str]
    auditor: dict[str, str]
    thread_id: str
    raws: list[bytes]
    ids: list[str]


@pytest.fixture
def case(sealpost: Sealpost, tenant_id: str, client: TestClient) -> Case:
    sealpost.clock = lambda: T0
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"])
    admin = {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}
    r = client.post(
        "/v1/archive/agents", json={"email": "audit@acme.es", "role": "auditor"}, headers=admin
    )
    auditor = {"Authorization": f"Bearer {r.json()['api_key']}"}
    raws = [
        mail("Garantía", msg_id="<a@gmail.com>"),
        mail("Re: Garantía", msg_id="<b@gmail.com>", in_reply_to="<a@gmail.com>"),
    ]
    got = []
    for n, raw in enumerate(raws):
        sealpost.clock = lambda n=n: T0 + timedelta(minutes=n)  # type: ignore[misc]
        got.append(sealpost.archive.ingest(tenant_id, raw, Source("journal")).message)
    assert got[0].thread_id == got[1].thread_id
    sealpost.sequencer.seal_all()
    return Case(client, admin, auditor, got[0].thread_id, raws, [m.id for m in got])


def export(case: Case, body: dict[str, Any], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    r = case.client.post("/v1/archive/exports", json=body, headers=case.auditor)
    assert r.status_code == 201, r.text
    meta = r.json()
    got = case.client.get(f"/v1/archive/exports/{meta['id']}/download", headers=case.auditor)
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert hashlib.sha256(got.content).hexdigest() == meta["sha256"]
    path = tmp_path / "export.zip"
    path.write_bytes(got.content)
    return meta, path


def sealpost_verify(path: Path, keys_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealpost", "verify", path, "--trust", keys_dir / "root-ca.pem"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def rewrite(path: Path, out: Path, change: dict[str, bytes | None]) -> None:
    """A copy of the ZIP with members replaced (bytes), removed (None) or added."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename in change:
                data = change[item.filename]
                if data is not None:
                    dst.writestr(item.filename, data)
            else:
                dst.writestr(item, src.read(item.filename))
        for name, data in change.items():
            if name not in src.namelist() and data is not None:
                dst.writestr(name, data)


def test_a_thread_export_holds_the_exact_bytes_and_verifies_with_sealpost_verify(
    sealpost: Sealpost, case: Case, tmp_path: Path, keys_dir: Path
) -> None:
    meta, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    assert (meta["message_count"], meta["pending_evidence"], meta["kind"]) == (2, 0, "thread")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        manifest_raw = z.read("manifest.json")
        manifest = json.loads(manifest_raw)
        emls = sorted(n for n in names if n.startswith("messages/"))
        assert [z.read(n) for n in emls] == case.raws  # byte-exact, in archiving order
        assert emls[0] == f"messages/1-{case.ids[0]}.eml"
        mbox = z.read("mailbox.mbox")
        pdf = z.read("chain-of-custody.pdf")
    assert {"manifest.json", "chain-of-custody.pdf", "mailbox.mbox"} <= names
    assert len([n for n in names if n.startswith("evidence/")]) == 2
    assert set(manifest["files"]) == names - {"manifest.json", "chain-of-custody.pdf"}
    # mboxrd (RFC 4155): two messages, the body's "From " lines quoted one level more
    assert mbox.count(b"\nFrom cliente@gmail.com ") + mbox.startswith(b"From ") == 2
    assert b"\n>From here on" in mbox and b"\n>>From quoted." in mbox
    assert manifest["created_by"].startswith("agent:")

    result = sealpost_verify(path, keys_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID" in result.stdout and "NOT VALID" not in result.stdout

    with sealpost.engine.connect() as conn:
        event = conn.execute(
            select(evidence_records.c.event).where(evidence_records.c.id == meta["record_id"])
        ).scalar_one()
    assert event == "ExportCreated"
    # the PDF: pyHanko validates its seal against the local root; it states the manifest hash
    reader = PdfFileReader(io.BytesIO(pdf))
    root = x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())
    status = validate_pdf_signature(reader.embedded_signatures[0], validation_context([root]))
    assert status.intact and status.valid and status.trusted
    report = verify_export(path, trust_roots=[root])
    assert report.ok, report.failures
    assert hashlib.sha256(manifest_raw).hexdigest() == meta["manifest_sha256"]


def test_pdfsig_says_the_custody_report_s_seal_is_valid(case: Case, tmp_path: Path) -> None:
    _, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    with zipfile.ZipFile(path) as z:
        (tmp_path / "custody.pdf").write_bytes(z.read("chain-of-custody.pdf"))
    result = poppler("pdfsig", tmp_path / "custody.pdf")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature is Valid" in result.stdout.split("Signature #2")[0]


def test_verify_names_the_altered_the_missing_and_the_extra_file(
    case: Case, tmp_path: Path, keys_dir: Path
) -> None:
    _, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    with zipfile.ZipFile(path) as z:
        first = sorted(n for n in z.namelist() if n.startswith("messages/"))[0]
        evidence = sorted(n for n in z.namelist() if n.startswith("evidence/"))[0]
        data = bytearray(z.read(first))
    data[len(data) // 2] ^= 0x01  # one changed byte in one .eml
    altered = tmp_path / "altered.zip"
    rewrite(path, altered, {first: bytes(data)})
    result = sealpost_verify(altered, keys_dir)
    assert result.returncode == 1
    assert first in result.stderr and "altered" in result.stderr
    assert "NOT VALID" in result.stdout

    # the same byte flipped in the ZIP itself, not repacked: the member no longer reads back
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(first)
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    raw[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0x01
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(raw))
    result = sealpost_verify(flipped, keys_dir)
    assert result.returncode == 1 and f"{first}: altered" in result.stderr

    missing = tmp_path / "missing.zip"
    rewrite(path, missing, {evidence: None, "notes.txt": b"added later\n"})
    result = sealpost_verify(missing, keys_dir)
    assert result.returncode == 1
    assert f"{evidence}: missing" in result.stderr
    assert "notes.txt: extra" in result.stderr


def test_a_second_copy_of_a_file_in_the_zip_is_reported(
    case: Case, tmp_path: Path, keys_dir: Path
) -> None:
    _, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    doctored = tmp_path / "twice.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(doctored, "w") as dst:
        first = sorted(n for n in src.namelist() if n.startswith("messages/"))[0]
        with warnings.catch_warnings():  # zipfile warns of the duplicate name: the point
            warnings.simplefilter("ignore")
            dst.writestr(first, b"From: x@y\r\n\r\npay 100000 EUR\r\n")  # unzip shows this
            for item in src.infolist():
                dst.writestr(item, src.read(item.filename))  # zipfile reads the last copy
    root = x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())
    report = verify_export(doctored, trust_roots=[root])
    assert not report.ok
    assert any(c.field == first and "duplicate" in c.detail for c in report.failures)
    result = sealpost_verify(doctored, keys_dir)
    assert result.returncode == 1 and f"{first}: duplicate" in result.stderr


def test_a_manifest_rewritten_to_match_a_changed_message_is_caught_by_the_sealed_report(
    case: Case, tmp_path: Path, keys_dir: Path
) -> None:
    _, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        first = sorted(n for n in z.namelist() if n.startswith("messages/"))[0]
        forged = z.read(first).replace("línea".encode(), b"linea")
    manifest["files"][first] = {"sha256": hashlib.sha256(forged).hexdigest(), "size": len(forged)}
    manifest["messages"][0]["sha256"] = manifest["files"][first]["sha256"]
    doctored = tmp_path / "doctored.zip"
    rewrite(path, doctored, {first: forged, "manifest.json": json.dumps(manifest).encode()})
    root = x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())
    report = verify_export(doctored, trust_roots=[root])
    failed = {(c.name, c.field) for c in report.failures}
    assert ("manifest hash", "chain-of-custody.pdf") in failed
    assert any(name == "evidence" for name, _ in failed)  # the record's digest is the original's


def test_hold_and_query_exports_list_a_purged_message_without_its_bytes(
    sealpost: Sealpost, tenant_id: str, case: Case, tmp_path: Path
) -> None:
    hold = case.client.post(
        "/v1/archive/holds",
        json={"kind": "query", "query": {"text": "re: garantía"}, "reason": "Caso 7"},
        headers=case.admin,
    ).json()
    sealpost.archive.update_settings(tenant_id, retention_days=30)
    sealpost.clock = lambda: T0 + timedelta(days=31)
    sealpost.archive_search.index_all()  # a query hold keeps what is not indexed yet
    assert sealpost.archive_holds.purger.purge_due().purged == 1  # the first message
    sealpost.sequencer.seal_all()
    meta, path = export(case, {"hold_id": hold["id"]}, tmp_path)
    assert meta["message_count"] == 1 and meta["kind"] == "hold"
    meta, path = export(case, {"query": {"text": "garantía"}}, tmp_path)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    purged = [m for m in manifest["messages"] if m["file"] is None]
    assert [m["id"] for m in purged] == [case.ids[0]] and purged[0]["purge_record_id"]
    assert verify_export(path).ok


def test_an_export_made_before_sealing_says_its_evidence_is_pending(
    sealpost: Sealpost, tenant_id: str, case: Case, tmp_path: Path
) -> None:
    late = mail("Re: Garantía", msg_id="<c@gmail.com>", in_reply_to="<b@gmail.com>")
    sealpost.clock = lambda: T0 + timedelta(hours=1)
    sealpost.archive.ingest(tenant_id, late, Source("journal"))  # not sealed yet
    sealpost.archive_holds.exports.evidence_wait = 0
    meta, path = export(case, {"thread_id": case.thread_id}, tmp_path)
    assert (meta["message_count"], meta["pending_evidence"]) == (3, 1)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        report = PdfFileReader(io.BytesIO(z.read("chain-of-custody.pdf")))
    pending = [m for m in manifest["messages"] if m.get("evidence_pending")]
    assert len(pending) == 1 and pending[0]["evidence"] is None and pending[0]["file"]
    custody = json.loads(read_embedded_files(report)["custody.json"])
    assert custody["pending_evidence"] == 1  # the sealed report says so
    assert verify_export(path).ok  # stated, not faked: the rest still verifies


def test_a_damaged_blob_stops_the_export_and_names_the_message(
    sealpost: Sealpost, case: Case
) -> None:
    with sealpost.engine.connect() as conn:
        sha = conn.execute(
            select(archive_messages.c.sha256).where(archive_messages.c.id == case.ids[1])
        ).scalar_one()
    sealpost.archive_blobs.path(sha).write_bytes(case.raws[1].replace(b"here", b"HERE"))
    r = case.client.post(
        "/v1/archive/exports", json={"thread_id": case.thread_id}, headers=case.auditor
    )
    assert r.status_code == 409 and case.ids[1] in r.json()["detail"]
    with sealpost.engine.connect() as conn:
        made = conn.execute(
            select(evidence_records.c.id).where(evidence_records.c.event == "ExportCreated")
        ).all()
    assert made == []


def test_an_export_s_zip_is_removed_after_30_days_its_description_stays(
    sealpost: Sealpost, case: Case, tmp_path: Path
) -> None:
    meta, _ = export(case, {"thread_id": case.thread_id}, tmp_path)
    exports = sealpost.archive_holds.exports
    sealpost.clock = lambda: T0 + timedelta(days=29)
    assert exports.remove_stale() == 0
    sealpost.clock = lambda: T0 + timedelta(days=31)
    assert exports.remove_stale() == 1
    url = f"/v1/archive/exports/{meta['id']}"
    assert case.client.get(url + "/download", headers=case.auditor).status_code == 410
    described = case.client.get(url, headers=case.auditor).json()
    assert described["removed_at"] and described["sha256"] == meta["sha256"]
    assert not sealpost.archive_holds.exports.exports.exists(meta["sha256"])


def test_exports_need_a_role_and_a_selection(case: Case) -> None:
    r = case.client.post(
        "/v1/archive/agents", json={"email": "a@acme.es", "role": "agent"}, headers=case.admin
    )
    plain = {"Authorization": f"Bearer {r.json()['api_key']}"}
    body = {"thread_id": case.thread_id}
    assert case.client.post("/v1/archive/exports", json=body, headers=plain).status_code == 403
    for bad in ({}, {"thread_id": case.thread_id, "query": {"text": "x"}}):
        r = case.client.post("/v1/archive/exports", json=bad, headers=case.admin)
        assert r.status_code == 422, r.text
    r = case.client.post(
        "/v1/archive/exports", json={"query": {"text": "nada parecido"}}, headers=case.admin
    )
    assert r.status_code == 422 and "no archived message" in r.json()["detail"]
    assert case.client.get("/v1/archive/exports/nope", headers=case.admin).status_code == 404


def test_mboxrd_quoting_is_reversible_and_bounded() -> None:
    out = io.BytesIO()
    long_line = b"x" * 200_000 + b"From not at a line start\n"
    write_mboxrd(out, io.BytesIO(b"From a\n>From b\nFrom\n" + long_line + b"no newline"))
    assert out.getvalue() == b">From a\n>>From b\nFrom\n" + long_line + b"no newline\n\n"
