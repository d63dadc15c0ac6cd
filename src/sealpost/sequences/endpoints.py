"""Reminder sequences over REST, and the public opt-out page.

Definitions are JSON or YAML (``Content-Type: application/yaml``, read with
``yaml.safe_load``: no tags, no objects), the same schema; immutable once created.  Bulk
enrolment takes CSV (``text/csv``) or JSON lines (``application/x-ndjson``), up to 10,000
rows, and answers a per-row report: one bad row never sinks the others.  The opt-out page
changes nothing on GET (mail scanners follow links); its button POSTs.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import yaml  # type: ignore[import-untyped]
from cryptography import x509
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.db.full import StorageFull
from sealpost.errors import (
    InvalidInput,
    NotFound,
    SealpostError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.ledger.repository import TimelineEntry
from sealpost.ledger.repository import timeline as ledger_timeline
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity
from sealpost.sequences.model import (
    CANCELLED,
    PAID,
    SMS_CHANNELS,
    Enrolment,
    EnrolmentNotFound,
    EnrolmentStopped,
    InvalidSequence,
    SenderNotAllowed,
    SequenceNotFound,
)
from sealpost.sequences.model import (
    Sequence as SequenceModel,
)
from sealpost.sequences.report import EvidenceRef, ReportStep, SequenceReport, render_report
from sealpost.sequences.schemas import EnrolmentIn, PreviewIn, SettingsIn
from sealpost.sequences.service import MAX_BULK, SUBJECT, SequenceService, plan
from sealpost.sequences.templates import preview

router = APIRouter(
    prefix="/v1",
    tags=["sequences"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)
_DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "A definition, docs/sequences.md"}
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
_BULK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}

page_router = APIRouter(tags=["sequences"], include_in_schema=False)


@dataclass(frozen=True)
class SequencesParts:
    service: SequenceService
    seal: SigningIdentity
    timestamper: TimeStamper
    trust_roots: Sequence[x509.Certificate]
    tenant_name: Callable[[str], str]


def sequences_parts(request: Request) -> SequencesParts:
    parts: SequencesParts = request.app.state.sequences
    return parts


PartsDep = Annotated[SequencesParts, Depends(sequences_parts)]


def _sequence_out(s: SequenceModel) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "version": s.version,
        "immutable": True,
        "created_at": s.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "definition": s.definition.raw,
        "variants": [
            {"name": v.name, "percentage": v.percentage, "steps": len(v.steps)}
            for v in s.definition.variants
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _enrolment_out(e: Enrolment) -> dict[str, Any]:
    return {
        "id": e.id,
        "sequence_id": e.sequence_id,
        "variant": e.variant,
        "status": e.status,
        "stop_cause": e.stop_cause,
        "person": {"name": e.person.name, "email": e.person.email, "phone": e.person.phone},
        "language": e.language,
        "time_zone": e.time_zone,
        "variables": dict(e.variables),
        "external_ids": dict(e.external_ids),
        "created_at": _iso(e.created_at),
        "stopped_at": _iso(e.stopped_at),
    }


async def _document(request: Request) -> Any:
    body = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if kind in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(body.decode())
        return json.loads(body)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise InvalidSequence("body", f"not valid {kind}: {str(exc)[:200]}") from None


@router.post(
    "/sequences",
    status_code=201,
    responses=problem_responses(InvalidSequence, SenderNotAllowed),
    openapi_extra=_DEFINITION_BODY,
)
async def create_sequence(request: Request, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """Create a sequence (JSON, or YAML with ``Content-Type: application/yaml``)."""
    data = await _document(request)
    return _sequence_out(parts.service.create(tenant.id, data))


@router.get("/sequences")
def list_sequences(tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    return {"data": [_sequence_out(s) for s in parts.service.all(tenant.id)]}


@router.get("/sequences/{sequence_id}", responses=problem_responses(SequenceNotFound))
def get_sequence(sequence_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    return _sequence_out(parts.service.get(tenant.id, sequence_id))


@router.post(
    "/sequences/{sequence_id}/preview",
    responses=problem_responses(SequenceNotFound, InvalidSequence),
)
def preview_step(
    sequence_id: str, body: PreviewIn, tenant: TenantDep, parts: PartsDep
) -> dict[str, Any]:
    """Render one step with sample variables; lists the variables the sample lacks."""
    sequence = parts.service.get(tenant.id, sequence_id)
    definition = sequence.definition
    try:
        variant = definition.variant(body.variant or definition.variants[0].name)
    except KeyError:
        raise InvalidSequence("variant", f"no variant {body.variant!r}") from None
    if body.step > len(variant.steps):
        raise InvalidSequence("step", f"the variant has {len(variant.steps)} steps")
    step = variant.steps[body.step - 1]
    sample = {"name": "Sample", "payment_link": "https://pay.example/T", "opt_out_link": "#"}
    rendered, missing = preview(step.template, body.language, {**sample, **body.variables})
    return {
        "step": body.step,
        "channel": step.channel,
        "missing": missing,
        "rendered": None
        if rendered is None
        else {
            "language": rendered.language,
            "subject": rendered.subject,
            "text": rendered.text,
            "html": rendered.html,
        },
    }


@router.post(
    "/sequences/{sequence_id}/enrolments",
    status_code=201,
    responses=problem_responses(SequenceNotFound, InvalidSequence),
)
def enrol(
    sequence_id: str, body: EnrolmentIn, tenant: TenantDep, parts: PartsDep
) -> dict[str, Any]:
    return _enrolment_out(parts.service.enrol(tenant.id, sequence_id, body))


def _rows(body: bytes, kind: str) -> list[EnrolmentIn | SealpostError]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 (byte {exc.start})") from None
    rows: list[EnrolmentIn | SealpostError] = []
    if kind == "text/csv":
        try:
            for raw in csv.DictReader(io.StringIO(text)):
                rows.append(_csv_row(raw))
        except csv.Error as exc:  # a cell over the csv module's limit, a stray quote
            raise InvalidInput(f"row {len(rows) + 1}: not CSV: {str(exc)[:100]}") from None
    elif kind in ("application/x-ndjson", "application/jsonl", "application/json-lines"):
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rows.append(_validated(json.loads(line)))
            except (ValueError, RecursionError) as exc:
                rows.append(InvalidSequence("row", f"not JSON: {str(exc)[:100]}"))
    else:
        raise InvalidInput("send text/csv or application/x-ndjson (JSON lines)")
    if len(rows) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} rows per request, not {len(rows)}")
    return rows


def _validated(data: Any) -> EnrolmentIn | SealpostError:
    try:
        return EnrolmentIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        return InvalidSequence(".".join(str(p) for p in first["loc"]) or "row", first["msg"])


_PERSON = ("name", "email", "phone")
_TOP = ("language", "time_zone")


def _csv_row(raw: dict[str | Any, str | Any]) -> EnrolmentIn | SealpostError:
    """A CSV row: ``name,email,phone,language,time_zone`` columns, ``external.<kind>``
    columns, and every other column a variable (empty cells are left out)."""
    data: dict[str, Any] = {"person": {}, "variables": {}, "external_ids": {}}
    for key, value in raw.items():
        if key is None or value is None or value == "":
            continue
        key = str(key).strip()
        if key in _PERSON:
            data["person"][key] = value
        elif key in _TOP:
            data[key] = value
        elif key.startswith("external."):
            data["external_ids"][key.removeprefix("external.")] = value
        else:
            data["variables"][key] = value
    return _validated(data)


@router.post(
    "/sequences/{sequence_id}/enrolments:bulk",
    responses=problem_responses(SequenceNotFound, InvalidSequence),
    openapi_extra=_BULK_BODY,
)
async def enrol_bulk(
    sequence_id: str, request: Request, tenant: TenantDep, parts: PartsDep
) -> dict[str, Any]:
    """Enrol up to 10,000 people from CSV or JSON lines; a report per row."""
    parts.service.get(tenant.id, sequence_id)  # 404 before reading rows
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    rows = _rows(await request.body(), kind)
    results = parts.service.enrol_many(tenant.id, sequence_id, rows)
    report = []
    for r in results:
        if r.enrolment is not None:
            report.append({"row": r.row, "status": "accepted", "enrolment_id": r.enrolment.id})
        else:
            assert r.error is not None
            report.append(
                {
                    "row": r.row,
                    "status": "refused",
                    "error": {"code": r.error.code, "message": r.error.message},
                }
            )
    accepted = sum(1 for r in report if r["status"] == "accepted")
    return {"accepted": accepted, "refused": len(report) - accepted, "rows": report}


@router.get("/sequences/enrolments/{enrolment_id}", responses=problem_responses(EnrolmentNotFound))
def get_enrolment(enrolment_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    return _enrolment_out(parts.service.enrolment(tenant.id, enrolment_id))


@router.post(
    "/sequences/enrolments/{enrolment_id}/paid",
    responses=problem_responses(EnrolmentNotFound, EnrolmentStopped),
)
def mark_paid(enrolment_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """Stop: paid.  No step is sent after this answers."""
    return _enrolment_out(parts.service.stop(tenant.id, enrolment_id, PAID, via="api"))


@router.post(
    "/sequences/enrolments/{enrolment_id}/cancel",
    responses=problem_responses(EnrolmentNotFound, EnrolmentStopped),
)
def cancel(enrolment_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    return _enrolment_out(parts.service.stop(tenant.id, enrolment_id, CANCELLED, via="api"))


def _message_evidence(t: TimelineEntry) -> dict[str, Any]:
    """A record of a step's message; a ``ReplyReceived`` says which kind of answer it was
    (``reply``, ``automatic``: an out-of-office that stops nothing, ``opt_out``: STOP)."""
    item: dict[str, Any] = {"record_id": t.record_id, "event": t.event, "time": _iso(t.event_time)}
    if t.event == "ReplyReceived":
        reply = t.record.get("details", {}).get("reply") or {}
        item["answer"] = (
            "opt_out"
            if reply.get("opt_out")
            else "automatic"
            if reply.get("automatic")
            else "reply"
        )
    if t.event == "RelayToNonERDS" and _via_relay(t.record.get("details", {})):
        item["relayed"] = True  # a smarthost took it, not the recipient's server
    return item


def timeline_of(parts: SequencesParts, tenant_id: str, enrolment_id: str) -> dict[str, Any]:
    service = parts.service
    enrolment = service.enrolment(tenant_id, enrolment_id)
    sequence = service.get(tenant_id, enrolment.sequence_id)
    spec = sequence.definition.variant(enrolment.variant).steps
    done = {s.number: s for s in service.repo.steps(enrolment_id)}
    engine = service.repo.engine
    own = ledger_timeline(engine, tenant_id, SUBJECT, enrolment_id)
    tz = ZoneInfo(enrolment.time_zone)
    steps = []
    previous: datetime | None = None
    for step in spec:
        state = done.get(step.number)
        item: dict[str, Any] = {"number": step.number, "channel": step.channel}
        evidence: list[dict[str, Any]] = []
        if state is not None:
            item.update(
                status=state.status,
                planned_at=_iso(state.planned_at),
                due_at=_iso(state.due_at),
                sent_at=_iso(state.sent_at),
                message_type=state.message_type,
                message_id=state.message_id,
                error=state.error,
            )
            if state.message_id and state.message_type:
                for t in ledger_timeline(engine, tenant_id, state.message_type, state.message_id):
                    evidence.append(_message_evidence(t))
                    term = t.record.get("details", {}).get("deadline")
                    if t.event == "DeadlineSet" and isinstance(term, dict) and term.get("text"):
                        item["deadline"] = str(term["text"])
            previous = state.sent_at or state.due_at
        elif enrolment.status == "active" and previous is not None:
            planned, due = plan(step, previous, tz, service.calendar_of(tenant_id))
            item.update(status="planned", planned_at=_iso(planned), due_at=_iso(due))
            previous = due
        else:
            item.update(status="not_sent")
        for t in own:
            if t.record.get("details", {}).get("step") == step.number:
                evidence.append(
                    {"record_id": t.record_id, "event": t.event, "time": _iso(t.event_time)}
                )
        item["evidence"] = evidence
        steps.append(item)
    return {
        "enrolment": _enrolment_out(enrolment),
        "steps": steps,
        "records": [
            {"record_id": t.record_id, "event": t.event, "time": _iso(t.event_time)} for t in own
        ],
    }


@router.get(
    "/sequences/enrolments/{enrolment_id}/timeline",
    responses=problem_responses(EnrolmentNotFound),
)
def timeline(enrolment_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """Every step, planned (after delays and windows) and done, with its evidence."""
    return timeline_of(parts, tenant.id, enrolment_id)


@router.get(
    "/sequences/enrolments/{enrolment_id}/report.pdf",
    responses={
        200: {"content": {"application/pdf": {}}},
        **problem_responses(EnrolmentNotFound),
    },
)
def report(enrolment_id: str, tenant: TenantDep, parts: PartsDep) -> Response:
    """The sealed sequence report: each step with its evidence and certificate references."""
    t = timeline_of(parts, tenant.id, enrolment_id)
    e = parts.service.enrolment(tenant.id, enrolment_id)
    sequence = parts.service.get(tenant.id, e.sequence_id)
    steps = []
    for s in t["steps"]:
        kind = s.get("message_type")
        steps.append(
            ReportStep(
                number=s["number"],
                channel=s["channel"],
                variant=e.variant,
                planned_at=_parse(s.get("due_at")),
                sent_at=_parse(s.get("sent_at")),
                status=s["status"],
                message_id=s.get("message_id"),
                recipient=e.person.phone if s["channel"] in SMS_CHANNELS else e.person.email,
                evidence=tuple(
                    EvidenceRef(
                        r["record_id"],
                        r["event"],
                        _parse(r["time"]) or e.created_at,
                        relayed=bool(r.get("relayed")),
                        answer=r.get("answer"),
                    )
                    for r in s["evidence"]
                ),
                deadline=s.get("deadline"),
                certificate=(
                    f"/v1/{'sms' if kind == 'sms' else 'communications'}/{s['message_id']}"
                    "/certificate"
                    if s.get("message_id")
                    else None
                ),
            )
        )
    pdf = render_report(
        SequenceReport(
            tenant_name=parts.tenant_name(tenant.id),
            sequence_id=sequence.id,
            sequence_name=sequence.name,
            sequence_version=sequence.version,
            enrolment_id=e.id,
            person_name=e.person.name,
            person_contact=e.person.email or e.person.phone or "",
            variant=e.variant,
            enrolled_at=e.created_at,
            stopped_at=e.stopped_at,
            stop_cause=e.stop_cause,
            steps=tuple(steps),
            generated_at=datetime.now(UTC),
            evidence=tuple(
                EvidenceRef(r["record_id"], r["event"], _parse(r["time"]) or e.created_at)
                for r in t["records"]
                if r["event"] in ("SequenceEnrolled", "SequenceStopped", "SequenceCompleted")
            ),
        ),
        seal=parts.seal,
        timestamper=parts.timestamper,
        trust_roots=parts.trust_roots,
    )
    return Response(pdf, media_type="application/pdf")


def _parse(value: str | None) -> datetime | None:
    return (
        None
        if value is None
        else datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    )


@router.get("/sequences/{sequence_id}/stats", responses=problem_responses(SequenceNotFound))
def stats(sequence_id: str, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """Per variant: paid, replied, stopped (any cause), failed, completed, active."""
    sequence = parts.service.get(tenant.id, sequence_id)
    raw = parts.service.repo.stats(sequence_id)
    out = []
    for v in sequence.definition.variants:
        c = raw.get(v.name, {})
        out.append(
            {
                "variant": v.name,
                "percentage": v.percentage,
                "enrolled": sum(n for k, n in c.items() if k.startswith("status:")),
                "active": c.get("status:active", 0),
                "completed": c.get("status:completed", 0),
                "stopped": c.get("status:stopped", 0),
                "failed": c.get("status:failed", 0),
                "paid": c.get("cause:paid", 0),
                "replied": c.get("cause:replied", 0),
                "opted_out": c.get("cause:opted_out", 0),
            }
        )
    return {"sequence_id": sequence_id, "variants": out}


@router.get("/settings/sequences")
def get_settings(tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """The tenant's sequence settings: ``payment_link_base``."""
    return {"payment_link_base": parts.service.repo.payment_link_base(tenant.id)}


@router.put("/settings/sequences", responses=problem_responses(InvalidSequence))
def put_settings(body: SettingsIn, tenant: TenantDep, parts: PartsDep) -> dict[str, Any]:
    """Replace them."""
    parts.service.repo.set_payment_link_base(
        tenant.id, body.payment_link_base, parts.service.clock()
    )
    return {"payment_link_base": body.payment_link_base}


# -- the public opt-out page -------------------------------------------------------------

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status, _HEADERS)


def _service(request: Request) -> SequenceService:
    return sequences_parts(request).service


@page_router.get("/sequences/opt-out/{token}")
def opt_out_page(token: str, request: Request) -> HTMLResponse:
    """Shows a button; changes nothing (scanners and previews follow links)."""
    found = _service(request).repo.by_opt_out_token(token)
    if found is None:
        return _page("Link not valid", "<p>This link is not valid.</p>", 404)
    if found.stop_cause == "opted_out":
        return _page("You have opted out", "<p>You will receive no more reminders.</p>")
    return _page(
        "Stop these reminders?",
        '<form method="post"><p>Press the button to receive no more reminders of this '
        'series.</p><button type="submit">Stop the reminders</button></form>',
    )


@page_router.post("/sequences/opt-out/{token}")
def opt_out(token: str, request: Request) -> HTMLResponse:
    found = _service(request).opt_out(token)
    if found is None:
        return _page("Link not valid", "<p>This link is not valid.</p>", 404)
    return _page("You have opted out", "<p>You will receive no more reminders.</p>")


__all__ = ["NotFound", "page_router", "router"]


def _via_relay(details: dict[str, Any]) -> bool:
    """A RelayToNonERDS whose server was the operator's smarthost, not the recipient's own:
    the report then says "handed to the relay", never "accepted by the recipient's server"."""
    remote = details.get("remote")
    return isinstance(remote, dict) and remote.get("kind") == "smarthost"
