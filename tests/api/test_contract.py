"""The API keeps its contract (issue 12, defect 7 and the campaign): schemathesis drives every
operation of ``/openapi.json`` in-process (the ASGI app on a real database, a real tenant key)
through its phases: the schema's examples, its boundary cases (coverage) and generated
requests, valid and invalid.

Every answer is checked: no 5xx; every 4xx/5xx an ``application/problem+json`` document; its
status, content type, headers and body as the document says; a request that breaks the schema
is refused; a request without the key is a 401; a method the document does not list is a 405
with a correct ``Allow``.  And the generated requests get past validation: each create
operation answered 2xx at least once.

Bounded (a fixed number of generated examples per operation) and deterministic (one seed,
derandomised generation).  Schemathesis' pytest plugin does not run under pytest 9, so the
test runs its engine, as its command line does, and reads the events.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events
from schemathesis.engine import from_schema as engine_for
from schemathesis.engine.run import PhaseName

from sealpost.api.app import create_app
from sealpost.app import build
from sealpost.config import Settings
from tests.signatures.pdf_samples import Line, one_page, text_pdf

PROBLEM = "application/problem+json"
CREATE_OPERATIONS = (
    "POST /v1/communications",
    "POST /v1/signatures",
    "POST /v1/webhooks",
    "PUT /v1/settings/signing",
)
MAX_EXAMPLES = 20
SEED = 20261206

PDFS = [
    one_page(),
    text_pdf([[Line(56, 56, "Repair quote, {{signature:1}}")]])[0],
    text_pdf([[Line(56, 56, "Page one")], [Line(56, 80, "Page two {{signature:1}}")]])[0],
]
"""Real PDFs for the generated documents: the schema says base64, and cannot say PDF."""


schemathesis.serializer.alias("application/timestamp-query", "application/octet-stream")
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")


@schemathesis.check
def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is an RFC 9457 problem document."""
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        if content_type.split(";")[0].strip() != PROBLEM:
            raise AssertionError(
                f"{response.status_code} answered as {content_type!r}, not {PROBLEM}"
            )
        body = response.json()
        if not (body.get("type", "").startswith("urn:sealpost:problem:") and body.get("detail")):
            raise AssertionError(f"not a Sealpost problem: {body}")
    return None


def _with_real_pdfs(context: Any, body: Any) -> Any:
    """Each valid document of a generated ``POST /v1/signatures`` becomes a real PDF (picked
    by its position: the same case sends the same bytes); an invalid one stays, to be refused."""
    if context.operation.label != "POST /v1/signatures" or not isinstance(body, dict):
        return body
    documents = body.get("documents")
    if not isinstance(documents, list):
        return body
    for i, document in enumerate(documents):
        content = document.get("content") if isinstance(document, dict) else None
        if isinstance(content, str) and _is_base64(content):
            document["content"] = base64.b64encode(PDFS[i % len(PDFS)]).decode()
    return body


def _with_known_calendars(context: Any, body: Any) -> Any:
    """A generated ``deadline`` of ``POST /v1/communications`` names a calendar the holiday
    data knows and a trigger its delivery records (a schema cannot say either); an invalid
    rule (a wrong type, an unknown unit) stays, to be refused."""
    if context.operation.label != "POST /v1/communications" or not isinstance(body, dict):
        return body
    rule = body.get("deadline")
    if isinstance(rule, dict) and isinstance(rule.get("calendar"), str):
        rule["calendar"] = "ES-CT"
        if rule.get("starts_from") in ("delivery", "handover", "acceptance"):
            rule["starts_from"] = "handover" if body.get("delivery") == "pickup" else "delivery"
    return body


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


@dataclass
class Outcome:
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """Per operation, how many answers of each status."""
    generated: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """The same, for the requests the coverage and fuzzing phases generated (not the schema's
    examples).  Both: how many of a mere 20 fuzzed bodies are valid JSON at all drifts with
    the schema's shape (and with the order the suite ran in), while the coverage phase's
    boundary cases are derived from the schema itself."""
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def created(self, label: str) -> int:
        """How many generated requests to the operation were answered 2xx."""
        return sum(n for status, n in self.generated[label].items() if 200 <= status < 300)


def _campaign(settings: Settings) -> Outcome:
    sp = build(settings)
    try:
        tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
        key = sp.tenants.issue_api_key(tenant.id).secret
        config = schemathesis.Config.from_dict(
            {
                "seed": SEED,
                "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
                "headers": {"Authorization": f"Bearer {key}"},
                "parameters": {"query.wait": 0},  # long polls and waits for seals: bounded
                # examples, coverage (boundaries) and fuzzing; stateful chains would need
                # OpenAPI links, which the document does not declare
                "phases": {"stateful": {"enabled": False}},
                # a schema cannot say "a PDF" or "a public host": valid by the schema, a
                # request may still get a documented 422 (the 2xx are counted instead)
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        )
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json", create_app(sp, start_background=False), config=config
        )
        schema.hook("map_body")(lambda c, b: _with_known_calendars(c, _with_real_pdfs(c, b)))
        outcome = Outcome()
        started = time.monotonic()
        for event in engine_for(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                _record(outcome, event)
            elif isinstance(event, events.NonFatalError | events.FatalError):
                outcome.errors.append(str(event.info.message if hasattr(event, "info") else event))
        outcome.seconds = time.monotonic() - started
        return outcome
    finally:
        sp.stop_background()
        sp.engine.dispose()


def _record(outcome: Outcome, event: events.ScenarioFinished) -> None:
    recorder = event.recorder
    for case_id, interaction in recorder.interactions.items():
        if interaction.response is None:
            continue
        label = recorder.cases[case_id].value.operation.label
        outcome.statuses[label][interaction.response.status_code] += 1
        if event.phase in (PhaseName.COVERAGE, PhaseName.FUZZING):
            outcome.generated[label][interaction.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                case = recorder.cases[case_id].value
                failure = check.failure_info.failure
                outcome.failures.append(
                    f"{case.operation.label} [{check.name}] {failure.title}: {failure.message}\n"
                    f"    {check.failure_info.code_sample}"
                )


def _settings(directory: Path, database_url: str, keys_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=directory / "data",
        database_url=database_url,
        keys_dir=keys_dir,
        batch_window_ms=10,
        ledger_origin="test.sealpost.local/ledger",
        certificates_enabled=False,
        # no sequencer runs here: /healthz would turn unhealthy (503) once a record has
        # waited a minute for its seal, rightly, and that is not what this test is about
        health_max_unsealed_seconds=3600,
    )


@pytest.mark.slow
def test_every_answer_is_the_documented_one(
    tmp_path: Path, database_url: str, keys_dir: Path
) -> None:
    outcome = _campaign(_settings(tmp_path, database_url, keys_dir))
    answered = sum(sum(c.values()) for c in outcome.statuses.values())
    print(f"{answered} requests in {outcome.seconds:.0f} s")
    for label, statuses in sorted(outcome.statuses.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    for label in CREATE_OPERATIONS:
        print(f"  generated, {label}: {dict(sorted(outcome.generated[label].items()))}")
    assert outcome.errors == [], "\n".join(outcome.errors)
    assert outcome.failures == [], "\n".join(sorted(set(outcome.failures))[:30])
    server_errors = {
        label: {s: n for s, n in statuses.items() if s >= 500}
        for label, statuses in outcome.statuses.items()
        if any(s >= 500 for s in statuses)
    }
    assert server_errors == {}
    for label in CREATE_OPERATIONS:  # generated requests, not only the examples, get through
        assert outcome.created(label) >= 1, f"{label}: no 2xx in {dict(outcome.generated[label])}"
    assert answered > 500  # it really ran
