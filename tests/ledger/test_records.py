"""Evidence records: ETSI event URIs, reasons on negative events, exact JSON round trip."""

from __future__ import annotations

import json

import pytest

from sealpost.ledger.canonical import canonical_json
from sealpost.ledger.errors import RecordError
from sealpost.ledger.events import EVENT_TYPES
from sealpost.ledger.records import Subject, new_record, record_from_json
from tests.support.records import non_delivery, submission


def test_etsi_events_carry_the_etsi_uri_and_group() -> None:
    record = submission("t1").to_json()
    assert record["version"] == 2
    assert record["event"] == {
        "name": "SubmissionAcceptance",
        "uri": "http://uri.etsi.org/19522/Event/SubmissionAcceptance",
        "group": "A",
    }
    assert EVENT_TYPES["RelayToNonERDS"].group == "F"
    assert EVENT_TYPES["NonDelivery"].uri == "urn:sealpost:event:NonDelivery"
    assert {e.group for e in EVENT_TYPES.values() if e.etsi} == set("ABCDEF")


@pytest.mark.parametrize("event", [e.name for e in EVENT_TYPES.values() if e.negative])
def test_every_negative_event_needs_a_reason(event: str) -> None:
    with pytest.raises(RecordError) as caught:
        new_record(tenant_id="t1", event=event, subject=Subject("communication", "c1"))
    assert caught.value.field == "reasons"


def test_a_record_carries_per_part_digests_and_the_message_id() -> None:
    record = submission("t1", 3)
    body = record.to_json()
    assert body["application_identifier"].startswith("<3.")
    assert body["content"]["parts"][0]["content_type"] == "text/plain"
    assert len(body["content"]["sha256"]) == 64
    assert body["event_time"].endswith("Z")


@pytest.mark.parametrize("make", [lambda: submission("t1"), lambda: non_delivery("t1", "c9")])
def test_json_round_trip_rebuilds_the_hashed_bytes(make: object) -> None:
    record = make()  # type: ignore[operator]
    text = json.dumps(record.to_json(), indent=2)  # what a bundle holds, pretty-printed
    again = record_from_json(json.loads(text))
    assert again.canonical() == record.canonical() == canonical_json(json.loads(text))
    assert again.leaf_hash() == record.leaf_hash()


def test_malformed_records_name_the_field() -> None:
    body = submission("t1").to_json()
    with pytest.raises(RecordError) as caught:
        record_from_json({**body, "version": 7})
    assert caught.value.field == "version"
    with pytest.raises(RecordError) as caught:
        record_from_json({**body, "event_time": "yesterday"})
    assert caught.value.field == "event_time"
    with pytest.raises(RecordError) as caught:
        record_from_json({**body, "event": {**body["event"], "uri": "http://evil/"}})
    assert caught.value.field == "event.uri"
    with pytest.raises(RecordError):
        record_from_json({**body, "content": {**body["content"], "sha256": "XYZ"}})
