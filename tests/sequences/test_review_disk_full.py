"""A step whose message cannot be stored because the disk is full (the blob store on a small
tmpfs of the test's own, filled to the last byte) is retried once space is freed: a full
disk is the operator's passing trouble, not the channel's final failure, and must not fail
thousands of enrolments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import build
from sealpost.config import Settings
from tests.conftest import require_service
from tests.sequences.conftest import T0, FrozenClock
from tests.support.small_disk import fill, small_disk

DEFINITION = {
    "name": "One certified email",
    "sender": {"email": "cobros@acme.test"},
    "steps": [
        {
            "channel": "certified_email",
            "template": {
                "fallback_language": "es",
                "languages": {"es": {"subject": "Requerimiento", "text": "Debe {{ amount }}."}},
            },
            "on_failure": "stop",
        }
    ],
}


@pytest.fixture
def blobs_on_small_disk() -> Iterator[object]:
    try:
        disk = small_disk("4m")
        root = disk.__enter__()
    except OSError as exc:
        require_service("a tmpfs of the test's own (mounting needs root)", str(exc))
        pytest.skip("unreachable")
    try:
        yield root
    finally:
        disk.__exit__(None, None, None)


def test_a_full_disk_holds_the_step_instead_of_failing_it(
    settings: Settings, blobs_on_small_disk: object
) -> None:
    root = blobs_on_small_disk
    s = settings.model_copy(
        update={
            "blob_dir": root,
            "content_inline_max_bytes": 0,  # every content a blob file, on the small disk
            "delivery_enabled": False,
            "smtp_enabled": False,
        }
    )
    sp = build(s)
    try:
        sp.clock = FrozenClock(T0)
        tenant = sp.tenants.create(f"acme-{uuid.uuid4().hex[:6]}")
        key = sp.tenants.issue_api_key(tenant.id, "crm").secret
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(sp, start_background=False)) as client:
            created = client.post("/v1/sequences", json=DEFINITION, headers=auth)
            assert created.status_code == 201, created.text
            enrolled = client.post(
                f"/v1/sequences/{created.json()['id']}/enrolments",
                json={
                    "person": {"name": "Ana", "email": "ana@recipient.test"},
                    "variables": {"amount": "120,50 EUR"},
                },
                headers=auth,
            )
            assert enrolled.status_code == 201, enrolled.text
            enrolment_id = enrolled.json()["id"]
            filler = fill(root)  # type: ignore[arg-type]

            scheduler = sp.sequence_scheduler
            assert scheduler.run_once() == 1
            [step] = sp.sequences.repo.steps(enrolment_id)
            assert step.status == "scheduled", step.error
            assert "storage_full" in (step.error or "")
            got = client.get(f"/v1/sequences/enrolments/{enrolment_id}", headers=auth).json()
            assert got["status"] == "active"

            filler.unlink()  # the operator frees space
            sp.clock.advance(seconds=61)  # type: ignore[attr-defined]
            assert scheduler.run_once() == 1
            [step] = sp.sequences.repo.steps(enrolment_id)
            assert step.status == "sent" and step.message_id
    finally:
        sp.stop_background()
        sp.engine.dispose()
