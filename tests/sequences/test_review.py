"""Review of reminder sequences as an attacker and a demanding user (issue 14): a tenant's
events never stop another tenant's enrolments, and bulk input the parsers choke on is a
clear 4xx (or one refused row), never a 500 that loses the other rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from sealpost.communications.tables import communications, contents
from sealpost.events.outbox import StoredEvent
from sealpost.ledger.tables import evidence_records
from sealpost.sequences.model import StepWithdrawn
from sealpost.sequences.ports import OutgoingEmail
from sealpost.sequences.tasks import Follower
from tests.sequences.conftest import SeqEnv
from tests.sequences.test_sequences import PERSON, THREE_STEPS, _create, _enrol


def _signed(tenant_id: str, process_id: str) -> StoredEvent:
    return StoredEvent(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        type="sealpost.signature.completed",
        subject=f"signature-processes/{process_id}",
        sequence=1,
        time=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        record_id=None,
        payload="{}",
        position=1,
    )


def test_another_tenants_signature_never_stops_an_enrolment(seq_env: SeqEnv) -> None:
    """Tenant A names tenant B's signature process in ``external_ids``: B's process being
    signed must neither stop A's enrolment nor tell A that it was signed."""
    env = seq_env
    sequence_id = _create(env)
    process = str(uuid.uuid4())
    enrolment_id = _enrol(
        env, sequence_id, {**PERSON, "external_ids": {"signature_process": process}}
    )
    other = env.sp.tenants.create(f"other-{uuid.uuid4().hex[:6]}")
    follower = Follower(env.sp.sequences, env.sp.outbox)

    follower.handle(_signed(other.id, process))
    status = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}", headers=env.auth).json()
    assert (status["status"], status["stop_cause"]) == ("active", None)

    follower.handle(_signed(env.tenant_id, process))  # its own tenant's: stops it
    status = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}", headers=env.auth).json()
    assert (status["status"], status["stop_cause"]) == ("stopped", "signed")


def _bulk(env: SeqEnv, sequence_id: str, body: bytes, kind: str) -> Any:
    return env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=body,
        headers={**env.auth, "Content-Type": kind},
    )


def test_bulk_external_ids_too_long_for_their_columns_refuse_the_row_alone(
    seq_env: SeqEnv,
) -> None:
    """Two external-id kinds that share their first 32 characters used to be cut to the same
    key and sink the whole batch (500); a value over 200 characters was cut silently, so the
    stop it names could never match.  Each is now refused on its own row."""
    env = seq_env
    sequence_id = _create(env)
    long_kind = "k" * 40
    rows = [
        json.dumps(PERSON),
        json.dumps({**PERSON, "external_ids": {long_kind + "1": "same", long_kind + "2": "same"}}),
        json.dumps({**PERSON, "external_ids": {"signature_process": "p" * 201}}),
        json.dumps({**PERSON, "external_ids": {"signature_process": "proc-ok"}}),
    ]
    answer = _bulk(env, sequence_id, "\n".join(rows).encode(), "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["rows"]]
    assert statuses == ["accepted", "refused", "refused", "accepted"]
    assert "external_ids" in answer.json()["rows"][1]["error"]["message"]


def test_bulk_input_the_parsers_choke_on_is_a_clear_error(seq_env: SeqEnv) -> None:
    env = seq_env
    sequence_id = _create(env)
    header = "name,email,phone,time_zone,amount,currency,due_date,reference\n"
    good = "Ana,ana@recipient.test,+34612345678,Europe/Madrid,10,EUR,2026-04-01,R1\n"

    # a cell over the csv module's field limit (131,072 characters)
    huge = "Bea,bea@recipient.test,+34612345679,Europe/Madrid," + "9" * 140_000 + ",EUR,x,R2\n"
    answer = _bulk(env, sequence_id, (header + good + huge).encode(), "text/csv")
    assert answer.status_code == 422, answer.text
    assert "row 2" in answer.json()["detail"]

    # not UTF-8
    latin1 = (header + good.replace("Ana", "Añá")).encode("latin-1")
    answer = _bulk(env, sequence_id, latin1, "text/csv")
    assert answer.status_code == 422, answer.text
    assert "UTF-8" in answer.json()["detail"]

    # a JSON line nested past the parser's recursion: that row alone is refused
    lines = "\n".join([json.dumps(PERSON), "[" * 100_000, json.dumps(PERSON)])
    answer = _bulk(env, sequence_id, lines.encode(), "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["rows"]] == ["accepted", "refused", "accepted"]


def test_a_definition_nested_past_the_parser_is_a_clear_error(seq_env: SeqEnv) -> None:
    env = seq_env
    answer = env.client.post(
        "/v1/sequences",
        content=b'{"name": ' + b"[" * 100_000,
        headers={**env.auth, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    answer = env.client.post(
        "/v1/sequences",
        content=b"name: " + b"[" * 100_000,
        headers={**env.auth, "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 422, answer.text


def test_a_template_that_breaks_at_render_fails_its_step_instead_of_retrying_forever(
    seq_env: SeqEnv,
) -> None:
    """``xmlattr`` of a string raises AttributeError, which the sandbox let through: the
    preview answered 500 and the scheduler put the step back every 30 s, for ever.  Now the
    preview is a 422 and the step fails with the template's error (the next channel goes on)."""
    env = seq_env
    definition = {
        "name": "Broken at render",
        "steps": [
            {
                "channel": "sms",
                "template": {
                    "fallback_language": "en",
                    "languages": {"en": {"text": "{{ name|xmlattr }}"}},
                },
            },
            {
                "channel": "sms",
                "template": {
                    "fallback_language": "en",
                    "languages": {"en": {"text": "Hi {{ name }}"}},
                },
            },
        ],
    }
    sequence_id = _create(env, definition)
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/preview",
        json={"step": 1, "language": "en"},
        headers=env.auth,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "template_refused"

    enrolment_id = _enrol(env, sequence_id, {"person": {"name": "Ana", "phone": "+34612345678"}})
    scheduler = env.sp.sequence_scheduler
    assert scheduler.run_once() == 1
    steps = env.sp.sequences.repo.steps(enrolment_id)
    assert steps[0].status == "failed" and "template_refused" in (steps[0].error or "")
    assert scheduler.run_once() == 1  # the next channel, at once
    assert [s.status for s in env.sp.sequences.repo.steps(enrolment_id)] == ["failed", "sent"]


def test_a_withdrawn_email_leaves_no_row_no_record_and_no_content(seq_env: SeqEnv) -> None:
    """The guard withdraws the step's email inside the writer's commit (the enrolment stopped
    first): no communication, no evidence, and not its content either (the debtor's message
    used to stay in ``contents``, referenced by nothing, kept for ever)."""
    env = seq_env
    service = env.sp.sequences

    def withdraw(_conn: Connection, _message_id: str) -> None:
        raise StepWithdrawn("the enrolment stopped first")

    def counts() -> tuple[int, int, int]:
        with env.sp.engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(communications)).scalar() or 0,
                conn.execute(select(func.count()).select_from(contents)).scalar() or 0,
                conn.execute(select(func.count()).select_from(evidence_records)).scalar() or 0,
            )

    before = counts()
    mail = OutgoingEmail(
        tenant_id=env.tenant_id,
        sender="cobros@acme.test",
        sender_name=None,
        to="ana@recipient.test",
        subject="Recordatorio F-7",
        text=f"Debe 120,50 EUR ({uuid.uuid4()})",
        html=None,
        pickup=False,
        details={},
        guard_in=withdraw,
    )
    with pytest.raises(StepWithdrawn):
        service.messenger.email(mail)
    assert counts() == before


def test_bulk_rows_the_database_or_json_cannot_hold_are_refused_alone(seq_env: SeqEnv) -> None:
    """A NUL character (PostgreSQL text cannot hold it) sank the whole bulk with a 500; a
    NaN amount (JSON lines accept it) was stored and then every read of the enrolment
    answered 500.  Each is refused on its own row now."""
    env = seq_env
    sequence_id = _create(env)
    nul_name = {**PERSON, "person": {**PERSON["person"], "name": "Ana\u0000"}}
    nul_variable = {**PERSON, "variables": {**PERSON["variables"], "reference": "F\u00007"}}
    rows = [
        json.dumps(PERSON),
        json.dumps(nul_name),
        json.dumps(nul_variable),
        json.dumps({**PERSON, "variables": {**PERSON["variables"], "amount": float("nan")}}),
        json.dumps({**PERSON, "external_ids": {"signature_process": "p\u00001"}}),
        json.dumps(PERSON),
    ]
    answer = _bulk(env, sequence_id, "\n".join(rows).encode(), "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    report = answer.json()["rows"]
    assert [r["status"] for r in report] == [
        "accepted",
        "refused",
        "refused",
        "refused",
        "refused",
        "accepted",
    ]
    for row in report:
        if row["status"] == "accepted":
            got = env.client.get(
                f"/v1/sequences/enrolments/{row['enrolment_id']}", headers=env.auth
            )
            assert got.status_code == 200, got.text


def test_a_definition_with_a_nul_or_a_line_break_in_a_name_is_refused_not_a_500(
    seq_env: SeqEnv,
) -> None:
    env = seq_env
    for broken in (
        {**THREE_STEPS, "name": "Recobro\u0000"},
        {**THREE_STEPS, "sender": {"email": "cobros@acme.test", "name": "Acme\u0000"}},
        {**THREE_STEPS, "sender": {"email": "cobros\u0000@acme.test"}},
        {**THREE_STEPS, "sender": {"email": "cobros@acme.test", "name": "Acme\r\nBcc: x@y.z"}},
        {**THREE_STEPS, "name": "Recobro\r\nX"},
    ):
        answer = env.client.post("/v1/sequences", json=broken, headers=env.auth)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "invalid_sequence"


def test_huge_variables_are_refused_on_their_row(seq_env: SeqEnv) -> None:
    env = seq_env
    sequence_id = _create(env)
    rows = [
        json.dumps(PERSON),
        json.dumps({**PERSON, "variables": {**PERSON["variables"], "reference": "R" * 10_001}}),
        json.dumps({**PERSON, "variables": {**PERSON["variables"], "v" * 65: "x"}}),
        json.dumps({**PERSON, "variables": {f"v{i}": i for i in range(101)}}),
    ]
    answer = _bulk(env, sequence_id, "\n".join(rows).encode(), "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    report = answer.json()["rows"]
    assert [r["status"] for r in report] == ["accepted", "refused", "refused", "refused"]
    assert all("variables" in r["error"]["message"] for r in report[1:])
