"""A legal term on a sequence step: the step's email carries the rule in its sealed
SubmissionAcceptance, and the term starts when its trigger is recorded, as for any
communication (docs/deadlines.md); a rule that could never run is refused at definition."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.sequences.conftest import SeqEnv
from tests.sequences.test_sequences import PERSON, _create, _pdf_text, _template

RULE = {"amount": 10, "unit": "business_days", "starts_from": "delivery", "calendar": "es-ct"}


def _one_step(channel: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "Requerimiento con plazo",
        "sender": {"email": "cobros@acme.test"},
        "steps": [
            {
                "channel": channel,
                "template": _template("Requerimiento {{ reference }}", "Requerimiento"),
                "deadline": rule,
            }
        ],
    }


@pytest.mark.parametrize(
    ("channel", "rule", "why"),
    [
        ("certified_sms", RULE, "needs an email step"),
        ("certified_email", {**RULE, "starts_from": "handover"}, "delivery: pickup"),
        ("certified_email", {**RULE, "calendar": "ES-XX"}, "no subdivision"),
        ("certified_email", {**RULE, "unit": "fortnights"}, ""),
    ],
)
def test_a_rule_that_could_never_run_is_refused_naming_the_step(
    seq_env: SeqEnv, channel: str, rule: dict[str, Any], why: str
) -> None:
    answer = seq_env.client.post(
        "/v1/sequences", json=_one_step(channel, rule), headers=seq_env.auth
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == "steps.0.deadline"
    assert why in problem["detail"]


def test_the_steps_email_carries_the_rule_and_its_term_starts_on_delivery(
    peers_env: SeqEnv, tmp_path: Path
) -> None:
    env = peers_env
    assert env.peer is not None
    sequence_id = _create(env, _one_step("certified_email", RULE))
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments", json=PERSON, headers=env.auth
    )
    assert answer.status_code == 201, answer.text
    enrolment_id = answer.json()["id"]
    assert env.sp.sequence_scheduler.run_once() == 1
    steps = env.client.get(
        f"/v1/sequences/enrolments/{enrolment_id}/timeline", headers=env.auth
    ).json()["steps"]
    message_id = steps[0]["message_id"]
    assert message_id

    found = env.client.get(f"/v1/communications/{message_id}", headers=env.auth).json()
    assert found["deadlines"], found
    rule = found["deadlines"][0]["rule"]
    assert (rule["amount"], rule["unit"], rule["calendar"]) == (10, "business_days", "ES-CT")

    # delivered to the recipient's server: the deadlines follower starts the term
    limit = time.monotonic() + 30
    while time.monotonic() < limit:
        found = env.client.get(f"/v1/communications/{message_id}", headers=env.auth).json()
        if found["deadlines"][0]["status"] != "waiting":
            break
        dispatcher = env.sp.dispatcher  # one round of the events dispatcher (positions)
        assert dispatcher.hold_lease()
        dispatcher.position()
        env.sp.deadlines.follow_once()
        time.sleep(0.2)
    term = found["deadlines"][0]
    assert term["status"] in ("running", "approaching", "passed"), found
    assert term["calendar_name"] == "ES-CT" and term["data_version"].startswith("holidays ")
    assert term["ends_on"] > found["submitted_at"][:10]

    # the timeline and the sealed report name the term beside the step
    timeline = env.client.get(
        f"/v1/sequences/enrolments/{enrolment_id}/timeline", headers=env.auth
    ).json()
    assert "ES-CT" in timeline["steps"][0]["deadline"]
    report = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}/report.pdf", headers=env.auth)
    assert report.status_code == 200, report.text
    text = _pdf_text(report.content, tmp_path)
    assert "ES-CT" in text and "10-business-day" in text


def test_business_day_delays_skip_the_tenants_own_days(seq_env: SeqEnv) -> None:
    """A step's business-day delay counts on the same calendar as the tenant's legal terms:
    its local holidays and closure days do not count."""
    env = seq_env
    definition = {
        "name": "Dos pasos",
        "sender": {"email": "cobros@acme.test"},
        "steps": [
            {"channel": "email", "template": _template("Aviso", "Aviso")},
            {
                "channel": "email",
                "template": _template("Segundo aviso", "Segundo aviso"),
                "delay": {"amount": 1, "unit": "business_days", "calendar": "ES-MD"},
            },
        ],
    }
    sequence_id = _create(env, definition)

    def second_step_day() -> str:
        answer = env.client.post(
            f"/v1/sequences/{sequence_id}/enrolments", json=PERSON, headers=env.auth
        )
        assert answer.status_code == 201, answer.text
        timeline = env.client.get(
            f"/v1/sequences/enrolments/{answer.json()['id']}/timeline", headers=env.auth
        ).json()
        return str(timeline["steps"][1]["planned_at"])[:10]

    assert second_step_day() == "2026-03-03"  # Monday 2 March + 1 business day
    put = env.client.put(
        "/v1/calendars/ES-MD/days",
        json={"days": [{"date": "2026-03-03", "name": "Office closed", "kind": "closure"}]},
        headers=env.auth,
    )
    assert put.status_code == 200, put.text
    assert second_step_day() == "2026-03-04"
