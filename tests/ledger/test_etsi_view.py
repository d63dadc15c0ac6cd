"""The ETSI view: every kind of record renders as an EvidenceType that the checked-in JSON
Schema accepts, and the view is a pure function of the sealed record and the seal."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from sealpost.app import Sealpost
from sealpost.ledger.etsi_view import SCHEMA_PATH, etsi_view, schema, view_of_bundle
from sealpost.ledger.events import ETSI_EVENT_BASE, EVENT_TYPES
from sealpost.ledger.records import (
    ContentInfo,
    ContentPart,
    EvidenceRecord,
    Party,
    Reason,
    Subject,
    new_record,
    record_from_json,
)
from sealpost.pki.keys import LocalIdentities
from tests.support.etsi_names import TABLE_2
from tests.support.records import non_delivery, submission

TESTDATA = Path(__file__).parent.parent / "testdata" / "ledger"
VALIDATOR = jsonschema.Draft202012Validator(
    schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
EVENT_TIME_ZERO = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUBJECTS = ("communication", "submission", "signature_process", "sms")


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def _record(event: str, subject_type: str) -> EvidenceRecord:
    body = b"Dear Jane,\r\nplease find the invoice attached.\r\n"
    pdf = b"%PDF-1.7 invoice"
    negative = EVENT_TYPES[event].negative
    return new_record(
        tenant_id="t1",
        event=event,
        subject=Subject(subject_type, "4b1c2d3e-0000-4000-8000-000000000001"),
        submission_time=EVENT_TIME_ZERO,
        event_time=EVENT_TIME_ZERO + timedelta(seconds=2),
        sender=Party("care@acme.example", "ACME care", {"method": "smtp-auth", "username": "care"}),
        recipient=Party(
            "+34600111222" if subject_type == "sms" else "jane@customer.example",
            identification={"method": "email_otp", "assurance_level": "low"},
        ),
        application_identifier="<n1@acme.example>",
        content=ContentInfo(
            hashlib.sha256(body + pdf).hexdigest(),
            len(body + pdf),
            (
                ContentPart("text/plain", hashlib.sha256(body).hexdigest(), len(body)),
                ContentPart(
                    "application/pdf", hashlib.sha256(pdf).hexdigest(), len(pdf), "invoice.pdf"
                ),
            ),
        ),
        reasons=(Reason("smtp-550 5.1.1", "550 5.1.1 user unknown"),) if negative else (),
        details={"remote": {"host": "mx.customer.example", "kind": "mx"}, "attempt": 1},
    )


def _legacy(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((TESTDATA / name).read_text().replace("TENANT", "t1"))
    return body


@pytest.mark.parametrize("subject_type", SUBJECTS)
@pytest.mark.parametrize("event", list(EVENT_TYPES))
def test_the_view_of_every_kind_of_record_validates(
    identities: LocalIdentities, event: str, subject_type: str
) -> None:
    record = _record(event, subject_type).to_json()
    view = etsi_view(record, identities.seal.certificate)
    VALIDATOR.validate(view)
    assert view["erdsEventId"] == EVENT_TYPES[event].uri
    assert ("eventReasons" in view) == EVENT_TYPES[event].negative


@pytest.mark.parametrize(
    "body",
    [
        _legacy("record-v1-acceptance-by-recipient.json"),
        _legacy("record-v1-content-consignment.json"),
        submission("t1").to_json(),
        non_delivery("t1", "c9").to_json(),
        new_record(tenant_id="t1", event="Archived", subject=Subject("archive", "a1")).to_json(),
    ],
    ids=["v1-acceptance", "v1-consignment", "submission", "non-delivery", "bare"],
)
def test_the_view_of_old_and_minimal_records_validates(
    identities: LocalIdentities, body: dict[str, Any]
) -> None:
    VALIDATOR.validate(etsi_view(body, identities.seal.certificate))
    VALIDATOR.validate(etsi_view(body, None))  # no seal certificate at hand: still well formed


@pytest.mark.parametrize(
    ("name", "sealed", "meaning"),
    [
        (
            "record-v1-acceptance-by-recipient.json",
            "AcceptanceByRecipient",
            "ConsignmentAcceptance",
        ),
        ("record-v1-content-consignment.json", "ContentConsignment", "RelayToNonERDS"),
    ],
)
def test_an_old_record_is_viewed_under_the_standards_name_and_keeps_its_own(
    identities: LocalIdentities, name: str, sealed: str, meaning: str
) -> None:
    """A version-1 record sealed under a name Table 2 does not have (or one catalogue 2 reads
    otherwise) is shown under the Table 2 event it means; its sealed name stays in the
    record extension, so nothing is hidden and the view still names only the 22."""
    view = etsi_view(_legacy(name), identities.seal.certificate)
    assert view["erdsEventId"] == ETSI_EVENT_BASE + meaning
    facts = view["extensions"][0]["value"]
    assert facts["recordVersion"] == 1
    assert facts["eventName"] == sealed
    assert facts["eventUri"] == ETSI_EVENT_BASE + sealed
    if sealed not in TABLE_2:  # a name the standard does not have fails the schema
        forged = etsi_view(_legacy(name), None)
        forged["erdsEventId"] = ETSI_EVENT_BASE + sealed  # what the view showed before
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(forged)


def test_the_view_says_what_the_record_says(identities: LocalIdentities) -> None:
    record = _record("SubmissionRejection", "communication")
    view = etsi_view(record.to_json(), identities.seal.certificate)
    assert view["evidenceIdentifier"] == record.id
    assert view["erdsEventId"] == "http://uri.etsi.org/19522/Event/SubmissionRejection"
    assert view["eventReasons"]["eventReason"] == [
        {"code": "urn:sealpost:reason:smtp-550%205.1.1", "details": ["550 5.1.1 user unknown"]}
    ]
    assert view["eventTime"] == "2026-11-23T10:00:02.000000Z"
    assert view["submissionTime"] == "2026-11-23T10:00:00.000000Z"
    assert view["senderDetails"]["identifier"] == {
        "value": "care@acme.example",
        "identifierSchemeName": "mailto",
    }
    assert view["recipientDetails"][0]["identityAssuranceLevel"] == "low"
    assert view["messageIdentifier"] == record.subject.id
    content = view["userContentInfo"]
    assert content["appLayerIdentifier"] == "<n1@acme.example>"
    assert content["composingParts"] == 2
    whole, _text, pdf = content["partsInfo"]
    assert whole["contentType"] == "message/rfc822"
    assert base64.b64decode(whole["digestValue"]).hex() == record.content.sha256  # type: ignore[union-attr]
    assert pdf["contentType"] == "application/pdf"
    assert base64.b64decode(pdf["digestValue"]).hex() == record.content.parts[1].sha256  # type: ignore[union-attr]
    issuer = view["evidenceIssuerDetails"]
    der = identities.seal.certificate.public_bytes(Encoding.DER)
    assert issuer["certificateDetails"] == [{"x509Certificate": base64.b64encode(der).decode()}]
    common_name = [a for a in issuer["identity"]["attribute"] if a["friendlyName"] == "commonName"]
    assert common_name and common_name[0]["value"][0]
    facts = view["extensions"][0]["value"]
    assert facts["leafHash"] == base64.b64encode(record.leaf_hash()).decode()
    assert facts["recordVersion"] == 2 and facts["eventGroup"] == "A"
    parts = next(e for e in view["extensions"] if e["type"] == "urn:sealpost:extension:parts")
    assert parts["value"][2] == {"identifier": "part-2", "size": 16, "fileName": "invoice.pdf"}


def test_the_view_is_a_pure_function_of_the_record_and_seal(identities: LocalIdentities) -> None:
    body = _record("RelayToNonERDS", "communication").to_json()
    again = record_from_json(json.loads(json.dumps(body, indent=2))).to_json()
    first = etsi_view(body, identities.seal.certificate)
    assert etsi_view(again, identities.seal.certificate) == first
    assert json.dumps(first, sort_keys=True) == json.dumps(
        etsi_view(body, identities.seal.certificate), sort_keys=True
    )
    changed = etsi_view({**body, "event_time": "2026-11-23T10:00:01.000000Z"}, None)
    assert (
        changed["extensions"][0]["value"]["leafHash"] != first["extensions"][0]["value"]["leafHash"]
    )


def test_a_bundles_view_is_tied_to_its_sealed_leaf(sealpost: Sealpost, tenant_id: str) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(record.id, tenant_id)
    view = view_of_bundle(bundle)
    VALIDATOR.validate(view)
    assert view["extensions"][0]["value"]["leafHash"] == bundle["inclusion_proof"]["leaf_hash"]
    seal_pem = bundle["certificates"]["seal"][0]
    der_b64 = "".join(line for line in seal_pem.splitlines() if "-----" not in line)
    assert view["evidenceIssuerDetails"]["certificateDetails"][0]["x509Certificate"] == der_b64
