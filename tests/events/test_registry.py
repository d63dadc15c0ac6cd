"""The registry knows every domain's events in any process built by the composition root, and
refuses, loudly, a record whose subject type no domain registered (its events would be lost)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from sealpost.events.registry import REGISTRY, EventKind, events_for_records
from sealpost.ledger.records import Party, Subject, new_record


def test_a_process_built_by_the_composition_root_knows_every_domain() -> None:
    probe = (
        "import sealpost.app\n"
        "from sealpost.events.registry import REGISTRY\n"
        "print(sorted({k.subject_type for k in REGISTRY.kinds}))\n"
        "print(REGISTRY.collection('signature_process'), REGISTRY.collection('communication'),"
        " REGISTRY.collection('sms'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == str(
        [
            "archive_export",
            "archive_hold",
            "archive_mailbox",
            "archive_message",
            "archive_scheduled_send",
            "archive_settings",
            "archive_thread",
            "communication",
            "enrolment",
            "signature_process",
            "sms",
            "submission",
            "webhook_endpoint",
        ]
    )
    assert out[1] == "signatures communications sms"


def test_a_record_of_an_unregistered_subject_type_is_refused() -> None:
    record = new_record(
        tenant_id=str(uuid.uuid4()),
        event="SubmissionAcceptance",
        event_time=datetime.now(UTC),
        subject=Subject("parcel", str(uuid.uuid4())),
        sender=Party("a@example.com"),
    )
    with pytest.raises(KeyError, match="parcel"):
        events_for_records([record])
    with pytest.raises(KeyError, match="parcel"):
        REGISTRY.collection("parcel")


def test_a_kind_registered_twice_differently_is_a_programming_error() -> None:
    kind = REGISTRY.kind("sealpost.communication.delivered")
    assert kind is not None
    REGISTRY.register([kind])  # the same again: a no-op
    with pytest.raises(ValueError, match="registered twice"):
        REGISTRY.register([EventKind(kind.type, kind.subject_type, "another meaning")])
