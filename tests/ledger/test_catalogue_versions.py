"""The event catalogue is ETSI EN 319 522-3 Table 2, and records sealed under catalogue 1 stay
readable and verifiable, byte for byte, while nothing new is written with its names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sealpost.app import Sealpost
from sealpost.ledger.canonical import canonical_json
from sealpost.ledger.errors import RecordError
from sealpost.ledger.events import (
    CATALOGUES,
    ETSI_EVENT_BASE,
    EVENT_TYPES,
    CatalogueError,
    EventType,
    event_type,
)
from sealpost.ledger.records import Subject, new_record, record_from_json
from sealpost.ledger.verify import verify_bundle
from tests.support.etsi_names import TABLE_2, check_uri, emitted
from tests.support.records import store_old_record

TESTDATA = Path(__file__).parent.parent / "testdata" / "ledger"


def test_the_etsi_uri_events_are_exactly_the_22_of_table_2() -> None:
    assert len(TABLE_2) == len(set(TABLE_2)) == 22
    under_etsi = [e.name for e in EVENT_TYPES.values() if e.uri.startswith(ETSI_EVENT_BASE)]
    assert under_etsi == list(TABLE_2)  # and in the standard's order
    for e in EVENT_TYPES.values():
        assert e.uri == (ETSI_EVENT_BASE if e.name in TABLE_2 else "urn:sealpost:event:") + e.name
    assert "AcceptanceByRecipient" not in EVENT_TYPES
    assert "RejectionByRecipient" not in EVENT_TYPES


def test_every_failure_rejection_and_expiry_of_table_2_is_negative() -> None:
    negative = {e.name for e in EVENT_TYPES.values() if e.etsi and e.negative}
    words = ("Rejection", "Failure", "Expiry")
    assert negative == {n for n in TABLE_2 if any(w in n for w in words)}


def test_an_etsi_event_type_outside_table_2_cannot_exist() -> None:
    with pytest.raises(CatalogueError):
        EventType("AcceptanceByRecipient", "C", False, etsi=True)
    with pytest.raises(CatalogueError):
        EventType("SmsDelivered", "X", False, etsi=True)
    assert EventType("SmsDelivered", "X", False).uri == "urn:sealpost:event:SmsDelivered"


@pytest.mark.parametrize("name", ["AcceptanceByRecipient", "RejectionByRecipient"])
def test_a_new_record_with_a_catalogue_1_name_is_refused(name: str) -> None:
    with pytest.raises(RecordError) as caught:
        new_record(
            tenant_id="t1",
            event=name,
            subject=Subject("communication", "c1"),
            reasons=(),
        )
    assert caught.value.field == "event.name"
    assert "no longer written" in str(caught.value)
    with pytest.raises(KeyError, match="catalogue-1"):
        event_type(name)


def test_a_version_2_record_cannot_carry_a_catalogue_1_event() -> None:
    body = _legacy("record-v1-acceptance-by-recipient.json", "t1")
    with pytest.raises(RecordError) as caught:
        record_from_json({**body, "version": 2})
    assert caught.value.field == "event.name"


def _legacy(name: str, tenant_id: str) -> dict[str, Any]:
    text = (TESTDATA / name).read_text().replace("TENANT", tenant_id)
    body: dict[str, Any] = json.loads(text)
    return body


def test_a_catalogue_1_record_round_trips_to_its_very_bytes() -> None:
    body = _legacy("record-v1-acceptance-by-recipient.json", "t1")
    record = record_from_json(body)
    assert record.version == 1
    assert record.event is CATALOGUES[1]["AcceptanceByRecipient"]
    assert record.canonical() == canonical_json(body)
    assert record.to_json()["event"]["code"] == "C.3"


@pytest.mark.parametrize(
    "name", ["record-v1-acceptance-by-recipient.json", "record-v1-content-consignment.json"]
)
def test_a_record_sealed_under_catalogue_1_still_verifies(
    sealpost: Sealpost, tenant_id: str, keys_dir: Path, name: str
) -> None:
    body = _legacy(name, tenant_id)
    old = record_from_json(body)
    with pytest.raises(RecordError, match="written in version 2 only"):
        sealpost.log_storage.append([old])  # nothing appends an old record as a new one ...
    store_old_record(sealpost.engine, old)  # ... it is one stored before catalogue 2
    sealpost.log_storage.append(
        [
            new_record(
                tenant_id=tenant_id, event="RelayToNonERDS", subject=Subject("communication", "c2")
            )
        ]
    )
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(old.id, tenant_id)
    assert canonical_json(bundle["record"]) == canonical_json(body)  # the old bytes, sealed
    root = x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())
    report = verify_bundle(json.dumps(bundle), trust_roots=[root])
    assert report.ok, report.failures
    assert report.record is not None and report.record.version == 1
    assert body["event"]["name"] in report.statement()


def test_the_suite_guard_refuses_a_name_outside_table_2() -> None:
    with pytest.raises(AssertionError, match="not an ETSI EN 319 522-3 event"):
        check_uri("http://uri.etsi.org/19522/Event/AcceptanceByRecipient", 2)
    check_uri("http://uri.etsi.org/19522/Event/AcceptanceByRecipient", 1)  # an old record
    check_uri("urn:sealpost:event:NonDelivery", 2)


def test_the_suite_guard_sees_what_the_ledger_stores(sealpost: Sealpost, tenant_id: str) -> None:
    record = new_record(
        tenant_id=tenant_id, event="ReceivedFromNonERDS", subject=Subject("communication", "c3")
    )
    sealpost.log_storage.append([record])
    assert record.event.uri in emitted
